"""LLM translation backends against a real chat server on 127.0.0.1: faults, cache rules, secrets."""

from __future__ import annotations

import dataclasses
import json
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unleet import params as params_module
from unleet.answers import AnswerCache, check_answer, prepare_cache
from unleet.errors import UnleetError
from unleet.lexicon import Normaliser
from unleet.llm import make_translator
from unleet.stages import translate

from .conftest import copy_project, tool_environment
from .servers import ChatServerApp, LoopbackServer, Reply, Request

PROMPT = "Rewrite the comment in clean English. Reply with the text only."
TEXTS = [f"idk wh4t 2 d0 w1th my {n} c4ts tbh" for n in range(20)]


@pytest.fixture
def normalise() -> Normaliser:
    return Normaliser()


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    Path("prompt.txt").write_text(PROMPT)
    return tmp_path


def llm_params(backend: str, base_url: str, **overrides: object) -> params_module.TranslateParams:
    settings = {
        "backend": backend,
        "path": "prompt.txt",
        "model": "test-model",
        "base_url": f"{base_url}/v1" if backend == "openai" else base_url,
        "api_key_env": "UNLEET_TEST_KEY",
        "workers": 4,
        "temperature": 0.0,
        "max_tokens": 64,
        "timeout_s": 0.5,
        "max_retries": 3,
        "backoff_s": 0.01,
        "max_wait_s": 5.0,
    }
    return params_module.TranslateParams(**{**settings, **overrides})


def run(params: params_module.TranslateParams, texts: list[str]) -> tuple[list[str | None], dict]:
    translator = make_translator(params, Path("cache.jsonl"))
    formals = translator(texts)
    return formals, translator.metrics()


@pytest.mark.parametrize("backend", ["openai", "ollama"])
def test_faults_are_retried_repaired_or_rejected(backend: str, normalise: Normaliser) -> None:
    app = ChatServerApp(normalise, slow_s=1.5)
    app.faults = {
        TEXTS[0]: ["429"],
        TEXTS[1]: ["500", "500"],
        TEXTS[2]: ["timeout"],
        TEXTS[3]: ["malformed"],
        TEXTS[4]: ["preamble"],
        TEXTS[5]: ["quoted"],
        TEXTS[6]: ["long"],
        TEXTS[7]: ["empty", "empty"],
    }
    with LoopbackServer(app) as server:
        formals, metrics = run(llm_params(backend, server.url), TEXTS[:10])

    expected = [normalise(text) for text in TEXTS[:10]]
    assert formals[:7] == expected[:7]  # retried, or repaired (preamble, quotes), or re-asked (too long)
    assert formals[7] is None
    assert formals[8:] == expected[8:]
    assert metrics["requests"] == app.count() == 10 + 1 + 2 + 1 + 1 + 1 + 1
    assert metrics["retries"] == 5 and metrics["rate_limited"] == 1
    assert metrics["repaired"] == 2
    assert metrics["rejected"] == 1 and metrics["rejected_reasons"] == {"empty answer": 1}
    assert metrics["prompt_tokens"] > 0 and metrics["completion_tokens"] > 0


def test_cache_pays_once_and_prompt_change_invalidates_only_its_entries(normalise: Normaliser) -> None:
    app = ChatServerApp(normalise)
    with LoopbackServer(app) as server:
        params = llm_params("openai", server.url)
        run(params, TEXTS[:10])
        assert app.count() == 10
        _, metrics = run(params, TEXTS[:10])
        assert app.count() == 10 and metrics["cache_hits"] == 10 and metrics["requests"] == 0

        run(params, TEXTS[:20])  # ten comments added: exactly ten requests
        assert app.count() == 20

        Path("prompt.txt").write_text(PROMPT + " Keep emoji.")
        run(params, TEXTS[:20])
        assert app.count() == 40
        Path("prompt.txt").write_text(PROMPT)
        run(params, TEXTS[:20])
        assert app.count() == 40, "the first prompt's answers should still be cached"

        run(llm_params("openai", server.url, temperature=0.7), TEXTS[:5])
        assert app.count() == 45, "generation params are part of the key"
    assert len(AnswerCache("cache.jsonl")) == 45


