"""tokenize: turn the corrupted splits into Hugging Face datasets in `data/tokenized/`.

`byte` uses ByT5's byte tokenizer (no files, any symbol survives). `sentencepiece` trains a
unigram SentencePiece model on the train split with byte fallback, so unseen leet glyphs still
decode exactly. Either way the tokenizer is saved beside the splits for `train` to ship with the
model, and `metrics/tokenize.json` records lengths and truncation.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import sentencepiece as spm
from datasets import Dataset
from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import Unigram
from transformers import ByT5Tokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from unleet import io
from unleet.errors import UnleetError
from unleet.params import Params, TokenizerParams

log = logging.getLogger(__name__)

INPUT_DIR = Path("data/corrupted")
OUTPUT_DIR = Path("data/tokenized")
METRICS = Path("metrics/tokenize.json")
SPLITS = ("train", "validation", "test")
SPM_FILE = "spiece.model"


def train_sentencepiece(texts: list[str], params: TokenizerParams, directory: Path) -> PreTrainedTokenizerBase:
    """Train a unigram model with byte fallback and wrap it as a fast tokenizer that keeps it."""
    if not params.vocab_size:
        raise UnleetError("tokenizer.vocab_size: required for tokenizer=sentencepiece")
    prefix = directory / SPM_FILE.removesuffix(".model")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_prefix=str(prefix),
        vocab_size=params.vocab_size,
        model_type="unigram",
        byte_fallback=True,
        character_coverage=1.0,
        hard_vocab_limit=False,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    processor = spm.SentencePieceProcessor(model_file=str(directory / SPM_FILE))
    pieces = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    backend = Tokenizer(Unigram(pieces, unk_id=processor.unk_id(), byte_fallback=True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Sequence(
        [decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    backend.post_processor = processors.TemplateProcessing(
        single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"], special_tokens=[("</s>", processor.eos_id())]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def build_tokenizer(params: TokenizerParams, train_rows: list[dict], directory: Path) -> PreTrainedTokenizerBase:
    if params.kind == "byte":
        return ByT5Tokenizer()
    if params.kind == "sentencepiece":
        texts = [row["input"] for row in train_rows] + [row["target"] for row in train_rows]
        return train_sentencepiece(texts, params, directory)
    raise UnleetError(f"tokenizer.kind={params.kind!r}: unknown, expected 'byte' or 'sentencepiece'")


def encode(rows: list[dict], tokenizer: PreTrainedTokenizerBase, params: TokenizerParams) -> tuple[Dataset, dict]:
    """Tokenize one split, truncating to the configured lengths; returns it with length statistics."""
    sources = tokenizer([row["input"] for row in rows])["input_ids"]
    targets = tokenizer(text_target=[row["target"] for row in rows])["input_ids"]
    source_lengths = np.array([len(ids) for ids in sources])
    target_lengths = np.array([len(ids) for ids in targets])
    truncated = (source_lengths > params.max_source_length) | (target_lengths > params.max_target_length)
    dataset = Dataset.from_dict(
        {
            "input_ids": [_clip(ids, params.max_source_length) for ids in sources],
            "labels": [_clip(ids, params.max_target_length) for ids in targets],
            "intensity": [row["intensity"] for row in rows],
        }
    )
    stats = {
        "examples": len(rows),
        "truncation_rate": round(float(truncated.mean()), 4),
        "source_length": _percentiles(source_lengths),
        "target_length": _percentiles(target_lengths),
    }
    return dataset, stats


def _clip(ids: list[int], limit: int) -> list[int]:
    """Truncate but keep the closing end-of-sequence token."""
    return ids if len(ids) <= limit else [*ids[: limit - 1], ids[-1]]


def _percentiles(lengths: np.ndarray) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(lengths, q)) for q in (50, 90, 99)} | {"max": int(lengths.max())}


def main(params: Params) -> None:
    rows = {name: list(io.read_jsonl(INPUT_DIR / f"{name}.jsonl", ["input", "target", "intensity"])) for name in SPLITS}
    metrics: dict[str, object] = {"kind": params.tokenizer.kind}
    with io.atomic_path(OUTPUT_DIR, is_dir=True) as staging:
        tokenizer_dir = staging / "tokenizer"
        tokenizer_dir.mkdir()
        tokenizer = build_tokenizer(params.tokenizer, rows["train"], tokenizer_dir)
        tokenizer.save_pretrained(tokenizer_dir)
        metrics["vocab_size"] = len(tokenizer)
        for name in SPLITS:
            dataset, metrics[name] = encode(rows[name], tokenizer, params.tokenizer)
            dataset.save_to_disk(str(staging / name))
    io.write_json(METRICS, metrics)
    log.info("tokenize: %s tokenizer, vocabulary %d", params.tokenizer.kind, len(tokenizer))
