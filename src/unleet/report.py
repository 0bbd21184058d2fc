"""`unleet report`: a Markdown and HTML report of a model, or of two DVC revisions side by side.

It reads what `dvc repro` leaves in `metrics/` (from the workspace, or from any git revision or
DVC experiment through DVC's API) and draws its PNG plots with matplotlib: accuracy per
corruption intensity and per challenge category, and the loss curves. The worst failures come
grouped by challenge category and by error category; a two-revision report lists the challenge
cases one revision gets right and the other does not.
"""

from __future__ import annotations

import csv
import html
import io as text_io
import json
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from unleet import io
from unleet.errors import UnleetError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WORKSPACE = "workspace"
FAILURES_PER_GROUP = 3
HEADLINE = [
    ("accuracy", "accuracy"),
    ("lenient_accuracy", "lenient accuracy (apostrophes ignored)"),
    ("exact_match", "exact match"),
    ("cer", "CER"),
    ("chrf", "chrF"),
    ("challenge.accuracy", "challenge accuracy"),
]


class Revision:
    """The pipeline's metrics files as of one revision: the workspace, a git rev or an experiment name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def text(self, path: str) -> str:
        if self.name == WORKSPACE:
            if not Path(path).is_file():
                raise UnleetError(f"{path}: not found; run `dvc repro` first")
            return Path(path).read_text(encoding="utf-8")
        import dvc.api
        from dvc.exceptions import DvcException
        from scmrepo.exceptions import SCMError

        try:
            return dvc.api.read(path, rev=self.name, encoding="utf-8")
        except (DvcException, SCMError, FileNotFoundError) as error:
            raise UnleetError(f"{path} at revision {self.name!r}: cannot read ({error})") from None

    def json(self, path: str) -> dict[str, Any]:
        return json.loads(self.text(path))

    def rows(self, path: str) -> list[dict[str, str]]:
        return list(csv.DictReader(text_io.StringIO(self.text(path))))

    def jsonl(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text(path).splitlines() if line.strip()]


def dotted(tree: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        tree = tree.get(part, {}) if isinstance(tree, dict) else {}
    return tree if not isinstance(tree, dict) else None


def bar_figure(title: str, labels: list[str], series: dict[str, list[float]]) -> Figure:
    """Horizontal grouped bars, one group per label, one colour per series, each bar labelled with its value."""
    height = 0.8 / len(series)
    figure, axes = pyplot().subplots(figsize=(8, 0.5 * len(labels) * len(series) + 1.5))
    for offset, (name, values) in enumerate(series.items()):
        positions = [index + offset * height for index in range(len(labels))]
        bars = axes.barh(positions, values, height=height, label=name)
        axes.bar_label(bars, fmt="%.2f", padding=3, fontsize=8)  # a bar at 0.00 is otherwise invisible
    axes.set_yticks([index + height * (len(series) - 1) / 2 for index in range(len(labels))], labels)
    axes.invert_yaxis()
    axes.set_xlim(0, 1.12)  # room for the label of a bar at 1.00
    axes.set_xticks([0, 0.25, 0.5, 0.75, 1])
    axes.set_xlabel("accuracy")
    axes.set_title(title)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return figure


def loss_figure(curves: dict[str, tuple[list[dict[str, str]], list[dict[str, str]]]]) -> Figure:
    """Training loss (thin line) and validation loss (markers) per revision, on a log scale with plain ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    figure, axes = pyplot().subplots(figsize=(8, 4.5))
    for index, (name, (train, validation)) in enumerate(curves.items()):
        colour = f"C{index}"
        steps, losses = [int(r["step"]) for r in train], [float(r["train_loss"]) for r in train]
        axes.plot(steps, losses, colour, alpha=0.4, lw=1, label=f"{name} training")
        steps, losses = [int(r["step"]) for r in validation], [float(r["validation_loss"]) for r in validation]
        axes.plot(steps, losses, colour, marker="o", label=f"{name} validation")
    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("step")
    axes.set_ylabel("loss (log scale)")
    axes.set_title("Loss per step")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def pyplot() -> ModuleType:
    """matplotlib's pyplot on the file-only backend (no display here, nor on a GPU box)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Figure, path: Path) -> None:
    with io.atomic_path(path) as staging:
        figure.savefig(staging, dpi=120, format="png")
    pyplot().close(figure)


class Document:
    """Blocks rendered twice, as Markdown and as a standalone HTML page."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.markdown: list[str] = [f"# {title}"]
        self.html: list[str] = [f"<h1>{html.escape(title)}</h1>"]

    def heading(self, text: str) -> None:
        self.markdown.append(f"## {text}")
        self.html.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text: str) -> None:
        self.markdown.append(text)
        self.html.append(f"<p>{html.escape(text)}</p>")

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        def cell(value: Any) -> str:
            return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")

        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
        self.markdown.append("\n".join(lines))
        head = "".join(f"<th>{html.escape(name)}</th>" for name in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row) + "</tr>"
            for row in rows
        )
        self.html.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def image(self, name: str, caption: str) -> None:
        self.markdown.append(f"![{caption}]({name})")
        self.html.append(f'<img src="{html.escape(name)}" alt="{html.escape(caption)}">')

    def write(self, directory: Path) -> Path:
        io.write_text(directory / "report.md", "\n\n".join(self.markdown) + "\n")
        style = (
            "body{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
            "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;"
            "text-align:left;vertical-align:top}img{max-width:100%}"
        )
        page = (
            f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
            f"<style>{style}</style></head><body>{''.join(self.html)}</body></html>\n"
        )
        io.write_text(directory / "report.html", page)
        return directory / "report.md"


