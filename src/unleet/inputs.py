"""What the model reads (the text as written, optionally after the lexicon's reading of it) and how
long what it writes may grow.

With `tokenizer.hint=lexicon` the model's source is `lexicon(text) ⇐ text`: the offline
normaliser has already expanded the abbreviations and decoded the leet it knows, so the model
learns to copy that reading and correct it from the original (vowel-dropped words, a number that
stays a number) rather than to rebuild every word from scratch. The reading comes first so that
it lines up, position by position, with the output the model writes. The format is saved beside the tokenizer and with
every trained model (`input_format.json`), so decoding always builds the source the model was
trained on.

A model that has not learnt to stop would otherwise write until `max_new_tokens` (256 tokens of
repeated text, seconds per line on a CPU). The tokenize stage records the longest target relative
to its source in the training split (`max_target_ratio`, in tokens), and decoding stops after
`ceil(max_target_ratio * source tokens) + DECODE_SLACK` new tokens when that is fewer.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from unleet import io
from unleet.errors import UnleetError
from unleet.lexicon import Normaliser

FORMAT_FILE = "input_format.json"
HINTS = ("none", "lexicon")
SEPARATOR = " ⇐ "
PARALLEL_FROM = 50_000  # texts: below this, worker processes cost more than they save
DECODE_SLACK = 4  # tokens past the ratio's cap: room for a source a little shorter than any in training


@dataclass(frozen=True)
class InputFormat:
    hint: str = "none"
    max_target_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.hint not in HINTS:
            raise UnleetError(f"tokenizer.hint={self.hint!r}: unknown, expected one of {', '.join(HINTS)}")

    def sources(self, texts: list[str]) -> list[str]:
        """The model's source text for each input text."""
        if self.hint == "none":
            return list(texts)
        workers = min(len(os.sched_getaffinity(0)), max(1, len(texts) // PARALLEL_FROM))
        if workers == 1:
            return [_with_hint(text) for text in texts]
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return pool.map(_with_hint, texts, chunksize=2_000)

    def new_token_limit(self, source_tokens: int, requested: int) -> int:
        """At most `requested` new tokens, and no more than training targets needed for a source this long."""
        if self.max_target_ratio is None:
            return requested
        return min(requested, math.ceil(self.max_target_ratio * source_tokens) + DECODE_SLACK)

    def save(self, directory: Path) -> None:
        io.write_json(directory / FORMAT_FILE, asdict(self))

    @classmethod
    def load(cls, directory: Path) -> InputFormat:
        """The format saved in `directory`; plain text where none was saved (models from before hints)."""
        path = directory / FORMAT_FILE
        if not path.is_file():
            return cls()
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError) as error:
            raise UnleetError(f"{path}: not a valid input format ({error})") from None


@cache
def _lexicon() -> Normaliser:
    return Normaliser()


def _with_hint(text: str) -> str:
    return f"{_lexicon()(text)}{SEPARATOR}{text}"
