"""Training throughput of the project's train stage against the seed-style `Seq2SeqTrainer` baseline.

    python benchmarks/train_throughput.py                                  # tiny, small, base
    python benchmarks/train_throughput.py --presets tiny --steps 10        # a quick CPU check
    python benchmarks/train_throughput.py --data path/to/tokenized --batch-tokens 65536 --compile

Both sides train the same preset (built from `conf/model/<preset>.yaml`, same seed) on the same
tokenized split (`data/tokenized/` from `dvc repro` by default) on the same device. The project
side is the real `unleet train` stage in a scratch directory; its `tokens_per_second` leaves out
validation and checkpoints. The baseline is what the seeds ran: `Seq2SeqTrainer`, batch 8 x
gradient accumulation 4, dynamic padding, bf16 on CUDA. Tokens are the non-padding source and
target tokens trained on; MFU is model FLOPs per second over the peak (a measured matmul peak
unless `--peak-tflops` gives one), with FLOPs counted per example from its lengths.
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

from unleet.modeling import build_model  # noqa: E402
from unleet.params import ModelParams  # noqa: E402


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


def project_loop(preset: str, data: Path, steps: int, batch_tokens: int, overrides: list[str]) -> dict[str, Any]:
    """Run `unleet train` on `data` in a scratch directory and return its metrics/train.json."""
    with tempfile.TemporaryDirectory(prefix="unleet-train-bench-") as scratch:
        workdir = Path(scratch)
        (workdir / "conf").symlink_to(ROOT / "conf")
        (workdir / "data").mkdir()
        (workdir / "data/tokenized").symlink_to(data.resolve())
        settings = [
            f"model={preset}",
            f"train.max_steps={steps}",
            f"train.eval_every={steps}",
            f"train.batch_tokens={batch_tokens}",
            "train.checkpoint_every=null",
            "train.keep_best=false",
            "train.sample_translations=0",
            *overrides,
        ]
        env = {**os.environ, "TQDM_DISABLE": "1"}
        for command in (["params", *settings], ["train"]):
            result = subprocess.run(
                [sys.executable, "-m", "unleet.cli", *command], cwd=workdir, env=env, capture_output=True, text=True
            )
            if result.returncode != 0:
                sys.exit(f"unleet {' '.join(command)} failed:\n{result.stderr[-4000:]}")
        return json.loads((workdir / "metrics/train.json").read_text())


class Clock(TrainerCallback):
    """Times the training loop itself, not the Trainer's setup."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started = time.perf_counter()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.seconds = time.perf_counter() - self.started


def seed_baseline(model: PreTrainedModel, tokenizer: Any, train_set: Dataset, steps: int) -> float:
    """Tokens per second of the seeds' Seq2SeqTrainer setup on the same model and data."""
    tokens = 0
    collate = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)

    def counting_collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        nonlocal tokens
        batch = collate(features)
        tokens += int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())
        return batch

    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory(prefix="unleet-trainer-") as output_dir:
        arguments = Seq2SeqTrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=8,
            gradient_accumulation_steps=4,
            learning_rate=2e-3,
            max_steps=steps,
            bf16=cuda,
            use_cpu=not cuda,
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=7,
        )
        clock = Clock()
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
    return tokens / clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "base"])
    parser.add_argument("--data", type=Path, default=ROOT / "data/tokenized", help="a tokenize stage output")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps for each side")
    parser.add_argument("--batch-tokens", type=int, help="project batch budget (default: 65536 on CUDA, 3072 on CPU)")
    parser.add_argument("--compile", action="store_true", help="train.compile=true for the project loop")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak (default: measured matmul)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for the project loop")
    args = parser.parse_args()

    if not (args.data / "train").is_dir():
        sys.exit(f"{args.data}/train: not found; run `dvc repro tokenize` (or `dvc pull`) first, or pass --data")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch_tokens = args.batch_tokens or (65536 if device.type == "cuda" else 3072)
    overrides = [*args.overrides, *(["train.compile=true"] if args.compile else [])]
    peak = args.peak_tflops or measured_peak_tflops(device)
    tokenizer = AutoTokenizer.from_pretrained(args.data / "tokenizer")
    train_set = load_from_disk(str(args.data / "train")).remove_columns("intensity")
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    source = "given" if args.peak_tflops else "measured matmul, " + ("bf16" if device.type == "cuda" else "fp32")
    print(f"device: {name}; peak {peak:.2f} TFLOPS ({source})")
    print(f"data: {args.data}/train, {len(train_set)} examples; {args.steps} steps each; batch_tokens {batch_tokens}")
    print(f"{'preset':<7}{'params':>9}{'ours tok/s':>13}{'ours MFU':>10}{'seed tok/s':>12}{'seed MFU':>10}{'ratio':>8}")
    for preset in args.presets:
        model_params = ModelParams(**OmegaConf.to_container(OmegaConf.load(ROOT / f"conf/model/{preset}.yaml")))
        torch.manual_seed(7)
        model = build_model(model_params, tokenizer)
        flops_per_token = training_flops_per_token(model, train_set)
        ours = project_loop(preset, args.data, args.steps, batch_tokens, overrides)["tokens_per_second"]
        seed = seed_baseline(model, tokenizer, train_set, args.steps)
        mfu = [rate * flops_per_token / (peak * 1e12) for rate in (ours, seed)]
        print(
            f"{preset:<7}{sum(p.numel() for p in model.parameters()) / 1e6:>8.1f}M{ours:>13,.0f}{mfu[0]:>10.2%}"
            f"{seed:>12,.0f}{mfu[1]:>10.2%}{ours / seed:>7.1f}x",
            flush=True,
        )
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
