"""Build the T5-architecture encoder-decoder from a preset or a saved checkpoint."""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedTokenizerBase, T5Config, T5ForConditionalGeneration

from unleet.errors import UnleetError
from unleet.params import ModelParams

ARCHITECTURE_KEYS = ("d_model", "d_ff", "num_layers", "num_decoder_layers", "num_heads", "d_kv")


def build_model(params: ModelParams, tokenizer: PreTrainedTokenizerBase) -> T5ForConditionalGeneration:
    """A fresh model sized by the preset, or `model.path` loaded when `preset: pretrained`."""
    if params.preset == "pretrained":
        return _load_pretrained(params, tokenizer)
    unset = [key for key in ARCHITECTURE_KEYS if getattr(params, key) is None]
    if unset:
        raise UnleetError(f"model={params.preset}: missing {', '.join(f'model.{k}' for k in unset)}")
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=params.d_model,
        d_ff=params.d_ff,
        num_layers=params.num_layers,
        num_decoder_layers=params.num_decoder_layers,
        num_heads=params.num_heads,
        d_kv=params.d_kv,
        dropout_rate=params.dropout,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return T5ForConditionalGeneration(config)


def _load_pretrained(params: ModelParams, tokenizer: PreTrainedTokenizerBase) -> T5ForConditionalGeneration:
    if not params.path or not Path(params.path).is_dir():
        raise UnleetError(f"model.path={params.path!r}: not a directory holding a saved checkpoint")
    model = T5ForConditionalGeneration.from_pretrained(params.path, dropout_rate=params.dropout)
    if model.config.vocab_size < len(tokenizer):
        raise UnleetError(
            f"model.path={params.path}: vocabulary of {model.config.vocab_size} is smaller than the "
            f"tokenizer's {len(tokenizer)}; use the tokenizer the checkpoint was trained with"
        )
    return model
