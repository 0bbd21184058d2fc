"""Outputs are replaced atomically; bad JSONL names its file and line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from unleet import io
from unleet.errors import UnleetError


def test_failed_file_write_keeps_old_content_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    io.write_jsonl(target, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("crash midway")

    with pytest.raises(RuntimeError):
        io.write_jsonl(target, rows())
    assert target.read_text() == '{"a": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_failed_directory_write_keeps_old_directory(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with io.atomic_path(target, is_dir=True) as staging:
        (staging / "weights").write_text("v1")
    with pytest.raises(RuntimeError), io.atomic_path(target, is_dir=True) as staging:
        (staging / "weights").write_text("half")
        raise RuntimeError("crash midway")
    assert (target / "weights").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_outputs_honour_the_umask(umask: int, file_mode: int, dir_mode: int, tmp_path: Path) -> None:
    """tempfile makes 0600 files and 0700 directories; a finished output must read like any other file."""
    previous = os.umask(umask)
    try:
        io.write_json(tmp_path / "metrics.json", {"accuracy": 1.0})
        with io.atomic_path(tmp_path / "model", is_dir=True) as staging:
            (staging / "weights").write_text("v1")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == dir_mode
    assert stat.S_IMODE((tmp_path / "model" / "weights").stat().st_mode) == file_mode


def test_broken_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "ok"}\n{"text": broken\n')
    with pytest.raises(UnleetError, match=r"data\.jsonl:2: invalid JSON"):
        list(io.read_jsonl(path))


def test_missing_key_names_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "ok"}\n\n{"body": "no text"}\n')
    with pytest.raises(UnleetError, match=r"data\.jsonl:3: missing key\(s\) text"):
        list(io.read_jsonl(path, required=["text"]))


def test_non_object_line_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(UnleetError, match=r"data\.jsonl:1: expected a JSON object"):
        list(io.read_jsonl(path))
