"""Real HTTP servers on 127.0.0.1 for the network-facing code: scripted answers and injected faults.

An `App` maps each request to a `Reply`; the server runs it in a thread, logs every request, and
stops when its `with` block ends. Delays are bounded so a test (or benchmark) always finishes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: str | bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    @classmethod
    def json(cls, data: Any, status: int = 200, delay_s: float = 0.0) -> Reply:
        return cls(status, json.dumps(data), {"Content-Type": "application/json"}, delay_s)


App = Callable[[Request], Reply]
MAX_DELAY_S = 10.0


class LoopbackServer:
    """`with LoopbackServer(app) as server:` serves `app` at `server.url` until the block ends."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # as real servers do; else 40 ms delayed-ACK stalls
            timeout = 30

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
                with server._lock:
                    server.requests.append(request)
                reply = server.app(request)
                time.sleep(min(reply.delay_s, MAX_DELAY_S))
                body = reply.body.encode("utf-8") if isinstance(reply.body, str) else reply.body
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left, as the fault intended

            do_GET = do_POST = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def paths(self, method: str | None = None) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests if method is None or r.method == method]

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class ChatServerApp:
    """OpenAI-compatible `/v1/chat/completions` and Ollama `/api/chat`, answering with `answer(text)`.

    `faults[text]` lists fault names served, one per request, before the real answer:
    "429" (Retry-After: 1), "500", "timeout" (answers after `slow_s`), "malformed" (not JSON),
    "preamble", "quoted", "empty", "long". `latency_s` delays every answer.
    """

    def __init__(self, answer: Callable[[str], str], latency_s: float = 0.0, slow_s: float = 2.0) -> None:
        self.answer = answer
        self.latency_s = latency_s
        self.slow_s = slow_s
        self.faults: dict[str, list[str]] = {}
        self.lock = threading.Lock()
        self.served: list[str] = []

    def __call__(self, request: Request) -> Reply:
        if request.method != "POST" or request.path not in ("/v1/chat/completions", "/api/chat"):
            return Reply(404, "not found")
        payload = request.json()
        text = payload["messages"][-1]["content"]
        with self.lock:
            self.served.append(text)
            queue = self.faults.get(text) or []
            fault = queue.pop(0) if queue else None
        answer = self.answer(text)
        delay = self.latency_s
        if fault == "429":
            return Reply(429, "rate limited", {"Retry-After": "1"})
        if fault == "500":
            return Reply(500, "internal error")
        if fault == "malformed":
            return Reply(200, '{"choices": [', {"Content-Type": "application/json"})
        if fault == "timeout":
            delay = self.slow_s
        elif fault == "preamble":
            answer = f"Sure! Here is the cleaned text: {answer}"
        elif fault == "quoted":
            answer = f'"{answer}"'
        elif fault == "empty":
            answer = "   "
        elif fault == "long":
            answer = " ".join([answer] * 10)
        if request.path == "/api/chat":
            body = {
                "model": payload["model"],
                "message": {"role": "assistant", "content": answer},
                "done": True,
                "prompt_eval_count": len(text.split()) + 20,
                "eval_count": len(answer.split()),
            }
        else:
            body = {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "model": payload["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(text.split()) + 20, "completion_tokens": len(answer.split())},
            }
        return Reply.json(body, delay_s=delay)

    def count(self, text: str | None = None) -> int:
        with self.lock:
            return len(self.served) if text is None else self.served.count(text)
