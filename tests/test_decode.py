"""`unleet decode` through the real CLI (arguments, stdin, a file, bad input) and `unleet.load`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from transformers import ByT5Tokenizer

import unleet

from .conftest import save_tiny_t5, tool_environment

DECODE = [sys.executable, "-m", "unleet.cli", "decode", "--max-new-tokens", "8"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random byte-level T5 with its tokenizer: decoding plumbing needs no trained weights."""
    directory = tmp_path_factory.mktemp("model")
    tokenizer = ByT5Tokenizer()
    save_tiny_t5(directory, len(tokenizer))
    tokenizer.save_pretrained(directory)
    return directory


def decode(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*DECODE, *args], input=stdin, env=tool_environment(), capture_output=True, timeout=300)


def test_arguments_stdin_and_file_give_one_line_per_input(model_dir: Path, tmp_path: Path) -> None:
    expected = unleet.load(model_dir).decode(["idk wh4t 2 d0 tbh", "gg wp"], max_new_tokens=8)

    result = decode("--model", str(model_dir), "idk wh4t 2 d0 tbh")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == expected[:1]

    result = decode("--model", str(model_dir), stdin=b"idk wh4t 2 d0 tbh\n\ngg wp\n")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == [expected[0], "", expected[1]]  # a blank line stays blank

    inputs = tmp_path / "inputs.txt"
    inputs.write_text("gg wp\nidk wh4t 2 d0 tbh")  # no final newline
    result = decode("--model", str(model_dir), "--file", str(inputs))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == expected[::-1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", ": empty, nothing to decode"),
        (b"\n  \n", ": empty, nothing to decode"),
        (b"fine\n\xff\xfe broken\n", ":2: not UTF-8 text (byte 0)"),
    ],
    ids=["empty", "blank", "not-utf8"],
)
def test_bad_input_files_are_named(content: bytes, message: str, model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "inputs.txt"
    path.write_bytes(content)
    result = decode("--model", str(model_dir), "--file", str(path))
    assert result.returncode == 1 and result.stdout == b""
    assert f"{path}{message}" in result.stderr.decode()


def test_missing_model_and_missing_file_are_named(model_dir: Path, tmp_path: Path) -> None:
    result = decode("--model", str(tmp_path / "nowhere"), "idk")
    assert result.returncode == 1 and f"{tmp_path / 'nowhere'}: no such model directory" in result.stderr.decode()
    result = decode("--model", str(model_dir), "--file", str(tmp_path / "missing.txt"))
    assert result.returncode == 1 and "missing.txt: no such file" in result.stderr.decode()
    result = decode("--model", str(model_dir), stdin=b"\xc3\x28\n")
    assert result.returncode == 1 and "stdin:1: not UTF-8 text" in result.stderr.decode()
