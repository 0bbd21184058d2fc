"""Time each stage of `dvc repro` on a throwaway git copy of this repository.

    python benchmarks/pipeline_times.py                      # the default pipeline
    python benchmarks/pipeline_times.py experiment=smoke     # any Hydra overrides

Each stage runs as `dvc repro --force --single-item <stage>` so the figure includes DVC's own
hashing and caching, as a user's `dvc repro` would; the working tree is never touched.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import copy_project, tool_environment  # what a fresh clone holds: tracked and unignored files

STAGES = ["scrape", "translate", "corrupt", "tokenize", "train", "evaluate"]


def run(command: list[str], cwd: Path, env: dict[str, str]) -> None:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides composed into params.yaml")
    args = parser.parse_args()

    bin_dir = Path(sys.executable).parent
    env = tool_environment()  # this interpreter's dvc and unleet first on PATH
    with tempfile.TemporaryDirectory(prefix="unleet-bench-") as scratch:
        root = Path(scratch)
        copy_project(root)
        run(["git", "init", "-q"], root, env)
        run([str(bin_dir / "unleet"), "params", *args.overrides], root, env)

        print(f"overrides: {' '.join(args.overrides) or '(none)'}; cpus: {os.cpu_count()}")
        total = 0.0
        for stage in STAGES:
            started = time.perf_counter()
            run(["dvc", "repro", "--force", "--single-item", stage], root, env)
            elapsed = time.perf_counter() - started
            total += elapsed
            print(f"{stage:<10} {elapsed:8.1f} s", flush=True)
        print(f"{'total':<10} {total:8.1f} s")

        started = time.perf_counter()
        run(["dvc", "repro"], root, env)
        print(f"{'no-op':<10} {time.perf_counter() - started:8.1f} s  (second `dvc repro`, all up to date)")


if __name__ == "__main__":
    main()
