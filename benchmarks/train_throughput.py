"""Steady-state training throughput of the project's train stage, eager and compiled, against the
seed-style `Seq2SeqTrainer` baseline, side by side in one run on one device.

    python benchmarks/train_throughput.py                                  # tiny, small, base
    python benchmarks/train_throughput.py --presets tiny --steps 10 --compile off   # a quick CPU check
    python benchmarks/train_throughput.py --data path/to/tokenized --batch-tokens 65536

Every side trains the same preset (built from `conf/model/<preset>.yaml`, same seed) on the same
tokenized split (`data/tokenized/` from `dvc repro` by default). The project side is the real
`unleet train` stage in a scratch directory; the baseline is what the seeds ran:
`Seq2SeqTrainer`, batch 8 x gradient accumulation 4, dynamic padding, bf16 on CUDA. Each side
runs `--warmup` optimizer steps first (compilation, allocator and cache warm-up) and is timed over
the next `--steps` only, between device syncs. Tokens are the non-padding source and target tokens
trained on; MFU is model FLOPs per second over the peak (a measured matmul peak unless
`--peak-tflops` gives one), with FLOPs counted per example from its lengths; peak memory is the
most the side allocated on the GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, load_from_disk
from omegaconf import OmegaConf
from transformers import (
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    PreTrainedModel,
    PrinterCallback,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    TrainerCallback,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from unleet.batching import LengthBuckets  # noqa: E402
from unleet.modeling import build_model  # noqa: E402
from unleet.params import ModelParams  # noqa: E402
from unleet.params import load as load_params  # noqa: E402
from unleet.stages.train import lengths  # noqa: E402


def measured_peak_tflops(device: torch.device) -> float:
    """Best of a few large matmuls in the precision training uses there (bf16 on CUDA, fp32 on CPU)."""
    size, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, torch.float32)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(4):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - started) / 4)
    return 2 * size**3 / best / 1e12


def training_flops_per_token(model: PreTrainedModel, dataset: Dataset) -> float:
    """Forward + backward FLOPs of one pass over `dataset`, per non-padding token.

    Weights cost 6 FLOPs per parameter per token they act on (encoder weights on source tokens,
    decoder weights and the LM head on target tokens); attention scores and their weighted sums
    cost 12 x length x inner width per token and layer (self-attention, plus cross-attention over
    the source in the decoder). Embedding lookups are free.
    """
    config = model.config
    if config.model_type == "t5":
        encoder_layers, decoder_layers = config.num_layers, config.num_decoder_layers
        inner = config.num_heads * config.d_kv
    else:  # pegasus: heads split d_model
        encoder_layers, decoder_layers, inner = config.encoder_layers, config.decoder_layers, config.d_model
    stacks = model.get_encoder(), model.get_decoder()

    def weights(stack: torch.nn.Module) -> int:
        return sum(p.numel() for name, p in stack.named_parameters() if "embed" not in name)

    encoder, decoder = (weights(stack) for stack in stacks)
    head = model.lm_head.weight.numel()
    flops = tokens = 0
    for source_ids, target_ids in zip(dataset["input_ids"], dataset["labels"], strict=True):
        s, t = len(source_ids), len(target_ids)
        flops += 6 * encoder * s + 12 * encoder_layers * s * s * inner
        flops += 6 * (decoder + head) * t + 12 * decoder_layers * (t * t + t * s) * inner
        tokens += s + t
    return flops / tokens


def project_loop(
    preset: str, data: Path, warmup: int, steps: int, batch_tokens: int, overrides: list[str]
) -> dict[str, Any]:
    """Run `unleet train` on `data` in a scratch directory and return its metrics/speed/train.json, whose
    `steady_tokens_per_second` runs from its first loss read to the end. That read comes after
    `warmup` steps, or later if not every batch shape (each a compilation) has run by then."""
    with tempfile.TemporaryDirectory(prefix="unleet-train-bench-") as scratch:
        workdir = Path(scratch)
        (workdir / "conf").symlink_to(ROOT / "conf")
        (workdir / "data").mkdir()
        (workdir / "data/tokenized").symlink_to(data.resolve())
        settings = ["tracking=off", f"model={preset}", f"train.batch_tokens={batch_tokens}", *overrides]
        unleet(["params", *settings], workdir)
        cfg = load_params(workdir / "params.yaml").train
        dataset = load_from_disk(str(data / "train"))
        plan = LengthBuckets(*lengths(dataset), cfg.batch_tokens, cfg.pad_multiple, cfg.buckets, cfg.seed)
        warmup = max(warmup, plan.batches_until_every_shape())
        settings += [
            f"train.max_steps={warmup + steps}",
            f"train.log_every={warmup}",
            f"train.eval_every={warmup + steps}",
            "train.checkpoint_every=null",
            "train.keep_best=false",
            "train.sample_translations=0",
        ]
        unleet(["params", *settings], workdir)
        unleet(["train"], workdir)
        return {**json.loads((workdir / "metrics/speed/train.json").read_text()), "warmup_steps": warmup}


def unleet(command: list[str], workdir: Path) -> None:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "unleet.cli", *command], cwd=workdir, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"unleet {' '.join(command)} failed:\n{result.stderr[-4000:]}")


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class SteadyClock(TrainerCallback):
    """Times the optimizer steps after `warmup` and counts the tokens collated for them."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.collated_tokens = 0
        self.started: tuple[float, int] | None = None
        self.seconds = self.tokens = 0.0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.warmup:
            synchronize()
            self.started = (time.perf_counter(), self.collated_tokens)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        synchronize()
        started_at, tokens_before = self.started
        self.seconds = time.perf_counter() - started_at
        self.tokens = self.collated_tokens - tokens_before


