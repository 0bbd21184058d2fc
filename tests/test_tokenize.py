"""The tokenize stage drops over-long pairs instead of teaching truncated endings, and counts them."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import ByT5Tokenizer

from unleet import inputs
from unleet.errors import UnleetError
from unleet.inputs import InputFormat
from unleet.lexicon import Normaliser
from unleet.params import TokenizerParams
from unleet.stages.tokenize import encode


def test_over_long_pairs_are_dropped_and_counted() -> None:
    tokenizer = ByT5Tokenizer()  # one token per byte, plus </s>
    rows = [
        {"source": "gg", "target": "Good game.", "intensity": "light"},  # 3 and 11 tokens: fits
        {"source": "gg", "target": "Good game, well played.", "intensity": "light"},  # target of 24 tokens
        {"source": "g" * 30, "target": "Good game.", "intensity": "heavy"},  # source of 31 tokens
    ]
    dataset, stats = encode(rows, tokenizer, TokenizerParams(kind="byte", max_source_length=16, max_target_length=16))
    assert stats["examples"] == 1 and stats["dropped_too_long"] == 2
    assert dataset["labels"] == [tokenizer(text_target="Good game.")["input_ids"]]
    assert dataset["labels"][0][-1] == tokenizer.eos_token_id
    assert stats["target_length"]["max"] == 24  # lengths describe every pair, kept or not
    assert stats["max_target_ratio"] == round(11 / 3, 4)  # of kept pairs only: what decoding may be capped by


def test_lexicon_hint_is_what_the_model_reads_and_travels_with_it(tmp_path: Path) -> None:
    lexicon = Normaliser()
    hinted = InputFormat("lexicon")
    assert hinted.sources(["idk wh4t 2 d0"]) == [f"{lexicon('idk wh4t 2 d0')} ⇐ idk wh4t 2 d0"]
    assert InputFormat().sources(["idk wh4t 2 d0"]) == ["idk wh4t 2 d0"]
    hinted.save(tmp_path)
    assert InputFormat.load(tmp_path) == hinted
    measured = InputFormat("lexicon", max_target_ratio=1.25)
    measured.save(tmp_path)
    assert InputFormat.load(tmp_path) == measured
    assert InputFormat.load(tmp_path / "elsewhere") == InputFormat()  # models saved before hints read plain text
    with pytest.raises(UnleetError, match=r"tokenizer\.hint='thesaurus': unknown, expected one of none, lexicon"):
        InputFormat("thesaurus")


def test_hinted_sources_in_worker_processes_equal_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"c u l8r m8, gg {i}" for i in range(60)]
    alone = InputFormat("lexicon").sources(texts)
    monkeypatch.setattr(inputs, "PARALLEL_FROM", 20)
    monkeypatch.setattr(inputs.os, "sched_getaffinity", lambda pid: {0, 1})
    assert InputFormat("lexicon").sources(texts) == alone
