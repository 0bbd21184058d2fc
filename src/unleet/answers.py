"""Paid LLM answers: a persistent content-addressed cache, and the checks an answer must pass.

The cache is an append-only JSONL file (a persistent DVC output, so it travels with the data):
each answer is appended and flushed the moment it arrives, so a run killed midway keeps every
completed translation. An entry's key hashes everything that determines the answer — backend,
model, prompt version, generation params, text and attempt number — so changing the prompt
invalidates that prompt's entries only, and nothing is ever paid for twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from unleet import io
from unleet.errors import UnleetError

log = logging.getLogger(__name__)


HEADER = {
    "format": "unleet answer cache",
    "note": "LLM answers, one JSON line each, appended as they arrive; offline backends leave only this line",
}


def prepare_cache(path: str | Path) -> None:
    """Create the cache with its header line: a persistent DVC output that offline runs leave without answers.

    The header also keeps DVC from warning, on every offline run, that the output is empty.
    """
    path = Path(path)
    if not path.is_file() or not path.stat().st_size:
        io.write_text(path, json.dumps(HEADER) + "\n")


def cache_key(identity: dict[str, Any], text: str, attempt: int) -> str:
    payload = json.dumps({"identity": identity, "text": text, "attempt": attempt}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class AnswerCache:
    """`key → entry` loaded from `path`; `put` appends one flushed line per answer."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.entries: dict[str, dict[str, Any]] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) < len(data):
            log.warning("%s: dropping a half-written last entry (an interrupted run)", self.path)
            with self.path.open("r+b") as handle:
                handle.truncate(len(complete))
        for number, line in enumerate(complete.decode("utf-8").splitlines(), start=1):
            try:
                entry = json.loads(line)
                if entry.get("format") == HEADER["format"]:
                    continue
                self.entries[entry["key"]] = entry
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise UnleetError(f"{self.path}:{number}: not a cache entry ({error})") from None

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def put(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
            handle.flush()  # in the OS's hands now: survives the process being killed
        self.entries[entry["key"]] = entry

    def __len__(self) -> int:
        return len(self.entries)


PREAMBLE = re.compile(
    r"^\s*(?:(?:sure|okay|ok|certainly|of course)[,!.]?\s*)?"
    r"(?:here(?:'s| is| are)|below is|this is)\b[^:\n]{0,80}:\s*",
    re.IGNORECASE,
)
QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "\u00ab": "\u00bb", "`": "`"}
MIN_RATIO, MAX_RATIO, LENGTH_SLACK = 0.4, 2.5, 20


def check_answer(original: str, answer: str) -> tuple[str | None, str]:
    """`(text, "ok" | "repaired")` for a usable answer, `(None, reason)` for an unusable one.

    Repairs what models commonly wrap around the answer (a preamble such as "Here is the cleaned
    text:", quotes around the whole text); rejects empty answers and ones whose length is far
    from the original's, which are usually refusals, explanations or truncations.
    """
    text = answer.strip()
    repaired = False
    stripped = PREAMBLE.sub("", text, count=1).strip()
    if stripped != text:
        text, repaired = stripped, True
    if len(text) >= 2 and QUOTES.get(text[0]) == text[-1] and original.strip()[:1] not in QUOTES:
        text, repaired = text[1:-1].strip(), True
    if not text:
        return None, "empty answer"
    ratio = len(text) / max(len(original), 1)
    if not MIN_RATIO <= ratio <= MAX_RATIO and abs(len(text) - len(original)) > LENGTH_SLACK:
        return None, f"length mismatch ({len(text)} chars for {len(original)})"
    return text, "repaired" if repaired else "ok"