def seed_baseline(model: PreTrainedModel, tokenizer: Any, train_set: Dataset, warmup: int, steps: int) -> dict:
    """Steady tokens per second and peak GPU memory of the seeds' Seq2SeqTrainer on the same model and data."""
    clock = SteadyClock(warmup)
    collate = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)

    def counting_collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = collate(features)
        clock.collated_tokens += int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())
        return batch

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory(prefix="unleet-trainer-") as output_dir:
        arguments = Seq2SeqTrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=8,
            gradient_accumulation_steps=4,
            learning_rate=2e-3,
            max_steps=warmup + steps,
            bf16=cuda,
            use_cpu=not cuda,
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=7,
        )
        trainer = Seq2SeqTrainer(
            model=model,
            args=arguments,
            train_dataset=train_set,
            data_collator=counting_collate,
            processing_class=tokenizer,
            callbacks=[clock],
        )
        trainer.remove_callback(PrinterCallback)  # keep the table the only output
        trainer.train()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return {"tokens_per_second": clock.tokens / clock.seconds, "peak_gpu_memory_gb": peak, "warmup_steps": warmup}


def print_row(
    preset: str, size: str, side: str, summary: dict, flops_per_token: float, peak: float, seed_rate: float
) -> None:
    rate = summary.get("steady_tokens_per_second") or summary["tokens_per_second"]
    memory = summary["peak_gpu_memory_gb"]
    print(
        f"{preset:<7}{size:>8}  {side:<16}{rate:>12,.0f}{rate * flops_per_token / (peak * 1e12):>8.2%}"
        f"{'-' if memory is None else f'{memory:.2f}':>9}{rate / seed_rate:>8.1f}x{summary['warmup_steps']:>9}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "base"])
    parser.add_argument("--data", type=Path, default=ROOT / "data/tokenized", help="a tokenize stage output")
    parser.add_argument("--warmup", type=int, default=20, help="untimed optimizer steps before the timed ones")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps for each side")
    parser.add_argument("--batch-tokens", type=int, help="project batch budget (default: 65536 on CUDA, 6144 on CPU)")
    parser.add_argument("--compile", choices=["off", "on", "both"], default="both", help="the project loop's runs")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak (default: measured matmul)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for the project loop")
    args = parser.parse_args()

    if not (args.data / "train").is_dir():
        sys.exit(f"{args.data}/train: not found; run `dvc repro tokenize` (or `dvc pull`) first, or pass --data")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch_tokens = args.batch_tokens or (65536 if device.type == "cuda" else 6144)
    compiled = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    peak = args.peak_tflops or measured_peak_tflops(device)
    tokenizer = AutoTokenizer.from_pretrained(args.data / "tokenizer")
    train_set = load_from_disk(str(args.data / "train")).remove_columns("intensity")
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    source = "given" if args.peak_tflops else "measured matmul, " + ("bf16" if device.type == "cuda" else "fp32")
    print(f"device: {name}; peak {peak:.2f} TFLOPS ({source})")
    print(
        f"data: {args.data}/train, {len(train_set)} examples; {args.warmup} warm-up + {args.steps} timed steps "
        f"each; project batch_tokens {batch_tokens}"
    )
    header = f"{'preset':<7}{'params':>8}  {'side':<16}{'tokens/s':>12}{'MFU':>8}{'peak GB':>9}{'vs seed':>9}"
    print(f"{header}{'warm-up':>9}")
    for preset in args.presets:
        model_params = ModelParams(**OmegaConf.to_container(OmegaConf.load(ROOT / f"conf/model/{preset}.yaml")))
        torch.manual_seed(7)
        model = build_model(model_params, tokenizer)
        size = f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M"
        flops_per_token = training_flops_per_token(model, train_set)
        seed = seed_baseline(model, tokenizer, train_set, args.warmup, args.steps)
        print_row(preset, size, "seed Trainer", seed, flops_per_token, peak, seed["tokens_per_second"])
        for compile_on in compiled:
            settings = [*args.overrides, f"train.compile={compile_on}"]
            summary = project_loop(preset, args.data, args.warmup, args.steps, batch_tokens, settings)
            side = "unleet, compiled" if compile_on else "unleet, eager"
            print_row(preset, size, side, summary, flops_per_token, peak, seed["tokens_per_second"])
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
