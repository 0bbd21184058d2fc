"""Atomic file and directory writes, and JSONL reading that names the file and line of bad input.

DVC caches whatever sits at an output path when a stage ends, so every output is written to a
temporary sibling and renamed into place only once it is complete.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from unleet.errors import UnleetError


@contextlib.contextmanager
def atomic_path(path: str | Path, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it onto `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.tmp-"
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    tmp.chmod((0o777 if is_dir else 0o666) & ~_umask())
    try:
        yield tmp
        if is_dir:
            _replace_dir(tmp, target)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def _umask() -> int:
    """The process umask: tempfile creates 0600/0700 paths, but outputs should read like any other file."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace_dir(new: Path, target: Path) -> None:
    """Swap a finished directory into place; the old one is removed only after the swap."""
    if target.is_dir():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if target.exists():
            target.unlink()
        os.replace(new, target)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line; returns the number of rows written."""
    count = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write rows sharing the first row's keys as CSV, the format `dvc plots` reads."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)


def read_jsonl(path: str | Path, required: Iterable[str] = ()) -> Iterator[dict[str, Any]]:
    """Yield objects from a JSONL file; a broken line or a missing key names file and line."""
    required = tuple(required)
    for number, row in numbered_jsonl(path):
        missing = [key for key in required if key not in row]
        if missing:
            raise UnleetError(f"{path}:{number}: missing key(s) {', '.join(missing)}")
        yield row


def numbered_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) from a JSONL file, skipping blank lines; a broken line names file and line."""
    path = Path(path)
    if not path.is_file():
        raise UnleetError(f"{path}: file not found")
    with path.open("rb") as handle:
        for number, line in numbered_lines(handle, path):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise UnleetError(f"{path}:{number}: invalid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise UnleetError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            yield number, row


def numbered_lines(lines: Iterable[bytes], name: str | Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) from raw lines; bytes that are not UTF-8 name the source and line."""
    for number, raw in enumerate(lines, start=1):
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise UnleetError(f"{name}:{number}: not UTF-8 text (byte {error.start})") from None
