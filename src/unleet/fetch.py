"""A polite HTTP fetcher: one honest User-Agent, robots.txt, delays with jitter, bounded retries.

Shared by the live scraper; every request it makes is counted so `metrics/scrape.json` can say
what a crawl cost. Retry policy: timeouts, connection errors and 5xx back off exponentially;
429 waits what `Retry-After` asks (up to `max_wait_s`); other 4xx fail at once.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urljoin
from urllib.robotparser import RobotFileParser

import requests

from unleet.errors import UnleetError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Politeness:
    user_agent: str
    min_delay_s: float
    jitter_s: float
    timeout_s: float
    max_retries: int
    backoff_s: float
    max_wait_s: float
    max_requests: int


class RequestBudgetSpent(UnleetError):
    """The configured bound on requests is reached; what was fetched so far is kept."""


class Disallowed(UnleetError):
    """robots.txt forbids this URL for our User-Agent."""


class PageMissing(UnleetError):
    """The server answered with a client error (404, 403, ...): retrying will not help."""


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


class PoliteSession:
    """GETs with robots.txt, a minimum delay between requests, retries and a request budget."""

    def __init__(self, base_url: str, policy: Politeness, counts: Counter[str], seed: int = 0) -> None:
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self.counts = counts
        self.session = requests.Session()
        self.session.headers["User-Agent"] = policy.user_agent
        self.random = random.Random(seed)
        self.last_request = float("-inf")
        self.robots: RobotFileParser | None = None

    def close(self) -> None:
        self.session.close()

    def url(self, path_or_url: str) -> str:
        return urljoin(self.base_url + "/", path_or_url)

    def allowed(self, url: str) -> bool:
        if self.robots is None:
            self.robots = self._load_robots()
        return self.robots.can_fetch(self.policy.user_agent, url)

    def get(self, path_or_url: str) -> str:
        """The body of a 200 response, after any retries; raises `UnleetError` when it gives up."""
        url = self.url(path_or_url)
        if not self.allowed(url):
            self.counts["robots_disallowed"] += 1
            raise Disallowed(f"robots.txt of {self.base_url} disallows {url}")
        response = self._fetch(url)
        if response.status_code != 200:
            raise PageMissing(f"GET {url}: HTTP {response.status_code}")
        return response.text

    def _fetch(self, url: str) -> requests.Response:
        """A response that is neither 429 nor 5xx, retrying those and network errors with backoff."""
        for attempt in range(self.policy.max_retries + 1):
            last = attempt == self.policy.max_retries
            try:
                response = self._request(url)
            except (requests.Timeout, requests.ConnectionError) as error:
                reason = type(error).__name__
                if last:
                    raise UnleetError(f"GET {url}: {reason} after {attempt + 1} attempts") from None
                self._back_off(url, attempt, reason)
                continue
            if response.status_code != 429 and response.status_code < 500:
                return response
            if last:
                raise UnleetError(f"GET {url}: HTTP {response.status_code} after {attempt + 1} attempts")
            if response.status_code == 429:
                self.counts["rate_limited"] += 1
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            self._back_off(url, attempt, f"HTTP {response.status_code}", wait)
        raise AssertionError("unreachable")

    def _request(self, url: str) -> requests.Response:
        if self.counts["requests"] >= self.policy.max_requests:
            raise RequestBudgetSpent(f"scrape.max_requests={self.policy.max_requests} reached")
        pause = self.policy.min_delay_s + self.random.uniform(0, self.policy.jitter_s)
        remaining = self.last_request + pause - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        self.counts["requests"] += 1
        try:
            return self.session.get(url, timeout=self.policy.timeout_s)
        finally:
            self.last_request = time.monotonic()

    def _back_off(self, url: str, attempt: int, reason: str, wait: float | None = None) -> None:
        if wait is None:
            wait = self.policy.backoff_s * 2**attempt * (1 + self.random.random() / 2)
        if wait > self.policy.max_wait_s:
            raise UnleetError(
                f"GET {url}: {reason}, server asks to wait {wait:.0f}s, over scrape.max_wait_s={self.policy.max_wait_s}"
            )
        self.counts["retries"] += 1
        log.warning("GET %s: %s, retrying in %.1fs", url, reason, wait)
        time.sleep(wait)

    def _load_robots(self) -> RobotFileParser:
        """robots.txt of the base URL: a 4xx means no rules (RFC 9309); one we cannot read stops the crawl."""
        robots = RobotFileParser()
        url = self.url("/robots.txt")
        robots.set_url(url)
        response = self._fetch(url)
        robots.parse(response.text.splitlines() if response.status_code == 200 else [])
        return robots
