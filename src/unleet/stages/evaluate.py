"""evaluate: score the trained model next to two baselines on the test split and the challenge set.

The baselines are the lexicon normaliser (`baseline_*`) and returning the input unchanged
(`copy_*`): a decoder worth shipping beats both. With `evaluate.rerank` the model chooses between
its own output and those two (`Decoder.choose`), leaning towards the unchanged input by
`evaluate.copy_bias` nats per word (shared, less `evaluate.slang_bias` per slang word, by a rewrite
of listed slang alone); `reranked` is the share of test outputs it took from them, so the
scoreboard says how much of the model's figure they lent it.
Writes `metrics/eval.json` (accuracy, which keeps apostrophes inside words; a lenient accuracy
that drops them; exact match; CER; chrF; everything per corruption intensity and per challenge
category), per-group tables for `dvc plots`, and sample predictions with their inputs and
targets for reading errors.
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
from unleet.errors import UnleetError
from unleet.inputs import InputFormat
from unleet.lexicon import Normaliser
from unleet.modeling import load_trained
from unleet.params import EvaluateParams, Params

log = logging.getLogger(__name__)

TEST_SPLIT = Path("data/corrupted/test.jsonl")
TRAINED = Path("models/trained")
MODEL_DIR = Path("models/unleet")
METRICS = Path("metrics/eval.json")
SPEED = Path("metrics/speed/evaluate.json")  # machine timings: git-ignored, so metrics diffs show quality
INTENSITY_TABLE = Path("metrics/eval_intensity.csv")
SAMPLES = Path("metrics/predictions.jsonl")
ERRORS = Path("metrics/eval_errors.csv")
CHALLENGE = Path("data/challenge/challenge.jsonl")
CHALLENGE_TABLE = Path("metrics/eval_challenge.csv")
CHALLENGE_PREDICTIONS = Path("metrics/challenge_predictions.jsonl")
SYSTEMS = {"model": "", "lexicon": "baseline_", "copy": "copy_"}  # each system's prefix on its figures
BASELINES = ("lexicon", "copy")


def grouped_accuracy(
    name: str, groups: list[str], outputs: dict[str, list[str]], targets: list[str]
) -> list[dict[str, Any]]:
    """Accuracy of each system (model, lexicon, copy) per group (an intensity, a challenge category),
    and against each baseline the examples only the model gets right (`wins_over_*`) and only the
    baseline does (`losses_to_*`): a difference of a few answers means little without them."""
    members: dict[str, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    right = {system: textmetrics.correct(outputs[system], targets) for system in SYSTEMS}
    rows = []
    for group, indices in sorted(members.items()):
        row: dict[str, Any] = {name: group, "examples": len(indices)}
        flags = {system: [right[system][i] for i in indices] for system in SYSTEMS}
        for system, prefix in SYSTEMS.items():
            row[f"{prefix}accuracy"] = round(sum(flags[system]) / len(indices), 4)
        for baseline in BASELINES:
            wins, losses = textmetrics.disagreements(flags["model"], flags[baseline])
            row[f"wins_over_{baseline}"], row[f"losses_to_{baseline}"] = wins, losses
        rows.append(row)
    return rows


def scores(predictions: list[str], targets: list[str]) -> dict[str, float]:
    return {
        "accuracy": round(textmetrics.accuracy(predictions, targets), 4),
        "lenient_accuracy": round(textmetrics.lenient_accuracy(predictions, targets), 4),
        "exact_match": round(textmetrics.exact_match(predictions, targets), 4),
        "cer": round(textmetrics.cer(predictions, targets), 4),
        "chrf": round(textmetrics.chrf(predictions, targets), 2),
    }


def baseline_scores(outputs: dict[str, list[str]], targets: list[str]) -> dict[str, float]:
    """`baseline_*` (lexicon) and `copy_*` (the input unchanged) figures, named like the model's."""
    figures = {}
    for system, prefix in SYSTEMS.items():
        if system in BASELINES:
            figures[f"{prefix}accuracy"] = round(textmetrics.accuracy(outputs[system], targets), 4)
            figures[f"{prefix}chrf"] = round(textmetrics.chrf(outputs[system], targets), 2)
    return figures


def per_group(table: list[dict[str, Any]], key: str, name: str) -> dict[str, dict[str, float]]:
    """{name: {...}, "baseline_" + name: {...}, "copy_" + name: {...}}: each system's accuracy per `key`."""
    return {f"{prefix}{name}": {row[key]: row[f"{prefix}accuracy"] for row in table} for prefix in SYSTEMS.values()}


def decode(
    decoder: Decoder, texts: list[str], options: EvaluateParams, progress: bool = False
) -> tuple[list[str], list[str]]:
    """The model's own outputs, and its final ones: chosen among rivals with `rerank`, the same without."""
    generated = decoder.decode(texts, options.batch_size, options.max_new_tokens, progress=progress)
    if not options.rerank:
        return generated, generated
    return generated, decoder.choose(texts, generated, options.batch_size, progress=progress)


def main(params: Params) -> None:
    with tracking.run("evaluate", params) as tracker:
        score(params, tracker)


