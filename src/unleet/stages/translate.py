"""translate: pair each scraped comment with a formal rewrite in `data/translated/pairs.jsonl`.

A backend turns a batch of texts into formal texts, or None where it has no acceptable answer;
such comments are dropped and counted, never passed on. `lexicon` is the offline normaliser,
`pairs` looks up existing translations by original text, and `openai`, `ollama` and
`transformers` ask an LLM through `unleet.llm`, whose answers persist in
`data/cache/translations.jsonl` so that no translation is paid for twice.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from unleet import answers, io, llm
from unleet.errors import UnleetError
from unleet.lexicon import LEXICON_PATH, Normaliser, abbreviation_expander, load_table
from unleet.params import Params, TranslateParams

log = logging.getLogger(__name__)

INPUT = Path("data/raw/comments.jsonl")
OUTPUT = Path("data/translated/pairs.jsonl")
METRICS = Path("metrics/translate.json")
ANSWER_CACHE = Path("data/cache/translations.jsonl")
CALIBRATION = Path("reports/calibration")

Backend = Callable[[list[str]], list[str | None]]


def lexicon_backend(params: TranslateParams) -> Backend:
    normalise = Normaliser(load_table(Path(params.path)))
    return lambda texts: [normalise(text) for text in tqdm(texts, desc="translate", unit="comment")]


def pairs_backend(params: TranslateParams) -> Backend:
    known = {row["original"]: row["formal"] for row in io.read_jsonl(params.path, ["original", "formal"])}
    return lambda texts: [known.get(text) for text in texts]


def llm_backend(params: TranslateParams) -> Backend:
    return llm.make_translator(params, ANSWER_CACHE)


BACKENDS: dict[str, Callable[[TranslateParams], Backend]] = {
    "lexicon": lexicon_backend,
    "pairs": pairs_backend,
    **dict.fromkeys(llm.CLIENTS, llm_backend),
}


def make_backend(params: TranslateParams) -> Backend:
    if params.backend not in BACKENDS:
        raise UnleetError(f"translate.backend={params.backend!r}: unknown, expected one of {sorted(BACKENDS)}")
    return BACKENDS[params.backend](params)


def make_expander(params: TranslateParams) -> Callable[[str], str]:
    """Expand the abbreviations `translate.expand` names as the project's lexicon does."""
    table = load_table()
    unknown = [word for word in params.expand if word.lower() not in table]
    if unknown:
        raise UnleetError(f"translate.expand: {unknown} not in the lexicon {LEXICON_PATH}")
    return abbreviation_expander({word.lower(): table[word.lower()] for word in params.expand})


def main(params: Params) -> None:
    answers.prepare_cache(ANSWER_CACHE)
    comments = list(io.read_jsonl(INPUT, required=["id", "text"]))
    expand = make_expander(params.translate)
    backend = make_backend(params.translate)
    formals = backend([comment["text"] for comment in comments])
    kept = [
        (comment, formal.strip())
        for comment, formal in zip(comments, formals, strict=True)
        if formal and formal.strip()
    ]
    pairs = [{"id": comment["id"], "original": comment["text"], "formal": expand(formal)} for comment, formal in kept]
    if not pairs:
        raise UnleetError(
            f"translate: backend {params.translate.backend!r} ({params.translate.path}) "
            f"translated none of the {len(comments)} comments in {INPUT}"
        )
    io.write_jsonl(OUTPUT, pairs)
    metrics: dict[str, Any] = {
        "comments": len(comments),
        "translated": len(pairs),
        "untranslated": len(comments) - len(pairs),
        "expanded": sum(pair["formal"] != formal for pair, (_, formal) in zip(pairs, kept, strict=True)),
    }
    if isinstance(backend, llm.Translator):
        metrics |= backend.metrics()
    io.write_json(METRICS, metrics)
    log.info("translate: %d of %d comments translated", len(pairs), len(comments))


def stratified_sample(comments: list[dict[str, Any]], size: int, seed: int = 0) -> list[dict[str, Any]]:
    """`size` comments spread evenly over subreddits and, within each, over short and long texts."""
    strata: dict[tuple[str, bool], list[dict[str, Any]]] = defaultdict(list)
    for comment in comments:
        strata[(str(comment.get("subreddit", "")), len(comment["text"]) > 80)].append(comment)
    generator = random.Random(seed)
    queues = [generator.sample(group, len(group)) for _, group in sorted(strata.items())]
    sample: list[dict[str, Any]] = []
    while len(sample) < min(size, len(comments)):
        for queue in queues:
            if queue and len(sample) < size:
                sample.append(queue.pop())
    return sample


def calibrate(params: Params, size: int) -> Path:
    """Translate a stratified sample and write a side-by-side report; the stage output is untouched."""
    if params.translate.backend not in llm.CLIENTS:
        backends = ", ".join(llm.CLIENTS)
        raise UnleetError(f"--calibrate is for LLM backends ({backends}), not {params.translate.backend!r}")
    comments = list(io.read_jsonl(INPUT, required=["id", "text"]))
    sample = stratified_sample(comments, size)
    translator = llm.make_translator(params.translate, ANSWER_CACHE)
    outcomes = translator.translate([comment["text"] for comment in sample])
    baseline = Normaliser()
    rows = [
        {
            "id": c["id"],
            "subreddit": c.get("subreddit", ""),
            "original": c["text"],
            "lexicon": baseline(c["text"]),
            "llm": outcomes[c["text"]].formal,
            "verdict": outcomes[c["text"]].reason,
        }
        for c in sample
    ]
    io.write_jsonl(CALIBRATION.with_suffix(".jsonl"), rows)
    table = ["| original | lexicon baseline | LLM | verdict |", "|---|---|---|---|"]
    table += [f"| {_cell(r['original'])} | {_cell(r['lexicon'])} | {_cell(r['llm'])} | {r['verdict']} |" for r in rows]
    summary = translator.metrics()
    header = (
        f"# Translation calibration: {summary['backend']} {summary['model']}, prompt {summary['prompt_version']}\n\n"
        f"{len(rows)} comments; {summary['requests']} requests, {summary['cache_hits']} cache hits, "
        f"{summary['rejected']} rejected, {summary['repaired']} repaired.\n\n"
    )
    io.write_text(CALIBRATION.with_suffix(".md"), header + "\n".join(table) + "\n")
    return CALIBRATION.with_suffix(".md")


def _cell(text: str | None) -> str:
    """Text as one Markdown table cell."""
    return (text or "-").replace("|", "\\|").replace("\n", " ")
