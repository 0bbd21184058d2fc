"""The corrupt stage: seeded, split by source comment, intensity mix, numbers preserved."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from unleet import cleantext, io
from unleet.cli import main as unleet
from unleet.errors import UnleetError
from unleet.params import CleanTextParams, CleanTextSource, CorruptParams, IntensityMix, SplitShares
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


def clean_text_params(path: str | Path, **changes: object) -> CleanTextParams:
    return CleanTextParams(path=str(path), min_chars=10, max_chars=300, variants=2, **changes)


def make_params(**changes: object) -> CorruptParams:
    params = CorruptParams(
        seed=13,
        variants=3,
        intensity_mix=IntensityMix(0.5, 0.3, 0.2),
        preserve_share=0.1,
        include_original=True,
        splits=SplitShares(0.8, 0.1, 0.1),
        clean_text=clean_text_params("unused"),
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


def test_character_leet_never_writes_a_bare_digit_that_reads_as_another_word() -> None:
    """`a` may become `@` but never a bare `4`, which slang reads as `for`; `for` still becomes `4`."""
    corrupter = corrupt.Corrupter({})
    heavy = corrupt.SETTINGS["heavy"]
    outputs = [corrupter("a cat for a dog", heavy, random.Random(seed)).split() for seed in range(400)]
    firsts, thirds = Counter(words[0] for words in outputs), Counter(words[2] for words in outputs)
    assert "4" not in firsts and firsts["@"] > 0
    assert thirds["4"] > 0


def test_ambiguous_contractions_lose_their_apostrophe_and_the_words_they_collide_with_stay() -> None:
    """`it's` may become `its`, which the lexicon cannot read back; a possessive `its` is left as written."""
    corrupter = corrupt.Corrupter({})
    light = corrupt.SETTINGS["light"]
    outputs = [corrupter("it's late so let's see its end", light, random.Random(seed)) for seed in range(200)]
    assert any(output.startswith("its late") for output in outputs)
    assert any(" lets see" in output for output in outputs)
    assert not any("it's end" in output for output in outputs)


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


def write_corpus(directory: Path) -> Path:
    """A corpus directory as a user would drop it in: text, JSONL in a subfolder, and a README."""
    (directory / "more").mkdir(parents=True)
    (directory / "README.md").write_text("not a corpus file\n")
    (directory / "a.txt").write_text("We should meet at the station at noon.\n\nToo short\nShort.\n")
    rows = [{"text": "I  will be there in ten minutes."}, {"text": "We should meet at the station at noon!"}]
    (directory / "more" / "b.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return directory


def texts_of(sources: list[cleantext.Source]) -> list[str]:
    return [text for source in sources for text in source.texts]


def test_gather_reads_text_and_jsonl_and_drops_short_duplicate_and_held_out(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    params = clean_text_params(corpus)
    sources, counts = cleantext.gather(params, held_out=[], known=[])
    assert texts_of(sources) == ["We should meet at the station at noon.", "I will be there in ten minutes."]
    assert [source.name for source in sources] == ["a.txt", "more/b.jsonl"]
    assert counts == {
        "texts": 2,
        "pairs": 4,
        "skipped_duplicate": 1,
        "skipped_length": 2,
        "sources": {"a.txt": {"texts": 1, "variants": 2}, "more/b.jsonl": {"texts": 1, "variants": 2}},
    }

    sources, counts = cleantext.gather(params, held_out=["i will be there in TEN minutes"], known=[])
    assert texts_of(sources) == ["We should meet at the station at noon."]
    assert counts["skipped_held_out"] == 1


def test_sources_set_a_seeded_sample_and_variants_per_glob(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "big.txt").write_text("".join(f"Big corpus sentence number {i}.\n" for i in range(100)))
    (corpus / "small.txt").write_text("".join(f"Small corpus sentence number {i}.\n" for i in range(5)))
    sources_setting = {"big*": CleanTextSource(limit=10, variants=1), "small.txt": CleanTextSource(variants=4)}
    params = clean_text_params(corpus, sources=sources_setting)
    sources, counts = cleantext.gather(params, held_out=[], known=[], seed=1)
    big, small = sources
    assert (big.name, len(big.texts), big.variants) == ("big*", 10, 1)
    assert (small.name, len(small.texts), small.variants) == ("small.txt", 5, 4)
    assert big.texts != [f"Big corpus sentence number {i}." for i in range(10)], "a sample, not the first lines"
    assert counts["pairs"] == 10 + 20 and counts["skipped_limit"] == 90
    again, _ = cleantext.gather(params, held_out=[], known=[], seed=1)
    other, _ = cleantext.gather(params, held_out=[], known=[], seed=2)
    assert again[0].texts == big.texts != other[0].texts

    params = clean_text_params(corpus, sources={"nothing-*.txt": CleanTextSource(limit=1)})
    with pytest.raises(UnleetError, match=r"corrupt\.clean_text\.sources: nothing-\*\.txt match no file"):
        cleantext.gather(params, [], [])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "ok then"}\n{broken\n', r"b\.jsonl:2: invalid JSON"),
        ('{"body": "x"}\n', r"b\.jsonl:1: no text field 'text'"),
    ],
)
def test_bad_corpus_lines_are_named(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "b.jsonl").write_text(content)
    with pytest.raises(UnleetError, match=message):
        cleantext.gather(clean_text_params(tmp_path / "b.jsonl"), [], [])


@pytest.mark.parametrize("name", ["b.txt", "b.jsonl"])
def test_non_utf8_corpus_lines_are_named(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b'{"text": "fine here"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(UnleetError, match=re.escape(f"{name}:2: not UTF-8 text (byte 13)")):
        cleantext.gather(clean_text_params(tmp_path / name), [], [])


def test_missing_corpus_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(UnleetError, match=r"corrupt\.clean_text\.path=.*nowhere: no such file"):
        cleantext.gather(clean_text_params(tmp_path / "nowhere"), [], [])


def test_dataset_source_through_datasets(tmp_path: Path) -> None:
    """A local dataset directory goes through `datasets.load_dataset`, as a hub id would."""
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    rows = [{"sentence": f"This is clean sentence number {i}."} for i in range(5)]
    (dataset / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    empty = tmp_path / "empty"
    empty.mkdir()
    params = clean_text_params(empty, dataset=str(dataset), dataset_field="sentence", limit=3)
    sources, counts = cleantext.gather(params, held_out=["This is clean sentence number 1."], known=[])
    assert texts_of(sources) == [
        "This is clean sentence number 0.",
        "This is clean sentence number 2.",
        "This is clean sentence number 3.",
    ]
    assert counts == {
        "texts": 3,
        "pairs": 6,
        "skipped_held_out": 1,
        "sources": {"dataset": {"texts": 3, "variants": 2}},
    }
    with pytest.raises(UnleetError, match=r"no column 'text'.*dataset_field.*sentence"):
        cleantext.gather(clean_text_params(empty, dataset=str(dataset)), [], [])
    with pytest.raises(UnleetError, match=r"dataset=.*missing: cannot load"):
        cleantext.gather(clean_text_params(empty, dataset=str(tmp_path / "missing")), [], [])


def test_extra_texts_go_to_train_only() -> None:
    pairs = make_pairs(100)
    extra = [f"Extra clean text number {i} for training." for i in range(30)]
    plain = corrupt.build_splits(pairs, make_params())
    splits = corrupt.build_splits(
        pairs, make_params(), [cleantext.Source("a", extra[:10], 2), cleantext.Source("b", extra[10:], 1)]
    )
    assert splits["validation"] == plain["validation"] and splits["test"] == plain["test"]
    added = [row for row in splits["train"] if row["source_id"].startswith(corrupt.EXTRA_PREFIX)]
    assert len(added) == 2 * 10 + 20 and {row["target"] for row in added} == set(extra)
    assert len(splits["train"]) == len(plain["train"]) + len(added)


def test_worker_processes_give_the_rows_of_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"Extra clean text number {i} to corrupt in a worker." for i in range(90)]
    sources = [cleantext.Source("corpus", texts, 3)]
    alone = corrupt.corrupt_extra(sources, make_params())
    monkeypatch.setattr(corrupt, "MIN_TEXTS_PER_WORKER", 10)
    monkeypatch.setattr(corrupt, "CHUNK_TEXTS", 7)
    monkeypatch.setattr(corrupt.os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert corrupt.corrupt_extra(sources, make_params()) == alone
    assert len(alone) == 270


def test_stage_keeps_evaluation_texts_out_of_extra_text(workdir: Path) -> None:
    """The corrupt stage end to end: a corpus holding test and challenge texts adds only the rest."""
    for command in (["params", "corrupt.clean_text.path=corpus.txt"], ["scrape"], ["translate"]):
        assert unleet(command) == 0
    pairs = list(io.read_jsonl("data/translated/pairs.jsonl"))
    assigned = corrupt.assign(pairs, make_params())
    test_target = next(pair["formal"] for pair in assigned["test"] if 10 <= len(pair["formal"]) <= 300)
    cases = [json.loads(line) for line in Path("data/challenge/challenge.jsonl").read_text().splitlines()]
    challenge = next(case["expected"] for case in cases if len(case["expected"]) >= 10)
    fresh = ["A sentence nobody has written in this project before.", "Another one, also new to the project."]
    Path("corpus.txt").write_text("\n".join([test_target, challenge, *fresh]) + "\n")
    assert unleet(["corrupt"]) == 0

    train = list(io.read_jsonl("data/corrupted/train.jsonl"))
    assert {row["target"] for row in train if row["source_id"].startswith(corrupt.EXTRA_PREFIX)} == set(fresh)
    assert test_target not in {row["target"] for row in train}
    metrics = json.loads(Path("metrics/corrupt.json").read_text())
    assert metrics["clean_text"] == {
        "texts": 2,
        "pairs": 4,
        "skipped_held_out": 2,
        "sources": {"corpus.txt": {"texts": 2, "variants": 2}},
    }


def test_join_makes_longer_texts_of_consecutive_ones_and_refuses_less_than_one(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    lines = [f"Sentence number {i} of the corpus." for i in range(40)]
    corpus.write_text("\n".join(lines) + "\n")
    sources, counts = cleantext.gather(clean_text_params(corpus, join=3), held_out=[], known=[], seed=1)
    texts = sources[0].texts
    assert " ".join(texts) == " ".join(lines), "every line once, in order"
    sizes = [text.count("Sentence") for text in texts]
    assert set(sizes) == {1, 2, 3}
    assert counts["sources"] == {"corpus.txt": {"texts": len(texts), "variants": 2, "lines": 40}}
    assert counts["pairs"] == 2 * len(texts)
    again, _ = cleantext.gather(clean_text_params(corpus, join=3), held_out=[], known=[], seed=1)
    assert again[0].texts == texts

    alone, _ = cleantext.gather(clean_text_params(corpus, sources={"*": CleanTextSource(join=1)}, join=3), [], [])
    assert alone[0].texts == lines
    with pytest.raises(UnleetError, match=r"corrupt\.clean_text\.join: 0 must be at least 1"):
        corrupt.validate(make_params(clean_text=clean_text_params(corpus, join=0)))
    with pytest.raises(UnleetError, match=r"corrupt\.clean_text\.sources\.\*\.join: -1 must be at least 1"):
        corrupt.validate(make_params(clean_text=clean_text_params(corpus, sources={"*": CleanTextSource(join=-1)})))
