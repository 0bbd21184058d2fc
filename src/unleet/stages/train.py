"""train: fit the encoder-decoder on `data/tokenized/` and save it to `models/unleet/`.

One loop, top to bottom: sample a batch, step, log the loss, score the validation split every
`train.eval_every` steps. accelerate places the model and data (CPU here, CUDA with bf16 autocast
where a GPU is present) so the same code runs under `accelerate launch`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import load_from_disk
from torch.utils.data import DataLoader
from tqdm import tqdm
from transformers import AutoTokenizer, DataCollatorForSeq2Seq, get_linear_schedule_with_warmup

from unleet import io
from unleet.modeling import build_model
from unleet.params import Params

log = logging.getLogger(__name__)

TOKENIZED = Path("data/tokenized")
MODEL_DIR = Path("models/unleet")
METRICS = Path("metrics/train.json")
TRAIN_CURVE = Path("metrics/train_curve.csv")
VALIDATION_CURVE = Path("metrics/validation_curve.csv")


def endless(loader: DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    """Batches forever, reshuffled each epoch, so the loop counts steps rather than epochs."""
    while True:
        yield from loader


@torch.no_grad()
def validation_loss(model: torch.nn.Module, loader: DataLoader) -> float:
    """Token-weighted mean loss over the whole validation split."""
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        tokens = int((batch["labels"] != -100).sum())
        total += float(model(**batch).loss) * tokens
        count += tokens
    model.train()
    return total / max(count, 1)


def main(params: Params) -> None:
    cfg = params.train
    set_seed(cfg.seed)
    accelerator = Accelerator(mixed_precision="bf16" if torch.cuda.is_available() else "no")
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZED / "tokenizer")
    model = build_model(params.model, tokenizer)
    collate = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)
    train_set = load_from_disk(str(TOKENIZED / "train")).remove_columns("intensity")
    validation_set = load_from_disk(str(TOKENIZED / "validation")).remove_columns("intensity")
    train_loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        shuffle=True,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    validation_loader = DataLoader(validation_set, batch_size=cfg.batch_size, collate_fn=collate)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=accelerator.device.type == "cuda"
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.max_steps)
    model, optimizer, train_loader, validation_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, validation_loader, scheduler
    )

    train_curve: list[dict[str, float]] = []
    validation_curve: list[dict[str, float]] = []
    batches = endless(train_loader)
    tokens = 0
    started = time.perf_counter()
    model.train()
    progress = tqdm(range(1, cfg.max_steps + 1), desc="train", unit="step", disable=not accelerator.is_main_process)
    for step in progress:
        batch = next(batches)
        loss = model(**batch).loss
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())
        train_curve.append({"step": step, "train_loss": round(loss.item(), 5), "lr": scheduler.get_last_lr()[0]})
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            loss_now = validation_loss(model, validation_loader)
            validation_curve.append({"step": step, "validation_loss": round(loss_now, 5)})
            progress.set_postfix(train=f"{loss.item():.3f}", validation=f"{loss_now:.3f}")
    wall = time.perf_counter() - started

    if not accelerator.is_main_process:
        return
    with io.atomic_path(MODEL_DIR, is_dir=True) as staging:
        accelerator.unwrap_model(model).save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    window = [row["train_loss"] for row in train_curve[-cfg.eval_every :]]
    io.write_csv(TRAIN_CURVE, train_curve)
    io.write_csv(VALIDATION_CURVE, validation_curve)
    io.write_json(
        METRICS,
        {
            "steps": cfg.max_steps,
            "train_loss": round(sum(window) / len(window), 5),
            "validation_loss": validation_curve[-1]["validation_loss"],
            "best_validation_loss": min(row["validation_loss"] for row in validation_curve),
            "parameters": sum(p.numel() for p in accelerator.unwrap_model(model).parameters()),
            "tokens_per_second": round(tokens * accelerator.num_processes / wall, 1),
            "wall_time_s": round(wall, 2),
            "device": accelerator.device.type,
            "validation_perplexity": round(math.exp(min(validation_curve[-1]["validation_loss"], 50)), 3),
        },
    )
    log.info(
        "train: %d steps in %.1fs, validation loss %.4f", cfg.max_steps, wall, validation_curve[-1]["validation_loss"]
    )
