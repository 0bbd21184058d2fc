"""train: fit the encoder-decoder on `data/tokenized/` and save it to `models/trained/`.

`fit` reads top to bottom: take the next fixed-shape batch, step, and at intervals read the
losses (the only host sync), `evaluate` on the validation split and `save_state` for a resume;
then `summarise`. accelerate places model and data, so the same stage runs on CPU (fp32, or bf16
autocast with `train.precision`), one GPU (bf16 autocast) or many (`accelerate launch`, DDP). A run
killed midway resumes from its last checkpoint and ends with the same weights, at the same step
even with early stopping.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, set_seed
from datasets import Dataset, load_from_disk
from safetensors.torch import load_model, save_model
from torch.utils.data import DataLoader
from tqdm import tqdm
from transformers import AutoTokenizer, get_linear_schedule_with_warmup

from unleet import batching, checkpoints, copying, io, modeling, tracking
from unleet.errors import UnleetError
from unleet.params import Params, TrainParams

log = logging.getLogger(__name__)

TOKENIZED = Path("data/tokenized")
MODEL_DIR = Path("models/trained")
CHECKPOINTS = Path("models/checkpoints")
BEST_WEIGHTS = CHECKPOINTS / "best.safetensors"
METRICS = Path("metrics/train.json")
SPEED = Path("metrics/speed/train.json")  # machine timings: git-ignored, so metrics diffs show quality
TRAIN_CURVE = Path("metrics/train_curve.csv")
VALIDATION_CURVE = Path("metrics/validation_curve.csv")


PRECISIONS = ("auto", "bf16", "fp32")


def main(params: Params) -> None:
    cuda = torch.cuda.is_available()
    accelerator = Accelerator(cpu=not cuda, mixed_precision=mixed_precision(params.train.precision, cuda))
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    set_seed(params.train.seed)
    with tracking.run("train", params, active=accelerator.is_main_process) as tracker:
        fit(params, accelerator, tracker)


def mixed_precision(precision: str, cuda: bool) -> str:
    """accelerate's setting for `train.precision`: `auto` is bf16 autocast on CUDA and fp32 on CPU,
    where bf16 pays only with AMX matrix units (README "Speed"); weights and optimizer stay fp32."""
    if precision not in PRECISIONS:
        raise UnleetError(f"train.precision={precision!r}: unknown, expected one of {', '.join(PRECISIONS)}")
    return "bf16" if precision == "bf16" or (precision == "auto" and cuda) else "no"


def fit(params: Params, accelerator: Accelerator, tracker: tracking.Tracker) -> None:
    cfg = params.train
    data = load_data(cfg)
    model, optimizer, scheduler, forward = build_training(params, data, accelerator)
    signature = checkpoints.signature(
        params.model, params.peft, cfg, data.train._fingerprint, accelerator.num_processes, code_digest()
    )
    state = restore_state(signature, accelerator)
    resumed_from = state.step
    batches = batch_stream(data, state.step, accelerator, cfg.loader_workers)
    clock, unread_losses = Throughput(), []
    progress = tqdm(
        total=cfg.max_steps, initial=state.step, desc="train", unit="step", disable=not accelerator.is_main_process
    )
    model.train()
    while state.step < cfg.max_steps and not state.out_of_patience(cfg.patience):
        batch = next(batches)
        clock.count(batch)
        batch = {key: value.to(accelerator.device, non_blocking=True) for key, value in batch.items()}
        with accelerator.autocast():
            loss = forward(**batch).loss
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        unread_losses.append((state.step, loss.detach(), scheduler.get_last_lr()[0]))  # on the device: no sync
        progress.update()

        last = state.step == cfg.max_steps
        evaluating = state.step % cfg.eval_every == 0 or last
        checkpointing = bool(cfg.checkpoint_every) and (state.step % cfg.checkpoint_every == 0 or last)
        if state.step % cfg.log_every == 0 or evaluating or checkpointing:
            read_losses(unread_losses, state.train_curve)  # the one host sync
            clock.lap()
            progress.set_postfix(train=f"{state.train_curve[-1]['train_loss']:.3f}")
        with clock.pause():
            if evaluating:
                loss_now = evaluate(model, data, state, accelerator, tracker, cfg.keep_best)
                progress.set_postfix(train=f"{state.train_curve[-1]['train_loss']:.3f}", validation=f"{loss_now:.3f}")
                checkpointing = checkpointing or (bool(cfg.checkpoint_every) and state.out_of_patience(cfg.patience))
            if checkpointing:
                save_state(state, signature, accelerator, cfg.keep_checkpoints)
    progress.close()
    read_losses(unread_losses, state.train_curve)
    if accelerator.is_main_process:
        summarise(params, model, data, state, clock, accelerator, tracker, resumed_from)


def lengths(dataset: Dataset) -> tuple[list[int], list[int]]:
    """Source and target lengths, read from the Arrow columns without materialising the token lists."""
    table = dataset.data.table
    return tuple(pc.list_value_length(table.column(name)).to_numpy().tolist() for name in ("input_ids", "labels"))


@torch.no_grad()
def validation_loss(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> float:
    """Token-weighted mean loss over the whole validation split."""
    model.eval()
    total = tokens = 0.0
    for batch in loader:
        batch = {key: value.to(device) for key, value in batch.items()}
        count = int((batch["labels"] != -100).sum())
        total += float(model(**batch).loss) * count
        tokens += count
    model.train()
    return total / max(tokens, 1)


@torch.no_grad()
def sample_translations(model: torch.nn.Module, tokenizer: Any, texts: list[str], device: torch.device) -> str:
    """A few greedy decodes of fixed validation inputs: the quickest sanity check of a run."""
    model.eval()
    batch = tokenizer(texts, return_tensors="pt", padding=True).to(device)
    outputs = model.generate(**batch, max_new_tokens=64, do_sample=False)
    model.train()
    decoded = tokenizer.batch_decode(outputs, skip_special_tokens=True)
    return " | ".join(f"{text} => {output.strip()}" for text, output in zip(texts, decoded, strict=True))


def read_losses(unread: list[tuple[int, torch.Tensor, float]], train_curve: list[dict[str, Any]]) -> None:
    """Move the steps' losses, still on the device, into the curve with one transfer (one host sync)."""
    if not unread:
        return
    values = torch.stack([loss.float() for _, loss, _ in unread]).tolist()
    train_curve += [
        {"step": step, "train_loss": round(value, 5), "lr": lr}
        for (step, _, lr), value in zip(unread, values, strict=True)
    ]
    unread.clear()


