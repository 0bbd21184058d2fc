"""The corrupt stage: seeded, split by source comment, intensity mix, numbers preserved."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from unleet.errors import UnleetError
from unleet.params import CorruptParams, IntensityMix, SplitShares
from unleet.stages import corrupt

SENTENCES = [
    "I don't know what to do, to be honest.",
    "I have 2 cats and 3 dogs at home.",
    "Thanks for the help, see you later.",
    "Are you going to play the new season before the weekend?",
    "That was a good game, well played.",
]


def make_pairs(count: int) -> list[dict[str, str]]:
    return [{"id": f"c{i}", "original": "x", "formal": SENTENCES[i % len(SENTENCES)]} for i in range(count)]


def make_params(**changes: object) -> CorruptParams:
    params = CorruptParams(
        seed=13,
        variants=3,
        intensity_mix=IntensityMix(0.5, 0.3, 0.2),
        preserve_share=0.1,
        include_original=True,
        splits=SplitShares(0.8, 0.1, 0.1),
    )
    for key, value in changes.items():
        setattr(params, key, value)
    return params


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    pairs = make_pairs(60)
    assert corrupt.build_splits(pairs, make_params()) == corrupt.build_splits(pairs, make_params())
    assert corrupt.build_splits(pairs, make_params()) != corrupt.build_splits(pairs, make_params(seed=14))


def test_no_comment_crosses_splits() -> None:
    splits = corrupt.build_splits(make_pairs(200), make_params())
    owners = {name: {row["source_id"] for row in rows} for name, rows in splits.items()}
    assert not owners["train"] & owners["validation"]
    assert not owners["train"] & owners["test"]
    assert not owners["validation"] & owners["test"]
    assert all(len(rows) == 4 * len(owners[name]) for name, rows in splits.items())


def test_adding_comments_keeps_existing_assignments() -> None:
    params = make_params()
    before = {pair["id"]: corrupt.split_of(pair["id"], params) for pair in make_pairs(100)}
    after = {pair["id"]: corrupt.split_of(pair["id"], params) for pair in make_pairs(150)}
    assert all(after[key] == value for key, value in before.items())


def test_intensity_mix_and_preservation_share() -> None:
    splits = corrupt.build_splits(make_pairs(2000), make_params(include_original=False))
    counts = Counter(row["intensity"] for rows in splits.values() for row in rows)
    total = sum(counts.values())
    assert counts["clean"] / total == pytest.approx(0.1, abs=0.02)
    corrupted = total - counts["clean"]
    for name, share in [("light", 0.5), ("medium", 0.3), ("heavy", 0.2)]:
        assert counts[name] / corrupted == pytest.approx(share, abs=0.03)


def test_corruptions_change_text_but_keep_real_numbers() -> None:
    splits = corrupt.build_splits(make_pairs(300), make_params(preserve_share=0.0, include_original=False))
    rows = [row for rows in splits.values() for row in rows]
    assert sum(row["input"] != row["target"] for row in rows) / len(rows) > 0.9
    for row in rows:
        if row["target"].startswith("I have 2 cats"):
            assert re.search(r"\b2\b", row["input"]) and re.search(r"\b3\b", row["input"])
    heavy = " ".join(row["input"] for row in rows if row["intensity"] == "heavy")
    assert any(glyph in heavy for glyph in ("|\\|", "|-|", "|v|", "|\\/|"))
    assert re.search(r"\b(idk|tbh|u|thx|l8r|b4)\b", " ".join(row["input"] for row in rows))


def test_bad_shares_are_named() -> None:
    with pytest.raises(UnleetError, match=r"corrupt\.splits"):
        corrupt.build_splits(make_pairs(10), make_params(splits=SplitShares(0.5, 0.1, 0.1)))


def test_empty_split_is_named() -> None:
    with pytest.raises(UnleetError, match=r"split '(validation|test)' is empty"):
        corrupt.build_splits(make_pairs(3), make_params(splits=SplitShares(0.999, 0.0005, 0.0005)))
