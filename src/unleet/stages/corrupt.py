"""corrupt: build (corrupted slang → formal) pairs in `data/corrupted/{train,validation,test}.jsonl`.

Each translated comment gives its real pair (`natural`) plus `variants` synthetic corruptions of
its formal side at a light/medium/heavy mix, some left clean (`clean`) so the model learns to
leave good text and real numbers alone. Comments are assigned to splits by a seeded hash of their
id before variants are made, so no comment's variants cross splits, and adding comments never
moves the others. Extra clean texts (`corrupt.clean_text`, see `unleet.cleantext`) add synthetic
pairs to the training split only, never any text of the validation, test or challenge sets.
Every random choice is seeded per comment and variant: reruns are identical.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import multiprocessing
import os
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from unleet import cleantext, io
from unleet.errors import UnleetError
from unleet.lexicon import LEXICON_PATH, load_table
from unleet.params import CorruptParams, Params

log = logging.getLogger(__name__)

INPUT = Path("data/translated/pairs.jsonl")
CHALLENGE = Path("data/challenge/challenge.jsonl")
OUTPUT_DIR = Path("data/corrupted")
METRICS = Path("metrics/corrupt.json")
SPLITS = ("train", "validation", "test")
INTENSITIES = ("light", "medium", "heavy")
EXTRA_PREFIX = "extra-"  # source ids of pairs made from extra clean text
MIN_TEXTS_PER_WORKER = 20_000  # below this a worker process costs more than it saves
CHUNK_TEXTS = 5_000


@dataclass(frozen=True)
class Intensity:
    """Probabilities of each kind of noise at one intensity."""

    slang: float
    char: float
    vowel_drop: float
    repeat: float
    case_chaos: float
    lowercase: float
    drop_punctuation: float
    chars: dict[str, tuple[str, ...]]


LIGHT_CHARS = {"a": ("4",), "e": ("3",), "i": ("1",), "o": ("0",), "s": ("5",), "t": ("7",)}
MEDIUM_CHARS = {**LIGHT_CHARS, "a": ("4", "@"), "i": ("1", "!"), "s": ("5", "$")}
HEAVY_CHARS = {**MEDIUM_CHARS, "m": ("|v|", "|\\/|"), "n": ("|\\|",), "w": ("uu", "\\/\\/"), "h": ("|-|",)}
SETTINGS = {
    "light": Intensity(0.35, 0.08, 0.0, 0.03, 0.0, 0.7, 0.5, LIGHT_CHARS),
    "medium": Intensity(0.6, 0.25, 0.08, 0.06, 0.0, 0.9, 0.8, MEDIUM_CHARS),
    "heavy": Intensity(0.9, 0.5, 0.15, 0.1, 0.3, 1.0, 1.0, HEAVY_CHARS),
}
# Digit slang the lexicon leaves to context rules (a bare 2 or 4 may be a real number there).
DIGIT_SLANG = {"to": ["2"], "too": ["2"], "for": ["4"]}
# Contractions whose form without the apostrophe is also a word: the lexicon cannot list them
# (`its` is often right as written), so only the model, reading the context, can restore them,
# and real comments drop these apostrophes as they drop the others (`its` for `it's` in 130 of the
# 4,820 shared comments' translations).
AMBIGUOUS_CONTRACTIONS = {
    contraction: [contraction.replace("'", "")]
    for contraction in ("it's", "let's", "we're", "we'll", "we'd", "i'll", "i'd", "he'll", "she'll", "she'd")
}
# Whole words that character leet must not produce: a bare 4 reads as "for", so "a" -> "4" would
# teach the model that "thanks 4 coming" means "thanks a coming".
RESERVED_WORDS = {slang for forms in DIGIT_SLANG.values() for slang in forms}
VOWELS = set("aeiou")


class Corrupter:
    """Turns clean text into slang and leetspeak; formal phrases come from the lexicon table."""

    def __init__(self, table: dict[str, str]) -> None:
        slang_for = {key: list(value) for key, value in (DIGIT_SLANG | AMBIGUOUS_CONTRACTIONS).items()}
        for slang, formal in table.items():
            slang_for.setdefault(formal.lower(), []).append(slang)
        self.slang_for = slang_for
        phrases = sorted(slang_for, key=len, reverse=True)
        self.pattern = re.compile(r"(?<![\w'])(" + "|".join(map(re.escape, phrases)) + r")(?![\w'])", re.I)

    def __call__(self, text: str, level: Intensity, rng: random.Random) -> str:
        def swap(match: re.Match[str]) -> str:
            if rng.random() >= level.slang:
                return match.group(0)
            return rng.choice(self.slang_for[match.group(0).lower()])

        text = self.pattern.sub(swap, text)
        if rng.random() < level.lowercase:
            text = text.lower()
        if rng.random() < level.drop_punctuation:
            text = re.sub(r"[.,!?;:](?=\s|$)", "", text)
        words = [self._word(word, level, rng) for word in text.split(" ")]
        return " ".join(word for word in words if word).strip() or text

    def _word(self, word: str, level: Intensity, rng: random.Random) -> str:
        if not word.isalpha():
            return word
        if len(word) > 3 and rng.random() < level.vowel_drop:
            word = word[0] + "".join(char for char in word[1:] if char.lower() not in VOWELS)
        if rng.random() < level.repeat:
            word += word[-1] * rng.randint(2, 5)
        if rng.random() < level.case_chaos:
            word = "".join(char.upper() if rng.random() < 0.5 else char.lower() for char in word)
        leet = "".join(
            rng.choice(level.chars[char.lower()]) if char.lower() in level.chars and rng.random() < level.char else char
            for char in word
        )
        return word if leet in RESERVED_WORDS else leet


def split_of(source_id: str, params: CorruptParams) -> str:
    """Assign a comment to a split from a seeded hash of its id alone."""
    digest = hashlib.sha256(f"{params.seed}:{source_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    shares = params.splits
    if point < shares.train:
        return "train"
    return "validation" if point < shares.train + shares.validation else "test"


def synthetic_rows(
    source_id: str, formal: str, variants: int, params: CorruptParams, corrupter: Corrupter
) -> list[dict[str, str]]:
    """`variants` seeded corruptions of one clean text at the configured intensity mix."""
    mix = params.intensity_mix
    weights = [mix.light, mix.medium, mix.heavy]
    rows = []
    for variant in range(variants):
        rng = random.Random(f"{params.seed}:{source_id}:{variant}")
        if rng.random() < params.preserve_share:
            rows.append({"input": formal, "target": formal, "intensity": "clean"})
            continue
        name = rng.choices(INTENSITIES, weights)[0]
        rows.append({"input": corrupter(formal, SETTINGS[name], rng), "target": formal, "intensity": name})
    return [{**row, "source_id": source_id} for row in rows]


def examples_for(pair: dict[str, str], params: CorruptParams, corrupter: Corrupter) -> list[dict[str, str]]:
    """The natural pair (if kept) and the seeded synthetic variants of one comment."""
    source_id, formal = pair["id"], pair["formal"]
    rows = synthetic_rows(source_id, formal, params.variants, params, corrupter)
    if params.include_original:
        rows.insert(0, {"input": pair["original"], "target": formal, "intensity": "natural", "source_id": source_id})
    return rows


def extra_id(text: str) -> str:
    return EXTRA_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:16]


def validate(params: CorruptParams) -> None:
    mix = params.intensity_mix
    if min(mix.light, mix.medium, mix.heavy) < 0 or mix.light + mix.medium + mix.heavy <= 0:
        raise UnleetError("corrupt.intensity_mix: weights must be non-negative and not all zero")
    shares = params.splits
    if abs(shares.train + shares.validation + shares.test - 1) > 1e-6:
        raise UnleetError("corrupt.splits: train + validation + test must sum to 1")
    if not 0 <= params.preserve_share <= 1:
        raise UnleetError("corrupt.preserve_share: must lie in [0, 1]")
    clean_text = params.clean_text
    joins = {"join": clean_text.join} | {
        f"sources.{glob}.join": source.join for glob, source in clean_text.sources.items() if source.join is not None
    }
    for key, join in joins.items():
        if join < 1:
            raise UnleetError(f"corrupt.clean_text.{key}: {join} must be at least 1 (texts joined into one)")


def assign(pairs: list[dict[str, str]], params: CorruptParams) -> dict[str, list[dict[str, str]]]:
    """The translated comments of each split."""
    validate(params)
    assigned: dict[str, list[dict[str, str]]] = {name: [] for name in SPLITS}
    for pair in pairs:
        assigned[split_of(pair["id"], params)].append(pair)
    return assigned


def corrupt_extra(sources: list[cleantext.Source], params: CorruptParams) -> list[dict[str, str]]:
    """Synthetic training pairs of the extra clean texts, in worker processes when there are many.

    Every row is seeded by (seed, text, variant) alone, so the result is the same whatever the
    number of processes or the chunking.
    """
    jobs = [(extra_id(text), text, source.variants) for source in sources for text in source.texts]
    workers = min(len(os.sched_getaffinity(0)), max(1, len(jobs) // MIN_TEXTS_PER_WORKER))
    if workers <= 1:
        return _corrupt_jobs(jobs, params)
    chunks = [jobs[start : start + CHUNK_TEXTS] for start in range(0, len(jobs), CHUNK_TEXTS)]
    rows: list[dict[str, str]] = []
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        progress = tqdm(total=len(jobs), desc="corrupt extra text", unit="text")
        for chunk_rows, size in pool.imap(functools.partial(_corrupt_chunk, params=params), chunks):
            rows += chunk_rows
            progress.update(size)
        progress.close()
    return rows


def _corrupt_chunk(jobs: list[tuple[str, str, int]], params: CorruptParams) -> tuple[list[dict[str, str]], int]:
    return _corrupt_jobs(jobs, params), len(jobs)


def _corrupt_jobs(jobs: list[tuple[str, str, int]], params: CorruptParams) -> list[dict[str, str]]:
    corrupter = shared_corrupter()
    return [row for job in jobs for row in synthetic_rows(*job, params, corrupter)]


@functools.cache
def shared_corrupter() -> Corrupter:
    """One Corrupter per process: compiling the lexicon's phrase pattern is the slow part."""
    return Corrupter(load_table(LEXICON_PATH))


