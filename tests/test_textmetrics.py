from __future__ import annotations

import json
import math
import random
from collections import Counter

import pytest

from unleet import textmetrics

from .conftest import REPO_ROOT

CHALLENGE = REPO_ROOT / "data/challenge/challenge.jsonl"


def test_accuracy_ignores_case_spacing_and_punctuation_around_words() -> None:
    assert textmetrics.accuracy(["i don't  KNOW"], ["I don't know."]) == 1.0
    assert textmetrics.accuracy(["'Hello,' she said!"], ["Hello she said"]) == 1.0
    assert textmetrics.accuracy(["We\u2019re here"], ["we're here."]) == 1.0  # a curly apostrophe is one


@pytest.mark.parametrize(("prediction", "target"), [("dont", "don't"), ("were", "we're"), ("its", "it's")])
def test_accuracy_keeps_apostrophes_inside_words(prediction: str, target: str) -> None:
    assert textmetrics.accuracy([f"I think {prediction} fine."], [f"I think {target} fine."]) == 0.0
    assert textmetrics.lenient_accuracy([f"I think {prediction} fine."], [f"I think {target} fine."]) == 1.0


def test_accuracy_counts_wrong_words() -> None:
    assert textmetrics.accuracy(["I do know.", "I don't know"], ["I don't know.", "I don't know."]) == 0.5


def test_exact_match_is_strict() -> None:
    assert textmetrics.exact_match(["I know", "I know."], ["I know.", "I know."]) == 0.5


def test_edit_distance_and_cer() -> None:
    assert textmetrics.edit_distance("kitten", "sitting") == 3
    assert textmetrics.edit_distance("", "abc") == textmetrics.edit_distance("abc", "") == 3
    assert textmetrics.cer(["abcd"], ["abed"]) == pytest.approx(0.25)


def levenshtein_table(a: str, b: str) -> int:
    """The textbook dynamic programme, cell by cell: the reference for the bit-parallel one."""
    rows = [[i + j if not i or not j else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            rows[i][j] = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return rows[-1][-1]


def test_edit_distance_matches_the_dynamic_programme() -> None:
    """Random pairs over small alphabets (many repeats, the hard case for bit vectors), lengths
    across the 64-bit word boundary, and near-copies like a decoder's outputs."""
    rng = random.Random(0)
    for _ in range(400):
        alphabet = rng.choice(["ab", "abc", "leet 1337", "abcdefghijklmnopqrstuvwxyz .,'"])
        a = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 140)))
        b = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 140)))
        near = "".join(char for char in a if rng.random() > 0.05) + rng.choice(["", "x", "."])
        for first, second in ((a, b), (b, a), (a, near), (a, a)):
            assert textmetrics.edit_distance(first, second) == levenshtein_table(first, second), (first, second)


def test_chrf_bounds() -> None:
    assert textmetrics.chrf(["the same sentence"], ["the same sentence"]) == pytest.approx(100)
    assert textmetrics.chrf(["xyz"], ["the same sentence"]) == 0
    partial = textmetrics.chrf(["the same sentense"], ["the same sentence"])
    assert 50 < partial < 100


@pytest.mark.parametrize(
    ("source", "prediction", "target", "category"),
    [
        ("idk tbh", "I don't know, to be honest.", "I don't know, to be honest.", "correct"),
        ("idk tbh", "i don't know to be honest", "I don't know, to be honest.", "correct"),
        ("idk tbh", "", "I don't know, to be honest.", "empty"),
        ("idk tbh", "I don't know, to be honets.", "I don't know, to be honest.", "near miss"),
        ("idk tbh", "idk tbh", "I don't know, to be honest.", "copied input"),
        ("idk tbh", "I don't know", "I don't know, to be honest.", "truncated"),
        ("idk tbh", "The weather is nice.", "I don't know, to be honest.", "wrong"),
    ],
)
def test_error_categories(source: str, prediction: str, target: str, category: str) -> None:
    assert textmetrics.error_category(source, prediction, target) == category


def test_challenge_set_covers_every_category() -> None:
    cases = [json.loads(line) for line in CHALLENGE.read_text(encoding="utf-8").splitlines()]
    assert len(cases) >= 150
    assert all(set(case) == {"category", "input", "expected"} and case["input"] and case["expected"] for case in cases)
    inputs = [case["input"] for case in cases]
    assert len(set(inputs)) == len(inputs), "duplicate inputs"
    counts = Counter(case["category"] for case in cases)
    assert set(counts) >= {
        "number substitution",
        "chat abbreviations",
        "gaming",
        "questions",
        "emphasis and repetition",
        "heavy symbol leet",
        "long sentences",
        "numbers that stay numbers",
        "to too two for four",
        "clean text",
    }
    assert min(counts.values()) >= 10
    clean = [case for case in cases if case["category"] == "clean text"]
    assert all(case["input"] == case["expected"] for case in clean)


def test_disagreements_count_only_the_examples_one_system_gets_right() -> None:
    targets = ["I don't know.", "See you later.", "Good game.", "Too late."]
    first = ["i don't know", "see you l8r", "Good game", "2 late"]
    second = ["I dont know.", "See you later.", "good game!", "Two late."]
    first_right, second_right = textmetrics.correct(first, targets), textmetrics.correct(second, targets)
    assert first_right == [True, False, True, False]
    assert second_right == [False, True, True, False]
    assert textmetrics.disagreements(first_right, second_right) == (1, 1)
    assert textmetrics.disagreements(first_right, first_right) == (0, 0)


def test_sign_test_is_the_exact_two_sided_binomial_tail() -> None:
    assert textmetrics.sign_test(0, 0) == 1.0
    assert textmetrics.sign_test(10, 0) == textmetrics.sign_test(0, 10) == 2 / 2**10
    for wins, losses in [(16, 21), (3, 9), (40, 25)]:
        total = wins + losses
        chances = [math.comb(total, k) / 2**total for k in range(total + 1)]
        observed = chances[wins]
        expected = sum(chance for chance in chances if chance <= observed * (1 + 1e-9))
        assert textmetrics.sign_test(wins, losses) == pytest.approx(expected)


@pytest.mark.parametrize("correct, total", [(117, 155), (531, 554), (3, 10)])
def test_wilson_interval_ends_where_the_score_test_just_rejects(correct: int, total: int) -> None:
    low, high = textmetrics.wilson_interval(correct, total)
    share = correct / total
    assert low < share < high
    for end in (low, high):
        assert (share - end) ** 2 == pytest.approx(1.96**2 * end * (1 - end) / total)
    assert textmetrics.wilson_interval(0, 10)[0] == 0.0
    assert textmetrics.wilson_interval(10, 10)[1] == 1.0