def grouped(
    revisions: list[Revision], path: str, key: str
) -> tuple[list[str], dict[str, list[float]], list[list[Any]]]:
    """Labels, plot series and table rows of a per-group accuracy table across revisions."""
    tables = {revision.name: {row[key]: row for row in revision.rows(path)} for revision in revisions}
    labels = sorted({label for table in tables.values() for label in table})
    series: dict[str, list[float]] = {}
    for name, table in tables.items():
        series[name if len(revisions) > 1 else "model"] = [float(table.get(g, {}).get("accuracy", 0)) for g in labels]
    first = tables[revisions[0].name]
    series["lexicon baseline"] = [float(first.get(g, {}).get("baseline_accuracy", 0)) for g in labels]
    series["input unchanged"] = [float(first.get(g, {}).get("copy_accuracy", 0)) for g in labels]
    rows = [
        [g, first.get(g, {}).get("examples"), *(values[i] for values in series.values())] for i, g in enumerate(labels)
    ]
    return labels, series, rows


def build(output: Path, names: list[str]) -> Path:
    """Write report.md, report.html and PNGs for one revision, or the difference between two."""
    if len(names) > 2:
        raise UnleetError("report: give at most two revisions")
    revisions = [Revision(name) for name in names or [WORKSPACE]]
    output.mkdir(parents=True, exist_ok=True)
    title = "unleet report: " + " vs ".join(revision.name for revision in revisions)
    document = Document(title)
    metrics = {revision.name: revision.json("metrics/eval.json") for revision in revisions}

    lineage_note = []
    for revision in revisions:
        try:
            record = json.loads(revision.text("models/unleet/lineage.json"))
        except UnleetError:
            continue
        model, train, commit = record["params"]["model"], record["params"]["train"], record["git"]["commit"]
        lineage_note.append(
            f"{revision.name}: commit {commit or 'none'}, experiment {record['experiment'] or 'none'}, "
            f"model={model['preset']}, {train['max_steps']} steps at lr {train['lr']}."
        )
    for line in lineage_note:
        document.paragraph(line)

    document.heading("Metrics")
    header = ["metric", *metrics, *(["change"] if len(revisions) == 2 else [])]
    rows = []
    for key, label in HEADLINE:
        values = [dotted(tree, key) for tree in metrics.values()]
        change = [round(values[1] - values[0], 4) if None not in values else None] if len(values) == 2 else []
        rows.append([label, *values, *change])
    first = next(iter(metrics.values()))
    rows.append(["lexicon baseline accuracy", *[tree.get("baseline_accuracy") for tree in metrics.values()]])
    rows.append(["input unchanged accuracy", *[tree.get("copy_accuracy") for tree in metrics.values()]])
    for label, key in (("lexicon", "baseline_accuracy"), ("input unchanged", "copy_accuracy")):
        rows.append([f"{label}, challenge", *[dotted(tree, f"challenge.{key}") for tree in metrics.values()]])
    document.table(header, rows)
    document.paragraph(f"{first.get('examples')} test examples, {dotted(first, 'challenge.examples')} challenge cases.")

    for path, key, picture, heading in [
        ("metrics/eval_intensity.csv", "intensity", "accuracy_per_intensity.png", "Accuracy per corruption intensity"),
        ("metrics/eval_challenge.csv", "category", "accuracy_per_category.png", "Challenge accuracy per category"),
    ]:
        labels, series, table_rows = grouped(revisions, path, key)
        document.heading(heading)
        save_figure(bar_figure(heading, labels, series), output / picture)
        document.image(picture, heading)
        document.table([key, "examples", *series], table_rows)

    document.heading("Loss curves")
    curves = {
        revision.name: (revision.rows("metrics/train_curve.csv"), revision.rows("metrics/validation_curve.csv"))
        for revision in revisions
    }
    save_figure(loss_figure(curves), output / "loss_curves.png")
    document.image("loss_curves.png", "Loss per step")

    latest = revisions[-1]
    challenge = latest.jsonl("metrics/challenge_predictions.jsonl")
    if len(revisions) == 2:
        before = {case["input"]: case for case in revisions[0].jsonl("metrics/challenge_predictions.jsonl")}
        fixed = [c for c in challenge if c["correct"] and not before.get(c["input"], {}).get("correct", False)]
        broken = [c for c in challenge if not c["correct"] and before.get(c["input"], {}).get("correct", False)]
        for label, cases in (("Challenge cases fixed", fixed), ("Challenge cases broken", broken)):
            document.heading(f"{label} ({len(cases)}) in {latest.name}")
            document.table(
                ["category", "input", "expected", latest.name],
                [[c["category"], c["input"], c["expected"], c["prediction"]] for c in cases],
            )

    document.heading(f"Worst failures by challenge category ({latest.name})")
    failures = [case for case in challenge if not case["correct"]]
    rows = []
    for category in sorted({case["category"] for case in failures}):
        members = [case for case in failures if case["category"] == category]
        members.sort(key=lambda case: -len(case["prediction"]))  # runaway outputs first
        rows += [
            [category, c["input"], c["expected"], c["prediction"], c["baseline"]] for c in members[:FAILURES_PER_GROUP]
        ]
    document.table(["category", "input", "expected", "model", "baseline"], rows)

    document.heading(f"Test-split predictions by error category ({latest.name})")
    samples = latest.jsonl("metrics/predictions.jsonl")
    rows = []
    for category in sorted({sample["category"] for sample in samples}):
        members = [sample for sample in samples if sample["category"] == category][:FAILURES_PER_GROUP]
        rows += [[category, s["intensity"], s["input"], s["target"], s["prediction"]] for s in members]
    document.table(["error category", "intensity", "input", "target", "model"], rows)
    return document.write(output)
