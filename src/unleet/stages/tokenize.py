"""tokenize: turn the corrupted splits into Hugging Face datasets in `data/tokenized/`.

`byte` uses ByT5's byte tokenizer (no files, any symbol survives). `sentencepiece` trains a
unigram SentencePiece model on the train split with byte fallback, so unseen leet glyphs still
decode exactly. Either way the tokenizer is saved beside the splits for `train` to ship with the
model, and `metrics/tokenize.json` records lengths and how many over-long pairs were dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import sentencepiece as spm
from datasets import Dataset
from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import Unigram
from transformers import ByT5Tokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from unleet import io
from unleet.errors import UnleetError
from unleet.inputs import InputFormat
from unleet.params import Params, TokenizerParams

log = logging.getLogger(__name__)

INPUT_DIR = Path("data/corrupted")
OUTPUT_DIR = Path("data/tokenized")
METRICS = Path("metrics/tokenize.json")
SPLITS = ("train", "validation", "test")
SPM_FILE = "spiece.model"
SENTENCEPIECE_SAMPLE = 300_000  # texts SentencePiece learns from: a seeded sample keeps a 1M-pair split fast


def train_sentencepiece(texts: list[str], params: TokenizerParams, directory: Path) -> PreTrainedTokenizerBase:
    """Train a unigram model with byte fallback and wrap it as a fast tokenizer that keeps it."""
    if not params.vocab_size:
        raise UnleetError("tokenizer.vocab_size: required for tokenizer=sentencepiece")
    prefix = directory / SPM_FILE.removesuffix(".model")
    if len(texts) > SENTENCEPIECE_SAMPLE:
        texts = random.Random(0).sample(texts, SENTENCEPIECE_SAMPLE)
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
        num_threads=2,
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
        texts = [row["source"] for row in train_rows] + [row["target"] for row in train_rows]
        return train_sentencepiece(texts, params, directory)
    raise UnleetError(f"tokenizer.kind={params.kind!r}: unknown, expected 'byte' or 'sentencepiece'")


def encode(rows: list[dict], tokenizer: PreTrainedTokenizerBase, params: TokenizerParams) -> tuple[Dataset, dict]:
    """Tokenize one split, dropping pairs longer than the configured lengths; returns it with length statistics.

    Truncation would teach the model to stop mid-sentence (a clipped target) or to invent text its
    input never had (a clipped source), so an over-long pair is left out and counted instead.
    """
    sources = token_ids(tokenizer, [row["source"] for row in rows])
    targets = token_ids(tokenizer, [row["target"] for row in rows])
    source_lengths = np.array([len(ids) for ids in sources])
    target_lengths = np.array([len(ids) for ids in targets])
    fits = (source_lengths <= params.max_source_length) & (target_lengths <= params.max_target_length)
    kept = np.flatnonzero(fits)
    table = pa.table(
        {
            "input_ids": id_lists([sources[i] for i in kept]),
            "labels": id_lists([targets[i] for i in kept]),
            "intensity": pa.array([rows[i]["intensity"] for i in kept], pa.string()),
        }
    )
    dataset = Dataset(table)
    stats = {
        "examples": len(kept),
        "dropped_too_long": int(len(rows) - len(kept)),
        "max_target_ratio": round(float((target_lengths[kept] / source_lengths[kept]).max()), 4) if len(kept) else None,
        "source_length": _percentiles(source_lengths),
        "target_length": _percentiles(target_lengths),
    }
    return dataset, stats


def token_ids(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """Token ids with the closing </s>; a fast tokenizer's Rust batch call skips Python's per-text overhead."""
    if not tokenizer.is_fast:
        return tokenizer(texts)["input_ids"]
    encode = tokenizer.backend_tokenizer.encode_batch  # chunked: an Encoding object weighs far more than its ids
    return [
        encoding.ids for start in range(0, len(texts), 50_000) for encoding in encode(texts[start : start + 50_000])
    ]


def id_lists(ids: list[list[int]]) -> pa.ListArray:
    """Token id lists as one Arrow column of int32: half the disk and memory of Python's int64."""
    lengths = np.fromiter((len(row) for row in ids), dtype=np.int32, count=len(ids))
    offsets = np.zeros(len(ids) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.fromiter((token for row in ids for token in row), dtype=np.int32, count=int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def _percentiles(lengths: np.ndarray) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(lengths, q)) for q in (50, 90, 99)} | {"max": int(lengths.max())}


def main(params: Params) -> None:
    rows = {name: list(io.read_jsonl(INPUT_DIR / f"{name}.jsonl", ["input", "target", "intensity"])) for name in SPLITS}
    input_format = InputFormat(params.tokenizer.hint)
    for split in rows.values():
        for row, source in zip(split, input_format.sources([row["input"] for row in split]), strict=True):
            row["source"] = source
    metrics: dict[str, object] = {"kind": params.tokenizer.kind, "hint": input_format.hint}
    with io.atomic_path(OUTPUT_DIR, is_dir=True) as staging:
        tokenizer_dir = staging / "tokenizer"
        tokenizer_dir.mkdir()
        tokenizer = build_tokenizer(params.tokenizer, rows["train"], tokenizer_dir)
        tokenizer.save_pretrained(tokenizer_dir)
        metrics["vocab_size"] = len(tokenizer)
        for name in SPLITS:
            dataset, metrics[name] = encode(rows[name], tokenizer, params.tokenizer)
            if name != "test" and not len(dataset):
                raise UnleetError(
                    f"tokenize: every {name} pair is longer than tokenizer.max_source_length="
                    f"{params.tokenizer.max_source_length} or max_target_length={params.tokenizer.max_target_length}"
                )
            dataset.save_to_disk(str(staging / name))
        dataclasses.replace(input_format, max_target_ratio=metrics["train"]["max_target_ratio"]).save(tokenizer_dir)
    io.write_json(METRICS, metrics)
    log.info("tokenize: %s tokenizer, vocabulary %d", params.tokenizer.kind, len(tokenizer))
