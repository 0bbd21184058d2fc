"""translate: pair each scraped comment with a formal rewrite in `data/translated/pairs.jsonl`.

A backend turns a batch of texts into formal texts, or None where it has no acceptable answer;
such comments are dropped and counted, never passed on. `lexicon` is the offline normaliser,
`pairs` looks up existing translations by original text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from unleet import io
from unleet.errors import UnleetError
from unleet.lexicon import Normaliser, load_table
from unleet.params import Params, TranslateParams

log = logging.getLogger(__name__)

INPUT = Path("data/raw/comments.jsonl")
OUTPUT = Path("data/translated/pairs.jsonl")
METRICS = Path("metrics/translate.json")

Backend = Callable[[list[str]], list[str | None]]


def lexicon_backend(params: TranslateParams) -> Backend:
    normalise = Normaliser(load_table(Path(params.path)))
    return lambda texts: [normalise(text) for text in tqdm(texts, desc="translate", unit="comment")]


def pairs_backend(params: TranslateParams) -> Backend:
    known = {row["original"]: row["formal"] for row in io.read_jsonl(params.path, ["original", "formal"])}
    return lambda texts: [known.get(text) for text in texts]


BACKENDS: dict[str, Callable[[TranslateParams], Backend]] = {
    "lexicon": lexicon_backend,
    "pairs": pairs_backend,
}


def make_backend(params: TranslateParams) -> Backend:
    if params.backend not in BACKENDS:
        raise UnleetError(f"translate.backend={params.backend!r}: unknown, expected one of {sorted(BACKENDS)}")
    return BACKENDS[params.backend](params)


def main(params: Params) -> None:
    comments = list(io.read_jsonl(INPUT, required=["id", "text"]))
    formals = make_backend(params.translate)([comment["text"] for comment in comments])
    pairs = [
        {"id": comment["id"], "original": comment["text"], "formal": formal.strip()}
        for comment, formal in zip(comments, formals, strict=True)
        if formal and formal.strip()
    ]
    if not pairs:
        raise UnleetError(
            f"translate: backend {params.translate.backend!r} ({params.translate.path}) "
            f"translated none of the {len(comments)} comments in {INPUT}"
        )
    io.write_jsonl(OUTPUT, pairs)
    io.write_json(
        METRICS, {"comments": len(comments), "translated": len(pairs), "untranslated": len(comments) - len(pairs)}
    )
    log.info("translate: %d of %d comments translated", len(pairs), len(comments))
