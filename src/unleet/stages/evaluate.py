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

import torch

from unleet import io, lineage, textmetrics, tracking
from unleet.decoder import Decoder
from unleet.lexicon import Normaliser
from unleet.modeling import load_trained
from unleet.params import Params

log = logging.getLogger(__name__)

TEST_SPLIT = Path("data/corrupted/test.jsonl")
TRAINED = Path("models/trained")
MODEL_DIR = Path("models/unleet")
METRICS = Path("metrics/eval.json")
INTENSITY_TABLE = Path("metrics/eval_intensity.csv")
SAMPLES = Path("metrics/predictions.jsonl")
ERRORS = Path("metrics/eval_errors.csv")


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
    baseline = [Normaliser()(text) for text in inputs]

    by_intensity: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        by_intensity[row["intensity"]].append(index)
    table = []
    for name, indices in sorted(by_intensity.items()):
        subset = [targets[i] for i in indices]
        table.append(
            {
                "intensity": name,
                "examples": len(indices),
                "accuracy": round(textmetrics.accuracy([predictions[i] for i in indices], subset), 4),
                "baseline_accuracy": round(textmetrics.accuracy([baseline[i] for i in indices], subset), 4),
            }
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
    }
    io.write_json(METRICS, metrics)
    io.write_csv(INTENSITY_TABLE, table)
    io.write_csv(ERRORS, errors)
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
        record = lineage.collect(params, metrics, stage="evaluate")
        lineage.write(staging, record)

    tracker.log_metrics(tracking.flatten(metrics))
    tracker.set_tags({"model.md5": record["data"][str(TRAINED)]["md5"]})
    tables = [INTENSITY_TABLE, ERRORS, SAMPLES]
    tracker.log_artifacts([MODEL_DIR / lineage.LINEAGE_FILE, MODEL_DIR / lineage.CARD_FILE, *tables])
    if params.tracking.register_model:
        tracker.register(MODEL_DIR, params.tracking.register_model)
    log.info(
        "evaluate: accuracy %.3f (baseline %.3f) on %d examples",
        metrics["accuracy"],
        metrics["baseline_accuracy"],
        len(rows),
    )