def log_curves(tracker: tracking.Tracker, train_curve: list[dict[str, Any]], validation: list[dict[str, Any]]) -> None:
    """Send the steps since the previous validation to MLflow: one call per validation, not per step."""
    since = validation[-2]["step"] if len(validation) > 1 else 0
    for row in train_curve[since:]:  # rows are steps 1, 2, ... in order
        tracker.log_metrics({"train_loss": row["train_loss"], "lr": row["lr"]}, row["step"])
    tracker.log_metrics({"validation_loss": validation[-1]["validation_loss"]}, validation[-1]["step"])
    tracker.flush()


@dataclass
class TrainingState:
    """Everything besides accelerate's state (weights, optimizer, scheduler, RNGs) that a resume needs."""

    step: int = 0
    best_loss: float = math.inf
    best_step: int = 0
    stale_evaluations: int = 0  # validations since the best one, for `patience`
    train_curve: list[dict[str, Any]] = field(default_factory=list)
    validation_curve: list[dict[str, Any]] = field(default_factory=list)

    def out_of_patience(self, patience: int | None) -> bool:
        return bool(patience) and self.stale_evaluations >= patience


class Throughput:
    """Real (non-padding) tokens per second of training, validation and checkpoints left out.

    `lap` is called right after a host sync, so the clock reads finished device work; the steady
    rate runs from the first lap to the last and so leaves out compilation and warm-up.
    """

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.paused = 0.0
        self.tokens = self.padded_tokens = 0
        self.laps: list[tuple[int, float]] = []

    def count(self, batch: dict[str, torch.Tensor]) -> None:
        """Count on the CPU batch, before it moves: no device sync."""
        labelled = batch["labels"] != -100
        examples = labelled.any(dim=1)  # the empty rows that top up a bucket have no labels
        self.tokens += int(batch["attention_mask"][examples].sum()) + int(labelled.sum())
        self.padded_tokens += batch["input_ids"].numel() + batch["labels"].numel()

    def training_seconds(self) -> float:
        return time.perf_counter() - self.started - self.paused

    def lap(self) -> None:
        self.laps.append((self.tokens, self.training_seconds()))

    @contextmanager
    def pause(self) -> Iterator[None]:
        paused_at = time.perf_counter()
        yield
        self.paused += time.perf_counter() - paused_at

    def rates(self, processes: int) -> dict[str, float | None]:
        """Rates of all processes together (each counts its own batches)."""
        seconds = self.training_seconds()
        steady = None
        if len(self.laps) > 1:
            (first_tokens, first_seconds), (last_tokens, last_seconds) = self.laps[0], self.laps[-1]
            steady = (last_tokens - first_tokens) * processes / (last_seconds - first_seconds)
        return {
            "tokens_per_second": round(self.tokens * processes / seconds, 1) if self.tokens else None,
            "steady_tokens_per_second": round(steady, 1) if steady else None,
            "padding_share": round(1 - self.tokens / self.padded_tokens, 4) if self.padded_tokens else None,
        }