def check(options: EvaluateParams) -> None:
    """Refuse a beam count below one, and a reranking prior (copy or slang bias) that is negative or that
    nothing would use, naming the key before any decoding starts."""
    if options.num_beams < 1:
        raise UnleetError(f"evaluate.num_beams: {options.num_beams} must be at least 1")
    if options.copy_bias < 0:
        raise UnleetError(f"evaluate.copy_bias: {options.copy_bias} must be at least 0 (nats per input word)")
    if options.copy_bias and not options.rerank:
        raise UnleetError("evaluate.copy_bias: applies only when reranking; set evaluate.rerank=true or copy_bias 0")
    if options.slang_bias is not None and options.slang_bias < 0:
        raise UnleetError(f"evaluate.slang_bias: {options.slang_bias} must be at least 0 (nats per slang word)")
    if options.slang_bias is not None and not options.rerank:
        raise UnleetError("evaluate.slang_bias: applies only when reranking; set evaluate.rerank=true or null")


def score(params: Params, tracker: tracking.Tracker) -> None:
    check(params.evaluate)
    rows = list(io.read_jsonl(TEST_SPLIT, required=["input", "target", "intensity"]))
    model, tokenizer = load_trained(TRAINED)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    length, input_format = params.tokenizer.max_source_length, InputFormat.load(TRAINED)
    options = params.evaluate
    decoder = Decoder(  # not `rerank`: `decode` below reranks, keeping the model's own outputs for `reranked`
        model,
        tokenizer,
        length,
        input_format,
        copy_bias=options.copy_bias,
        slang_bias=options.slang_bias,
        num_beams=options.num_beams,
    )

    inputs = [row["input"] for row in rows]
    targets = [row["target"] for row in rows]
    started = time.perf_counter()
    generated, predictions = decode(decoder, inputs, options, progress=True)
    seconds = time.perf_counter() - started
    lexicon = Normaliser()
    outputs = {"model": predictions, "lexicon": [lexicon(text) for text in inputs], "copy": inputs}
    table = grouped_accuracy("intensity", [row["intensity"] for row in rows], outputs, targets)

    challenge = list(io.read_jsonl(CHALLENGE, required=["category", "input", "expected"]))
    challenge_inputs = [case["input"] for case in challenge]
    expected = [case["expected"] for case in challenge]
    answers = {
        "model": decode(decoder, challenge_inputs, options)[1],
        "lexicon": [lexicon(text) for text in challenge_inputs],
        "copy": challenge_inputs,
    }
    challenge_table = grouped_accuracy("category", [case["category"] for case in challenge], answers, expected)

    categories = Counter(map(textmetrics.error_category, inputs, predictions, targets))
    errors = [
        {"category": name, "examples": categories[name], "share": round(categories[name] / len(rows), 4)}
        for name in textmetrics.ERROR_CATEGORIES
    ]

    challenge_scores = {
        f"{prefix}accuracy": round(textmetrics.accuracy(answers[system], expected), 4)
        for system, prefix in SYSTEMS.items()
    }
    metrics = {
        **scores(predictions, targets),
        **baseline_scores(outputs, targets),
        "reranked": round(sum(p != g for p, g in zip(predictions, generated, strict=True)) / len(rows), 4),
        "examples": len(rows),
        **per_group(table, "intensity", "intensity"),
        "errors": {row["category"]: row["share"] for row in errors},
        "challenge": {
            **challenge_scores,
            "examples": len(challenge),
            **per_group(challenge_table, "category", "categories"),
        },
    }
    io.write_json(METRICS, metrics)
    speed = {"sentences_per_second": round(len(rows) / seconds, 2)}
    io.write_json(SPEED, speed)
    io.write_csv(INTENSITY_TABLE, table)
    io.write_csv(ERRORS, errors)
    io.write_csv(CHALLENGE_TABLE, challenge_table)
    io.write_jsonl(
        CHALLENGE_PREDICTIONS,
        (
            {
                **case,
                "prediction": answer,
                "baseline": baseline,
                "correct": textmetrics.normalise(answer) == textmetrics.normalise(case["expected"]),
            }
            for case, answer, baseline in zip(challenge, answers["model"], answers["lexicon"], strict=True)
        ),
    )
    io.write_jsonl(
        SAMPLES,
        (
            {
                "input": row["input"],
                "target": row["target"],
                "prediction": predictions[i],
                "baseline": outputs["lexicon"][i],
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

    tracker.log_metrics(tracking.flatten({**metrics, **speed}))
    tracker.set_tags({"model.md5": record["data"][str(TRAINED)]["md5"]})
    tables = [INTENSITY_TABLE, ERRORS, CHALLENGE_TABLE, SAMPLES, CHALLENGE_PREDICTIONS]
    tracker.log_artifacts([MODEL_DIR / lineage.LINEAGE_FILE, MODEL_DIR / lineage.CARD_FILE, *tables])
    if params.tracking.register_model:
        tracker.register(MODEL_DIR, params.tracking.register_model)
    log.info(
        "evaluate: accuracy %.3f (lexicon %.3f, copy %.3f) on %d examples",
        metrics["accuracy"],
        metrics["baseline_accuracy"],
        metrics["copy_accuracy"],
        len(rows),
    )
