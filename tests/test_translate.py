"""The lexicon normaliser (default backend and baseline) and the pairs backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unleet import params as params_module
from unleet.errors import UnleetError
from unleet.lexicon import Normaliser, abbreviation_expander, load_table
from unleet.stages import translate


@pytest.mark.parametrize(
    ("informal", "formal"),
    [
        ("idk wh4t 2 d0 tbh", "I don't know what to do to be honest."),
        ("i have 2 cats", "I have 2 cats."),
        ("version 2.0 broke my save", "Version 2.0 broke my save."),
        ("this is 4 u", "This is for you."),
        ("me 2", "Me too."),
        ("i got 4 kills in 10 seconds", "I got 4 kills in 10 seconds."),
        ("u r gr8 m8, thx!!!!", "You are great mate, thanks!"),
        ("|-|3ll0 w0rld", "Hello world."),
        ("sooooo goooood", "So good."),
        ("The ending was great.", "The ending was great."),
        ("my 1440p monitor runs at 144hz", "My 1440p monitor runs at 144hz."),  # units are not leet
        ("it was 10GB on win10", "It was 10GB on win10."),
        (
            "my g502 and the 7950xt, call 1800collect",
            "My g502 and the 7950xt, call 1800collect.",
        ),  # digit runs name things
        ("th3 m0v13 w45 b0r1ng", "The movie was boring."),  # short letter-digit words still are
        ("ask /u/pauly1337 on r/l33t, gr8 guy", "Ask /u/pauly1337 on r/l33t, great guy."),  # names are not leet
        ("c https://example.com/l33t", "See https://example.com/l33t."),
    ],
)
def test_lexicon_normaliser(informal: str, formal: str) -> None:
    assert Normaliser()(informal) == formal


def test_lexicon_table_errors_name_the_line(tmp_path: Path) -> None:
    table = tmp_path / "lexicon.tsv"
    table.write_text("slang\tformal\nu\tyou\nbroken line without tab\n")
    with pytest.raises(UnleetError, match=r"lexicon\.tsv:3"):
        load_table(table)
    table.write_bytes(b"slang\tformal\nu\tyou\nn\xe4h\tno\n")
    with pytest.raises(UnleetError, match=r"lexicon\.tsv:3: not UTF-8 text \(byte 1\)"):
        load_table(table)


@pytest.mark.parametrize(
    ("kept", "written_out"),
    [
        ("I'm gonna go, lol.", "I'm going to go, laughing out loud."),
        ("Lol, that's it. OMG it works", "Laughing out loud, that's it. Oh my god it works"),
        ('He said "lol"; IMO he was right.', 'He said "Laughing out loud"; in my opinion he was right.'),
        ("C++ in the U.S. is a lollipop on r/lol", "C++ in the U.S. is a lollipop on r/lol"),
    ],
)
def test_abbreviation_expander_writes_out_whole_words_only(kept: str, written_out: str) -> None:
    table = load_table()
    expand = abbreviation_expander({word: table[word] for word in ["lol", "gonna", "omg", "imo", "c", "u"]})
    assert expand(kept) == written_out


def run_stage(comments: list[dict], backend: params_module.TranslateParams) -> None:
    raw = Path("data/raw/comments.jsonl")
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text("".join(json.dumps(c) + "\n" for c in comments))
    params = params_module.load()
    params.translate = backend
    translate.main(params)


def test_pairs_backend_drops_and_counts_untranslated(workdir: Path) -> None:
    known = workdir / "known.jsonl"
    known.write_text(json.dumps({"original": "idk tbh", "formal": "I don't know, to be honest."}) + "\n")
    run_stage(
        [{"id": "a", "text": "idk tbh"}, {"id": "b", "text": "no translation for me"}],
        params_module.TranslateParams(backend="pairs", path=str(known)),
    )
    rows = [json.loads(line) for line in Path(translate.OUTPUT).read_text().splitlines()]
    assert rows == [{"id": "a", "original": "idk tbh", "formal": "I don't know, to be honest."}]
    assert json.loads(Path(translate.METRICS).read_text())["untranslated"] == 1


def test_pairs_backend_with_no_match_fails_naming_the_file(workdir: Path) -> None:
    known = workdir / "known.jsonl"
    known.write_text(json.dumps({"original": "something else", "formal": "Something else."}) + "\n")
    with pytest.raises(UnleetError, match=r"known\.jsonl"):
        run_stage([{"id": "a", "text": "idk tbh"}], params_module.TranslateParams(backend="pairs", path=str(known)))
    assert not Path(translate.OUTPUT).exists()


def test_translate_expand_writes_out_kept_abbreviations_and_counts_them(workdir: Path) -> None:
    known = workdir / "known.jsonl"
    known.write_text(
        json.dumps({"original": "gonna b l8 lol", "formal": "Gonna be late, lol."})
        + "\n"
        + json.dumps({"original": "idk tbh", "formal": "I don't know, to be honest."})
        + "\n"
    )
    comments = [{"id": "a", "text": "gonna b l8 lol"}, {"id": "b", "text": "idk tbh"}]
    run_stage(comments, params_module.TranslateParams(backend="pairs", path=str(known), expand=["gonna", "LOL"]))
    formals = [json.loads(line)["formal"] for line in Path(translate.OUTPUT).read_text().splitlines()]
    assert formals == ["Going to be late, laughing out loud.", "I don't know, to be honest."]
    assert json.loads(Path(translate.METRICS).read_text())["expanded"] == 1


def test_translate_expand_refuses_a_word_the_lexicon_lacks(workdir: Path) -> None:
    known = workdir / "known.jsonl"
    known.write_text(json.dumps({"original": "idk tbh", "formal": "I don't know, to be honest."}) + "\n")
    backend = params_module.TranslateParams(backend="pairs", path=str(known), expand=["lol", "yeet"])
    with pytest.raises(UnleetError, match=r"translate\.expand: \['yeet'\] not in the lexicon .*lexicon\.tsv"):
        run_stage([{"id": "a", "text": "idk tbh"}], backend)
    assert not Path(translate.OUTPUT).exists()
