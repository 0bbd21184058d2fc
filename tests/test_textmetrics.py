from __future__ import annotations

import pytest

from unleet import textmetrics


def test_accuracy_ignores_case_punctuation_and_spacing() -> None:
    assert textmetrics.accuracy(["i dont  know"], ["I don't know."]) == 1.0
    assert textmetrics.accuracy(["I do know."], ["I don't know."]) == 0.0


def test_exact_match_is_strict() -> None:
    assert textmetrics.exact_match(["I know", "I know."], ["I know.", "I know."]) == 0.5


def test_edit_distance_and_cer() -> None:
    assert textmetrics.edit_distance("kitten", "sitting") == 3
    assert textmetrics.cer(["abcd"], ["abed"]) == pytest.approx(0.25)


def test_chrf_bounds() -> None:
    assert textmetrics.chrf(["the same sentence"], ["the same sentence"]) == pytest.approx(100)
    assert textmetrics.chrf(["xyz"], ["the same sentence"]) == 0
    partial = textmetrics.chrf(["the same sentense"], ["the same sentence"])
    assert 50 < partial < 100
