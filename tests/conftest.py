"""Shared fixtures: the repository root, and working copies of it for stage and DVC tests."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = Path(sys.executable).parent


def project_files() -> list[str]:
    """What a fresh clone would hold: tracked files plus untracked ones git does not ignore."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [name for name in listing.split("\0") if name and (REPO_ROOT / name).is_file()]


def copy_project(destination: Path) -> Path:
    for name in project_files():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    return destination


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project as the current directory, for running stages in isolation."""
    copy_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def tool_environment() -> dict[str, str]:
    """Environment for subprocesses: this interpreter's scripts (dvc, unleet) first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        GIT_AUTHOR_NAME="unleet tests",
        GIT_AUTHOR_EMAIL="tests@unleet.invalid",
        GIT_COMMITTER_NAME="unleet tests",
        GIT_COMMITTER_EMAIL="tests@unleet.invalid",
        DVC_NO_ANALYTICS="1",
        TQDM_DISABLE="1",
    )
    return env


@pytest.fixture(scope="session")
def tokenized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy with the smoke pipeline run up to tokenize."""
    root = copy_project(tmp_path_factory.mktemp("tokenized"))
    overrides = ["experiment=smoke", "train.max_steps=16", "train.eval_every=8", "train.checkpoint_every=4"]
    for command in (["params", *overrides], ["scrape"], ["translate"], ["corrupt"], ["tokenize"]):
        result = subprocess.run(
            [sys.executable, "-m", "unleet.cli", *command],
            cwd=root,
            env=tool_environment(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
    return root


def clone(source: Path, destination: Path) -> Path:
    """A copy of a prepared project directory, for a test to change freely."""
    shutil.copytree(source, destination)
    return destination


def save_tiny_t5(directory: Path, vocab_size: int) -> Path:
    """A small random T5 checkpoint standing in for a downloaded pretrained model."""
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=vocab_size,
        d_model=64,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        d_kv=32,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    T5ForConditionalGeneration(config).save_pretrained(directory)
    return directory


class Project:
    """A project directory on which to run real commands (dvc, git, unleet) that must succeed."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env

    def run(self, *args: str, timeout: float = 600) -> str:
        result = subprocess.run(args, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{output}"
        return output


def stages_run(output: str) -> list[str]:
    """The stages a `dvc repro` / `dvc exp run` output says it ran, in order."""
    return re.findall(r"Running stage '(\w+)'", output)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(url: str, server: subprocess.Popen, seconds: float, log: Path | None = None) -> None:
    """Poll `url` until it answers; fail (with the server's log) if the server exits or time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            output = log.read_text()[-3000:] if log else ""
            assert server.poll() is None, f"{url}: server exited\n{output}"
            assert time.monotonic() < deadline, f"{url}: no answer within {seconds} s\n{output}"
            time.sleep(0.3)
