"""LLM translation backends and the runner that makes them cheap and safe to rerun.

Clients: `OpenAIChat` (any OpenAI-compatible `/chat/completions`: vLLM, llama.cpp, Ollama's
`/v1`, hosted APIs), `OllamaChat` (Ollama's native `/api/chat`) and `LocalCausalLM` (batched
generation with a local transformers checkpoint). `Translator` puts any of them behind the answer
cache, bounded concurrency, a requests-per-minute cap, retries with backoff (429 honours
`Retry-After`) and answer checks with one retry, and counts what it cost.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import requests
from tqdm import tqdm

from unleet.answers import AnswerCache, cache_key, check_answer
from unleet.errors import UnleetError
from unleet.fetch import retry_after_seconds
from unleet.params import TranslateParams, require

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prompt:
    """The system instruction, from a template file; its content hash is its version."""

    path: Path
    text: str

    @property
    def version(self) -> str:
        return f"{self.path.stem}@{hashlib.sha256(self.text.encode('utf-8')).hexdigest()[:12]}"

    @classmethod
    def load(cls, path: str | Path) -> Prompt:
        path = Path(path)
        if not path.is_file():
            raise UnleetError(f"translate.path={path}: prompt template not found")
        text = path.read_text(encoding="utf-8").strip()
        if not text:
            raise UnleetError(f"translate.path={path}: prompt template is empty")
        return cls(path, text)


@dataclass
class Answer:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Retryable(Exception):
    """A failure worth retrying (429, 5xx, timeout, malformed response); `wait_s` from Retry-After."""

    def __init__(self, reason: str, wait_s: float | None = None, rate_limited: bool = False) -> None:
        super().__init__(reason)
        self.wait_s, self.rate_limited = wait_s, rate_limited


class Stopped(Exception):
    """Raised in workers that were about to send a request after another one failed fatally."""


class ChatClient(Protocol):
    identity: dict[str, Any]  # what determines an answer besides prompt and text; never a secret

    def complete(self, system: str, text: str) -> Answer: ...


class BatchClient(Protocol):
    identity: dict[str, Any]
    batch_size: int

    def complete_many(self, system: str, texts: list[str]) -> list[Answer]: ...


class HttpChat:
    """Shared HTTP plumbing: a session per worker thread, JSON POSTs, error classification."""

    def __init__(self, params: TranslateParams, api_key: str | None) -> None:
        self.base_url = params.base_url.rstrip("/")
        self.model = params.model
        self.temperature = params.temperature
        self.max_tokens = params.max_tokens
        self.timeout_s = params.timeout_s
        self.identity = {
            "backend": params.backend,
            "model": params.model,
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
        }
        self._api_key = api_key
        self._local = threading.local()

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            if self._api_key:
                session.headers["Authorization"] = f"Bearer {self._api_key}"
        url = f"{self.base_url}{path}"
        try:
            response = session.post(url, json=payload, timeout=self.timeout_s)
        except (requests.Timeout, requests.ConnectionError) as error:
            raise Retryable(f"POST {url}: {type(error).__name__}") from None
        if response.status_code == 429:
            wait_s = retry_after_seconds(response.headers.get("Retry-After"))
            raise Retryable(f"POST {url}: HTTP 429", wait_s, rate_limited=True)
        if response.status_code >= 500:
            raise Retryable(f"POST {url}: HTTP {response.status_code}")
        if response.status_code != 200:
            hint = " (check the API key's environment variable)" if response.status_code in (401, 403) else ""
            raise UnleetError(f"POST {url}: HTTP {response.status_code}{hint}: {response.text[:200]}")
        try:
            data = response.json()
        except ValueError:
            raise Retryable(f"POST {url}: malformed JSON in the response") from None
        if not isinstance(data, dict):
            raise Retryable(f"POST {url}: unexpected response {str(data)[:100]}")
        return data


class OpenAIChat(HttpChat):
    def complete(self, system: str, text: str) -> Answer:
        data = self.post(
            "/chat/completions",
            {
                "model": self.model,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}],
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
            },
        )
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise Retryable(f"no choices[0].message.content in {str(data)[:100]}") from None
        usage = data.get("usage") or {}
        return Answer(str(content or ""), int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))


class OllamaChat(HttpChat):
    def complete(self, system: str, text: str) -> Answer:
        data = self.post(
            "/api/chat",
            {
                "model": self.model,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}],
                "stream": False,
                "options": {"temperature": self.temperature, "num_predict": self.max_tokens},
            },
        )
        try:
            content = data["message"]["content"]
        except (KeyError, TypeError):
            raise Retryable(f"no message.content in {str(data)[:100]}") from None
        return Answer(str(content or ""), int(data.get("prompt_eval_count", 0)), int(data.get("eval_count", 0)))


class LocalCausalLM:
    """Batched generation with a local causal LM: GPU (bf16) when present, else CPU."""

    def __init__(self, params: TranslateParams) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(params.model)
        if not (path / "config.json").is_file():
            raise UnleetError(f"translate.model={params.model}: no checkpoint (config.json) in that directory")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        self.temperature = params.temperature
        self.max_tokens = params.max_tokens
        self.batch_size = params.batch_size
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        fingerprint = hashlib.sha256(b"".join(w.read_bytes()[: 1 << 16] for w in weights)).hexdigest()[:12]
        self.identity = {
            "backend": params.backend,
            "model": f"{path.name}@{fingerprint}",
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
        }

    def _prompt(self, system: str, text: str) -> str:
        if self.tokenizer.chat_template:
            messages = [{"role": "system", "content": system}, {"role": "user", "content": text}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"{system}\n\nText: {text}\nRewrite:"

    def complete_many(self, system: str, texts: list[str]) -> list[Answer]:
        import torch

        batch = self.tokenizer([self._prompt(system, t) for t in texts], return_tensors="pt", padding=True)
        batch = batch.to(self.device)
        sampling = {"do_sample": True, "temperature": self.temperature} if self.temperature else {"do_sample": False}
        with torch.inference_mode():
            output = self.model.generate(
                **batch, max_new_tokens=self.max_tokens, pad_token_id=self.tokenizer.pad_token_id, **sampling
            )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        prompt_tokens = batch["attention_mask"].sum(dim=1).tolist()
        completion_tokens = (new_tokens != self.tokenizer.pad_token_id).sum(dim=1).tolist()
        decoded = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [Answer(d, int(p), int(c)) for d, p, c in zip(decoded, prompt_tokens, completion_tokens, strict=True)]


class RateLimiter:
    """At most `per_minute` request starts a minute, spread evenly across worker threads."""

    def __init__(self, per_minute: float | None) -> None:
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.next_slot = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next_slot)
            self.next_slot = slot + self.interval
        time.sleep(max(0.0, slot - now))


@dataclass
class Outcome:
    formal: str | None
    reason: str  # "ok", "repaired", or why the answer was rejected


@dataclass
class Translator:
    """Any client behind the cache, the retry policy and the answer checks; callable on texts."""

    client: ChatClient | BatchClient
    prompt: Prompt
    cache: AnswerCache
    workers: int = 1
    max_retries: int = 3
    backoff_s: float = 1.0
    max_wait_s: float = 120.0
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(None))
    counts: Counter[str] = field(default_factory=Counter)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def identity(self) -> dict[str, Any]:
        return {**self.client.identity, "prompt": self.prompt.version}

    def __call__(self, texts: list[str]) -> list[str | None]:
        self.translate(texts)
        return [self.outcomes[text].formal for text in texts]

    def translate(self, texts: list[str]) -> dict[str, Outcome]:
        """Translate each distinct text: cached answers first, then requests; a bad answer is retried once."""
        for name in (
            "requests",
            "cache_hits",
            "retries",
            "rate_limited",
            "repaired",
            "rejected",
            "prompt_tokens",
            "completion_tokens",
        ):
            self.counts.setdefault(name, 0)
        pending = list(dict.fromkeys(texts))
        for attempt in (0, 1):
            answers = self._answers(pending, attempt)
            retry = []
            for text in pending:
                formal, reason = check_answer(text, answers[text])
                if formal is None and attempt == 0:
                    retry.append(text)
                    continue
                self.outcomes[text] = Outcome(formal, reason)
                if formal is None:
                    self.counts["rejected"] += 1
                elif reason == "repaired":
                    self.counts["repaired"] += 1
            pending = retry
        return self.outcomes

    def _answers(self, texts: list[str], attempt: int) -> dict[str, str]:
        """Raw answers for `texts`, from the cache where present; new ones are cached as they arrive."""
        identity = self.identity
        answers: dict[str, str] = {}
        missing: list[str] = []
        for text in texts:
            entry = self.cache.get(cache_key(identity, text, attempt))
            if entry is None:
                missing.append(text)
            else:
                answers[text] = entry["answer"]
                self.counts["cache_hits"] += 1
        if not missing:
            return answers
        desc = "translate" if attempt == 0 else "translate (retrying bad answers)"
        with tqdm(total=len(missing), desc=desc, unit="answer") as progress:
            for text, answer in self._fetch(missing):
                self.cache.put(
                    {
                        "key": cache_key(identity, text, attempt),
                        "attempt": attempt,
                        **identity,
                        "text": text,
                        "answer": answer.text,
                        "prompt_tokens": answer.prompt_tokens,
                        "completion_tokens": answer.completion_tokens,
                    }
                )
                self.counts["prompt_tokens"] += answer.prompt_tokens
                self.counts["completion_tokens"] += answer.completion_tokens
                answers[text] = answer.text
                progress.update()
        return answers

    def _fetch(self, texts: list[str]) -> Iterator[tuple[str, Answer]]:
        """Yield `(text, Answer)` as answers arrive: batches for local models, a thread pool for HTTP."""
        if hasattr(self.client, "complete_many"):
            for start in range(0, len(texts), self.client.batch_size):
                chunk = texts[start : start + self.client.batch_size]
                self.counts["requests"] += 1
                yield from zip(chunk, self.client.complete_many(self.prompt.text, chunk), strict=True)
            return
        failures: list[str] = []
        fatal: BaseException | None = None
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="translate") as pool:
            futures = {pool.submit(self._complete, text): text for text in texts}
            try:
                for future in as_completed(futures):
                    if future.cancelled() or isinstance(future.exception(), Stopped):
                        continue
                    error = future.exception()
                    if error is None:
                        yield futures[future], future.result()  # answers already paid for are kept
                    elif isinstance(error, Retryable):
                        failures.append(str(error))
                    elif fatal is None:
                        fatal = error
                        for pending in futures:
                            pending.cancel()
            finally:
                for pending in futures:  # on Ctrl-C too: do not send what is still queued
                    pending.cancel()
        if fatal is not None:
            raise fatal
        if failures:
            raise UnleetError(
                f"translate: {len(failures)} of {len(texts)} requests failed after "
                f"{self.max_retries + 1} attempts (first: {failures[0]}); every answer received is cached, "
                "so a rerun pays only for the rest"
            )

    def _complete(self, text: str) -> Answer:
        """One answer, retrying retryable failures with exponential backoff or the server's Retry-After."""
        jitter = random.Random(text)
        for attempt in range(self.max_retries + 1):
            self.limiter.wait()
            if self._stop.is_set():
                raise Stopped
            self._count("requests")
            try:
                return self.client.complete(self.prompt.text, text)
            except UnleetError:
                self._stop.set()  # a fatal answer (401, 404, ...): start no further request
                raise
            except Retryable as error:
                if error.rate_limited:
                    self._count("rate_limited")
                if attempt == self.max_retries:
                    raise
                wait_s = error.wait_s if error.wait_s is not None else self.backoff_s * 2**attempt
                if wait_s > self.max_wait_s:
                    self._stop.set()
                    message = f"{error}: server asks to wait {wait_s:.0f}s, over translate.max_wait_s"
                    raise UnleetError(message) from None
                self._count("retries")
                log.debug("%s; retrying in %.2fs", error, wait_s)
                time.sleep(wait_s * (1 + jitter.random() / 4))
        raise AssertionError("unreachable")

    def _count(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1

    def metrics(self) -> dict[str, Any]:
        rejected: Counter[str] = Counter(o.reason.split(" (")[0] for o in self.outcomes.values() if o.formal is None)
        return {
            **{name: self.counts[name] for name in sorted(self.counts)},
            "rejected_reasons": dict(sorted(rejected.items())),
            "backend": self.identity["backend"],
            "model": self.identity["model"],
            "prompt_version": self.prompt.version,
        }


def api_key(params: TranslateParams) -> str | None:
    """The API key from the environment variable `translate.api_key_env` names; never from params."""
    if not params.api_key_env:
        return None
    key = os.environ.get(params.api_key_env)
    if not key:
        log.warning("%s is not set: sending requests without an API key", params.api_key_env)
    return key or None


CLIENTS: dict[str, Callable[[TranslateParams], ChatClient | BatchClient]] = {
    "openai": lambda params: OpenAIChat(params, api_key(params)),
    "ollama": lambda params: OllamaChat(params, api_key(params)),
    "transformers": LocalCausalLM,
}
HTTP_REQUIRED = [
    "base_url",
    "model",
    "workers",
    "temperature",
    "max_tokens",
    "timeout_s",
    "max_retries",
    "backoff_s",
    "max_wait_s",
]
REQUIRED = {
    "openai": HTTP_REQUIRED,
    "ollama": HTTP_REQUIRED,
    "transformers": ["model", "batch_size", "temperature", "max_tokens"],
}


def make_translator(params: TranslateParams, cache_path: Path) -> Translator:
    require(params, "translate", REQUIRED[params.backend])
    return Translator(
        client=CLIENTS[params.backend](params),
        prompt=Prompt.load(params.path),
        cache=AnswerCache(cache_path),
        workers=params.workers or 1,
        max_retries=params.max_retries or 0,
        backoff_s=params.backoff_s or 0.0,
        max_wait_s=params.max_wait_s or 0.0,
        limiter=RateLimiter(params.requests_per_minute),
    )
