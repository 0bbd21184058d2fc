"""Training checkpoints that survive a crash and a DVC rerun: written whole or not at all.

A checkpoint is accelerate's full state (model, optimizer, scheduler, every process's RNG) plus
`trainer_state.json` (step, data position, curves, best loss, and the run signature). It is
written under a temporary name and renamed into place, so a kill mid-write leaves the previous
checkpoint intact. A checkpoint is resumed only when its signature (params and data) matches the
current run's; otherwise the directory is cleared, since its state belongs to another run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from unleet import io

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"


def signature(*parts: Any) -> str:
    """A short hash of everything that must match for a checkpoint to be resumable."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


def code_digest(*modules: Any) -> str:
    """A hash of the training code: a checkpoint written by other code must not be resumed."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def _complete(root: Path) -> list[Path]:
    return sorted(path for path in root.glob("step-*") if (path / STATE_FILE).is_file())


def latest(root: Path, run_signature: str) -> tuple[Path, dict[str, Any]] | None:
    """The newest complete checkpoint of this run, or None (clearing another run's checkpoints)."""
    found = _complete(root)
    if not found:
        return None
    state = json.loads((found[-1] / STATE_FILE).read_text())
    if state.get("signature") != run_signature:
        log.info("%s holds checkpoints of another run (params, data or code changed): starting fresh", root)
        return None
    return found[-1], state


def clear(root: Path, accelerator: Accelerator) -> None:
    if accelerator.is_main_process and root.exists():
        shutil.rmtree(root)
    accelerator.wait_for_everyone()


def save(root: Path, accelerator: Accelerator, state: dict[str, Any], keep: int) -> Path:
    """Write a checkpoint atomically on every process's behalf; keep only the newest `keep`."""
    final = root / f"step-{state['step']:08d}"
    staging = root / f".{final.name}.partial"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        io.write_json(staging / STATE_FILE, state)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        for old in _complete(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final
