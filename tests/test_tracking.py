"""MLflow tracking against a real `mlflow server` on loopback, the default local store, and an outage."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from unleet import params as params_module
from unleet.cli import main as cli

from .conftest import BIN_DIR, clone, free_port, wait_until_serving


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 with its own SQLite store and artifact root; stopped afterwards."""
    store = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = [
        str(BIN_DIR / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination",
        str(store / "artifacts"),
    ]
    log = (store / "server.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{url}/health", server, seconds=120, log=store / "server.log")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def runs_by_stage(client: MlflowClient) -> dict[str, object]:
    experiment = client.get_experiment_by_name("unleet")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    return {run.data.tags["unleet.stage"]: run for run in runs}


def test_train_and_evaluate_log_to_a_server(
    mlflow_server: str, tokenized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(clone(tokenized, tmp_path / "project"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("DVC_EXP_NAME", "tracked-exp")  # what `dvc exp run` sets for its stages
    params_module.compose(
        ["experiment=smoke", "train.max_steps=16", "train.eval_every=8", "tracking.register_model=unleet-test"]
    )
    assert cli(["train"]) == 0
    assert cli(["evaluate"]) == 0
    assert not Path("mlflow.db").exists(), "logged locally although a server was named"

    client = MlflowClient(tracking_uri=mlflow_server)
    runs = runs_by_stage(client)
    train, evaluate = runs["train"], runs["evaluate"]
    lineage = json.loads(Path("models/unleet/lineage.json").read_text())
    for run in (train, evaluate):
        assert run.info.run_name == "tracked-exp" and run.info.status == "FINISHED"
        assert run.data.params["train.lr"] == "0.001" and run.data.params["model.preset"] == "tiny"
        assert run.data.tags["dvc.experiment"] == "tracked-exp"
        assert run.data.tags["model.md5"] == lineage["data"]["models/trained"]["md5"]
        assert run.data.tags["data.data/tokenized"] == lineage["data"]["data/tokenized"]["md5"]

    losses = client.get_metric_history(train.info.run_id, "train_loss")
    assert sorted(metric.step for metric in losses) == list(range(1, 17))
    validation = client.get_metric_history(train.info.run_id, "validation_loss")
    assert [metric.step for metric in validation] == [8, 16]
    assert train.data.metrics["tokens_per_second"] > 0
    assert {artifact.path for artifact in client.list_artifacts(train.info.run_id)} >= {
        "train_curve.csv",
        "validation_curve.csv",
    }

    scores = json.loads(Path("metrics/eval.json").read_text())
    assert evaluate.data.metrics["accuracy"] == scores["accuracy"]
    assert evaluate.data.metrics["baseline_accuracy"] == scores["baseline_accuracy"]
    artifacts = {artifact.path for artifact in client.list_artifacts(evaluate.info.run_id)}
    assert {"lineage.json", "README.md", "eval_intensity.csv", "predictions.jsonl", "model"} <= artifacts
    local = Path(client.download_artifacts(evaluate.info.run_id, "lineage.json", str(tmp_path)))
    assert json.loads(local.read_text()) == lineage
    (version,) = client.search_model_versions("name='unleet-test'")
    assert version.run_id == evaluate.info.run_id


def test_default_store_needs_no_server(tokenized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = clone(tokenized, tmp_path / "project")
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params_module.compose(["experiment=smoke", "train.max_steps=4", "train.eval_every=4"])
    assert cli(["train"]) == 0
    assert cli(["evaluate"]) == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    runs = runs_by_stage(client)
    assert set(runs) == {"train", "evaluate"}
    assert runs["train"].info.run_name.startswith("repro-")  # no DVC experiment: named after the commit
    assert runs["train"].info.artifact_uri.startswith((root / "mlruns").as_uri())
    assert len(client.get_metric_history(runs["train"].info.run_id, "train_loss")) == 4


def test_unreachable_server_is_a_warning_not_a_failure(
    tokenized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(clone(tokenized, tmp_path / "project"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://user:hunter2@127.0.0.1:{free_port()}")
    params_module.compose(["experiment=smoke", "train.max_steps=4", "train.eval_every=4"])
    with caplog.at_level(logging.WARNING, logger="unleet.tracking"):
        assert cli(["train"]) == 0
    assert Path("models/trained/config.json").is_file()
    assert "unreachable" in caplog.text and "this run is not tracked" in caplog.text
    assert "hunter2" not in caplog.text


@pytest.mark.parametrize("failure", ["missing", "broken"])
def test_unimportable_mlflow_is_one_warning_and_the_stage_goes_on(
    failure: str, tokenized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """mlflow not installed (its import fails) or broken (importing it raises): the stage trains untracked."""
    root = clone(tokenized, tmp_path / "project")
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    if failure == "missing":
        for name in [name for name in sys.modules if name == "mlflow" or name.startswith("mlflow.")]:
            monkeypatch.setitem(sys.modules, name, None)  # `import mlflow...` now raises ImportError
    else:
        broken = tmp_path / "broken"
        (broken / "mlflow").mkdir(parents=True)
        (broken / "mlflow/__init__.py").write_text("raise RuntimeError('incompatible protobuf')\n")
        for name in [name for name in sys.modules if name == "mlflow" or name.startswith("mlflow.")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.syspath_prepend(str(broken))
    params_module.compose(["experiment=smoke", "train.max_steps=4", "train.eval_every=4"])
    with caplog.at_level(logging.WARNING, logger="unleet.tracking"):
        assert cli(["train"]) == 0
    assert json.loads(Path("metrics/train.json").read_text())["steps"] == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("unleet")]
    assert len(warnings) == 1 and "MLflow cannot be imported" in warnings[0], warnings
    assert ("incompatible protobuf" in warnings[0]) == (failure == "broken")
    assert not (root / "mlflow.db").exists()
