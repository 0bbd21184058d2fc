"""The scrape stage: parsing saved old-Reddit pages, filters, dedupe, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unleet import params as params_module
from unleet.errors import UnleetError
from unleet.stages import scrape

COMMENT = """<div class="thing id-t1_{id} comment" data-fullname="t1_{id}" data-subreddit="gaming" data-type="comment">
  <div class="entry unvoted">
    <p class="tagline"><span class="score unvoted" title="{score}">{score} points</span>
    <time datetime="2025-12-01T10:00:00+00:00">1 day ago</time></p>
    <form class="usertext"><div class="usertext-body"><div class="md"><p>{text}</p></div></div></form>
  </div>
  <div class="child">{child}</div>
</div>"""


def page(*comments: str) -> str:
    return f'<html><body><div class="sitetable nestedlisting">{"".join(comments)}</div></body></html>'


def comment(id: str, text: str, score: int = 1, child: str = "") -> str:
    return COMMENT.format(id=id, text=text, score=score, child=child)


def scrape_params(path: Path, **filters: object) -> params_module.ScrapeParams:
    defaults = {"min_chars": 10, "max_chars": 300, "drop_deleted": True, "drop_urls": True, "max_markup_share": 0.08}
    return params_module.ScrapeParams(
        source="html", path=str(path), filters=params_module.ScrapeFilters(**{**defaults, **filters})
    )


def test_parses_comments_and_nested_replies(tmp_path: Path) -> None:
    reply = comment("b2", "me 2, this is so true lol", score=-3)
    (tmp_path / "a.html").write_text(page(comment("a1", "idk wh4t 2 d0 tbh lmao", 42, child=reply)))
    comments, metrics = scrape.collect(scrape_params(tmp_path))
    assert [(c.id, c.text, c.score) for c in comments] == [
        ("t1_a1", "idk wh4t 2 d0 tbh lmao", 42),
        ("t1_b2", "me 2, this is so true lol", -3),
    ]
    assert comments[0].subreddit == "gaming"
    assert comments[0].created == "2025-12-01T10:00:00+00:00"
    assert metrics["pages_read"] == 1


def test_malformed_pages_are_skipped_and_counted(tmp_path: Path) -> None:
    (tmp_path / "good.html").write_text(page(comment("a1", "this one is perfectly fine")))
    (tmp_path / "empty.html").write_text("<html><body><h1>503 Service Unavailable</h1></body></html>")
    (tmp_path / "binary.html").write_bytes(b"\xff\xfe\x00garbage")
    full = page(comment("c3", "a complete comment here"), comment("d4", "cut off before its body"))
    (tmp_path / "truncated.html").write_text(full[: full.index("<form", full.index("t1_d4"))])
    comments, metrics = scrape.collect(scrape_params(tmp_path))
    assert sorted(c.id for c in comments) == ["t1_a1", "t1_c3"]
    assert metrics["pages_skipped"] == 2
    assert metrics["pages_read"] == 2
    assert metrics["comments_malformed"] == 1


def test_filters_and_dedupe_are_counted(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_text(
        page(
            comment("a1", "[deleted]"),
            comment("a2", "lol"),
            comment("a3", "see https://example.com for the patch notes"),
            comment("a4", "**bold** **claims** **everywhere** ok"),
            comment("a5", "ngl this patch is kinda mid"),
            comment("a6", "NGL   this patch is kinda mid"),
            comment("a7", "x" * 400),
        )
    )
    comments, metrics = scrape.collect(scrape_params(tmp_path))
    assert [c.id for c in comments] == ["t1_a5"]
    assert metrics["dropped"] == {
        "drop_deleted": 1,
        "min_chars": 1,
        "drop_urls": 1,
        "max_markup_share": 1,
        "duplicate": 1,
        "max_chars": 1,
    }


def test_filtering_everything_names_the_filter(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_text(page(comment("a1", "short one"), comment("a2", "another short")))
    with pytest.raises(UnleetError, match=r"scrape\.filters\.min_chars=500 dropped 2"):
        scrape.collect(scrape_params(tmp_path, min_chars=500))


def test_jsonl_source_derives_stable_ids(tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    dump.write_text(
        json.dumps(
            {"text": "u r gr8 m8 fr fr", "subreddit": "teenagers", "timestamp": "2025-12-01T00:00:00Z", "score": 3}
        )
        + "\n"
    )
    source = params_module.ScrapeParams(source="jsonl", path=str(dump), filters=scrape_params(tmp_path).filters)
    first, _ = scrape.collect(source)
    again, _ = scrape.collect(source)
    assert first[0].id == again[0].id == scrape.text_id("u r gr8 m8 fr fr")
    assert first[0].created == "2025-12-01T00:00:00Z"


def test_jsonl_broken_line_names_file_and_line(tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    dump.write_text('{"text": "fine comment here"}\n{"text": "oops\n')
    source = params_module.ScrapeParams(source="jsonl", path=str(dump), filters=scrape_params(tmp_path).filters)
    with pytest.raises(UnleetError, match=r"dump\.jsonl:2"):
        scrape.collect(source)


def test_limit_stops_early(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_text(page(*(comment(f"a{i}", f"comment number {i} here") for i in range(5))))
    source = scrape_params(tmp_path)
    source.limit = 2
    comments, _ = scrape.collect(source)
    assert len(comments) == 2


def test_shipped_sample_is_rich_enough() -> None:
    root = Path(__file__).resolve().parents[1] / "data" / "sample"
    comments, metrics = scrape.collect(scrape_params(root))
    assert len(comments) >= 250
    assert metrics["pages_skipped"] == 0
    assert set(metrics["dropped"]) >= {"drop_deleted", "drop_urls", "min_chars", "duplicate"}
