"""The live `reddit` scrape source: old-Reddit listing pages → post pages → comments.

Every complete page is saved in `data/cache/pages/` (a persistent DVC output) as soon as it
arrives, keyed by URL, so an interrupted crawl resumes on rerun without refetching a page, and
comments are rebuilt from the same pages, so none is duplicated. Deleting the cache (or a page
in it) is how to refresh a listing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

from bs4 import BeautifulSoup
from tqdm import tqdm

from unleet import io
from unleet.errors import UnleetError
from unleet.fetch import Disallowed, PageMissing, Politeness, PoliteSession, RequestBudgetSpent
from unleet.params import ScrapeParams, require

log = logging.getLogger(__name__)

PAGE_CACHE = Path("data/cache/pages")
REQUIRED = [
    "base_url",
    "subreddits",
    "sort",
    "pages",
    "user_agent",
    "min_delay_s",
    "jitter_s",
    "timeout_s",
    "max_retries",
    "backoff_s",
    "max_wait_s",
    "max_requests",
]


PAGE_CACHE_NOTE = """Pages that `scrape.source=reddit` fetched, one file per URL: a rerun reads them
instead of fetching again. Offline sources leave only this note, which also keeps DVC from
warning that the output is empty.
"""


class PageCache:
    """Complete pages on disk, one file per URL, each written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def prepare(self) -> None:
        """Create the cache with its note: a persistent DVC output that offline runs leave without pages."""
        note = self.root / "README.txt"
        if not note.is_file():
            io.write_text(note, PAGE_CACHE_NOTE)

    def _file(self, url: str) -> Path:
        return self.root / f"{hashlib.sha256(url.encode('utf-8')).hexdigest()[:32]}.html"

    def get(self, url: str) -> str | None:
        path = self._file(url)
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def put(self, url: str, html: str) -> None:
        io.write_text(self._file(url), html)


def is_complete(html: str) -> bool:
    """A saved old-Reddit page ends with `</html>`; one that does not was cut off in transit."""
    return html.rstrip().lower().endswith("</html>")


class Crawler:
    def __init__(self, params: ScrapeParams, counts: dict[str, int], cache: PageCache) -> None:
        require(params, "scrape", REQUIRED)
        policy = Politeness(
            user_agent=params.user_agent,
            min_delay_s=params.min_delay_s,
            jitter_s=params.jitter_s,
            timeout_s=params.timeout_s,
            max_retries=params.max_retries,
            backoff_s=params.backoff_s,
            max_wait_s=params.max_wait_s,
            max_requests=params.max_requests,
        )
        self.params = params
        self.counts = counts
        self.cache = cache
        self.session = PoliteSession(params.base_url, policy, counts)
        self.progress = tqdm(desc="scrape", unit="page")

    def page(self, path_or_url: str) -> str | None:
        """A complete page from the cache or the server; None when it is missing, forbidden or cut off."""
        url = self.session.url(path_or_url)
        cached = self.cache.get(url)
        if cached is not None:
            self.counts["pages_cached"] += 1
            self.progress.update()
            return cached
        for attempt in range(self.params.max_retries + 1):
            try:
                html = self.session.get(url)
            except (Disallowed, PageMissing) as error:
                log.warning("%s", error)
                self.counts["pages_failed"] += 1
                return None
            if is_complete(html):
                self.cache.put(url, html)
                self.counts["pages_fetched"] += 1
                self.progress.update()
                return html
            if attempt < self.params.max_retries:
                self.counts["retries"] += 1
                log.warning("GET %s: page cut off, fetching again", url)
        self.counts["pages_truncated"] += 1
        log.warning("GET %s: page cut off %d times, skipped", url, self.params.max_retries + 1)
        return None

    def posts(self, subreddit: str) -> Iterator[str]:
        """Comment-page links of `pages` listing pages, following each page's "next" link."""
        url: str | None = f"/r/{subreddit}/{self.params.sort}/"
        for _ in range(self.params.pages):
            listing = self.page(url) if url else None
            if listing is None:
                return
            soup = BeautifulSoup(listing, "html.parser")
            for post in soup.select("div.thing.link"):
                if post.get("data-promoted") == "true":
                    continue
                link = post.get("data-permalink") or _href(post.select_one("a.comments"))
                if link:
                    yield str(link)
            url = _href(soup.select_one("span.next-button a"))

    def comment_pages(self) -> Iterator[str]:
        """HTML of every post page, subreddit by subreddit; stops early when the request budget is spent."""
        try:
            for subreddit in self.params.subreddits:
                for link in self.posts(subreddit):
                    html = self.page(link)
                    if html is not None:
                        yield html
        except RequestBudgetSpent as error:
            self.counts["budget_spent"] = 1
            log.warning("%s: stopping here; pages fetched so far are cached and a rerun continues", error)
        finally:
            self.progress.close()
            self.session.close()


def _href(tag: object) -> str | None:
    href = tag.get("href") if tag is not None else None  # type: ignore[union-attr]
    return str(href) if href else None


def crawl(params: ScrapeParams, counts: dict[str, int]) -> Iterator[str]:
    """Pages of comments from the live site, resuming from (and filling) the page cache."""
    if not params.subreddits:
        raise UnleetError("scrape.subreddits: empty; name at least one subreddit to crawl")
    for name in (
        "requests",
        "retries",
        "rate_limited",
        "pages_fetched",
        "pages_cached",
        "pages_failed",
        "pages_truncated",
        "robots_disallowed",
    ):
        counts.setdefault(name, 0)
    yield from Crawler(params, counts, PageCache(PAGE_CACHE)).comment_pages()
