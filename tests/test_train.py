"""The train stage on CPU: token-budget batches, resume after a kill, two processes under accelerate."""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from datasets import load_from_disk
from peft import PeftModel
from safetensors.torch import load_file
from torch._dynamo.utils import counters
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, ByT5Tokenizer, T5ForConditionalGeneration

from unleet import params as params_module
from unleet.batching import FixedShapeCollator, LengthBuckets, bucket_edges
from unleet.cli import main as cli
from unleet.modeling import build_model
from unleet.params import ModelParams
from unleet.stages.train import MODEL_DIR, batch_stream, build_training, lengths, load_data, mixed_precision

from .conftest import REPO_ROOT, clone, copy_project, save_tiny_t5, tool_environment

TRAIN = [sys.executable, "-m", "unleet.cli", "train"]


def test_batches_have_a_few_fixed_shapes_and_cover_every_example_once() -> None:
    sources = [5 + (i * 7) % 90 for i in range(500)]
    targets = [3 + (i * 11) % 80 for i in range(500)]
    plan = LengthBuckets(sources, targets, max_tokens=1024, pad_multiple=16, buckets=4, seed=1)
    assert len(plan.shapes) == 4
    for shape in plan.shapes:
        assert shape.rows % 8 == 0 and shape.rows * max(shape.source, shape.target) <= 1024
    epoch = plan.epoch(0)
    assert sorted(i for batch in epoch for i in batch) == list(range(500))
    for batch in epoch:
        shape = plan.shapes[plan.shape_index(batch)]
        assert len(batch) <= shape.rows
        assert all(sources[i] <= shape.source and targets[i] <= shape.target for i in batch)
    assert epoch == plan.epoch(0) and epoch != plan.epoch(1) and len(plan.epoch(1)) == len(epoch) == len(plan)
    shards = [plan.shard(0, rank, 2) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1])
    assert not set(map(tuple, shards[0])) & set(map(tuple, shards[1]))
    stream = plan.stream(0, 1, start=len(plan) + 3)
    assert [next(stream) for _ in range(2)] == plan.epoch(1)[3:5]


def test_a_target_long_for_its_source_moves_up_instead_of_widening_its_bucket() -> None:
    """Target widths fit 99% of a bucket's targets; the rare longer target goes to a bigger bucket."""
    sources = [16] * 300 + [160] * 100
    targets = [16] * 299 + [128] + [160] * 100
    plan = LengthBuckets(sources, targets, max_tokens=2048, pad_multiple=16, buckets=2, seed=0)
    assert [(shape.source, shape.target) for shape in plan.shapes] == [(16, 16), (160, 160)]
    assert plan.bucket_of(16, 128) == 1 and 299 in plan.members[1] and len(plan.members[0]) == 299


def test_bucket_edges_minimise_padding() -> None:
    """The edges are where padding is least: a few long examples get a bucket of their own."""
    sources = [16] * 100 + [32] * 100 + [160] * 50
    assert bucket_edges(sources, sources, 2) == [32, 160]
    assert bucket_edges(sources, sources, 3) == [16, 32, 160]


