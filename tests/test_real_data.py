"""benchmarks/real_data.py end to end, tiny, on a generated stand-in of the shared Reddit data's format.

The stand-in, not the shared data, so that the suite runs the same data on every machine.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unleet import textmetrics

from .conftest import REPO_ROOT, tool_environment

TINY = [
    "scrape.limit=120",
    "corrupt.variants=1",
    "corrupt.clean_text.limit=40",
    "tokenizer.max_source_length=96",
    "tokenizer.max_target_length=96",
    "train.max_steps=6",
    "train.eval_every=3",
    "train.checkpoint_every=3",
    "evaluate.max_new_tokens=16",
    "evaluate.samples=5",
    "tracking=off",
]


@pytest.fixture
def reddit_data(tmp_path: Path) -> Path:
    """Files in the shared data's format: reddit/ comments and their translations, and clean/ English text."""
    data = tmp_path / "reddit"
    data.mkdir()
    comments = [f"ngl match {i} wuz gr8, c u l8r m8" for i in range(200)]
    translations = [
        (text, f"Not going to lie, match {i} was great. See you later, mate.") for i, text in enumerate(comments)
    ]
    with (data / "comments.jsonl").open("w") as handle:
        handle.writelines(json.dumps({"subreddit": "test", "text": text, "score": 1}) + "\n" for text in comments)
    with (data / "translations.jsonl").open("w") as handle:
        handle.writelines(json.dumps({"original": o, "formal": f}) + "\n" for o, f in translations)
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "sentences.txt").write_text("".join(f"We are going to the park on day {i}.\n" for i in range(100)))
    return data


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_real_data_benchmark_prints_model_and_baseline_per_group(reddit_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    clean = reddit_data.parent / "clean"
    command = [sys.executable, "benchmarks/real_data.py", "--data", str(reddit_data), "--clean", str(clean)]
    command += ["--keep", str(run), *TINY]
    result = subprocess.run(command, cwd=REPO_ROOT, env=tool_environment(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr

    params = yaml.safe_load((run / "params.yaml").read_text())
    assert (params["scrape"]["source"], params["translate"]["backend"]) == ("jsonl", "pairs")
    assert params["scrape"]["path"] == str(reddit_data.resolve() / "comments.jsonl")
    assert params["corrupt"]["clean_text"]["path"] == str(clean.resolve())
    corrupt = json.loads((run / "metrics/corrupt.json").read_text())
    assert corrupt["clean_text"]["texts"] == 40
    assert sum(corrupt[split]["comments"] for split in ("train", "validation", "test")) == 120

    intensities = rows(run / "metrics/eval_intensity.csv")
    assert "natural" in {row["intensity"] for row in intensities} <= {"natural", "clean", "light", "medium", "heavy"}
    systems = ("accuracy", "baseline_accuracy", "copy_accuracy")
    categories = rows(run / "metrics/eval_challenge.csv")
    behind = []
    for row in intensities + categories:
        group = row.get("intensity", row.get("category"))
        model, lexicon, copy = (float(row[column]) for column in systems)
        examples = int(row["examples"])
        for baseline, accuracy in (("lexicon", lexicon), ("copy", copy)):
            wins, losses = int(row[f"wins_over_{baseline}"]), int(row[f"losses_to_{baseline}"])
            assert round(model * examples) - round(accuracy * examples) == wins - losses, (group, baseline)
        best = "lexicon" if lexicon >= copy else "copy"
        wins, losses = int(row[f"wins_over_{best}"]), int(row[f"losses_to_{best}"])
        line = (
            f"| {group} | {examples} | {model:.1%} | {lexicon:.1%} | {copy:.1%} | {model - max(lexicon, copy):+.1%} "
            f"| {wins} / {losses} | {textmetrics.sign_test(wins, losses):.2g} |"
        )
        assert line in result.stdout
        if group == "clean text":
            assert copy == 1.0  # clean cases are their own answer
        if "intensity" in row and group != "clean" and model <= max(lexicon, copy):
            behind.append(f"\n  not on {group}: {wins} right only by the model, {losses} only by the {best}")
    verdict = "no" if behind else "yes"
    assert f"beats the lexicon and the copy baseline at every intensity but clean: {verdict}\n" in result.stdout
    assert all(detail in result.stdout for detail in behind)
    challenge = json.loads((run / "metrics/eval.json").read_text())["challenge"]
    right = round(challenge["accuracy"] * challenge["examples"])
    assert f"{right} of {challenge['examples']}; 95% interval " in result.stdout


def test_real_data_benchmark_names_missing_data(tmp_path: Path) -> None:
    command = [sys.executable, "benchmarks/real_data.py", "--data", str(tmp_path)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=tool_environment(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"{tmp_path}: no comments.jsonl or translations.jsonl" in result.stderr
    assert not list(tmp_path.iterdir()), "wrote something although the data was missing"
