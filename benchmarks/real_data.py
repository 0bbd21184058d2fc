"""Run the whole pipeline on the real Reddit data and print the model next to the lexicon baseline.

    python benchmarks/real_data.py                                   # experiment=reddit, CPU-sized
    python benchmarks/real_data.py model=small train.max_steps=20000 # larger, on a GPU box
    python benchmarks/real_data.py --keep runs/reddit                # keep models, metrics, report

It runs `dvc repro` with `experiment=reddit` in a copy of the project (the working tree is never
touched), the data paths made absolute, then prints accuracy (ignoring case and punctuation) per
intensity of the real-data test split and per challenge category, as Markdown tables, and whether
the quality goal holds: the model beats the baseline at every intensity and scores at least 85%
on the challenge set.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.conftest import copy_project, tool_environment  # noqa: E402  (needs the repository on sys.path)

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "reddit"
CHALLENGE_GOAL = 0.85


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def table(rows: list[dict[str, str]], key: str) -> tuple[list[str], bool]:
    """Markdown rows of model vs baseline per group, and whether the model wins in every group."""
    lines = [f"| {key} | examples | model | lexicon | Δ |", "|---|---:|---:|---:|---:|"]
    wins = True
    for row in rows:
        model, baseline = float(row["accuracy"]), float(row["baseline_accuracy"])
        wins &= model > baseline
        lines.append(f"| {row[key]} | {row['examples']} | {model:.1%} | {baseline:.1%} | {model - baseline:+.1%} |")
    return lines, wins


def summary(root: Path, minutes: float) -> str:
    """The benchmark's printout, from the metrics the run wrote."""
    corrupt = json.loads((root / "metrics/corrupt.json").read_text())
    train = json.loads((root / "metrics/train.json").read_text())
    evaluation = json.loads((root / "metrics/eval.json").read_text())
    challenge = evaluation["challenge"]
    intensity_lines, every_intensity = table(read_csv(root / "metrics/eval_intensity.csv"), "intensity")
    challenge_met = challenge["accuracy"] >= CHALLENGE_GOAL
    category_lines, _ = table(read_csv(root / "metrics/eval_challenge.csv"), "category")
    lines = [
        f"comments per split: train {corrupt['train']['comments']}, validation {corrupt['validation']['comments']}, "
        f"test {corrupt['test']['comments']}; examples: train {corrupt['train']['examples']} "
        f"(extra clean texts: {corrupt['clean_text']['texts']}), test {corrupt['test']['examples']}",
        f"model: {train['parameters'] / 1e6:.1f}M parameters, {train['steps']} steps on {train['device']} "
        f"({train['tokens_per_second']:,.0f} tokens/s), best validation loss {train['best_validation_loss']} "
        f"at step {train['best_step']}; whole run {minutes:.1f} min",
        "",
        f"Real-data test split: model {evaluation['accuracy']:.1%}, lexicon {evaluation['baseline_accuracy']:.1%} "
        f"(CER {evaluation['cer']}, chrF {evaluation['chrf']})",
        *intensity_lines,
        "",
        f"Challenge set: model {challenge['accuracy']:.1%}, lexicon {challenge['baseline_accuracy']:.1%}",
        *category_lines,
        "",
        f"goal, model beats the lexicon at every intensity: {'yes' if every_intensity else 'no'}",
        f"goal, challenge accuracy >= {CHALLENGE_GOAL:.0%}: {'yes' if challenge_met else 'no'}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied after experiment=reddit")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="holds comments.jsonl, translations.jsonl")
    parser.add_argument("--keep", type=Path, help="run in this new directory and keep it (default: a temporary one)")
    args = parser.parse_args()

    data = args.data.resolve()
    missing = [name for name in ("comments.jsonl", "translations.jsonl") if not (data / name).is_file()]
    if missing:
        sys.exit(f"{data}: no {' or '.join(missing)}; pass --data DIR (see ../shared/data/README.md)")
    if args.keep and args.keep.exists():
        sys.exit(f"{args.keep}: already exists; --keep needs a new directory")

    with tempfile.TemporaryDirectory(prefix="unleet-real-") as scratch:
        root = args.keep.resolve() if args.keep else Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        copy_project(root)
        env = tool_environment()
        env.pop("TQDM_DISABLE")  # progress bars on a long run
        subprocess.run(["git", "init", "-q"], cwd=root, check=True)
        overrides = [
            "experiment=reddit",
            f"scrape.path={data / 'comments.jsonl'}",
            f"translate.path={data / 'translations.jsonl'}",
            f"corrupt.clean_text.path={data / 'translations.jsonl'}",
            *args.overrides,
        ]
        subprocess.run(["unleet", "params", *overrides], cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)
        print(f"overrides: {' '.join(overrides)}", flush=True)
        started = time.perf_counter()
        if subprocess.run(["dvc", "repro"], cwd=root, env=env).returncode != 0:
            sys.exit(f"dvc repro failed in {root}")
        print(summary(root, (time.perf_counter() - started) / 60))


if __name__ == "__main__":
    main()