def build_splits(
    pairs: list[dict[str, str]], params: CorruptParams, sources: list[cleantext.Source] = ()
) -> dict[str, list[dict[str, str]]]:
    """The shuffled examples of each split; extra clean-text `sources` add synthetic pairs to train only."""
    corrupter = shared_corrupter()
    splits = {
        name: [row for pair in members for row in examples_for(pair, params, corrupter)]
        for name, members in assign(pairs, params).items()
    }
    splits["train"] += corrupt_extra(list(sources), params)
    for name, rows in splits.items():
        if not rows:
            raise UnleetError(
                f"corrupt: split {name!r} is empty ({len(pairs)} comments in {INPUT}); "
                f"add comments or raise corrupt.splits.{name}"
            )
        random.Random(f"{params.seed}:{name}").shuffle(rows)
    return splits


def gather_clean_text(
    pairs: list[dict[str, str]], params: CorruptParams
) -> tuple[list[cleantext.Source], dict[str, object]]:
    """Extra clean texts by source, none of which is a text of validation, test or the challenge set."""
    assigned = assign(pairs, params)
    held_out = [
        text
        for name in ("validation", "test")
        for pair in assigned[name]
        for text in (pair["original"], pair["formal"])
    ]
    held_out += [
        text
        for case in io.read_jsonl(CHALLENGE, required=["input", "expected"])
        for text in (case["input"], case["expected"])
    ]
    known = [text for pair in assigned["train"] for text in (pair["original"], pair["formal"])]
    return cleantext.gather(params.clean_text, held_out, known, seed=params.seed)


def main(params: Params) -> None:
    pairs = list(io.read_jsonl(INPUT, required=["id", "original", "formal"]))
    sources, extra_counts = gather_clean_text(pairs, params.corrupt)
    splits = build_splits(pairs, params.corrupt, sources)
    for name, rows in splits.items():
        io.write_jsonl(OUTPUT_DIR / f"{name}.jsonl", rows)
    summary: dict[str, object] = {
        name: {
            "examples": len(rows),
            "comments": len({row["source_id"] for row in rows if not row["source_id"].startswith(EXTRA_PREFIX)}),
            "intensity": dict(sorted(Counter(row["intensity"] for row in rows).items())),
        }
        for name, rows in splits.items()
    }
    io.write_json(METRICS, {**summary, "clean_text": extra_counts})
    log.info("corrupt: %s; extra clean texts: %s", {name: len(rows) for name, rows in splits.items()}, extra_counts)