def test_empty_rows_that_fill_a_bucket_change_neither_loss_nor_gradients() -> None:
    tokenizer = ByT5Tokenizer()
    texts = [("idk wh4t 2 d0", "I don't know what to do."), ("gr8", "Great.")]
    features = [tokenizer(text, text_target=target) for text, target in texts]
    plan = LengthBuckets([32], [32], max_tokens=512, pad_multiple=32, buckets=1, seed=0)
    assert plan.shapes[0].rows == 16
    full = FixedShapeCollator(plan, tokenizer.pad_token_id)(features)
    assert full["input_ids"].shape == (16, 32) and full["labels"].shape == (16, 32)
    model = build_model(ModelParams(**yaml.safe_load((REPO_ROOT / "conf/model/tiny.yaml").read_text())), tokenizer)

    def loss_and_gradients(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    filled = loss_and_gradients(full)
    plain = loss_and_gradients({key: value[:2] for key, value in full.items()})
    torch.testing.assert_close(filled[0], plain[0])
    for with_empty_rows, without in zip(filled[1], plain[1], strict=True):
        torch.testing.assert_close(with_empty_rows, without, atol=1e-6, rtol=1e-4)


def test_compiled_training_compiles_each_batch_shape_once(
    tokenized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train.compile=true with more shapes than dynamo's recompile limit: every shape is compiled once
    (none falls back to eager), with no graph break, and nothing else recompiles."""
    monkeypatch.chdir(clone(tokenized, tmp_path / "compiled"))
    overrides = ["experiment=smoke", "tracking=off", "train.compile=true", "train.buckets=3", "train.batch_tokens=1024"]
    params_module.compose([*overrides, "train.max_steps=1"])
    dataset = load_from_disk("data/tokenized/train")
    plan = LengthBuckets(*lengths(dataset), 1024, 16, 3, seed=7)
    assert len(plan.shapes) == 3
    params_module.compose([*overrides, f"train.max_steps={len(plan) + 2}", "train.eval_every=1000"])
    torch._dynamo.reset()
    counters.clear()
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 2)
    assert cli(["train"]) == 0
    assert counters["stats"]["unique_graphs"] == 3, dict(counters["stats"])
    assert counters["frames"]["total"] == counters["frames"]["ok"] == 3, dict(counters["frames"])
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert json.loads(Path("metrics/train.json").read_text())["batch_shapes"] == 3


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


def test_early_stopping_resumes_to_the_same_step_and_weights(tokenized: Path, tmp_path: Path) -> None:
    """A run with `patience` killed after a validation that did not improve: its resume counts that
    validation towards the patience, so it stops at the same step with the same weights."""
    overrides = ["experiment=smoke", "tracking=off", "train.max_steps=60", "train.eval_every=3", "train.lr=0.003"]
    overrides += ["train.checkpoint_every=3", "train.patience=2", "train.keep_checkpoints=50"]
    straight, interrupted = (clone(tokenized, tmp_path / name) for name in ("straight", "interrupted"))
    for root in (straight, interrupted):
        subprocess.run([*TRAIN[:-1], "params", *overrides], cwd=root, env=tool_environment(), check=True)
    subprocess.run(TRAIN, cwd=straight, env=tool_environment(), check=True, capture_output=True, timeout=600)
    expected = json.loads((straight / "metrics/train.json").read_text())
    assert expected["stopped_early"], "this configuration no longer stops early; the test needs one that does"

    def stale_checkpoints() -> list[Path]:
        states = sorted((interrupted / "models/checkpoints").glob("step-*/trainer_state.json"))
        return [path.parent for path in states if json.loads(path.read_text())["stale_evaluations"] > 0]

    process = subprocess.Popen(
        TRAIN, cwd=interrupted, env=tool_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not stale_checkpoints() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    kept = stale_checkpoints()[0]  # as if killed right after this checkpoint
    for later in sorted(kept.parent.glob("step-*")):
        if later.name > kept.name:
            shutil.rmtree(later)
    shutil.rmtree(interrupted / "models/trained", ignore_errors=True)

    subprocess.run(TRAIN, cwd=interrupted, env=tool_environment(), check=True, capture_output=True, timeout=600)
    resumed = json.loads((interrupted / "metrics/train.json").read_text())
    assert resumed["resumed_from_step"] == int(kept.name.removeprefix("step-")) < expected["steps"]
    assert (resumed["steps"], resumed["best_step"]) == (expected["steps"], expected["best_step"])
    resumed_weights = weights(interrupted)
    for name, tensor in weights(straight).items():
        torch.testing.assert_close(resumed_weights[name], tensor, atol=1e-5, rtol=1e-4, msg=name)


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


def test_optimizer_takes_its_learning_rate_decay_and_second_moment_from_params(
    tokenized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(clone(tokenized, tmp_path / "optimizer"))
    params_module.compose(["experiment=smoke", "train.lr=0.003", "train.weight_decay=0.05", "train.beta2=0.95"])
    params = params_module.load()
    _, optimizer, _, _ = build_training(params, load_data(params.train), Accelerator(cpu=True))
    group = optimizer.param_groups[0]
    assert (group["initial_lr"], group["weight_decay"], group["betas"]) == (0.003, 0.05, (0.9, 0.95))


@pytest.fixture
def fresh_accelerator_state() -> Iterator[None]:
    """accelerate keeps one process-wide state, fixed by the first Accelerator: reset it around a
    test that builds accelerators with other settings, whether or not the test passes."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_bf16_precision_autocasts_the_forward_on_cpu_and_auto_keeps_fp32(
    tokenized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_accelerator_state: None
) -> None:
    monkeypatch.chdir(clone(tokenized, tmp_path / "precision"))
    assert linear_output_dtype("auto") == torch.float32
    AcceleratorState._reset_state(reset_partial_state=True)
    assert linear_output_dtype("bf16") == torch.bfloat16


def linear_output_dtype(precision: str) -> torch.dtype:
    """What a linear layer of a training step outputs under `train.precision`, the weights staying fp32."""
    params_module.compose(["experiment=smoke", f"train.precision={precision}"])
    params = params_module.load()
    accelerator = Accelerator(cpu=True, mixed_precision=mixed_precision(params.train.precision, cuda=False))
    data = load_data(params.train)
    model, _, _, forward = build_training(params, data, accelerator)
    batch = next(batch_stream(data, 0, accelerator, workers=0))
    linear = next(module for module in model.modules() if isinstance(module, torch.nn.Linear))
    outputs: list[torch.Tensor] = []
    hook = linear.register_forward_hook(lambda _, __, output: outputs.append(output))
    with accelerator.autocast():
        forward(**batch).loss.backward()
    hook.remove()
    assert next(model.parameters()).dtype == torch.float32
    return outputs[0].dtype


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.precision=fp16", "train.precision='fp16': unknown, expected one of auto, bf16, fp32"),
        ("peft=lora", "set model=pretrained"),  # LoRA adapts a pretrained model
        ("model.copy=true model.architecture=t5", "model.copy=true: the copy head is built on a fresh Pegasus"),
    ],
)
def test_train_names_a_setting_it_cannot_run(
    override: str,
    message: str,
    tokenized: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(clone(tokenized, tmp_path / "refused"))
    params_module.compose(["experiment=smoke", *override.split()])
    assert cli(["train"]) == 1
    assert message in capsys.readouterr().err


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
    """benchmarks/train_throughput.py on the sample: in the steady state the bucketed loop trains more
    real tokens per second than the seeds' Seq2SeqTrainer (random batches padded to their longest)."""
    script = REPO_ROOT / "benchmarks/train_throughput.py"
    command = [sys.executable, str(script), "--presets", "tiny", "--warmup", "10", "--steps", "30"]
    command += ["--compile", "off", "--data", str(sample_tokenized)]
    result = subprocess.run(command, cwd=tmp_path, env=tool_environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    rates = {
        match["side"]: float(match["rate"].replace(",", ""))
        for match in re.finditer(
            r"^tiny +\S+ +(?P<side>unleet, eager|seed Trainer) +(?P<rate>[\d,]+) ", result.stdout, re.M
        )
    }
    assert rates.keys() == {"unleet, eager", "seed Trainer"}, result.stdout
    assert rates["unleet, eager"] > rates["seed Trainer"], result.stdout
