"""Extra clean English for the corrupt stage: text/JSONL corpora and Hugging Face datasets.

Training from scratch is starved of clean text, not of corruptions: every clean sentence becomes
as many synthetic pairs as `variants` asks. Sources are a file or a directory of `.txt` files (one
text a line) and `.jsonl` files (one object a line, text under `field`), and optionally a dataset
`datasets.load_dataset` can open: a hub id where the hub is reachable, or a local dataset
directory. Texts outside the length bounds, duplicates, and any text that is also an evaluation
target (validation, test, challenge) are dropped, so the extra text can only ever add training data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path

from unleet import io
from unleet.errors import UnleetError
from unleet.params import CleanTextParams
from unleet.textmetrics import normalise

SUFFIXES = (".txt", ".jsonl")


def corpus_files(path: Path) -> list[Path]:
    """The `.txt`/`.jsonl` files at `path` (a file, or a directory searched recursively, sorted)."""
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise UnleetError(f"corrupt.clean_text.path={path}: expected a .txt or .jsonl file")
        return [path]
    if not path.is_dir():
        raise UnleetError(f"corrupt.clean_text.path={path}: no such file or directory")
    return sorted(file for file in path.rglob("*") if file.is_file() and file.suffix in SUFFIXES)


def read_file(path: Path, field: str) -> Iterator[str]:
    """Texts of one corpus file; a broken JSONL line or a missing field names file and line."""
    if path.suffix == ".txt":
        with path.open("rb") as handle:
            yield from (line.strip() for _, line in io.numbered_lines(handle, path) if line.strip())
        return
    for number, row in io.numbered_jsonl(path):
        if not isinstance(row.get(field), str):
            raise UnleetError(f"{path}:{number}: no text field {field!r} (corrupt.clean_text.field)")
        yield row[field]


def read_dataset(params: CleanTextParams) -> Iterator[str]:
    """Texts of `params.dataset`, streamed so that `limit` bounds the download, not just the use."""
    from datasets import load_dataset

    try:
        dataset = load_dataset(
            params.dataset, params.dataset_config, split=params.dataset_split,
            revision=params.dataset_revision, streaming=True,
        )  # fmt: skip
        for row in dataset:
            if params.dataset_field not in row:
                raise UnleetError(
                    f"corrupt.clean_text.dataset={params.dataset}: no column {params.dataset_field!r} "
                    f"(corrupt.clean_text.dataset_field); columns: {', '.join(row)}"
                )
            yield row[params.dataset_field]
    except (OSError, ValueError) as error:  # unreachable hub, unknown id, bad split
        raise UnleetError(
            f"corrupt.clean_text.dataset={params.dataset}: cannot load ({str(error).splitlines()[0]})"
        ) from None


def gather(params: CleanTextParams, held_out: Iterable[str], known: Iterable[str]) -> tuple[list[str], dict[str, int]]:
    """Extra clean texts in source order, and how many were kept or skipped for which reason.

    `held_out` are evaluation texts that must never be trained on; `known` are the texts the
    pipeline already corrupts (the formal side of the training pairs).
    """
    sources: list[Iterable[str]] = [read_file(file, params.field) for file in corpus_files(Path(params.path))]
    if params.dataset:
        sources.append(read_dataset(params))
    held_out_keys = {normalise(text) for text in held_out}
    seen = {normalise(text) for text in known}
    kept: list[str] = []
    counts: Counter[str] = Counter()
    for text in chain.from_iterable(sources):
        if params.limit is not None and len(kept) >= params.limit:
            break
        text = " ".join(text.split())
        key = normalise(text)
        if not params.min_chars <= len(text) <= params.max_chars:
            counts["skipped_length"] += 1
        elif key in held_out_keys:
            counts["skipped_held_out"] += 1
        elif key in seen:
            counts["skipped_duplicate"] += 1
        else:
            seen.add(key)
            kept.append(text)
    return kept, {"texts": len(kept), **dict(sorted(counts.items()))}
