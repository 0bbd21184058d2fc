"""MLflow tracking for train and evaluate that never fails a stage.

Each stage run becomes an MLflow run named after the DVC experiment (`DVC_EXP_NAME`, which
`dvc exp run` sets), holding the flattened params and tagged with the git commit, the experiment
and the DVC hash of every upstream artifact; train and evaluate runs of one model share the
`model.md5` tag. Without `MLFLOW_TRACKING_URI` the store is local: `mlflow.db` and `mlruns/` at
the repository root (`DVC_ROOT`, so queued experiments land there too), both git-ignored.
Any tracking error, an unreachable server included, is one warning; tracking then stops for the
rest of the stage and the stage carries on.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from omegaconf import OmegaConf

from unleet import lineage
from unleet.params import Params

log = logging.getLogger(__name__)

Method = TypeVar("Method", bound=Callable[..., Any])
BATCH = 1000  # MLflow's limit on metrics per log_batch call
PARAM_BATCH = 100


def store_uri() -> tuple[str, str | None]:
    """The tracking URI and, for the default local store, where its artifacts go."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri, None
    root = Path(os.environ.get("DVC_ROOT", ".")).resolve()
    return f"sqlite:///{root / 'mlflow.db'}", (root / "mlruns").as_uri()


def redacted(uri: str) -> str:
    """The URI without any user:password part, safe for a log line."""
    parts = urlsplit(uri)
    return parts._replace(netloc=parts.hostname or "").geturl() if parts.username or parts.password else uri


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections as dotted keys: {"train": {"lr": 0.1}} -> {"train.lr": 0.1}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _safely(method: Method) -> Method:
    """Run a tracking call; on any error warn once and switch tracking off for this stage."""

    @functools.wraps(method)
    def guarded(self: Tracker, *args: Any, **kwargs: Any) -> Any:
        if self.client is None:
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as error:  # any error at all: tracking must never fail a training run
            reason = (str(error).splitlines() or [type(error).__name__])[0]
            log.warning("MLflow tracking at %s stopped: %s", redacted(self.uri), reason)
            self.client = None
            return None

    return guarded  # type: ignore[return-value]


class Tracker:
    """One MLflow run; every method is a no-op once tracking is off or has failed."""

    def __init__(self, stage: str, params: Params) -> None:
        self.stage, self.params = stage, params
        self.uri, self.artifact_root = store_uri()
        self.client: Any = None
        self.run_id: str | None = None
        self.pending: list[Any] = []
        self.data: dict[str, dict[str, str]] | None = None  # DVC hashes of the stage's inputs, once started

    def open(self) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except Exception as error:  # not installed, or broken: tracking must never fail a stage
            log.warning("MLflow cannot be imported (%s: %s); this run is not tracked", type(error).__name__, error)
            return
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")  # an outage costs seconds, not minutes
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        if self.uri.startswith(("http://", "https://")) and not self._reachable():
            return
        self.client = MlflowClient(tracking_uri=self.uri)
        self._start()

    def _reachable(self) -> bool:
        import requests

        try:
            requests.get(self.uri.rstrip("/") + "/health", timeout=5).raise_for_status()
        except requests.RequestException as error:
            log.warning("MLflow server %s unreachable (%s); this run is not tracked", redacted(self.uri), error)
            return False
        return True

    @_safely
    def _start(self) -> None:
        from mlflow.entities import Param, RunTag

        name = self.params.tracking.experiment
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = (
            experiment.experiment_id
            if experiment
            else self.client.create_experiment(name, artifact_location=self.artifact_root)
        )
        git = lineage.git_state()
        experiment_name = os.environ.get("DVC_EXP_NAME")
        tags = {
            "unleet.stage": self.stage,
            "git.commit": git["commit"] or "none",
            "git.dirty": str(git["dirty"]).lower(),
            "dvc.experiment": experiment_name or "none",
        }
        self.data = lineage.data_hashes(upstream_of=self.stage)
        for path, entry in self.data.items():
            tags[f"data.{path}"] = entry["md5"]
        run_name = experiment_name or f"repro-{(git['commit'] or 'untracked')[:7]}"
        run = self.client.create_run(experiment_id, run_name=run_name, tags=tags)
        self.run_id = run.info.run_id
        params = flatten(OmegaConf.to_container(OmegaConf.structured(self.params)))
        items = [Param(key, value if isinstance(value, str) else json.dumps(value)) for key, value in params.items()]
        for start in range(0, len(items), PARAM_BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + PARAM_BATCH])
        self.client.log_batch(self.run_id, tags=[RunTag("mlflow.source.git.commit", tags["git.commit"])])

    def log_metrics(self, values: dict[str, float | None], step: int = 0) -> None:
        """Queue metrics; `flush` sends them in batches (per-step logging stays off the hot path)."""
        if self.client is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(key, float(value), now, step) for key, value in values.items() if value is not None]

    @_safely
    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for start in range(0, len(pending), BATCH):
            self.client.log_batch(self.run_id, metrics=pending[start : start + BATCH])

    @_safely
    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    @_safely
    def tag_model(self, model_dir: Path) -> None:
        """Tag the run with the model's DVC hash: the key that joins its train and evaluate runs."""
        self.client.set_tag(self.run_id, "model.md5", lineage.output_hash(model_dir))

    @_safely
    def log_artifacts(self, paths: list[Path], artifact_path: str | None = None) -> None:
        for path in paths:
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_path)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path), artifact_path)

    @_safely
    def register(self, model_dir: Path, name: str) -> None:
        """Upload the model and make it a new version of registered model `name`."""
        from mlflow.exceptions import MlflowException

        self.client.log_artifacts(self.run_id, str(model_dir), "model")
        try:
            self.client.create_registered_model(name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        source = f"{self.client.get_run(self.run_id).info.artifact_uri}/model"
        version = self.client.create_model_version(name, source, run_id=self.run_id)
        log.info("registered %s version %s", name, version.version)

    @_safely
    def close(self, status: str) -> None:
        self.flush()
        self.client.set_terminated(self.run_id, status=status)


@contextmanager
def run(stage: str, params: Params, active: bool = True) -> Iterator[Tracker]:
    """A tracked run for `stage` (inert when tracking is off or `active` is false), closed as FAILED on error."""
    tracker = Tracker(stage, params)
    if active and params.tracking.enabled:
        tracker.open()
    try:
        yield tracker
    except BaseException:
        tracker.close("FAILED")
        raise
    tracker.close("FINISHED")