def test_failed_requests_stop_the_stage_and_a_rerun_pays_only_for_them(normalise: Normaliser) -> None:
    app = ChatServerApp(normalise)
    app.faults = {TEXTS[0]: ["500"] * 4, TEXTS[1]: ["malformed"] * 4}
    with LoopbackServer(app) as server:
        params = llm_params("openai", server.url)
        with pytest.raises(UnleetError, match=r"2 of 6 requests failed after 4 attempts.*rerun pays only"):
            run(params, TEXTS[:6])
        assert len(AnswerCache("cache.jsonl")) == 4
        before = app.count()
        formals, _ = run(params, TEXTS[:6])
        assert app.count() - before == 2
    assert all(formals)


def test_unauthorised_is_fatal_and_never_prints_the_key(normalise: Normaliser, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-DO-NOT-LEAK-0123456789"
    monkeypatch.setenv("UNLEET_TEST_KEY", secret)

    def gatekeeper(request: Request) -> Reply:  # the real app behind an API-key check
        if request.headers.get("Authorization") != "Bearer right-key":
            return Reply(401, '{"error": "invalid api key"}')
        return app(request)

    app = ChatServerApp(normalise)
    with LoopbackServer(gatekeeper) as server:
        with pytest.raises(UnleetError) as error:
            run(llm_params("openai", server.url, workers=4), TEXTS[:16])
        assert server.requests[0].headers["Authorization"] == f"Bearer {secret}"
        assert len(server.requests) <= 2 * 4, "no new request should start after a fatal error"
    assert "HTTP 401" in str(error.value) and "API key" in str(error.value)
    assert secret not in str(error.value)


def test_requests_per_minute_cap_spaces_requests(normalise: Normaliser) -> None:
    app = ChatServerApp(normalise)
    with LoopbackServer(app) as server:
        run(llm_params("openai", server.url, workers=4, requests_per_minute=600), TEXTS[:6])
        times = sorted(request.at for request in server.requests)
    assert times[-1] - times[0] >= 5 * 0.1 * 0.9


def test_killed_run_keeps_every_completed_translation(workdir: Path, normalise: Normaliser) -> None:
    comments = [{"id": f"c{n}", "text": text} for n, text in enumerate(TEXTS)]
    Path("data/raw").mkdir(parents=True, exist_ok=True)
    Path("data/raw/comments.jsonl").write_text("".join(json.dumps(c) + "\n" for c in comments))
    app = ChatServerApp(normalise, latency_s=0.2)
    with LoopbackServer(app) as server:
        params_module.compose(["translate=openai", f"translate.base_url={server.url}/v1", "translate.workers=2"])
        command = [sys.executable, "-m", "unleet.cli", "translate"]
        process = subprocess.Popen(command, env=tool_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while app.count() < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert not Path("data/translated/pairs.jsonl").exists()
        cached = len(AnswerCache(translate.ANSWER_CACHE))
        assert 4 <= cached < len(TEXTS)

        before = app.count()
        result = subprocess.run(command, env=tool_environment(), capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert app.count() - before == len(TEXTS) - cached
    metrics = json.loads(Path("metrics/translate.json").read_text())
    assert metrics["cache_hits"] == cached and metrics["requests"] == len(TEXTS) - cached
    assert len(Path("data/translated/pairs.jsonl").read_text().splitlines()) == len(TEXTS)


def test_api_key_reaches_no_file_and_no_log(workdir: Path, normalise: Normaliser) -> None:
    """The key is sent to the server, and found nowhere in the repository, its DVC state, MLflow or output."""
    secret = f"sk-test-{secrets.token_hex(16)}"  # made here so that no file holds it beforehand
    env = {**tool_environment(), "OPENAI_API_KEY": secret}
    app = ChatServerApp(normalise)
    with LoopbackServer(app) as server:
        subprocess.run(["git", "init", "-q"], cwd=workdir, env=env, check=True, capture_output=True)
        params_module.compose(["translate=openai", f"translate.base_url={server.url}/v1", "experiment=smoke"])
        result = subprocess.run(
            ["dvc", "repro", "-v"], cwd=workdir, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert {request.headers.get("Authorization") for request in server.requests} == {f"Bearer {secret}"}
    assert secret not in result.stdout + result.stderr
    assert (workdir / "mlflow.db").is_file() and any((workdir / "mlruns").rglob("lineage.json"))  # MLflow saw it all
    leaks = [path for path in workdir.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]
    assert leaks == []
    assert "translate" in Path("dvc.lock").read_text()


def test_calibration_reports_side_by_side_without_touching_the_output(workdir: Path, normalise: Normaliser) -> None:
    comments = [{"id": f"c{n}", "subreddit": f"r{n % 3}", "text": text} for n, text in enumerate(TEXTS)]
    Path("data/raw").mkdir(parents=True, exist_ok=True)
    Path("data/raw/comments.jsonl").write_text("".join(json.dumps(c) + "\n" for c in comments))
    app = ChatServerApp(lambda text: f"LLM says: {normalise(text)}")
    with LoopbackServer(app) as server:
        output = params_module.compose(["translate=openai", f"translate.base_url={server.url}/v1"])
        report = translate.calibrate(params_module.load(output), 6)
    rows = [json.loads(line) for line in Path("reports/calibration.jsonl").read_text().splitlines()]
    assert len(rows) == 6 == app.count()
    assert {row["subreddit"] for row in rows} == {"r0", "r1", "r2"}
    assert all(row["llm"].startswith("LLM says:") and row["lexicon"] for row in rows)
    assert "| original | lexicon baseline | LLM | verdict |" in report.read_text()
    assert not Path("data/translated/pairs.jsonl").exists()


@pytest.mark.parametrize(
    ("original", "answer", "expected"),
    [
        ("idk tbh", "I don't know, to be honest.", ("I don't know, to be honest.", "ok")),
        ("idk tbh", "Here is the cleaned text: I don't know.", ("I don't know.", "repaired")),
        ("idk tbh", "Sure! Here's the rewritten comment:\nI don't know.", ("I don't know.", "repaired")),
        ("idk tbh", "\u201cI don't know.\u201d", ("I don't know.", "repaired")),
        ('"quote" he said', '"Quote," he said.', ('"Quote," he said.', "ok")),
        ("idk tbh", "  ", (None, "empty answer")),
        ("ok", "As an AI language model I cannot rewrite this comment because " * 3, (None, "length mismatch")),
    ],
)
def test_answer_checks(original: str, answer: str, expected: tuple[str | None, str]) -> None:
    text, reason = check_answer(original, answer)
    assert (text, reason.split(" (")[0]) == expected


def test_half_written_cache_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    path.write_text('{"key": "a", "answer": "A"}\n{"key": "b", "ans')
    cache = AnswerCache(path)
    assert list(cache.entries) == ["a"]
    cache.put({"key": "c", "answer": "C"})
    assert [json.loads(line)["key"] for line in path.read_text().splitlines()] == ["a", "c"]


def test_a_new_cache_holds_only_its_header_and_fills_after_it(tmp_path: Path) -> None:
    """Offline runs leave the header alone in the file (no empty output for DVC to warn about)."""
    path = tmp_path / "cache.jsonl"
    prepare_cache(path)
    assert len(AnswerCache(path)) == 0 and path.stat().st_size > 0
    AnswerCache(path).put({"key": "a", "answer": "A"})
    prepare_cache(path)  # an existing cache is left as it is
    assert AnswerCache(path).get("a") == {"key": "a", "answer": "A"}
    assert [json.loads(line).get("key") for line in path.read_text().splitlines()] == [None, "a"]


def test_corrupt_cache_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "cache.jsonl"
    path.write_text('{"key": "a", "answer": "A"}\nnot json\n{"key": "c", "answer": "C"}\n')
    with pytest.raises(UnleetError, match=r"cache\.jsonl:2"):
        AnswerCache(path)


def test_missing_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(UnleetError, match=r"translate\.base_url.*translate\.backend=openai"):
        params = dataclasses.replace(llm_params("openai", "http://127.0.0.1:9"), base_url=None)
        make_translator(params, tmp_path / "c.jsonl")


def save_tiny_causal_lm(directory: Path) -> Path:
    """A randomly initialised two-layer GPT-2 with a word-level tokenizer, saved like a real checkpoint."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(
        [*TEXTS, PROMPT], trainers.WordLevelTrainer(special_tokens=["<unk>", "<pad>", "</s>"])
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>", eos_token="</s>")
    config = GPT2Config(
        vocab_size=len(fast),
        n_positions=256,
        n_embd=32,
        n_layer=2,
        n_head=2,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


def test_transformers_backend_generates_in_batches_and_caches(tmp_path: Path) -> None:
    checkpoint = save_tiny_causal_lm(tmp_path / "tiny-lm")
    params = params_module.TranslateParams(
        backend="transformers", path="prompt.txt", model=str(checkpoint), batch_size=4, temperature=0.0, max_tokens=8
    )
    texts = TEXTS[:10]
    translator = make_translator(params, Path("cache.jsonl"))
    translator(texts)
    metrics = translator.metrics()
    assert set(translator.outcomes) == set(texts)
    retried = sum(1 for entry in AnswerCache("cache.jsonl").entries.values() if entry["attempt"] == 1)
    assert len(AnswerCache("cache.jsonl")) == len(texts) + retried
    assert metrics["requests"] == 3 + -(-retried // 4)  # generate() calls: batches of 4
    assert metrics["completion_tokens"] > 0

    again = make_translator(params, Path("cache.jsonl"))
    again(texts)
    assert again.metrics()["requests"] == 0
    assert {t: o.formal for t, o in again.outcomes.items()} == {t: o.formal for t, o in translator.outcomes.items()}


def test_transformers_backend_without_checkpoint_is_named(tmp_path: Path) -> None:
    params = params_module.TranslateParams(
        backend="transformers",
        path="prompt.txt",
        model=str(tmp_path / "nowhere"),
        batch_size=4,
        temperature=0.0,
        max_tokens=8,
    )
    with pytest.raises(UnleetError, match=r"translate\.model=.*nowhere: no checkpoint"):
        make_translator(params, tmp_path / "cache.jsonl")


@pytest.mark.dvc
def test_fresh_clone_after_dvc_pull_pays_nothing(tmp_path: Path, normalise: Normaliser) -> None:
    """The answer cache is a DVC output: pushed with the data, pulled into a clone, never paid for again."""
    app = ChatServerApp(normalise)
    env = tool_environment()

    def sh(cwd: Path, *command: str) -> str:
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}{result.stderr}"
        return result.stdout + result.stderr

    first, second, remote = tmp_path / "first", tmp_path / "second", tmp_path / "remote"
    copy_project(first)
    with LoopbackServer(app) as server:
        sh(first, "git", "init", "-q", "-b", "main")
        sh(first, "unleet", "params", "translate=openai", f"translate.base_url={server.url}/v1", "experiment=smoke")
        sh(first, "dvc", "remote", "add", "-d", "storage", str(remote))
        sh(first, "dvc", "repro", "translate")
        paid = app.count()
        assert paid > 0
        sh(first, "git", "add", "-A")
        sh(first, "git", "commit", "-q", "-m", "translated")
        sh(first, "dvc", "push")

        sh(tmp_path, "git", "clone", "-q", str(first), str(second))
        sh(second, "dvc", "pull", "--with-deps", "translate")
        assert "up to date" in sh(second, "dvc", "status", "translate")
        sh(second, "dvc", "repro", "--force", "translate")
        assert app.count() == paid
    metrics = json.loads((second / "metrics/translate.json").read_text())
    assert metrics["requests"] == 0 and metrics["cache_hits"] == metrics["comments"]
