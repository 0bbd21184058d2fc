"""corrupt: build (corrupted slang → formal) pairs in `data/corrupted/{train,validation,test}.jsonl`.

Each translated comment gives its real pair (`natural`) plus `variants` synthetic corruptions of
its formal side at a light/medium/heavy mix, some left clean (`clean`) so the model learns to
leave good text and real numbers alone. Comments are assigned to splits by a seeded hash of their
id before variants are made, so no comment's variants cross splits, and adding comments never
moves the others. Every random choice is seeded per comment and variant: reruns are identical.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from unleet import io
from unleet.errors import UnleetError
from unleet.lexicon import LEXICON_PATH, load_table
from unleet.params import CorruptParams, Params

log = logging.getLogger(__name__)

INPUT = Path("data/translated/pairs.jsonl")
OUTPUT_DIR = Path("data/corrupted")
METRICS = Path("metrics/corrupt.json")
SPLITS = ("train", "validation", "test")
INTENSITIES = ("light", "medium", "heavy")


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
VOWELS = set("aeiou")


class Corrupter:
    """Turns clean text into slang and leetspeak; formal phrases come from the lexicon table."""

    def __init__(self, table: dict[str, str]) -> None:
        slang_for: dict[str, list[str]] = {key: list(value) for key, value in DIGIT_SLANG.items()}
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
        return "".join(
            rng.choice(level.chars[char.lower()]) if char.lower() in level.chars and rng.random() < level.char else char
            for char in word
        )


def split_of(source_id: str, params: CorruptParams) -> str:
    """Assign a comment to a split from a seeded hash of its id alone."""
    digest = hashlib.sha256(f"{params.seed}:{source_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    shares = params.splits
    if point < shares.train:
        return "train"
    return "validation" if point < shares.train + shares.validation else "test"


def examples_for(pair: dict[str, str], params: CorruptParams, corrupter: Corrupter) -> list[dict[str, str]]:
    """The natural pair (if kept) and the seeded synthetic variants of one comment."""
    source_id, formal = pair["id"], pair["formal"]
    rows = []
    if params.include_original:
        rows.append({"input": pair["original"], "target": formal, "intensity": "natural"})
    mix = params.intensity_mix
    weights = [mix.light, mix.medium, mix.heavy]
    for variant in range(params.variants):
        rng = random.Random(f"{params.seed}:{source_id}:{variant}")
        if rng.random() < params.preserve_share:
            rows.append({"input": formal, "target": formal, "intensity": "clean"})
            continue
        name = rng.choices(INTENSITIES, weights)[0]
        rows.append({"input": corrupter(formal, SETTINGS[name], rng), "target": formal, "intensity": name})
    return [{**row, "source_id": source_id} for row in rows]


def validate(params: CorruptParams) -> None:
    mix = params.intensity_mix
    if min(mix.light, mix.medium, mix.heavy) < 0 or mix.light + mix.medium + mix.heavy <= 0:
        raise UnleetError("corrupt.intensity_mix: weights must be non-negative and not all zero")
    shares = params.splits
    if abs(shares.train + shares.validation + shares.test - 1) > 1e-6:
        raise UnleetError("corrupt.splits: train + validation + test must sum to 1")
    if not 0 <= params.preserve_share <= 1:
        raise UnleetError("corrupt.preserve_share: must lie in [0, 1]")


def build_splits(pairs: list[dict[str, str]], params: CorruptParams) -> dict[str, list[dict[str, str]]]:
    validate(params)
    corrupter = Corrupter(load_table(LEXICON_PATH))
    splits: dict[str, list[dict[str, str]]] = {name: [] for name in SPLITS}
    for pair in pairs:
        splits[split_of(pair["id"], params)].extend(examples_for(pair, params, corrupter))
    for name, rows in splits.items():
        if not rows:
            raise UnleetError(
                f"corrupt: split {name!r} is empty ({len(pairs)} comments in {INPUT}); "
                f"add comments or raise corrupt.splits.{name}"
            )
        random.Random(f"{params.seed}:{name}").shuffle(rows)
    return splits


def main(params: Params) -> None:
    pairs = list(io.read_jsonl(INPUT, required=["id", "original", "formal"]))
    splits = build_splits(pairs, params.corrupt)
    for name, rows in splits.items():
        io.write_jsonl(OUTPUT_DIR / f"{name}.jsonl", rows)
    io.write_json(
        METRICS,
        {
            name: {
                "examples": len(rows),
                "comments": len({row["source_id"] for row in rows}),
                "intensity": dict(sorted(Counter(row["intensity"] for row in rows).items())),
            }
            for name, rows in splits.items()
        },
    )
    log.info("corrupt: %s", {name: len(rows) for name, rows in splits.items()})
