"""Every config option composes into a valid params.yaml, and bad params fail naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from unleet import params
from unleet.errors import UnleetError

from .conftest import REPO_ROOT

GROUPS = sorted(path.name for path in (REPO_ROOT / "conf").iterdir() if path.is_dir())
OPTIONS = [(group, option.stem) for group in GROUPS for option in sorted((REPO_ROOT / "conf" / group).glob("*.yaml"))]
EXTRA = {"model=pretrained": ["model.path=/tmp/checkpoint"], "translate=transformers": ["translate.model=/tmp/lm"]}


@pytest.fixture(autouse=True)
def in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)


def test_groups_cover_each_concern() -> None:
    assert {"scrape", "translate", "corrupt", "tokenizer", "model", "train", "evaluate"} <= set(GROUPS)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_validates(group: str, option: str, tmp_path: Path) -> None:
    override = f"{group}={option}"
    output = params.compose([override, *EXTRA.get(override, [])], tmp_path / "params.yaml")
    params.load(output)
    if group == "experiment":  # a global overlay, not a section of its own
        return
    chosen = yaml.safe_load((REPO_ROOT / "conf" / group / f"{option}.yaml").read_text())
    composed = yaml.safe_load(output.read_text())[group]
    for key, value in chosen.items():
        if value != "???":
            assert composed[key] == value, f"{group}.{key}"


def test_committed_params_match_conf(tmp_path: Path) -> None:
    composed = yaml.safe_load(params.compose([], tmp_path / "params.yaml").read_text())
    committed = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert committed == composed, "params.yaml has drifted from conf/: run `unleet params`"


def write_params(tmp_path: Path, edit: callable) -> Path:
    data = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    edit(data)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = write_params(tmp_path, lambda data: data["train"].update(lrr=0.1))
    with pytest.raises(UnleetError, match=r"train\.lrr"):
        params.load(path)


def test_mistyped_value_is_named(tmp_path: Path) -> None:
    path = write_params(tmp_path, lambda data: data["train"].update(lr="fast"))
    with pytest.raises(UnleetError, match=r"train\.lr"):
        params.load(path)


def test_missing_key_is_named(tmp_path: Path) -> None:
    path = write_params(tmp_path, lambda data: data["corrupt"].pop("seed"))
    with pytest.raises(UnleetError, match=r"corrupt\.seed"):
        params.load(path)


def test_pretrained_without_path_is_named(tmp_path: Path) -> None:
    output = params.compose(["model=pretrained"], tmp_path / "params.yaml")
    with pytest.raises(UnleetError, match=r"model\.path"):
        params.load(output)
