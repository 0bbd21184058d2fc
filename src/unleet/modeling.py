"""Build the encoder-decoder from a preset (T5 or Pegasus architecture) or a saved checkpoint.

`model.architecture` picks how the fresh model sees positions. T5 has relative position biases
in self-attention only, so its decoder must learn a content-based circuit before it can copy its
input at all; Pegasus adds fixed sinusoidal positions to both sides, so copying position by
position is there to be found from the first steps: on pure copying of clean sentences a one-layer
Pegasus copied 94% exactly after 600 steps, a one-layer T5 69% after 1,100 (README, "What was tried").
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PegasusConfig,
    PegasusForConditionalGeneration,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    T5Config,
    T5ForConditionalGeneration,
)

from unleet import io
from unleet.copying import CopyPegasusConfig, CopyPegasusForConditionalGeneration
from unleet.errors import UnleetError
from unleet.params import ModelParams, PeftParams

ARCHITECTURE_KEYS = ("d_model", "d_ff", "num_layers", "num_decoder_layers", "num_heads")
MAX_POSITIONS = 1024  # Pegasus's sinusoidal table: longer than any tokenizer.max_*_length here


def build_model(params: ModelParams, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """A fresh model sized by the preset, or `model.path` loaded when `preset: pretrained`."""
    if params.copy and (params.preset == "pretrained" or params.architecture != "pegasus"):
        raise UnleetError("model.copy=true: the copy head is built on a fresh Pegasus (model.architecture=pegasus)")
    if params.preset == "pretrained":
        return _load_pretrained(params, tokenizer)
    unset = [key for key in ARCHITECTURE_KEYS if getattr(params, key) is None]
    if unset:
        raise UnleetError(f"model={params.preset}: missing {', '.join(f'model.{k}' for k in unset)}")
    if params.architecture == "t5":
        return _fresh_t5(params, tokenizer)
    if params.architecture == "pegasus":
        return _fresh_pegasus(params, tokenizer)
    raise UnleetError(f"model.architecture={params.architecture!r}: unknown, expected t5 or pegasus")


def vocabulary(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """The config entries every architecture takes from the tokenizer; decoding starts from <pad>."""
    return {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "decoder_start_token_id": tokenizer.pad_token_id,
    }


def _fresh_t5(params: ModelParams, tokenizer: PreTrainedTokenizerBase) -> T5ForConditionalGeneration:
    if params.d_kv is None:
        raise UnleetError(f"model={params.preset}: missing model.d_kv (architecture=t5)")
    config = T5Config(
        d_model=params.d_model,
        d_ff=params.d_ff,
        num_layers=params.num_layers,
        num_decoder_layers=params.num_decoder_layers,
        num_heads=params.num_heads,
        d_kv=params.d_kv,
        dropout_rate=params.dropout,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        **vocabulary(tokenizer),
    )
    model = T5ForConditionalGeneration(config)
    # transformers 5 always ties T5's lm_head to the shared embedding; `tie_word_embeddings=False`
    # only turns off the d_model**-0.5 scaling of the decoder output. The shared matrix is drawn
    # with std 1.0, so unscaled logits start near sqrt(d_model) in size and the loss near 70
    # instead of ln(vocab) ≈ 6; draw the (tied) matrix at d_model**-0.5 instead.
    torch.nn.init.normal_(model.lm_head.weight, std=params.d_model**-0.5)
    return model


def _fresh_pegasus(params: ModelParams, tokenizer: PreTrainedTokenizerBase) -> PegasusForConditionalGeneration:
    """Pre-LayerNorm, sinusoidal positions, tied embeddings scaled by sqrt(d_model); heads split d_model;
    with `model.copy` a copy head mixes in copies of source tokens (`unleet.copying`)."""
    if params.d_model % params.num_heads:
        raise UnleetError(f"model.d_model={params.d_model} must be a multiple of model.num_heads={params.num_heads}")
    config_class, model_class = (
        (CopyPegasusConfig, CopyPegasusForConditionalGeneration)
        if params.copy
        else (PegasusConfig, PegasusForConditionalGeneration)
    )
    config = config_class(
        d_model=params.d_model,
        encoder_ffn_dim=params.d_ff,
        decoder_ffn_dim=params.d_ff,
        encoder_layers=params.num_layers,
        decoder_layers=params.num_decoder_layers,
        encoder_attention_heads=params.num_heads,
        decoder_attention_heads=params.num_heads,
        dropout=params.dropout,
        max_position_embeddings=MAX_POSITIONS,
        scale_embedding=True,
        forced_eos_token_id=tokenizer.eos_token_id,
        **vocabulary(tokenizer),
    )
    return model_class(config)


def _load_pretrained(params: ModelParams, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
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


def save_trained(model: torch.nn.Module, tokenizer_dir: Path, directory: Path, merge: bool) -> None:
    """Save atomically: the model (or for LoRA the adapter, `adapter/`, and with `merge` the merged model)
    and the tokenize stage's tokenizer directory as it is, with the input format the model was trained on.

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
        shutil.copytree(tokenizer_dir, staging, dirs_exist_ok=True)
