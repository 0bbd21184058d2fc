"""Text similarity metrics for evaluation: accuracy, exact match, CER and chrF.

Accuracy compares words: it ignores case, whitespace and the punctuation around words, as the
seed projects' suites did (the decoder is judged on words, not on a full stop it could not have
known about), but keeps apostrophes inside words, because `dont` -> `don't` and `were` -> `we're`
are exactly the edits the decoder exists to make. `lenient_accuracy` drops apostrophes too.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
NOT_WORD = re.compile(r"[^\w\s']", re.UNICODE)
OUTER_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")
PUNCTUATION = re.compile(r"[^\w\s]", re.UNICODE)


def normalise(text: str) -> str:
    """Case-folded words with the punctuation around them dropped; apostrophes inside a word stay."""
    text = NOT_WORD.sub("", text.casefold().translate(APOSTROPHES))
    return " ".join(OUTER_APOSTROPHE.sub("", text).split())


def lenient(text: str) -> str:
    """`normalise`, with apostrophes dropped as well: `dont` counts as `don't`."""
    return " ".join(PUNCTUATION.sub("", text.casefold()).split())


def correct(predictions: list[str], targets: list[str]) -> list[bool]:
    """Per example, whether the prediction matches its target by `accuracy`'s rule."""
    return [normalise(p) == normalise(t) for p, t in zip(predictions, targets, strict=True)]


def accuracy(predictions: list[str], targets: list[str]) -> float:
    return _mean(correct(predictions, targets))


def lenient_accuracy(predictions: list[str], targets: list[str]) -> float:
    return _mean(lenient(p) == lenient(t) for p, t in zip(predictions, targets, strict=True))


def exact_match(predictions: list[str], targets: list[str]) -> float:
    return _mean(p.strip() == t.strip() for p, t in zip(predictions, targets, strict=True))


def disagreements(first: list[bool], second: list[bool]) -> tuple[int, int]:
    """Given two systems' `correct` flags on the same examples, how many only `first` gets right and
    how many only `second` does: the examples that decide which is better (both right or both wrong
    tell nothing)."""
    first_only = sum(a and not b for a, b in zip(first, second, strict=True))
    second_only = sum(b and not a for a, b in zip(first, second, strict=True))
    return first_only, second_only


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test (McNemar's, on `disagreements`): the chance that two equally good
    systems split their disagreements at least this unevenly."""
    total = wins + losses
    tail = sum(math.comb(total, k) for k in range(min(wins, losses) + 1)) / 2**total
    return min(1.0, 2 * tail)


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of an accuracy of `correct` in `total`: how far a small test
    set's figure moves by chance alone."""
    if not total:
        return 0.0, 1.0
    share = correct / total
    centre = (share + z * z / (2 * total)) / (1 + z * z / total)
    spread = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - spread), min(1.0, centre + spread)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance by Myers' bit-parallel algorithm (Hyyrö's form for whole strings): each
    column of the dynamic programme is two bit vectors over `a`, so one pass over `b` costs a few
    integer operations per character instead of a Python loop over every cell."""
    if not a or not b:
        return len(a) + len(b)
    positions: dict[str, int] = {}
    for index, char in enumerate(a):
        positions[char] = positions.get(char, 0) | 1 << index
    full, top = (1 << len(a)) - 1, 1 << (len(a) - 1)
    plus, minus, distance = full, 0, len(a)  # vertical +1 / -1 deltas of the current column
    for char in b:
        equal = positions.get(char, 0)
        vertical = equal | minus
        horizontal = (((equal & plus) + plus) ^ plus) | equal
        rise = minus | ~(horizontal | plus)
        fall = plus & horizontal
        if rise & top:
            distance += 1
        elif fall & top:
            distance -= 1
        rise = (rise << 1) | 1
        fall <<= 1
        plus = (fall | ~(vertical | rise)) & full
        minus = rise & vertical & full
    return distance


def cer(predictions: list[str], targets: list[str]) -> float:
    """Character error rate over the corpus: total edits over total target characters."""
    edits = sum(edit_distance(p, t) for p, t in zip(predictions, targets, strict=True))
    return edits / max(sum(len(t) for t in targets), 1)


def chrf(predictions: list[str], targets: list[str], order: int = 6, beta: float = 2.0) -> float:
    """Corpus chrF on 0-100 as sacrebleu computes it: n-gram precision and recall averaged over orders."""
    matches, predicted, expected = [0] * order, [0] * order, [0] * order
    for prediction, target in zip(predictions, targets, strict=True):
        hyp, ref = prediction.replace(" ", ""), target.replace(" ", "")
        for n in range(1, order + 1):
            hyp_grams = Counter(hyp[i : i + n] for i in range(len(hyp) - n + 1))
            ref_grams = Counter(ref[i : i + n] for i in range(len(ref) - n + 1))
            matches[n - 1] += sum((hyp_grams & ref_grams).values())
            predicted[n - 1] += sum(hyp_grams.values())
            expected[n - 1] += sum(ref_grams.values())
    precision = sum(m / p for m, p in zip(matches, predicted, strict=True) if p) / order
    recall = sum(m / e for m, e in zip(matches, expected, strict=True) if e) / order
    denominator = beta**2 * precision + recall
    return 100 * (1 + beta**2) * precision * recall / denominator if denominator else 0.0


def _mean(flags: Iterable[bool]) -> float:
    values = list(flags)
    return sum(values) / len(values) if values else 0.0


ERROR_CATEGORIES = ("correct", "near miss", "copied input", "truncated", "empty", "wrong")


def error_category(source: str, prediction: str, target: str) -> str:
    """Where a prediction went wrong, coarsely: the first of ERROR_CATEGORIES that fits.

    A near miss is within 10% character error of the target after normalising; a copy repeats
    the input instead of decoding it; a truncation is a strict prefix of the target.
    """
    predicted, wanted = normalise(prediction), normalise(target)
    if predicted == wanted:
        return "correct"
    if not predicted:
        return "empty"
    if edit_distance(predicted, wanted) <= 0.1 * len(wanted):
        return "near miss"
    if predicted == normalise(source):
        return "copied input"
    if wanted.startswith(predicted):
        return "truncated"
    return "wrong"
