"""The train stage on CPU: token-budget batches, resume after a kill, two processes under accelerate."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, ByT5Tokenizer, T5ForConditionalGeneration

from unleet import params as params_module
from unleet.batching import TokenBudgetBatches, padded
from unleet.cli import main as cli
from unleet.modeling import build_model
from unleet.params import ModelParams
from unleet.stages.train import MODEL_DIR

from .conftest import REPO_ROOT, clone, copy_project, save_tiny_t5, tool_environment

TRAIN = [sys.executable, "-m", "unleet.cli", "train"]


def test_batches_respect_the_budget_and_cover_every_example_once() -> None:
    sources = [5 + (i * 7) % 90 for i in range(500)]
    targets = [3 + (i * 11) % 80 for i in range(500)]
    plan = TokenBudgetBatches(sources, targets, max_tokens=512, pad_multiple=16, seed=1)
    epoch = plan.epoch(0)
    assert sorted(i for batch in epoch for i in batch) == list(range(500))
    for batch in epoch:
        width = max(padded(max(sources[i], targets[i]), 16) for i in batch)
        assert width * len(batch) <= 512
    assert epoch == plan.epoch(0) and epoch != plan.epoch(1)
    shards = [plan.shard(0, rank, 2) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1])
    assert not set(map(tuple, shards[0])) & set(map(tuple, shards[1]))


def weights(root: Path) -> dict[str, torch.Tensor]:
    return load_file(root / "models/trained/model.safetensors")


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_fresh_model_starts_near_uniform_loss(preset: str) -> None:
    """A model from a preset starts near ln(vocabulary), not at the ~70 of an unscaled untied head."""
    torch.manual_seed(0)
    tokenizer = ByT5Tokenizer()
    preset_params = ModelParams(**yaml.safe_load((REPO_ROOT / "conf" / "model" / f"{preset}.yaml").read_text()))
    model = build_model(preset_params, tokenizer)
    batch = tokenizer(
        ["idk wh4t 2 d0 tbh"] * 4, text_target=["I don't know what to do, to be honest."] * 4, return_tensors="pt"
    )
    with torch.no_grad():
        loss = float(model(**batch).loss)
    assert loss < 1.5 * math.log(len(tokenizer)), loss


def test_killed_training_resumes_to_the_same_weights(tokenized: Path, tmp_path: Path) -> None:
    straight = clone(tokenized, tmp_path / "straight")
    subprocess.run(TRAIN, cwd=straight, env=tool_environment(), check=True, capture_output=True, timeout=600)

    interrupted = clone(tokenized, tmp_path / "interrupted")
    process = subprocess.Popen(
        TRAIN, cwd=interrupted, env=tool_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not list((interrupted / "models/checkpoints").glob("step-*/trainer_state.json")):
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint before the run ended"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not (interrupted / "models/trained").exists()

    subprocess.run(TRAIN, cwd=interrupted, env=tool_environment(), check=True, capture_output=True, timeout=600)
    metrics = json.loads((interrupted / "metrics/train.json").read_text())
    assert 4 <= metrics["resumed_from_step"] < 16
    expected, resumed = weights(straight), weights(interrupted)
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], atol=1e-5, rtol=1e-4, msg=name)
    assert (interrupted / "metrics/train_curve.csv").read_text() == (straight / "metrics/train_curve.csv").read_text()


def test_two_processes_under_accelerate_launch(tokenized: Path, tmp_path: Path) -> None:
    root = clone(tokenized, tmp_path / "ddp")
    launch = [
        str(Path(sys.executable).parent / "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "unleet.cli",
        "train",
    ]
    result = subprocess.run(launch, cwd=root, env=tool_environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    metrics = json.loads((root / "metrics/train.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 16
    curve = [line.split(",") for line in (root / "metrics/validation_curve.csv").read_text().splitlines()[1:]]
    losses = [float(row[1]) for row in curve]
    assert losses[-1] < losses[0], losses
    AutoModelForSeq2SeqLM.from_pretrained(root / "models/trained")


def test_lora_needs_a_pretrained_model(
    tokenized: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(clone(tokenized, tmp_path / "lora"))
    params_module.compose(["experiment=smoke", "peft=lora"])
    assert cli(["train"]) == 1
    assert "set model=pretrained" in capsys.readouterr().err


def logits(model: torch.nn.Module, tokenizer: Any, text: str) -> torch.Tensor:
    """Decoder logits for one input under a fixed short target: equal logits mean equal models."""
    model.eval()
    batch = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        return model(**batch, decoder_input_ids=torch.zeros((1, 4), dtype=torch.long)).logits


def decodes(model: torch.nn.Module, tokenizer: Any, text: str) -> str:
    batch = tokenizer([text], return_tensors="pt")
    return tokenizer.decode(model.generate(**batch, max_new_tokens=8, do_sample=False)[0], skip_special_tokens=True)


@pytest.mark.parametrize("peft", ["none", "lora-merged", "lora-adapter"])
def test_training_continues_from_a_saved_checkpoint(
    peft: str, tokenized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = clone(tokenized, tmp_path / "project")
    tokenizer = AutoTokenizer.from_pretrained(root / "data/tokenized/tokenizer")
    base_dir = save_tiny_t5(tmp_path / "base-checkpoint", len(tokenizer))
    overrides = ["experiment=smoke", "train.max_steps=8", "train.eval_every=4", "train.lr=0.01"]
    overrides += ["model=pretrained", f"model.path={base_dir}"]
    if peft != "none":
        overrides += ["peft=lora", f"peft.merge={peft == 'lora-merged'}"]
    monkeypatch.chdir(root)
    params_module.compose(overrides)
    assert cli(["train"]) == 0

    metrics = json.loads(Path("metrics/train.json").read_text())
    assert metrics["steps"] == 8
    base = T5ForConditionalGeneration.from_pretrained(base_dir)
    text = "idk wh4t 2 d0 tbh"
    trained = AutoModelForSeq2SeqLM.from_pretrained(MODEL_DIR)  # loads an adapter-only directory through peft
    assert not torch.allclose(logits(trained, tokenizer, text), logits(base, tokenizer, text)), "nothing trained"

    if peft == "none":
        assert metrics["trainable_parameters"] == metrics["parameters"]
        assert not (MODEL_DIR / "adapter").exists()
        return
    assert 0 < metrics["trainable_parameters"] < metrics["parameters"] / 5
    adapter_dir = MODEL_DIR / "adapter" if peft == "lora-merged" else MODEL_DIR
    assert (adapter_dir / "adapter_config.json").exists()
    assert (MODEL_DIR / "model.safetensors").exists() == (peft == "lora-merged")
    with_adapter = PeftModel.from_pretrained(T5ForConditionalGeneration.from_pretrained(base_dir), adapter_dir)
    torch.testing.assert_close(logits(with_adapter, tokenizer, text), logits(trained, tokenizer, text))
    assert decodes(with_adapter, tokenizer, text) == decodes(trained, tokenizer, text)
    assert cli(["evaluate"]) == 0
    test_rows = Path("data/corrupted/test.jsonl").read_text().splitlines()
    assert json.loads(Path("metrics/eval.json").read_text())["examples"] == len(test_rows)


@pytest.fixture(scope="module")
def sample_tokenized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default pipeline's tokenized sample (about a thousand training pairs), for timing loops on."""
    root = copy_project(tmp_path_factory.mktemp("sample"))
    for command in (["params", "tracking=off"], ["scrape"], ["translate"], ["corrupt"], ["tokenize"]):
        result = subprocess.run(
            [*TRAIN[:-1], *command], cwd=root, env=tool_environment(), capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
    return root / "data/tokenized"


def test_throughput_benchmark_beats_the_seed_trainer(sample_tokenized: Path, tmp_path: Path) -> None:
    """benchmarks/train_throughput.py on the sample: the token-budget loop trains more real tokens per
    second than the seeds' Seq2SeqTrainer (random batches padded to their longest) on the same data."""
    script = REPO_ROOT / "benchmarks/train_throughput.py"
    command = [sys.executable, str(script), "--presets", "tiny", "--steps", "30", "--data", str(sample_tokenized)]
    result = subprocess.run(command, cwd=tmp_path, env=tool_environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    row = next(line.split() for line in result.stdout.splitlines() if line.startswith("tiny"))
    ours, seed = float(row[2].replace(",", "")), float(row[4].replace(",", ""))
    assert ours > seed, result.stdout
