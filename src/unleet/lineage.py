"""What a model was made from: git commit, DVC experiment, params, data hashes, split sizes, metrics.

`models/unleet/lineage.json` travels with the weights, so a model copied anywhere still names the
exact data versions and settings behind it. Data hashes come from DVC's own hashing of the
workspace, so they equal what `dvc.lock` records whenever the workspace matches it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from unleet import io
from unleet.errors import UnleetError
from unleet.params import Params

LINEAGE_FILE = "lineage.json"
CARD_FILE = "README.md"
DEFINITION = ("src", "conf", "dvc.yaml", "params.yaml", "pyproject.toml")  # what "dirty" looks at, not outputs
CORRUPT_METRICS = Path("metrics/corrupt.json")


def git_state() -> dict[str, Any]:
    """The commit the run started from (an experiment's baseline) and whether code or config differ from it."""
    commit = os.environ.get("DVC_EXP_BASELINE_REV")
    try:
        commit = commit or _git("rev-parse", "HEAD")
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", *DEFINITION))
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()


def data_hashes(upstream_of: str) -> dict[str, dict[str, str]]:
    """DVC's hash of every cached output of the stages `upstream_of` depends on, and of the data they read."""
    import networkx
    from dvc.dependency.param import ParamsDependency
    from dvc.exceptions import DvcException

    hashes: dict[str, dict[str, str]] = {}
    try:
        with _dvc_repo() as repo:
            (target,) = (stage for stage in repo.index.stages if getattr(stage, "name", None) == upstream_of)
            stages = sorted(networkx.descendants(repo.index.graph, target), key=lambda stage: stage.name)
            produced = {out.def_path for stage in stages for out in stage.outs}
            for stage in stages:
                for out in stage.outs:
                    if out.use_cache and not (out.metric or out.plot):
                        hashes[out.def_path] = {"md5": _hash(out), "stage": stage.name}
                for dep in stage.deps:
                    is_source = not isinstance(dep, ParamsDependency) and not dep.def_path.startswith("src/")
                    if is_source and dep.def_path not in produced:
                        hashes[dep.def_path] = {"md5": _hash(dep), "stage": f"{stage.name} (input)"}
    except DvcException as error:
        raise UnleetError(f"lineage: cannot hash the pipeline's data with DVC ({error})") from None
    return dict(sorted(hashes.items()))


def _dvc_repo() -> Any:
    """This DVC project, also where it is a plain copy outside git (as in stage tests)."""
    from dvc.repo import Repo

    return Repo(".", config={"core": {"no_scm": git_state()["commit"] is None}})


def output_hash(path: Path) -> str:
    """DVC's hash of the stage output at `path`, as the next `dvc.lock` will record it."""
    with _dvc_repo() as repo:
        for stage in repo.index.stages:
            for out in stage.outs:
                if Path(out.def_path) == path:
                    return out.get_hash().value
    raise UnleetError(f"{path}: not an output in dvc.yaml")


def _hash(entry: Any) -> str:
    """The workspace's hash; for data a `--allow-missing` run skipped unpulled, the one dvc.lock records."""
    if entry.exists:
        return entry.get_hash().value
    if entry.hash_info and entry.hash_info.value:
        return entry.hash_info.value
    raise UnleetError(f"lineage: {entry.def_path} is neither in the workspace nor in dvc.lock")


def split_rows() -> dict[str, int]:
    """Examples per split, from the corrupt stage's metrics: present even where the splits were not pulled."""
    if not CORRUPT_METRICS.is_file():
        raise UnleetError(f"{CORRUPT_METRICS}: not found; run `dvc repro corrupt` first")
    metrics = json.loads(CORRUPT_METRICS.read_text())
    return {split: metrics[split]["examples"] for split in ("train", "validation", "test")}


def collect(
    params: Params, metrics: dict[str, Any], stage: str, data: dict[str, dict[str, str]] | None = None
) -> dict[str, Any]:
    """The lineage record; `data` takes hashes already computed this run (the tracker's) instead of rehashing."""
    return {
        "git": git_state(),
        "experiment": os.environ.get("DVC_EXP_NAME"),
        "params": OmegaConf.to_container(OmegaConf.structured(params)),
        "data": data if data is not None else data_hashes(upstream_of=stage),
        "rows": split_rows(),
        "metrics": metrics,
    }


def model_card(lineage: dict[str, Any]) -> str:
    """A Hugging Face-style card: front matter, usage, the numbers, and where it came from."""
    params, metrics = lineage["params"], lineage["metrics"]
    challenge = metrics.get("challenge", {})
    model, train = params["model"], params["train"]
    git = lineage["git"]
    source = f"`{git['commit']}`{' (uncommitted changes)' if git['dirty'] else ''}" if git["commit"] else "not in git"
    rows = ", ".join(f"{count} {name}" for name, count in lineage["rows"].items())
    data = "\n".join(f"| `{path}` | {entry['stage']} | `{entry['md5']}` |" for path, entry in lineage["data"].items())
    copy_head = " and a copy head (`unleet.copying`, which `unleet.load` registers)" if model.get("copy") else ""
    return f"""---
library_name: transformers
pipeline_tag: text2text-generation
tags: [unleet, slang, leetspeak, normalisation, dvc]
---

# unleet decoder

Turns slang and leetspeak ("idk wh4t 2 d0 tbh") into plain English. An encoder-decoder
(`model={model["preset"]}`, architecture {model.get("architecture", "t5")}{copy_head},
`peft={params["peft"]["method"]}`,
`tokenizer={params["tokenizer"]["kind"]}`) trained for {train["max_steps"]} steps at lr {train["lr"]}. It reads
the input as `input_format.json` says (with `hint: lexicon`, the lexicon's reading, ` ⇐ `, then the
text); `unleet.load` builds that from plain text:

```python
import unleet

print(unleet.load("models/unleet").decode(["idk wh4t 2 d0 tbh"]))
```

## Evaluation (test split, {metrics.get("examples")} examples)

| metric | model | lexicon baseline | input unchanged |
|---|---|---|---|
| accuracy | {metrics.get("accuracy")} | {metrics.get("baseline_accuracy")} | {metrics.get("copy_accuracy")} |
| chrF | {metrics.get("chrf")} | {metrics.get("baseline_chrf")} | {metrics.get("copy_chrf")} |
| challenge | {challenge.get("accuracy")} | {challenge.get("baseline_accuracy")} | {challenge.get("copy_accuracy")} |
| CER | {metrics.get("cer")} | | |

## Lineage

Built from commit {source}, DVC experiment `{lineage["experiment"] or "none (dvc repro)"}`.
Splits: {rows}. Every parameter is in `lineage.json`; `unleet lineage` prints it.

| data | made by | DVC md5 |
|---|---|---|
{data}
"""


def write(directory: Path, lineage: dict[str, Any]) -> None:
    io.write_json(directory / LINEAGE_FILE, lineage)
    io.write_text(directory / CARD_FILE, model_card(lineage))


def read(directory: Path) -> dict[str, Any]:
    path = directory / LINEAGE_FILE
    if not path.is_file():
        raise UnleetError(f"{path}: not found; `dvc repro evaluate` writes it beside the model")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UnleetError(f"{path}: line {error.lineno}: not valid JSON ({error.msg})") from None
