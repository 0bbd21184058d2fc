"""Build the T5-architecture encoder-decoder from a preset or a saved checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    T5Config,
    T5ForConditionalGeneration,
)

from unleet import io
from unleet.errors import UnleetError
from unleet.params import ModelParams, PeftParams

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
    model = T5ForConditionalGeneration(config)
    # transformers draws an untied lm_head with std 1.0, made for the tied head whose input T5
    # scales by d_model**-0.5. Untied, that starts the loss near 70 instead of ln(vocab) ≈ 6 and
    # training from scratch stalls on repeated tokens; apply the same scale to the weights instead.
    torch.nn.init.normal_(model.lm_head.weight, std=params.d_model**-0.5)
    return model


def _load_pretrained(params: ModelParams, tokenizer: PreTrainedTokenizerBase) -> T5ForConditionalGeneration:
    """A local checkpoint directory, or a hub id where the hub is reachable."""
    if not params.path:
        raise UnleetError("model.path: not set; give a local checkpoint directory or a hub id")
    try:
        model = T5ForConditionalGeneration.from_pretrained(params.path, dropout_rate=params.dropout)
    except OSError as error:
        raise UnleetError(
            f"model.path={params.path!r}: cannot load a checkpoint ({str(error).splitlines()[0]})"
        ) from None
    if model.config.vocab_size < len(tokenizer):
        raise UnleetError(
            f"model.path={params.path}: vocabulary of {model.config.vocab_size} is smaller than the "
            f"tokenizer's {len(tokenizer)}; use the tokenizer the checkpoint was trained with"
        )
    return model


def with_adapter(model: PreTrainedModel, params: PeftParams) -> torch.nn.Module:
    """The model itself, or wrapped with LoRA adapters (only those train) when `peft=lora`."""
    if params.method == "none":
        return model
    if params.method != "lora":
        raise UnleetError(f"peft.method={params.method!r}: unknown, expected none or lora")
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_2_SEQ_LM,
        r=params.r,
        lora_alpha=params.alpha,
        lora_dropout=params.dropout,
        target_modules=list(params.target_modules),
    )
    return get_peft_model(model, config)


def load_trained(directory: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A model saved by `save_trained`: full weights, or a LoRA adapter over its recorded base checkpoint."""
    if not directory.is_dir():
        raise UnleetError(f"{directory}: no such model directory")
    if not any((directory / name).is_file() for name in ("config.json", "adapter_config.json")):
        raise UnleetError(f"{directory}: no trained model; run `dvc repro train` first")
    try:
        model = AutoModelForSeq2SeqLM.from_pretrained(directory)
    except OSError as error:  # an adapter whose base checkpoint has moved
        raise UnleetError(f"{directory}: cannot load ({str(error).splitlines()[0]})") from None
    return model, AutoTokenizer.from_pretrained(directory)


def save_trained(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, directory: Path, merge: bool) -> None:
    """Save atomically: the model, or for LoRA the adapter (`adapter/`) and, with `merge`, the merged model.

    Without `merge` the directory holds only the adapter and tokenizer; transformers loads it
    onto its base checkpoint (recorded in `adapter_config.json`) when peft is installed.
    """
    with io.atomic_path(directory, is_dir=True) as staging:
        if hasattr(model, "merge_and_unload"):
            if merge:
                model.save_pretrained(staging / "adapter")
                model = model.merge_and_unload()
            model.save_pretrained(staging)
        else:
            model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
