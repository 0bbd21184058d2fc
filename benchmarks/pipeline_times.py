"""Time each stage of `dvc repro` on a throwaway git copy of this repository.

    python benchmarks/pipeline_times.py                      # the default pipeline
    python benchmarks/pipeline_times.py experiment=smoke     # any Hydra overrides

Each stage runs as `dvc repro --force --single-item <stage>` so the figure includes DVC's own
hashing and caching, as a user's `dvc repro` would; the working tree is never touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
STAGES = ["scrape", "translate", "corrupt", "tokenize", "train", "evaluate"]


def project_files() -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [name for name in listing.split("\0") if name and (REPO_ROOT / name).is_file()]


def run(command: list[str], cwd: Path, env: dict[str, str]) -> None:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides composed into params.yaml")
    args = parser.parse_args()

    bin_dir = Path(sys.executable).parent
    env = dict(
        os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", DVC_NO_ANALYTICS="1", TQDM_DISABLE="1"
    )
    with tempfile.TemporaryDirectory(prefix="unleet-bench-") as scratch:
        root = Path(scratch)
        for name in project_files():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, root / name)
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
