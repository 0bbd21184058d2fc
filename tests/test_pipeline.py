"""A tiny CPU smoke of all six stages through the CLI, and how the CLI reports bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from datasets import load_from_disk
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

import unleet
from unleet import cli, params, textmetrics
from unleet.copying import CopyPegasusForConditionalGeneration
from unleet.inputs import InputFormat
from unleet.lexicon import Normaliser

from .conftest import REPO_ROOT

STAGES = ["scrape", "translate", "corrupt", "tokenize", "train", "evaluate"]


def test_all_stages_with_sentencepiece_and_lexicon_hint(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params.compose(
        [
            "experiment=smoke",
            "tokenizer=sentencepiece",
            "tokenizer.hint=lexicon",
            "evaluate.rerank=true",
            "evaluate.copy_bias=0.5",
            "evaluate.slang_bias=4",
            "evaluate.num_beams=2",
            "model.copy=true",
        ]
    )
    for stage in STAGES:
        assert cli.main([stage]) == 0, stage

    assert (workdir / "data/tokenized/tokenizer/spiece.model").is_file()
    ratio = json.loads((workdir / "metrics/tokenize.json").read_text())["train"]["max_target_ratio"]
    assert 0 < ratio < 1  # the hinted source repeats the text, so every target is shorter than its source
    decoder = unleet.load(workdir / "models/unleet")
    assert decoder.input_format == InputFormat("lexicon", max_target_ratio=ratio)
    evaluated = (decoder.rerank, decoder.copy_bias, decoder.slang_bias, decoder.num_beams)
    assert evaluated == (True, 0.5, 4, 2)  # decodes as it was evaluated
    assert isinstance(decoder.model, CopyPegasusForConditionalGeneration)
    assert "copy head" in (workdir / "models/unleet/README.md").read_text()
    tokenized = load_from_disk(str(workdir / "data/tokenized/validation"))
    first = json.loads((workdir / "data/corrupted/validation.jsonl").read_text().splitlines()[0])
    source = AutoTokenizer.from_pretrained(workdir / "models/unleet").decode(tokenized[0]["input_ids"])
    assert source == f"{Normaliser()(first['input'])} ⇐ {first['input']}</s>"
    model = AutoModelForSeq2SeqLM.from_pretrained(workdir / "models/unleet")
    tokenizer = AutoTokenizer.from_pretrained(workdir / "models/unleet")
    batch = tokenizer(["idk wh4t 2 d0 |\\|00b"], return_tensors="pt")
    assert tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True) == "idk wh4t 2 d0 |\\|00b"
    assert model.generate(**batch, max_new_tokens=5).shape[0] == 1

    metrics = json.loads((workdir / "metrics/eval.json").read_text())
    assert {"accuracy", "exact_match", "cer", "chrf", "baseline_accuracy", "intensity"} <= set(metrics)
    assert 0 <= metrics["reranked"] <= 1
    # Machine timings stay out of the DVC metrics (so diffs show quality), in git-ignored speed files.
    train_metrics = json.loads((workdir / "metrics/train.json").read_text())
    assert not {key for key in [*metrics, *train_metrics] if key.endswith(("_per_second", "_s", "_gb"))}
    assert json.loads((workdir / "metrics/speed/train.json").read_text())["steady_tokens_per_second"] > 0
    assert json.loads((workdir / "metrics/speed/evaluate.json").read_text())["sentences_per_second"] > 0
    test_rows = [json.loads(line) for line in (workdir / "data/corrupted/test.jsonl").read_text().splitlines()]
    assert set(metrics["intensity"]) == {row["intensity"] for row in test_rows}
    copied = [textmetrics.normalise(row["input"]) == textmetrics.normalise(row["target"]) for row in test_rows]
    assert metrics["copy_accuracy"] == round(sum(copied) / len(test_rows), 4) < 1
    for intensity, share in metrics["copy_intensity"].items():
        flags = [flag for flag, row in zip(copied, test_rows, strict=True) if row["intensity"] == intensity]
        assert share == round(sum(flags) / len(flags), 4), intensity
    assert set(metrics["copy_intensity"]) == set(metrics["baseline_intensity"]) == set(metrics["intensity"])
    validation = [json.loads(line) for line in (workdir / "data/corrupted/validation.jsonl").read_text().splitlines()]
    copy_share = textmetrics.accuracy([row["input"] for row in validation], [row["target"] for row in validation])
    benchmark = [sys.executable, str(REPO_ROOT / "benchmarks/copy_bias.py"), str(workdir)]
    sweep = subprocess.run(
        [*benchmark, "--biases", "0", "1", "--slang-biases", "4"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sweep.returncode == 0, sweep.stderr
    assert f"| copy | {100 * copy_share:.1f} |" in sweep.stdout
    assert "| copy_bias 0 |" in sweep.stdout and "| copy_bias 1 |" in sweep.stdout
    assert "| copy_bias 1, slang_bias 4 |" in sweep.stdout
    assert "2 beam(s)" in sweep.stdout  # as the run's evaluate stage decoded
    assert "best overall: copy_bias" in sweep.stdout
    tokenize = json.loads((workdir / "metrics/tokenize.json").read_text())
    corrupt = json.loads((workdir / "metrics/corrupt.json").read_text())
    for split in ("train", "validation", "test"):
        counts = tokenize[split]
        assert counts["examples"] + counts["dropped_too_long"] == corrupt[split]["examples"], split
    challenge = [json.loads(line) for line in (workdir / "data/challenge/challenge.jsonl").read_text().splitlines()]
    assert metrics["challenge"]["examples"] == len(challenge)
    assert set(metrics["challenge"]["categories"]) == {case["category"] for case in challenge}
    gaming = [case for case in challenge if case["category"] == "gaming"]
    lexicon = Normaliser()
    hits = sum(
        textmetrics.normalise(lexicon(case["input"])) == textmetrics.normalise(case["expected"]) for case in gaming
    )
    assert metrics["challenge"]["baseline_categories"]["gaming"] == round(hits / len(gaming), 4)
    assert metrics["challenge"]["copy_categories"]["clean text"] == 1.0
    assert metrics["challenge"]["copy_categories"]["chat abbreviations"] == 0.0
    curve = (workdir / "metrics/train_curve.csv").read_text().splitlines()
    assert curve[0] == "step,train_loss,lr" and len(curve) == 1 + 12
    predictions = (workdir / "metrics/predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 10 and {"input", "target", "prediction"} <= set(json.loads(predictions[0]))

    assert cli.main(["lineage"]) == 0
    lineage = json.loads(capsys.readouterr().out)
    assert lineage["git"] == {"commit": None, "dirty": None}  # a plain copy, not a clone
    assert lineage["metrics"] == metrics and lineage["params"]["tokenizer"]["kind"] == "sentencepiece"
    assert set(lineage["data"]) >= {"data/raw/comments.jsonl", "data/tokenized", "models/trained"}
    assert lineage["rows"]["test"] == metrics["examples"]
    assert cli.main(["report"]) == 0
    report = (workdir / "reports/unleet/report.md").read_text()
    assert "| metric | workspace |" in report and "## Worst failures by challenge category" in report
    assert (workdir / "reports/unleet/accuracy_per_category.png").read_bytes().startswith(b"\x89PNG")
    card = (workdir / "models/unleet/README.md").read_text()
    assert "pipeline_tag: text2text-generation" in card and lineage["data"]["data/tokenized"]["md5"] in card


def test_unknown_params_key_exits_nonzero_naming_it(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load(Path("params.yaml").read_text())
    data["tokenizer"]["kind_of"] = "byte"
    Path("params.yaml").write_text(yaml.safe_dump(data))
    assert cli.main(["scrape"]) == 1
    assert "tokenizer.kind_of" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["evaluate.copy_bias=1"], "evaluate.copy_bias: applies only when reranking"),
        (["evaluate.rerank=true", "evaluate.copy_bias=-0.5"], "evaluate.copy_bias: -0.5 must be at least 0"),
        (["evaluate.slang_bias=2"], "evaluate.slang_bias: applies only when reranking"),
        (["evaluate.rerank=true", "evaluate.slang_bias=-1"], "evaluate.slang_bias: -1.0 must be at least 0"),
        (["evaluate.num_beams=0"], "evaluate.num_beams: 0 must be at least 1"),
    ],
)
def test_evaluate_refuses_a_setting_it_cannot_use(
    overrides: list[str], message: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params.compose(overrides)
    metrics_before = (workdir / "metrics/eval.json").read_bytes()
    assert cli.main(["evaluate"]) == 1
    assert message in capsys.readouterr().err
    assert (workdir / "metrics/eval.json").read_bytes() == metrics_before


def test_bad_split_line_leaves_no_partial_output(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corrupted = workdir / "data/corrupted"
    corrupted.mkdir(parents=True, exist_ok=True)
    metrics_before = (workdir / "metrics/tokenize.json").read_bytes()
    row = {"input": "u r gr8", "target": "You are great.", "intensity": "light", "source_id": "a"}
    for name in ("train", "validation"):
        (corrupted / f"{name}.jsonl").write_text(json.dumps(row) + "\n")
    (corrupted / "test.jsonl").write_text(json.dumps(row) + "\n" + '{"input": "cut off\n')
    assert cli.main(["tokenize"]) == 1
    assert "data/corrupted/test.jsonl:2" in capsys.readouterr().err
    assert not (workdir / "data/tokenized").exists()
    assert not [p for p in (workdir / "data").iterdir() if ".tmp-" in p.name]
    assert (workdir / "metrics/tokenize.json").read_bytes() == metrics_before


def test_empty_scrape_names_the_filter(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params.compose(["scrape.filters.min_chars=100000"])
    assert cli.main(["scrape"]) == 1
    assert "scrape.filters.min_chars=100000" in capsys.readouterr().err
    assert not (workdir / "data/raw/comments.jsonl").exists()
