"""An S3 remote for real: a moto S3 server on 127.0.0.1, the `dvc` CLI, and git clones of one origin.

One clone reproduces and pushes; a fresh clone pulls and finds nothing to do; a third runs
`scripts/box.sh` (the rented-GPU-box path): it fetches only what it needs, reruns nothing that
was pushed, and pushes an experiment back, which the second clone then pulls.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from .conftest import (
    BIN_DIR,
    REPO_ROOT,
    Project,
    copy_project,
    free_port,
    stages_run,
    tool_environment,
    wait_until_serving,
)

pytestmark = pytest.mark.dvc
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "unleet-test", "AWS_SECRET_ACCESS_KEY": "unleet-test-secret"}


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on loopback with an empty `unleet` bucket; stopped when the test ends."""
    port = free_port()
    server = subprocess.Popen(
        [str(BIN_DIR / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(endpoint, server, seconds=60)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **_boto(CREDENTIALS))
        s3.create_bucket(Bucket="unleet")
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)


def _boto(credentials: dict[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in credentials.items()}


def test_push_pull_repro_and_experiments_through_s3(s3_endpoint: str, tmp_path: Path) -> None:
    env = {**tool_environment(), **CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"}
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)

    first = Project(copy_project(tmp_path / "first"), env)
    first.run("git", "init", "-q", "-b", "main")
    first.run("dvc", "remote", "add", "-d", "storage", "s3://unleet/store")
    first.run("dvc", "remote", "modify", "storage", "endpointurl", s3_endpoint)
    first.run("unleet", "params", "experiment=smoke")
    assert stages_run(first.run("dvc", "repro")) == ["scrape", "translate", "corrupt", "tokenize", "train", "evaluate"]
    first.run("git", "add", "-A")
    first.run("git", "commit", "-q", "-m", "smoke pipeline with an S3 remote")
    first.run("git", "remote", "add", "origin", str(origin))
    first.run("git", "push", "-q", "origin", "main")
    first.run("dvc", "push", "--run-cache")
    assert "unleet-test-secret" not in (first.root / ".dvc/config").read_text()

    second = Project(tmp_path / "second", env)
    subprocess.run(["git", "clone", "-q", str(origin), str(second.root)], check=True, env=env)
    second.run("dvc", "pull")
    assert "Data and pipelines are up to date" in second.run("dvc", "status")
    assert stages_run(second.run("dvc", "repro")) == []
    released = json.loads((second.root / "models/unleet/lineage.json").read_text())
    assert released == json.loads((first.root / "models/unleet/lineage.json").read_text())

    third = Project(tmp_path / "third", env)
    subprocess.run(["git", "clone", "-q", str(origin), str(third.root)], check=True, env=env)
    third.run("dvc", "pull", "tokenize")  # only upstream outputs, as a box that will retrain needs
    assert stages_run(third.run("dvc", "repro", "--pull", "--allow-missing")) == []
    assert not (third.root / "models/unleet").exists()  # nothing downloaded that no stage needed
    box = third.run(
        "bash", str(REPO_ROOT / "scripts/box.sh"), "--no-install", "-n", "lr-up", "--branch", "lr-up",
        "--", "-S", "experiment=smoke", "-S", "train.lr=0.004",
    )  # fmt: skip
    assert "pushed experiment lr-up" in box
    assert stages_run(box) == ["train", "evaluate"], box  # only what the new lr touches: nothing pushed reran

    assert "lr-up" in second.run("git", "ls-remote", "origin")  # the branch box.sh pushed
    second.run("dvc", "exp", "pull", "origin", "lr-up")
    second.run("dvc", "exp", "apply", "lr-up")
    assert "Data and pipelines are up to date" in second.run("dvc", "status")
    pulled = json.loads((second.root / "models/unleet/lineage.json").read_text())
    assert pulled["experiment"] == "lr-up" and pulled["params"]["train"]["lr"] == 0.004
    assert pulled["data"]["data/tokenized"] == released["data"]["data/tokenized"]
    assert pulled["rows"] == released["rows"] and set(pulled["rows"]) == {"train", "validation", "test"}


def test_box_script_refuses_an_s3_remote_without_credentials(tmp_path: Path) -> None:
    clone = Project(copy_project(tmp_path / "clone"), {**tool_environment(), "HOME": str(tmp_path)})
    clone.run("git", "init", "-q", "-b", "main")
    clone.run("dvc", "remote", "add", "-d", "storage", "s3://unleet/store")
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts/box.sh"), "--no-install"],
        cwd=clone.root,
        env={key: value for key, value in clone.env.items() if not key.startswith("AWS_")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "remote 'storage' (s3://unleet/store) has no credentials" in result.stderr