@dataclass
class TrainingData:
    tokenizer: Any
    train: Dataset
    validation: Dataset
    train_buckets: batching.LengthBuckets
    validation_buckets: batching.LengthBuckets
    sample_inputs: list[str]


def load_data(cfg: TrainParams) -> TrainingData:
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZED / "tokenizer")
    train_set = load_from_disk(str(TOKENIZED / "train")).remove_columns("intensity")
    validation_set = load_from_disk(str(TOKENIZED / "validation")).remove_columns("intensity")
    shaping = (cfg.batch_tokens, cfg.pad_multiple, cfg.buckets, cfg.seed)
    return TrainingData(
        tokenizer=tokenizer,
        train=train_set,
        validation=validation_set,
        train_buckets=batching.LengthBuckets(*lengths(train_set), *shaping),
        validation_buckets=batching.LengthBuckets(*lengths(validation_set), *shaping),
        sample_inputs=tokenizer.batch_decode(
            validation_set["input_ids"][: cfg.sample_translations], skip_special_tokens=True
        ),
    )


def build_training(params: Params, data: TrainingData, accelerator: Accelerator) -> tuple[Any, Any, Any, Any]:
    """Model, optimizer and schedule placed by accelerate, and the forward to train with (compiled or not).

    Batches come in `len(shapes)` shapes, so compilation happens once per shape; dynamo's
    recompile limit is raised to that count where it is lower, so no shape falls back to eager.
    """
    cfg = params.train
    if params.peft.method != "none" and params.model.preset != "pretrained":
        raise UnleetError(f"peft={params.peft.method} adapts a pretrained model: set model=pretrained and model.path")
    model = modeling.with_adapter(modeling.build_model(params.model, data.tokenizer), params.peft)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    cuda = accelerator.device.type == "cuda"
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=cfg.lr, betas=(0.9, cfg.beta2), weight_decay=cfg.weight_decay, fused=cuda
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    if not cfg.compile:
        return model, optimizer, scheduler, model
    shapes = len(data.train_buckets.shapes)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, shapes)
    return model, optimizer, scheduler, torch.compile(model, dynamic=False)


def code_digest() -> str:
    """The training code's hash: a checkpoint written by other code is not resumed."""
    return checkpoints.code_digest(sys.modules[__name__], modeling, copying, batching, checkpoints)


def batch_stream(
    data: TrainingData, start: int, accelerator: Accelerator, workers: int
) -> Iterator[dict[str, torch.Tensor]]:
    """This process's batches from step `start` on, epoch after epoch, collated ahead by persistent
    workers into pinned memory. The loader has a generator of its own: otherwise it draws a seed
    from the global RNG, which would shift dropout after a resume."""
    loader = DataLoader(
        data.train,
        batch_sampler=data.train_buckets.stream(accelerator.process_index, accelerator.num_processes, start),
        collate_fn=batching.FixedShapeCollator(data.train_buckets, data.tokenizer.pad_token_id),
        num_workers=workers,
        pin_memory=accelerator.device.type == "cuda",
        prefetch_factor=4 if workers else None,
        persistent_workers=workers > 0,
        generator=torch.Generator(),
    )
    return iter(loader)


