"""Each stage in dvc.yaml depends on exactly the code it runs, and dvc.lock matches the committed tree.

The code a stage runs is the closure of its module's imports within `src/unleet` (imports inside
functions included, `if TYPE_CHECKING:` blocks not), plus the resource files those modules name.
Package `__init__` files and the CLI dispatcher (`cli.py`) are left out on purpose: they hold no
stage logic, and listing them would rerun the whole pipeline for a new `unleet decode` flag.
"""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import REPO_ROOT, tool_environment

PACKAGE = REPO_ROOT / "src" / "unleet"
RESOURCES = PACKAGE / "resources"
NOT_FOLLOWED = {"unleet", "unleet.stages", "unleet.cli"}


def module_file(name: str) -> Path | None:
    """The source file of module `unleet.x.y`, or None when `name` is not a module of the package."""
    relative = Path(*name.split(".")[1:])
    for candidate in (PACKAGE / relative.with_suffix(".py"), PACKAGE / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes inside `if TYPE_CHECKING:` blocks, which never run."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    return skipped


def imported_modules(path: Path) -> set[str]:
    """The `unleet` modules that `path` imports anywhere, `from unleet import x` resolved to module `x`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = type_checking_only(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("unleet")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("unleet"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # a submodule, or filtered out below
    return {name for name in found if name not in NOT_FOLLOWED and module_file(name)}


def resources_named(path: Path) -> set[Path]:
    """Resource files whose name appears as a string constant in `path` (how modules locate them)."""
    names = {file.name: file for file in RESOURCES.iterdir() if file.is_file()}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        names[node.value]
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
    }


def code_closure(module: str) -> set[str]:
    """Repository paths of every module (and resource) that running `module` can execute or read."""
    seen: set[str] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending += imported_modules(module_file(name))
    files = {module_file(name) for name in seen}
    files |= {resource for file in list(files) for resource in resources_named(file)}
    return {str(file.relative_to(REPO_ROOT)) for file in files}


def declared_code(stage: dict) -> set[str]:
    """The literal `src/` dependencies a stage declares in dvc.yaml (templated ones like ${path} aside)."""
    return {dep for dep in stage.get("deps", []) if isinstance(dep, str) and dep.startswith("src/")}


STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


def test_closure_follows_imports_through_other_modules() -> None:
    closure = code_closure("unleet.stages.corrupt")
    assert "src/unleet/textmetrics.py" in closure  # corrupt -> cleantext -> textmetrics
    assert "src/unleet/resources/lexicon.tsv" in closure  # named by lexicon.py
    assert "src/unleet/decoder.py" not in code_closure("unleet.stages.scrape")


@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_depends_on_exactly_the_code_it_runs(stage: str) -> None:
    module = STAGES[stage]["cmd"].removeprefix("unleet ")
    needed, declared = code_closure(f"unleet.stages.{module}"), declared_code(STAGES[stage])
    missing, stale = sorted(needed - declared), sorted(declared - needed)
    assert not missing and not stale, (
        f"dvc.yaml stage {stage!r}: missing code deps {missing}, stale code deps {stale}; "
        f"the stage runs exactly: {sorted(needed)}"
    )


def git_tracked() -> set[str]:
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return set(listing.stdout.split("\0"))


def test_lock_params_and_metrics_match_the_committed_tree() -> None:
    """`dvc status` finds no git-tracked dependency, param or metric changed since dvc.lock was written.

    Outputs that live only in DVC's cache (absent from a fresh clone) may be missing: that is not drift.
    Fix a failure by reproducing (`dvc repro`) and committing dvc.lock and metrics/ with the code.
    """
    result = subprocess.run(
        ["dvc", "status", "--json"], cwd=REPO_ROOT, env=tool_environment(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    tracked = git_tracked()
    drift = []
    for stage, entries in json.loads(result.stdout or "{}").items():
        for entry in entries:
            if not isinstance(entry, dict):  # "changed command", "always changed"
                drift.append(f"{stage}: {entry}")
                continue
            for kind, changes in entry.items():
                for path, change in changes.items():
                    if isinstance(change, dict):  # params.yaml: {key: modified|new|deleted}
                        drift += [f"{stage}: param {key} {what}" for key, what in change.items()]
                    elif path in tracked or any(name.startswith(f"{path}/") for name in tracked):
                        drift.append(f"{stage}: {kind} {path} {change}")
    assert not drift, "dvc.lock does not match the committed tree; run `dvc repro` and commit:\n" + "\n".join(drift)
