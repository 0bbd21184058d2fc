"""Choose `evaluate.copy_bias` (and `slang_bias`) on held-out data: accuracy per intensity on a grid.

    python benchmarks/copy_bias.py RUN_DIR                    # RUN_DIR: e.g. real_data.py --keep RUN_DIR
    python benchmarks/copy_bias.py RUN_DIR --split test --biases 0 0.5 1 2
    python benchmarks/copy_bias.py RUN_DIR --biases 0.5 --slang-biases 2 4 6

It decodes the split once with the run's trained model (with the run's `evaluate.num_beams`, as
its evaluate stage does, or `--num-beams`), scores the three rerank candidates (its output, the
input unchanged, the lexicon's reading) once, then replays `Decoder.choose` for every copy bias,
alone and with each slang bias, and prints a Markdown table next to the copy and lexicon baselines,
with the first row that passes `--clean-goal` of clean inputs through and the row of best overall
accuracy. Choose on `validation`; report on `test`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))

from unleet import decoder, textmetrics  # noqa: E402  (a checkout need not be installed)
from unleet.errors import UnleetError  # noqa: E402

BIASES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
CLEAN_GOAL = 0.97


def sweep(
    candidates: list[list[str]],
    scores: torch.Tensor,
    targets: list[str],
    groups: list[str],
    biases: tuple[float, ...],
    slang_biases: tuple[float, ...] = (),
) -> dict[str, dict[str, float]]:
    """{row: {group: accuracy}}: the copy and lexicon baselines, then the reranked model at each copy
    bias, alone and with each slang bias."""
    members: dict[str, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
        members["all"].append(index)
    answers = {"copy": candidates[1], "lexicon": candidates[2], "model alone": candidates[0]}
    for bias in biases:
        for slang_bias in (None, *slang_biases):
            row = f"copy_bias {bias:g}" + ("" if slang_bias is None else f", slang_bias {slang_bias:g}")
            best = decoder.picks(scores, candidates, bias, slang_bias)
            answers[row] = [candidates[k][i] for i, k in enumerate(best)]
    return {
        row: {
            group: textmetrics.accuracy([outputs[i] for i in indices], [targets[i] for i in indices])
            for group, indices in sorted(members.items())
        }
        for row, outputs in answers.items()
    }


def choices(table: dict[str, dict[str, float]], clean_goal: float) -> tuple[str | None, str]:
    """The smallest bias row passing `clean_goal` of clean inputs through, and the best row overall."""
    rows = [row for row in table if row.startswith("copy_bias")]
    passing = [row for row in rows if table[row].get("clean", 0.0) >= clean_goal]
    return (passing[0] if passing else None), max(rows, key=lambda row: table[row]["all"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a pipeline checkout with models/unleet and data/corrupted")
    parser.add_argument("--split", default="validation", choices=["validation", "test"])
    parser.add_argument("--biases", type=float, nargs="+", default=BIASES)
    parser.add_argument("--slang-biases", type=float, nargs="*", default=[], help="evaluate.slang_bias values to add")
    parser.add_argument("--clean-goal", type=float, default=CLEAN_GOAL)
    parser.add_argument("--num-beams", type=int, help="beams to decode with (default: the run's evaluate.num_beams)")
    args = parser.parse_args()
    try:  # beams as the run's evaluate stage decoded (its lineage): the bias is chosen on those answers
        model = decoder.load(args.run / "models/unleet", rerank=False, num_beams=args.num_beams)
    except UnleetError as error:
        parser.error(str(error))
    rows = [json.loads(line) for line in (args.run / f"data/corrupted/{args.split}.jsonl").open(encoding="utf-8")]
    texts, targets = [row["input"] for row in rows], [row["target"] for row in rows]
    generated = model.decode(texts, progress=True)
    candidates = model.rivals(texts, generated)
    scores = model.likelihoods(texts, candidates, progress=True)
    intensities = [row["intensity"] for row in rows]
    table = sweep(candidates, scores, targets, intensities, tuple(args.biases), tuple(args.slang_biases))
    groups = list(next(iter(table.values())))
    print(f"{args.split} split, {len(rows)} pairs, {model.num_beams} beam(s): accuracy %\n")
    print("| | " + " | ".join(groups) + " |")
    print("|---|" + "---:|" * len(groups))
    for row, figures in table.items():
        print(f"| {row} | " + " | ".join(f"{100 * figures[group]:.1f}" for group in groups) + " |")
    passing, best = choices(table, args.clean_goal)
    print(f"\nsmallest bias passing {args.clean_goal:.0%} of clean inputs through: {passing or 'none in the grid'}")
    print(f"best overall: {best}")


if __name__ == "__main__":
    main()
