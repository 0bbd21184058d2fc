"""Extra clean English for the corrupt stage: text/JSONL corpora and Hugging Face datasets, mixed by source.

Training from scratch is starved of clean text, not of corruptions: a few thousand target
sentences teach a language model of those sentences, not a decoder that reads its input. Sources
are the `.txt` files (one text a line) and `.jsonl` files (one object a line, text under `field`)
at `path` (a file, or a directory searched recursively), and optionally a dataset
`datasets.load_dataset` can open (a hub id where the hub is reachable, or a local dataset
directory). `sources` sets a `limit` (a seeded sample of that many texts) and `variants`
(corrupted copies per text) for the files a glob matches, so one large corpus cannot drown the
real pairs. `join` joins consecutive texts into texts of 1 to `join` of them (sizes seeded):
dictionary glosses and quotes average 6 to 15 words, two in five comments run past 20, and a
model that seldom saw a long target slips more the longer the comment it copies. Texts outside
the length bounds, duplicates, and any text that is also an evaluation text (validation, test,
challenge) are dropped first, so the extra text can only add training data.
"""

from __future__ import annotations

import fnmatch
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unleet import io
from unleet.errors import UnleetError
from unleet.params import CleanTextParams
from unleet.textmetrics import normalise

SUFFIXES = (".txt", ".jsonl")
DATASET_SOURCE = "dataset"


@dataclass
class Source:
    """Texts of one source, to be corrupted `variants` times each."""

    name: str
    texts: list[str]
    variants: int


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


def grouped_files(params: CleanTextParams) -> dict[str, list[Path]]:
    """Corpus files by source: the first `sources` glob matching a file's path relative to `path`, else the file."""
    root = Path(params.path)
    groups: dict[str, list[Path]] = {}
    for file in corpus_files(root):
        relative = file.name if root.is_file() else file.relative_to(root).as_posix()
        pattern = next((glob for glob in params.sources if fnmatch.fnmatch(relative, glob)), relative)
        groups.setdefault(pattern, []).append(file)
    unmatched = [glob for glob in params.sources if glob not in groups and glob != DATASET_SOURCE]
    if unmatched:
        raise UnleetError(f"corrupt.clean_text.sources: {', '.join(unmatched)} match no file under {root}")
    return groups


def gather(
    params: CleanTextParams, held_out: Iterable[str], known: Iterable[str], seed: int = 0
) -> tuple[list[Source], dict[str, object]]:
    """Extra clean texts per source, and how many were kept or skipped for which reason.

    `held_out` are evaluation texts that must never be trained on; `known` are the texts the
    pipeline already corrupts (the formal side of the training pairs). A source's `limit` keeps a
    seeded random sample, so a capped corpus is not just its first lines (files are often sorted).
    """
    streams: dict[str, Iterable[str]] = {
        name: (text for file in files for text in read_file(file, params.field))
        for name, files in grouped_files(params).items()
    }
    if params.dataset:
        streams[DATASET_SOURCE] = read_dataset(params)
    held_out_keys = {normalise(text) for text in held_out}
    seen = {normalise(text) for text in known}
    counts: Counter[str] = Counter()
    sources: list[Source] = []
    lines: dict[str, int] = {}
    for name, stream in streams.items():
        limit, variants, join = (source_setting(params, name, key) for key in ("limit", "variants", "join"))
        kept: list[str] = []
        for text in stream:
            if name == DATASET_SOURCE and limit is not None and len(kept) >= limit:
                break  # streamed: stop downloading once enough texts are in
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
        if limit is not None and len(kept) > limit:
            counts["skipped_limit"] += len(kept) - limit
            kept = random.Random(f"{seed}:{name}").sample(kept, limit)
        lines[name] = len(kept)
        sources.append(Source(name, joined(kept, join, random.Random(f"{seed}:{name}:join")), variants))
    summary: dict[str, object] = {
        "texts": sum(len(source.texts) for source in sources),
        "pairs": sum(len(source.texts) * source.variants for source in sources),
        **dict(sorted(counts.items())),
        "sources": {
            source.name: {"texts": len(source.texts), "variants": source.variants}
            | ({"lines": lines[source.name]} if lines[source.name] != len(source.texts) else {})
            for source in sources
        },
    }
    return sources, summary


def source_setting(params: CleanTextParams, name: str, key: str) -> Any:
    """A source's own `key` (limit, variants, join) where `sources` sets it, else the global one."""
    own = params.sources.get(name)
    value = getattr(own, key) if own is not None else None
    return getattr(params, key) if value is None else value


def joined(texts: list[str], join: int, rng: random.Random) -> list[str]:
    """Consecutive `texts` joined by a space into texts of 1 to `join` of them, sizes drawn from `rng`."""
    out, start = [], 0
    while start < len(texts):
        size = rng.randint(1, join)
        out.append(" ".join(texts[start : start + size]))
        start += size
    return out
