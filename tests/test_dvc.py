"""The real `dvc` CLI on a temporary git copy of the repository, shrunk with `-S experiment=smoke`.

These prove the pipeline's contract: what reruns when which params change, queued Hydra sweeps,
and metrics that `dvc exp show` and `dvc metrics diff` can compare.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

from .conftest import Project, copy_project, stages_run, tool_environment

pytestmark = pytest.mark.dvc
STAGES = ["scrape", "translate", "corrupt", "tokenize", "train", "evaluate"]
SMOKE = ["-S", "experiment=smoke"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A committed copy whose pipeline has been reproduced once with the smoke overlay."""
    root = copy_project(tmp_path_factory.mktemp("repo"))
    repo = Project(root, {**tool_environment(), "PYTHONPATH": str(root / "src")})  # the copy's code, not ours
    repo.run("git", "init", "-q", "-b", "main")
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-q", "-m", "copy")
    output = repo.run("dvc", "exp", "run", *SMOKE)
    assert stages_run(output) == STAGES
    assert "is empty" not in output  # the offline page cache holds its note, so DVC has nothing to warn about
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-q", "-m", "smoke baseline")
    return repo


def test_repeat_repro_is_up_to_date(repo: Project) -> None:
    output = repo.run("dvc", "repro")
    assert stages_run(output) == []
    assert "up to date" in output
    assert "Data and pipelines are up to date" in repo.run("dvc", "status")


def lock_hashes(root: Path) -> dict[str, str]:
    """Every path dvc.lock records, with its md5 (outputs and dependencies alike)."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {
        entry["path"]: entry["md5"]
        for stage in lock["stages"].values()
        for entry in [*stage.get("deps", []), *stage.get("outs", [])]
    }


def test_lineage_hashes_equal_dvc_lock_after_exp_run_and_repro(repo: Project) -> None:
    lineage = json.loads((repo.root / "models/unleet/lineage.json").read_text())
    recorded = lock_hashes(repo.root)
    assert {path: entry["md5"] for path, entry in lineage["data"].items()} == {
        path: recorded[path] for path in lineage["data"]
    }
    assert {"data/raw/comments.jsonl", "data/translated/pairs.jsonl", "data/tokenized", "models/trained"} <= set(
        lineage["data"]
    )
    assert lineage["experiment"] in repo.run("dvc", "exp", "list", "--all-commits", "--name-only").split()
    assert lineage["params"]["train"]["max_steps"] == 12  # the smoke overlay it ran with

    stages = stages_run(repo.run("dvc", "repro", "--force", "--single-item", "evaluate"))
    assert stages == ["evaluate"]
    lineage = json.loads(repo.run("unleet", "lineage"))
    assert lineage["experiment"] is None
    assert lineage["git"] == {"commit": repo.run("git", "rev-parse", "HEAD").strip(), "dirty": False}
    recorded = lock_hashes(repo.root)
    assert all(entry["md5"] == recorded[path] for path, entry in lineage["data"].items())
    assert "Data and pipelines are up to date" in repo.run("dvc", "status")


PLOT_IDS = [
    "Loss per step",
    "Accuracy per intensity",
    "Baseline accuracy per intensity",
    "Copy baseline accuracy per intensity",
    "Errors by category",
]


def test_plots_show_and_diff_render_html(repo: Project) -> None:
    repo.run("dvc", "plots", "show", "-o", "plots-show")
    page = (repo.root / "plots-show/index.html").read_text()
    assert all(plot_id in page for plot_id in PLOT_IDS), page[:2000]
    assert '"step"' in page and '"validation_loss"' in page  # the curves' data is in the page
    tags = re.findall(r"<script[^>]*>", page)
    assert tags and not any("src=" in tag for tag in tags)  # no script from a CDN: the page draws offline
    assert all(f'data-package="{name}@' in page for name in ("vega", "vega-lite", "vega-embed"))
    repo.run("dvc", "plots", "diff", "HEAD~1", "HEAD", "-o", "plots-diff")
    page = (repo.root / "plots-diff/index.html").read_text()
    assert all(plot_id in page for plot_id in PLOT_IDS) and "HEAD~1" in page


def test_unleet_params_writes_what_dvc_exp_run_composed(repo: Project) -> None:
    committed = repo.run("git", "show", "HEAD:params.yaml")  # written by `dvc exp run -S experiment=smoke`
    repo.run("unleet", "params", "experiment=smoke", "--output", "composed.yaml")
    assert (repo.root / "composed.yaml").read_text() == committed
    (repo.root / "composed.yaml").unlink()


def test_editing_a_train_only_module_reruns_train_and_downstream_only(repo: Project) -> None:
    """batching.py is imported by train alone; a change to it must retrain, and nothing before train reruns."""
    module = repo.root / "src/unleet/batching.py"
    source = module.read_text()
    seeding = 'random.Random(f"{self.seed}:{epoch}")'
    assert seeding in source
    module.write_text(source.replace(seeding, 'random.Random(f"{self.seed}:{epoch}:other")'))  # another order
    try:
        assert stages_run(repo.run("dvc", "repro")) == ["train", "evaluate"]
    finally:  # back to the committed baseline (autostage put the new dvc.lock in the index)
        repo.run("git", "reset", "-q", "--hard")
        repo.run("dvc", "checkout", "--force")
    assert "Data and pipelines are up to date" in repo.run("dvc", "status")


def test_lr_change_reruns_only_train_and_evaluate(repo: Project) -> None:
    output = repo.run("dvc", "exp", "run", *SMOKE, "-S", "train.lr=0.002")
    assert stages_run(output) == ["train", "evaluate"]


def test_corrupt_seed_reruns_corrupt_and_downstream(repo: Project) -> None:
    output = repo.run("dvc", "exp", "run", *SMOKE, "-S", "corrupt.seed=99")
    assert stages_run(output) == ["corrupt", "tokenize", "train", "evaluate"]


def test_one_clean_text_source_weight_reruns_corrupt_and_downstream(repo: Project) -> None:
    """One source's limit (its weight in the mix) is a corrupt param: corrupt and what follows rerun, not before."""
    source = "++corrupt.clean_text.sources={wordnet-examples.txt:{limit:%d,variants:1}}"  # ++: a new key in a dict
    used = []
    for limit in (120, 150):
        output = repo.run("dvc", "exp", "run", *SMOKE, "-S", source % limit)
        used.append(json.loads((repo.root / "metrics/corrupt.json").read_text())["clean_text"]["sources"])
    assert stages_run(output) == ["corrupt", "tokenize", "train", "evaluate"]
    first, second = (counts["wordnet-examples.txt"] for counts in used)
    assert first["variants"] == second["variants"] == 1
    assert 100 < first["texts"] <= 120 < second["texts"] <= 150


