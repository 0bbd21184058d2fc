"""train: fit the encoder-decoder on `data/tokenized/` and save it to `models/trained/`.

One loop, top to bottom: take the next token-budget batch, step, log the loss; every
`eval_every` steps score the validation split (and decode a few examples); every
`checkpoint_every` steps write a resumable checkpoint. accelerate places model and data, so the
same stage runs on CPU (fp32), one GPU (bf16 autocast) or many (`accelerate launch`, DDP).
A run killed midway resumes from its last checkpoint and ends with the same weights.
"""

from __future__ import annotations

import logging
import math
import sys
import time
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
from transformers import AutoTokenizer, DataCollatorForSeq2Seq, get_linear_schedule_with_warmup

from unleet import batching, checkpoints, io, modeling, tracking
from unleet.errors import UnleetError
from unleet.params import Params

log = logging.getLogger(__name__)

TOKENIZED = Path("data/tokenized")
MODEL_DIR = Path("models/trained")
CHECKPOINTS = Path("models/checkpoints")
BEST_WEIGHTS = CHECKPOINTS / "best.safetensors"
METRICS = Path("metrics/train.json")
TRAIN_CURVE = Path("metrics/train_curve.csv")
VALIDATION_CURVE = Path("metrics/validation_curve.csv")


def batches(dataset: Dataset, plan: list[list[int]], collate: Any, workers: int, pin: bool) -> DataLoader:
    """A loader over planned batches; worker processes collate ahead of the training step.

    It gets a generator of its own: a DataLoader otherwise draws its seed from the global RNG
    each time it is iterated, which would shift dropout after a resume.
    """
    return DataLoader(
        dataset,
        batch_sampler=plan,
        collate_fn=collate,
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=4 if workers else None,
        generator=torch.Generator(),
    )


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


def main(params: Params) -> None:
    cuda = torch.cuda.is_available()
    accelerator = Accelerator(cpu=not cuda, mixed_precision="bf16" if cuda else "no")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    set_seed(params.train.seed)
    with tracking.run("train", params, active=accelerator.is_main_process) as tracker:
        fit(params, accelerator, tracker)


