"""benchmarks/real_data.py end to end, tiny: on the shared Reddit data where present, else a stand-in of its shape."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import REPO_ROOT, tool_environment

SHARED_DATA = Path(os.environ.get("UNLEET_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "reddit"))
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
    """The shared real data, or files in its format: comments, and translations of more than those comments."""
    if (SHARED_DATA / "comments.jsonl").is_file():
        return SHARED_DATA
    data = tmp_path / "reddit"
    data.mkdir()
    comments = [f"ngl match {i} wuz gr8, c u l8r m8" for i in range(200)]
    translations = [
        (text, f"Not going to lie, match {i} was great. See you later, mate.") for i, text in enumerate(comments)
    ]
    translations += [(f"we won round {i} 2day", f"We won round {i} today.") for i in range(60)]  # dropped comments
    with (data / "comments.jsonl").open("w") as handle:
        handle.writelines(json.dumps({"subreddit": "test", "text": text, "score": 1}) + "\n" for text in comments)
    with (data / "translations.jsonl").open("w") as handle:
        handle.writelines(json.dumps({"original": o, "formal": f}) + "\n" for o, f in translations)
    return data


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_real_data_benchmark_prints_model_and_baseline_per_group(reddit_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    command = [sys.executable, "benchmarks/real_data.py", "--data", str(reddit_data), "--keep", str(run), *TINY]
    result = subprocess.run(command, cwd=REPO_ROOT, env=tool_environment(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr

    params = yaml.safe_load((run / "params.yaml").read_text())
    assert (params["scrape"]["source"], params["translate"]["backend"]) == ("jsonl", "pairs")
    assert params["scrape"]["path"] == str(reddit_data.resolve() / "comments.jsonl")
    corrupt = json.loads((run / "metrics/corrupt.json").read_text())
    assert corrupt["clean_text"]["texts"] == 40
    assert sum(corrupt[split]["comments"] for split in ("train", "validation", "test")) == 120

    intensities = rows(run / "metrics/eval_intensity.csv")
    assert "natural" in {row["intensity"] for row in intensities} <= {"natural", "clean", "light", "medium", "heavy"}
    for row in intensities:
        model, baseline = float(row["accuracy"]), float(row["baseline_accuracy"])
        assert f"| {row['intensity']} | {row['examples']} | {model:.1%} | {baseline:.1%} |" in result.stdout
    for row in rows(run / "metrics/eval_challenge.csv"):
        assert f"| {row['category']} | {row['examples']} | {float(row['accuracy']):.1%} |" in result.stdout
    wins = all(float(row["accuracy"]) > float(row["baseline_accuracy"]) for row in intensities)
    assert f"model beats the lexicon at every intensity: {'yes' if wins else 'no'}" in result.stdout


def test_real_data_benchmark_names_missing_data(tmp_path: Path) -> None:
    command = [sys.executable, "benchmarks/real_data.py", "--data", str(tmp_path)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=tool_environment(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"{tmp_path}: no comments.jsonl or translations.jsonl" in result.stderr
