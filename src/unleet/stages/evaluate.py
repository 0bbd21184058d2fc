"""evaluate: score the trained model and the lexicon baseline on the test split.

Writes `metrics/eval.json` (accuracy ignoring case, punctuation and whitespace; exact match;
CER; chrF; the baseline's accuracy; accuracy per corruption intensity), a per-intensity table for
`dvc plots`, and sample predictions with their inputs and targets for reading errors.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import torch

from unleet import io, lineage, textmetrics, tracking
from unleet.decoder import Decoder
from unleet.lexicon import Normaliser
from unleet.modeling import load_trained
from unleet.params import Params
from unleet.stages import corrupt

log = logging.getLogger(__name__)

TEST_SPLIT = Path("data/corrupted/test.jsonl")
TRAINED = Path("models/trained")
MODEL_DIR = Path("models/unleet")
METRICS = Path("metrics/eval.json")
INTENSITY_TABLE = Path("metrics/eval_intensity.csv")
SAMPLES = Path("metrics/predictions.jsonl")
ERRORS = Path("metrics/eval_errors.csv")
CHALLENGE = corrupt.CHALLENGE
CHALLENGE_TABLE = Path("metrics/eval_challenge.csv")
CHALLENGE_PREDICTIONS = Path("metrics/challenge_predictions.jsonl")


def grouped_accuracy(
    name: str, groups: list[str], predictions: list[str], baseline: list[str], targets: list[str]
) -> list[dict[str, Any]]:
    """Model and baseline accuracy per group (an intensity, a challenge category), one row each."""
    members: dict[str, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    return [
        {
            name: group,
            "examples": len(indices),
            "accuracy": round(
                textmetrics.accuracy([predictions[i] for i in indices], [targets[i] for i in indices]), 4
            ),
            "baseline_accuracy": round(
                textmetrics.accuracy([baseline[i] for i in indices], [targets[i] for i in indices]), 4
            ),
        }
        for group, indices in sorted(members.items())
    ]


def scores(predictions: list[str], targets: list[str]) -> dict[str, float]:
    return {
        "accuracy": round(textmetrics.accuracy(predictions, targets), 4),
        "exact_match": round(textmetrics.exact_match(predictions, targets), 4),
        "cer": round(textmetrics.cer(predictions, targets), 4),
        "chrf": round(textmetrics.chrf(predictions, targets), 2),
    }


def main(params: Params) -> None:
    with tracking.run("evaluate", params) as tracker:
        score(params, tracker)


def score(params: Params, tracker: tracking.Tracker) -> None:
    rows = list(io.read_jsonl(TEST_SPLIT, required=["input", "target", "intensity"]))
    model, tokenizer = load_trained(TRAINED)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    decoder = Decoder(model, tokenizer, params.tokenizer.max_source_length)

    inputs = [row["input"] for row in rows]
    targets = [row["target"] for row in rows]
    started = time.perf_counter()
    options = params.evaluate
    predictions = decoder.decode(inputs, options.batch_size, options.max_new_tokens, options.num_beams, progress=True)
    seconds = time.perf_counter() - started
    lexicon_baseline = Normaliser()
    baseline = [lexicon_baseline(text) for text in inputs]

    table = grouped_accuracy("intensity", [row["intensity"] for row in rows], predictions, baseline, targets)

    challenge = list(io.read_jsonl(CHALLENGE, required=["category", "input", "expected"]))
    challenge_inputs = [case["input"] for case in challenge]
    expected = [case["expected"] for case in challenge]
    answers = decoder.decode(challenge_inputs, options.batch_size, options.max_new_tokens, options.num_beams)
    lexicon_answers = [lexicon_baseline(text) for text in challenge_inputs]
    challenge_table = grouped_accuracy(
        "category", [case["category"] for case in challenge], answers, lexicon_answers, expected
    )

    categories = Counter(map(textmetrics.error_category, inputs, predictions, targets))
    errors = [
        {"category": name, "examples": categories[name], "share": round(categories[name] / len(rows), 4)}
        for name in textmetrics.ERROR_CATEGORIES
    ]

    metrics = {
        **scores(predictions, targets),
        "baseline_accuracy": round(textmetrics.accuracy(baseline, targets), 4),
        "baseline_chrf": round(textmetrics.chrf(baseline, targets), 2),
        "examples": len(rows),
        "sentences_per_second": round(len(rows) / seconds, 2),
        "intensity": {row["intensity"]: row["accuracy"] for row in table},
        "baseline_intensity": {row["intensity"]: row["baseline_accuracy"] for row in table},
        "errors": {row["category"]: row["share"] for row in errors},
        "challenge": {
            "accuracy": round(textmetrics.accuracy(answers, expected), 4),
            "baseline_accuracy": round(textmetrics.accuracy(lexicon_answers, expected), 4),
            "examples": len(challenge),
            "categories": {row["category"]: row["accuracy"] for row in challenge_table},
            "baseline_categories": {row["category"]: row["baseline_accuracy"] for row in challenge_table},
        },
    }
    io.write_json(METRICS, metrics)
    io.write_csv(INTENSITY_TABLE, table)
    io.write_csv(ERRORS, errors)
    io.write_csv(CHALLENGE_TABLE, challenge_table)
    io.write_jsonl(
        CHALLENGE_PREDICTIONS,
        (
            {
                **case,
                "prediction": answer,
                "baseline": lexicon,
                "correct": textmetrics.normalise(answer) == textmetrics.normalise(case["expected"]),
            }
            for case, answer, lexicon in zip(challenge, answers, lexicon_answers, strict=True)
        ),
    )
    io.write_jsonl(
        SAMPLES,
        (
            {
                "input": row["input"],
                "target": row["target"],
                "prediction": predictions[i],
                "baseline": baseline[i],
                "intensity": row["intensity"],
                "category": textmetrics.error_category(row["input"], predictions[i], row["target"]),
            }
            for i, row in enumerate(rows[: params.evaluate.samples])
        ),
    )
    with io.atomic_path(MODEL_DIR, is_dir=True) as staging:
        shutil.copytree(TRAINED, staging, dirs_exist_ok=True)
        record = lineage.collect(params, metrics, stage="evaluate", data=tracker.data)
        lineage.write(staging, record)

    tracker.log_metrics(tracking.flatten(metrics))
    tracker.set_tags({"model.md5": record["data"][str(TRAINED)]["md5"]})
    tables = [INTENSITY_TABLE, ERRORS, CHALLENGE_TABLE, SAMPLES, CHALLENGE_PREDICTIONS]
    tracker.log_artifacts([MODEL_DIR / lineage.LINEAGE_FILE, MODEL_DIR / lineage.CARD_FILE, *tables])
    if params.tracking.register_model:
        tracker.register(MODEL_DIR, params.tracking.register_model)
    log.info(
        "evaluate: accuracy %.3f (baseline %.3f) on %d examples",
        metrics["accuracy"],
        metrics["baseline_accuracy"],
        len(rows),
    )
