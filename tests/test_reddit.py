"""The live `reddit` scrape source against a real HTTP server on 127.0.0.1 that injects faults."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from unleet import params as params_module
from unleet.errors import UnleetError
from unleet.stages import scrape

from .servers import LoopbackServer, Reply, Request
from .test_scrape import comment, page

USER_AGENT = "unleet-tests/1.0 (loopback)"
ROBOTS = "User-agent: *\nDisallow: /r/testsub/comments/secret/\n"
# Three listing pages, linked by "next"; each post page holds two comments.
LISTINGS = {
    "/r/testsub/new/": (["p1", "p2"], "/r/testsub/new/?after=t3_p2"),
    "/r/testsub/new/?after=t3_p2": (["p3", "secret"], "/r/testsub/new/?after=t3_secret"),
    "/r/testsub/new/?after=t3_secret": (["p4", "p5"], None),
}
POSTS = [post for posts, _ in LISTINGS.values() for post in posts]
EXPECTED = {f"t1_{post}{n}" for post in POSTS if post != "secret" for n in (1, 2)}


def listing(posts: list[str], next_link: str | None) -> str:
    things = "".join(
        f'<div class="thing link" data-fullname="t3_{post}" data-permalink="/r/testsub/comments/{post}/title/">'
        f'<a class="comments" href="/r/testsub/comments/{post}/title/">2 comments</a></div>'
        for post in posts
    )
    promoted = '<div class="thing link" data-promoted="true" data-permalink="/r/ads/comments/x/buy/"></div>'
    nav = f'<span class="next-button"><a href="{next_link}">next</a></span>' if next_link else ""
    return f'<html><body><div id="siteTable">{promoted}{things}</div><div class="nav-buttons">{nav}</div></body></html>'


def post_page(post: str) -> str:
    return page(comment(f"{post}1", f"gg wp {post} that w4s ez lol"), comment(f"{post}2", f"idk wh4t {post} m34ns tbh"))


class Site:
    """old-Reddit pages, with per-path faults served before the real answer."""

    def __init__(self, robots: str = ROBOTS) -> None:
        self.robots = robots
        self.faults: dict[str, list[Reply]] = defaultdict(list)

    def __call__(self, request: Request) -> Reply:
        if self.faults[request.path]:
            return self.faults[request.path].pop(0)
        if request.path == "/robots.txt":
            return Reply(body=self.robots)
        if request.path in LISTINGS:
            return Reply(body=listing(*LISTINGS[request.path]))
        for post in POSTS:
            if request.path == f"/r/testsub/comments/{post}/title/":
                return Reply(body=post_page(post))
        return Reply(404, "not found")


def reddit_params(base_url: str, **overrides: object) -> params_module.ScrapeParams:
    settings = {
        "source": "reddit",
        "path": "src/unleet/reddit.py",
        "base_url": base_url,
        "subreddits": ["testsub"],
        "sort": "new",
        "pages": 5,
        "user_agent": USER_AGENT,
        "min_delay_s": 0.0,
        "jitter_s": 0.0,
        "timeout_s": 0.5,
        "max_retries": 3,
        "backoff_s": 0.01,
        "max_wait_s": 5.0,
        "max_requests": 100,
        "filters": params_module.ScrapeFilters(
            min_chars=5, max_chars=300, drop_deleted=True, drop_urls=True, max_markup_share=0.5
        ),
    }
    return params_module.ScrapeParams(**{**settings, **overrides})


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_crawl_follows_pagination_through_faults() -> None:
    site = Site()
    site.faults["/r/testsub/comments/p2/title/"] = [Reply(429, "slow down", {"Retry-After": "1"})]
    site.faults["/r/testsub/comments/p3/title/"] = [Reply(500, "oops")]
    site.faults["/r/testsub/comments/p4/title/"] = [Reply(body=post_page("p4"), delay_s=2.0)]  # past the timeout
    site.faults["/r/testsub/comments/p5/title/"] = [Reply(body=post_page("p5")[:-40])]  # cut off mid-page
    with LoopbackServer(site) as server:
        comments, metrics = scrape.collect(reddit_params(server.url))
        requests = list(server.requests)

    assert {c.id for c in comments} == EXPECTED
    assert metrics["retries"] == 4
    assert metrics["rate_limited"] == 1
    assert metrics["robots_disallowed"] == 1
    assert metrics["pages_fetched"] == 3 + 5
    assert metrics["requests"] == len(requests) == 1 + 3 + 5 + 4
    assert all(r.headers["User-Agent"] == USER_AGENT for r in requests)
    assert "/r/testsub/comments/secret/title/" not in [r.path for r in requests]
    assert not any(r.path.startswith("/r/ads/") for r in requests)
    p2 = [r.at for r in requests if r.path == "/r/testsub/comments/p2/title/"]
    assert p2[1] - p2[0] >= 1.0, "Retry-After was not honoured"


def test_interrupted_crawl_resumes_without_refetching() -> None:
    site = Site()
    site.faults["/r/testsub/comments/p4/title/"] = [Reply(503, "down")] * 4  # every attempt of the first run
    with LoopbackServer(site) as server:
        with pytest.raises(UnleetError, match=r"p4/title/: HTTP 503 after 4 attempts"):
            scrape.collect(reddit_params(server.url))
        first_run = server.paths()
        server.requests.clear()
        comments, metrics = scrape.collect(reddit_params(server.url))
        second_run = server.paths()

    assert second_run == ["/robots.txt", "/r/testsub/comments/p4/title/", "/r/testsub/comments/p5/title/"]
    assert "/r/testsub/comments/p3/title/" in first_run
    assert metrics["pages_cached"] == 3 + 3
    assert sorted(c.id for c in comments) == sorted(EXPECTED)


def test_request_budget_stops_the_crawl_and_a_rerun_continues() -> None:
    with LoopbackServer(Site()) as server:
        partial, metrics = scrape.collect(reddit_params(server.url, max_requests=4))
        assert metrics["budget_spent"] == 1 and metrics["requests"] == 4
        comments, _ = scrape.collect(reddit_params(server.url))
        fetched = [path for path in server.paths() if path != "/robots.txt"]

    assert {c.id for c in partial} == {"t1_p11", "t1_p12", "t1_p21", "t1_p22"}
    assert {c.id for c in comments} == EXPECTED
    assert len(fetched) == len(set(fetched)), "a page was fetched twice"


def test_page_cut_off_every_time_is_skipped_and_counted() -> None:
    site = Site()
    site.faults["/r/testsub/comments/p1/title/"] = [Reply(body=post_page("p1")[:-40])] * 4
    with LoopbackServer(site) as server:
        comments, metrics = scrape.collect(reddit_params(server.url))
    assert metrics["pages_truncated"] == 1
    assert {c.id for c in comments} == EXPECTED - {"t1_p11", "t1_p12"}


def test_retry_after_beyond_the_limit_fails_clearly() -> None:
    site = Site()
    site.faults["/r/testsub/new/"] = [Reply(429, "", {"Retry-After": "3600"})]
    with LoopbackServer(site) as server, pytest.raises(UnleetError, match=r"wait 3600s, over scrape.max_wait_s"):
        scrape.collect(reddit_params(server.url))


def test_robots_disallowing_everything_fetches_nothing_else() -> None:
    with LoopbackServer(Site(robots="User-agent: *\nDisallow: /\n")) as server:
        with pytest.raises(UnleetError, match="yielded no comments"):
            scrape.collect(reddit_params(server.url))
        assert server.paths() == ["/robots.txt"]


def test_stage_writes_comments_and_metrics_from_params_yaml(workdir: Path) -> None:
    with LoopbackServer(Site()) as server:
        output = params_module.compose(
            [
                "scrape=reddit",
                f"scrape.base_url={server.url}",
                "scrape.subreddits=[testsub]",
                "scrape.pages=5",
                "scrape.min_delay_s=0",
                "scrape.jitter_s=0",
                "scrape.backoff_s=0.01",
            ]
        )
        scrape.main(params_module.load(output))
    rows = [json.loads(line) for line in Path("data/raw/comments.jsonl").read_text().splitlines()]
    assert {row["id"] for row in rows} == EXPECTED
    assert {row["subreddit"] for row in rows} == {"gaming"}
    metrics = json.loads(Path("metrics/scrape.json").read_text())
    assert metrics["kept"] == len(EXPECTED) and metrics["pages_fetched"] == 8
    assert len(list(Path("data/cache/pages").glob("*.html"))) == 8