def fit(params: Params, accelerator: Accelerator, tracker: tracking.Tracker) -> None:
    cfg = params.train
    cuda = accelerator.device.type == "cuda"

    tokenizer = AutoTokenizer.from_pretrained(TOKENIZED / "tokenizer")
    train_set = load_from_disk(str(TOKENIZED / "train")).remove_columns("intensity")
    validation_set = load_from_disk(str(TOKENIZED / "validation"))
    sample_inputs = tokenizer.batch_decode(
        validation_set["input_ids"][: cfg.sample_translations], skip_special_tokens=True
    )
    validation_set = validation_set.remove_columns("intensity")
    collate = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, pad_to_multiple_of=cfg.pad_multiple)
    plan = batching.TokenBudgetBatches(*lengths(train_set), cfg.batch_tokens, cfg.pad_multiple, cfg.seed)
    validation_plan = batching.TokenBudgetBatches(
        *lengths(validation_set), cfg.batch_tokens, cfg.pad_multiple, cfg.seed
    )
    rank, world = accelerator.process_index, accelerator.num_processes

    if params.peft.method != "none" and params.model.preset != "pretrained":
        raise UnleetError(f"peft={params.peft.method} adapts a pretrained model: set model=pretrained and model.path")
    model = modeling.with_adapter(modeling.build_model(params.model, tokenizer), params.peft)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay, fused=cuda
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    forward = torch.compile(model, dynamic=False) if cfg.compile else model

    code = checkpoints.code_digest(sys.modules[__name__], modeling, batching, checkpoints)
    run = checkpoints.signature(params.model, params.peft, cfg, train_set._fingerprint, world, code)
    step, position = 0, batching.Position()
    train_curve: list[dict[str, Any]] = []
    validation_curve: list[dict[str, Any]] = []
    best = {"loss": math.inf, "step": 0}
    resumed = checkpoints.latest(CHECKPOINTS, run)
    if resumed is None:
        checkpoints.clear(CHECKPOINTS, accelerator)
    else:
        directory, state = resumed
        accelerator.load_state(str(directory))
        step, position = state["step"], batching.Position(**state["position"])
        train_curve, validation_curve, best = state["train_curve"], state["validation_curve"], state["best"]
        log.info("train: resuming from %s (step %d)", directory, step)
    resumed_from = step

    tokens = padded_tokens = 0
    unread_losses: list[tuple[int, torch.Tensor, float]] = []
    stale_evaluations = 0
    paused = 0.0  # seconds in validation and checkpoints, kept out of tokens_per_second
    started = time.perf_counter()
    model.train()
    progress = tqdm(
        total=cfg.max_steps, initial=step, desc="train", unit="step", disable=not accelerator.is_main_process
    )
    while step < cfg.max_steps:
        epoch_plan = plan.shard(position.epoch, rank, world)[position.batch :]
        for batch in batches(train_set, epoch_plan, collate, cfg.loader_workers, cuda):
            tokens += int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())  # on the CPU batch
            padded_tokens += batch["input_ids"].numel() + batch["labels"].numel()
            batch = {key: value.to(accelerator.device, non_blocking=True) for key, value in batch.items()}
            with accelerator.autocast():
                loss = forward(**batch).loss
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            position = batching.Position(position.epoch, position.batch + 1)
            unread_losses.append((step, loss.detach(), scheduler.get_last_lr()[0]))  # read in bulk: no sync per step
            progress.update()

            pause_started = time.perf_counter()
            evaluating = step % cfg.eval_every == 0 or step == cfg.max_steps
            if evaluating or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
                read_losses(unread_losses, train_curve)
            if evaluating:
                # The main process scores the whole (small) split; every process needs the result.
                loss_now = [math.nan]
                if accelerator.is_main_process:
                    loader = batches(validation_set, validation_plan.epoch(0), collate, 0, cuda)
                    with accelerator.autocast():
                        loss_now = [validation_loss(accelerator.unwrap_model(model), loader, accelerator.device)]
                loss_now = broadcast_object_list(loss_now)[0]
                row: dict[str, Any] = {"step": step, "validation_loss": round(loss_now, 5)}
                if accelerator.is_main_process and sample_inputs:
                    row["samples"] = sample_translations(
                        accelerator.unwrap_model(model), tokenizer, sample_inputs, accelerator.device
                    )
                validation_curve.append(row)
                log_curves(tracker, train_curve, validation_curve)
                progress.set_postfix(train=f"{train_curve[-1]['train_loss']:.3f}", validation=f"{loss_now:.3f}")
                if loss_now < best["loss"]:
                    best, stale_evaluations = {"loss": loss_now, "step": step}, 0
                    if cfg.keep_best and accelerator.is_main_process:
                        with io.atomic_path(BEST_WEIGHTS) as staging:
                            save_model(accelerator.unwrap_model(model), str(staging))
                else:
                    stale_evaluations += 1
            stop_early = bool(cfg.patience) and stale_evaluations >= cfg.patience
            if cfg.checkpoint_every and (step % cfg.checkpoint_every == 0 or step == cfg.max_steps or stop_early):
                state = {
                    "signature": run,
                    "step": step,
                    "position": vars(position),
                    "best": best,
                    "train_curve": train_curve,
                    "validation_curve": validation_curve,
                }
                checkpoints.save(CHECKPOINTS, accelerator, state, cfg.keep_checkpoints)
            paused += time.perf_counter() - pause_started
            if step >= cfg.max_steps or stop_early:
                break
        else:
            position = batching.Position(position.epoch + 1, 0)
            continue
        break
    progress.close()
    read_losses(unread_losses, train_curve)
    wall = time.perf_counter() - started

    if not accelerator.is_main_process:
        return
    final = accelerator.unwrap_model(model)
    if cfg.keep_best and best["step"] != step:
        load_model(final, str(BEST_WEIGHTS))
        log.info("train: keeping the best validation checkpoint, step %d", best["step"])
    parameters = sum(p.numel() for p in final.parameters())
    trainable = sum(p.numel() for p in final.parameters() if p.requires_grad)
    modeling.save_trained(final, TOKENIZED / "tokenizer", MODEL_DIR, params.peft.merge)  # merging folds LoRA in place
    window = [row["train_loss"] for row in train_curve[-cfg.eval_every :]]
    io.write_csv(TRAIN_CURVE, train_curve)
    io.write_csv(VALIDATION_CURVE, validation_curve)
    steps_run = step - resumed_from
    summary = {
        "steps": step,
        "stopped_early": step < cfg.max_steps,
        "resumed_from_step": resumed_from,
        "train_loss": round(sum(window) / len(window), 5),
        "validation_loss": validation_curve[-1]["validation_loss"],
        "best_validation_loss": round(best["loss"], 5),
        "best_step": best["step"],
        "parameters": parameters,
        "trainable_parameters": trainable,
        "tokens_per_second": round(tokens * world / (wall - paused), 1) if steps_run else None,
        "padding_share": round(1 - tokens / padded_tokens, 4) if padded_tokens else None,
        "wall_time_s": round(wall, 2),
        "validation_and_checkpoint_s": round(paused, 2),
        "device": accelerator.device.type,
        "processes": world,
        "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None,
    }
    io.write_json(METRICS, summary)
    curves = {"train_loss", "validation_loss"}  # already logged step by step
    tracker.log_metrics({k: v for k, v in summary.items() if isinstance(v, int | float) and k not in curves}, step)
    tracker.log_artifacts([TRAIN_CURVE, VALIDATION_CURVE])
    tracker.tag_model(MODEL_DIR)
    log.info("train: %d steps in %.1fs, validation loss %.4f", step, wall, validation_curve[-1]["validation_loss"])