def test_queued_tokenizer_sweep_and_metrics_diff(repo: Project) -> None:
    repo.run("git", "checkout", "--", ".")
    repo.run("dvc", "exp", "run", *SMOKE, "-S", "tokenizer=byte,sentencepiece", "--queue", "-n", "tok")
    repo.run("dvc", "queue", "start", "--jobs", "1")
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline:
            status = repo.run("dvc", "queue", "status")
            if not re.search(r"\b(Queued|Running)\b", status):
                break
            time.sleep(5)
        else:
            pytest.fail(f"queue did not finish in time:\n{status}")
    finally:
        repo.run("dvc", "queue", "stop", "--kill")
    assert len(re.findall(r"\bSuccess\b", status)) == 2, status

    experiments = json.loads(repo.run("dvc", "exp", "show", "--json"))
    swept = {
        exp["name"]: exp["revs"][0]
        for baseline in experiments
        for exp in baseline.get("experiments") or []
        if exp.get("name") in {"tok-1", "tok-2"}
    }
    kinds = {name: rev["data"]["params"]["params.yaml"]["data"]["tokenizer"]["kind"] for name, rev in swept.items()}
    assert sorted(kinds.values()) == ["byte", "sentencepiece"], experiments
    assert all("accuracy" in rev["data"]["metrics"]["metrics/eval.json"]["data"] for rev in swept.values())

    changed = json.loads(repo.run("dvc", "metrics", "diff", "tok-1", "tok-2", "--all", "--json"))
    assert changed["metrics/tokenize.json"]["vocab_size"]["diff"] != 0
    assert {
        "challenge.accuracy",
        "challenge.categories.gaming",
        "challenge.baseline_accuracy",
        "challenge.copy_accuracy",
        "challenge.copy_categories.gaming",
        "copy_accuracy",
        "copy_intensity.natural",
    } <= set(changed["metrics/eval.json"])


def test_report_compares_two_experiments(repo: Project) -> None:
    """Runs after the sweep above: tok-1 and tok-2 are experiments read through DVC, not the workspace."""
    output = repo.run("unleet", "report", "tok-1", "tok-2", "--output", "reports/sweep")
    assert "wrote reports/sweep/report.md" in output
    report = (repo.root / "reports/sweep/report.md").read_text()
    assert "# unleet report: tok-1 vs tok-2" in report and "| metric | tok-1 | tok-2 | change |" in report
    assert "in tok-2" in report and "experiment tok-2" in report
    for picture in ("accuracy_per_intensity.png", "accuracy_per_category.png", "loss_curves.png"):
        assert (repo.root / "reports/sweep" / picture).read_bytes().startswith(b"\x89PNG"), picture
        assert f"]({picture})" in report
    assert "<table>" in (repo.root / "reports/sweep/report.html").read_text()
