"""The report's charts read at a glance: every bar carries its value, the loss chart names both curves."""

from __future__ import annotations

import re

from unleet.report import bar_figure, loss_figure, pyplot


def test_every_bar_is_labelled_with_its_value_even_at_zero() -> None:
    series = {"model": [0.0, 0.5], "lexicon baseline": [1.0, 0.25], "input unchanged": [0.125, 0.0]}
    figure = bar_figure("Accuracy per intensity", ["heavy", "light"], series)
    axes = figure.axes[0]
    assert sorted(text.get_text() for text in axes.texts) == sorted(["0.00", "0.50", "1.00", "0.25", "0.12", "0.00"])
    assert axes.get_xlim()[1] > 1  # a label beside a full bar stays inside the chart
    pyplot().close(figure)


def test_loss_chart_has_a_legend_entry_per_curve_and_plain_log_ticks() -> None:
    train = [{"step": str(step), "train_loss": str(5.0 / step)} for step in range(1, 200)]
    validation = [{"step": str(step), "validation_loss": str(6.0 / step)} for step in (50, 100, 150)]
    figure = loss_figure({"workspace": (train, validation)})
    axes = figure.axes[0]
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["workspace training", "workspace validation"]
    figure.canvas.draw()
    ticks = [label.get_text() for label in axes.get_yticklabels() if label.get_text()]
    assert ticks and all(re.fullmatch(r"\d+(\.\d+)?", tick) for tick in ticks), ticks  # 0.05, 0.1, 0.2 … not 10^-1
    pyplot().close(figure)
