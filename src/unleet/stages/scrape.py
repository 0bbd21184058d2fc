"""scrape: collect comments into `data/raw/comments.jsonl` (`id`, `subreddit`, `text`, `score`, `created`).

Sources are plain functions yielding `Candidate`s, registered in `SOURCES`: `html` parses saved
old-Reddit comment pages, `jsonl` imports an existing dump, `reddit` crawls the live site (see
`unleet.reddit`). Every source shares the same parser, filters, dedupe and counters.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from bs4 import BeautifulSoup, Tag
from tqdm import tqdm

from unleet import io, reddit
from unleet.errors import UnleetError
from unleet.params import Params, ScrapeFilters, ScrapeParams

log = logging.getLogger(__name__)

OUTPUT = Path("data/raw/comments.jsonl")
METRICS = Path("metrics/scrape.json")

URL = re.compile(r"https?://|www\.\w", re.IGNORECASE)
MARKDOWN = re.compile(
    r"\*\*[^*]+\*\*|^#{1,6} .*$|^>.*$|^\|.*\|$|`[^`]+`|\[[^\]]+\]\([^)]+\)|^\s*[-*] .*$|^-{3,}$",
    re.MULTILINE,
)
MARKUP_TAGS = ["table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "code", "ul", "ol"]
DELETED = {"[deleted]", "[removed]"}


@dataclass
class Comment:
    id: str
    subreddit: str
    text: str
    score: int | None
    created: str | None


@dataclass
class Candidate:
    """A parsed comment with what the filters need to judge it."""

    comment: Comment
    markup_share: float
    has_link: bool


Counts = Counter[str]
Source = Callable[[ScrapeParams, Counts], Iterator[Candidate]]


def text_id(text: str) -> str:
    """A stable id for records that come without one."""
    return "h_" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def markdown_share(text: str) -> float:
    return sum(len(match) for match in MARKDOWN.findall(text)) / max(len(text), 1)


def parse_page(html: str, counts: Counts) -> list[Candidate]:
    """Comments of one saved old-Reddit page; a comment without id or body is counted as malformed."""
    soup = BeautifulSoup(html, "html.parser")
    candidates = []
    for thing in soup.select("div.thing.comment"):
        body = _own_body(thing)
        fullname = thing.get("data-fullname")
        if body is None or not fullname:
            counts["comments_malformed"] += 1
            continue
        text = body.get_text("\n", strip=True)
        structured = sum(len(tag.get_text()) for tag in body.find_all(MARKUP_TAGS))
        score_tag = thing.select_one("p.tagline span.score")
        time_tag = thing.select_one("p.tagline time")
        comment = Comment(
            id=str(fullname),
            subreddit=str(thing.get("data-subreddit", "")),
            text=text,
            score=_int_or_none(score_tag.get("title") if score_tag else None),
            created=str(time_tag["datetime"]) if time_tag and time_tag.has_attr("datetime") else None,
        )
        share = max(markdown_share(text), structured / max(len(text), 1))
        has_link = body.find("a", href=URL) is not None
        candidates.append(Candidate(comment, share, has_link))
    return candidates


def _own_body(thing: Tag) -> Tag | None:
    """The comment's own `.usertext-body .md`, not one of its nested replies'."""
    entry = thing.find("div", class_="entry", recursive=False)
    return entry.select_one(".usertext-body .md") if entry else None


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def read_saved_pages(params: ScrapeParams, counts: Counts) -> Iterator[Candidate]:
    """`source: html`: every `*.html` under `path`; an unreadable or comment-less page is skipped."""
    root = Path(params.path)
    pages = sorted(root.rglob("*.html")) if root.is_dir() else [root]
    if not pages or not pages[0].is_file():
        raise UnleetError(f"scrape.path={params.path}: no .html pages found")
    for page in tqdm(pages, desc="scrape pages", unit="page"):
        try:
            candidates = parse_page(page.read_bytes().decode("utf-8"), counts)
        except UnicodeDecodeError as error:
            candidates, reason = [], f"not UTF-8 ({error.reason} at byte {error.start})"
        else:
            reason = "no comment markup (div.thing.comment) found"
        if not candidates:
            counts["pages_skipped"] += 1
            log.warning("%s: skipped, %s", page, reason)
            continue
        counts["pages_read"] += 1
        yield from candidates


def read_jsonl_dump(params: ScrapeParams, counts: Counts) -> Iterator[Candidate]:
    """`source: jsonl`: objects with `text` and optional `id`, `subreddit`, `score`, `created`/`timestamp`."""
    for row in io.read_jsonl(params.path, required=["text"]):
        text = str(row["text"]).strip()
        comment = Comment(
            id=str(row.get("id") or text_id(text)),
            subreddit=str(row.get("subreddit", "")),
            text=text,
            score=_int_or_none(row.get("score")),
            created=row.get("created") or row.get("timestamp"),
        )
        yield Candidate(comment, markdown_share(text), has_link=False)


def read_live_reddit(params: ScrapeParams, counts: Counts) -> Iterator[Candidate]:
    """`source: reddit`: crawl old Reddit politely, resuming from the page cache."""
    for html in reddit.crawl(params, counts):
        candidates = parse_page(html, counts)
        counts["pages_read" if candidates else "pages_skipped"] += 1
        yield from candidates


SOURCES: dict[str, Source] = {"html": read_saved_pages, "jsonl": read_jsonl_dump, "reddit": read_live_reddit}


def rejection(candidate: Candidate, filters: ScrapeFilters) -> str | None:
    """The name of the first filter that drops this comment, or None to keep it."""
    text = candidate.comment.text
    if filters.drop_deleted and text in DELETED:
        return "drop_deleted"
    if len(text) < filters.min_chars:
        return "min_chars"
    if len(text) > filters.max_chars:
        return "max_chars"
    if filters.drop_urls and (candidate.has_link or URL.search(text)):
        return "drop_urls"
    if candidate.markup_share > filters.max_markup_share:
        return "max_markup_share"
    return None


def collect(params: ScrapeParams) -> tuple[list[Comment], dict[str, object]]:
    """Read the configured source, filter and dedupe; returns the comments and the scrape metrics."""
    if params.source not in SOURCES:
        raise UnleetError(f"scrape.source={params.source!r}: unknown, expected one of {sorted(SOURCES)}")
    counts: Counts = Counter(dict.fromkeys(["pages_read", "pages_skipped", "comments_malformed"], 0))
    dropped: Counts = Counter()
    seen_ids: set[str] = set()
    seen_texts: set[str] = set()
    kept: list[Comment] = []
    for candidate in SOURCES[params.source](params, counts):
        counts["comments_seen"] += 1
        reason = rejection(candidate, params.filters)
        key = " ".join(candidate.comment.text.casefold().split())
        if reason is None and (candidate.comment.id in seen_ids or key in seen_texts):
            reason = "duplicate"
        if reason:
            dropped[reason] += 1
            continue
        seen_ids.add(candidate.comment.id)
        seen_texts.add(key)
        kept.append(candidate.comment)
        if params.limit is not None and len(kept) >= params.limit:
            break
    if not kept:
        raise UnleetError(_empty_message(params, dropped))
    metrics = {
        **{name: counts[name] for name in sorted(counts)},
        "dropped": dict(sorted(dropped.items())),
        "kept": len(kept),
    }
    return kept, metrics


def _empty_message(params: ScrapeParams, dropped: Counts) -> str:
    if not dropped:
        return f"scrape: {params.path} yielded no comments"
    name, count = dropped.most_common(1)[0]
    key = "dedupe" if name == "duplicate" else f"scrape.filters.{name}={getattr(params.filters, name)}"
    summary = ", ".join(f"{filter_name}: {n}" for filter_name, n in dropped.most_common())
    return f"scrape: every comment was filtered out; {key} dropped {count} ({summary})"


def main(params: Params) -> None:
    reddit.PageCache(reddit.PAGE_CACHE).prepare()
    comments, metrics = collect(params.scrape)
    io.write_jsonl(OUTPUT, (asdict(comment) for comment in comments))
    io.write_json(METRICS, metrics)
    log.info("scrape: kept %d comments, dropped %s", len(comments), metrics["dropped"])