def evaluate(
    model: torch.nn.Module,
    data: TrainingData,
    state: TrainingState,
    accelerator: Accelerator,
    tracker: tracking.Tracker,
    keep_best: bool,
) -> float:
    """Score the validation split on the main process (every process gets the loss), decode a few
    examples, log the curves and keep the best weights. Returns the validation loss."""
    loss, samples = [math.nan], {}
    if accelerator.is_main_process:
        plain = accelerator.unwrap_model(model)
        collate = batching.FixedShapeCollator(data.validation_buckets, data.tokenizer.pad_token_id)
        loader = DataLoader(data.validation, batch_sampler=data.validation_buckets.epoch(0), collate_fn=collate)
        with accelerator.autocast():
            loss = [validation_loss(plain, loader, accelerator.device)]
            if data.sample_inputs:
                samples["samples"] = sample_translations(plain, data.tokenizer, data.sample_inputs, accelerator.device)
    loss_now = broadcast_object_list(loss)[0]
    state.validation_curve.append({"step": state.step, "validation_loss": round(loss_now, 5), **samples})
    log_curves(tracker, state.train_curve, state.validation_curve)
    if loss_now < state.best_loss:
        state.best_loss, state.best_step, state.stale_evaluations = loss_now, state.step, 0
        if keep_best and accelerator.is_main_process:
            with io.atomic_path(BEST_WEIGHTS) as staging:
                save_model(accelerator.unwrap_model(model), str(staging))
    else:
        state.stale_evaluations += 1
    return loss_now


def save_state(state: TrainingState, signature: str, accelerator: Accelerator, keep: int) -> None:
    checkpoints.save(CHECKPOINTS, accelerator, {"signature": signature, **asdict(state)}, keep)


def restore_state(signature: str, accelerator: Accelerator) -> TrainingState:
    """The newest checkpoint of this very run loaded into accelerate, or a fresh state."""
    resumed = checkpoints.latest(CHECKPOINTS, signature)
    if resumed is None:
        checkpoints.clear(CHECKPOINTS, accelerator)
        return TrainingState()
    directory, saved = resumed
    accelerator.load_state(str(directory))
    log.info("train: resuming from %s (step %d)", directory, saved["step"])
    return TrainingState(**{key: saved[key] for key in TrainingState.__dataclass_fields__})


def summarise(
    params: Params,
    model: torch.nn.Module,
    data: TrainingData,
    state: TrainingState,
    clock: Throughput,
    accelerator: Accelerator,
    tracker: tracking.Tracker,
    resumed_from: int,
) -> None:
    """Save the kept weights (the best validation loss unless `keep_best` is off) and write the summary."""
    cfg = params.train
    final = accelerator.unwrap_model(model)
    if cfg.keep_best and state.best_step != state.step:
        load_model(final, str(BEST_WEIGHTS))
        log.info("train: keeping the best validation checkpoint, step %d", state.best_step)
    parameters = sum(p.numel() for p in final.parameters())
    trainable = sum(p.numel() for p in final.parameters() if p.requires_grad)
    modeling.save_trained(final, TOKENIZED / "tokenizer", MODEL_DIR, params.peft.merge)  # merging folds LoRA in place
    io.write_csv(TRAIN_CURVE, state.train_curve)
    io.write_csv(VALIDATION_CURVE, state.validation_curve)
    window = [row["train_loss"] for row in state.train_curve[-cfg.eval_every :]]
    cuda = accelerator.device.type == "cuda"
    summary = {
        "steps": state.step,
        "stopped_early": state.step < cfg.max_steps,
        "resumed_from_step": resumed_from,
        "train_loss": round(sum(window) / len(window), 5),
        "validation_loss": state.validation_curve[-1]["validation_loss"],
        "best_validation_loss": round(state.best_loss, 5),
        "best_step": state.best_step,
        "parameters": parameters,
        "trainable_parameters": trainable,
        "batch_shapes": len(data.train_buckets.shapes),
        "device": accelerator.device.type,
        "processes": accelerator.num_processes,
    }
    speed = {
        **clock.rates(accelerator.num_processes),
        "wall_time_s": round(time.perf_counter() - clock.started, 2),
        "validation_and_checkpoint_s": round(clock.paused, 2),
        "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None,
    }
    io.write_json(METRICS, summary)
    io.write_json(SPEED, speed)
    curves = {"train_loss", "validation_loss"}  # already logged step by step
    numbers = {k: v for k, v in {**summary, **speed}.items() if isinstance(v, int | float) and k not in curves}
    tracker.log_metrics(numbers, state.step)
    tracker.log_artifacts([TRAIN_CURVE, VALIDATION_CURVE])
    tracker.tag_model(MODEL_DIR)
    log.info("train: %d steps, validation loss %.4f", state.step, summary["validation_loss"])
