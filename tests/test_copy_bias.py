"""benchmarks/copy_bias.py: replaying `Decoder.choose` at each bias from scores computed once."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import torch

from .conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location("copy_bias", REPO_ROOT / "benchmarks/copy_bias.py")
assert spec and spec.loader
copy_bias = importlib.util.module_from_spec(spec)
spec.loader.exec_module(copy_bias)


def test_sweep_replays_choose_and_picks_the_smallest_bias_passing_clean_text() -> None:
    texts = ["gg wp", "this is fine", "u r gr8"]
    targets = ["Good game, well played.", "this is fine", "You are great."]
    candidates = [
        ["Good game, well played.", "This is fin", "You are great."],
        texts,
        ["Good game well played", "This is fine.", "You're great."],
    ]
    scores = torch.tensor([[-1.0, -2.0, -1.0], [-5.0, -3.0, -9.0], [-2.0, -4.0, -3.0]])
    table = copy_bias.sweep(candidates, scores, targets, ["light", "clean", "medium"], (0.0, 0.5, 2.0, 3.0))

    assert table["copy"] == {"all": 1 / 3, "clean": 1.0, "light": 0.0, "medium": 0.0}
    assert table["model alone"]["all"] == table["copy_bias 0"]["all"] == 2 / 3
    assert table["copy_bias 0.5"] == {"all": 1.0, "clean": 1.0, "light": 1.0, "medium": 1.0}
    assert table["copy_bias 2"]["all"] == 1.0  # "gg wp" ties its answer at 2 nats a word: ties keep the answer
    assert table["copy_bias 3"] == {"all": 1 / 3, "clean": 1.0, "light": 0.0, "medium": 0.0}
    assert copy_bias.choices(table, 0.97) == ("copy_bias 0.5", "copy_bias 0.5")
    assert copy_bias.choices({row: table[row] for row in ("copy", "copy_bias 0")}, 0.97) == (None, "copy_bias 0")


def test_a_run_without_a_model_is_refused_by_path(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks/copy_bias.py"), str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "nowhere/models/unleet: no such model directory" in result.stderr
