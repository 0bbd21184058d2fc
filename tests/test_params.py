"""Every config option composes into a valid params.yaml, and bad params fail naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dvc.utils.hydra import compose_and_dump

from unleet import cli, params
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
    overrides = [override, *EXTRA.get(override, [])]
    output = params.compose(overrides, tmp_path / "params.yaml")
    params.load(output)
    compose_and_dump(tmp_path / "dvc.yaml", str(REPO_ROOT / "conf"), None, "config", str(REPO_ROOT), overrides)
    assert output.read_bytes() == (tmp_path / "dvc.yaml").read_bytes(), "differs from what `dvc exp run` composes"
    if group == "experiment":  # a global overlay, not a section of its own
        return
    chosen = yaml.safe_load((REPO_ROOT / "conf" / group / f"{option}.yaml").read_text())
    composed = yaml.safe_load(output.read_text())[group]
    for key, value in chosen.items():
        if key != "defaults" and value != "???":
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
    with pytest.raises(UnleetError, match=r"missing key\(s\) model\.path"):
        params.compose(["model=pretrained"], tmp_path / "params.yaml")
    assert not (tmp_path / "params.yaml").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lrr=1", "train.lrr: unknown key; train has: seed, lr, batch_tokens,"),
        ("+train.lrr=1", "train.lrr: unknown key; train has: seed, lr, batch_tokens,"),
        ("trian.lr=1", "trian: unknown key; params.yaml has: scrape, translate, corrupt,"),
        ("train.lr=notanumber", "key 'train.lr': Value 'notanumber' of type 'str' could not be converted to Float"),
        ("model=huge", "model=huge: unknown option; model has: base, pretrained, small, tiny"),
        ("train.lr", "cannot apply overrides train.lr: Error parsing override 'train.lr'"),
        (
            "corrupt.clean_text.sources={a.txt:{variants:2}}",
            "corrupt.clean_text.sources: a.txt is a new entry of this mapping; write ++corrupt.clean_text.sources=",
        ),
        ("train={lrr:1}", "train.lrr: unknown key; train has: seed, lr, batch_tokens,"),
    ],
    ids=[
        "unknown-key",
        "appended-key",
        "unknown-section",
        "bad-value",
        "unknown-option",
        "unparsable",
        "new-entry",
        "unknown-key-in-dict",
    ],
)
def test_bad_override_is_one_line_and_leaves_params_unchanged(
    override: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "params.yaml"
    output.write_bytes((REPO_ROOT / "params.yaml").read_bytes())
    assert cli.main(["params", override, "--output", str(output)]) == 1
    error = capsys.readouterr().err
    assert error == f"unleet params: error: {error.split('error: ', 1)[1]}" and error.count("\n") == 1, error
    assert message in error and "+train" not in error
    assert output.read_bytes() == (REPO_ROOT / "params.yaml").read_bytes()
    assert not [path for path in tmp_path.iterdir() if path.name != "params.yaml"], "temporary file left behind"
