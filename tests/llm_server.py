"""A local OpenAI-compatible HTTP server with scripted answers, so tests exercise the real ``openai`` client path.

Script replies with :meth:`ScriptedLLM.reply` (text), :meth:`fail` (an HTTP status with an OpenAI error body) or
:meth:`stall` (answer after a delay, to trip the client's timeout). Replies are consumed in order; with none left
the server answers 500 so a test that asked more than it scripted fails loudly. Every request body is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class _Scripted:
    text: str | None = None
    status: int = 200
    delay: float = 0.0


class ScriptedLLM:
    def __init__(self) -> None:
        self._script: deque[_Scripted] = deque()
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def reply(self, text: str, times: int = 1) -> None:
        self._script.extend(_Scripted(text=text) for _ in range(times))

    def fail(self, status: int, times: int = 1) -> None:
        self._script.extend(_Scripted(status=status) for _ in range(times))

    def stall(self, seconds: float, text: str = "late") -> None:
        self._script.append(_Scripted(text=text, delay=seconds))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self, body: dict[str, Any]) -> _Scripted:
        with self._lock:
            self.requests.append(body)
            return self._script.popleft() if self._script else _Scripted(status=500)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        llm = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                step = llm._next(body)
                if step.delay:
                    time.sleep(step.delay)
                if step.status != 200:
                    error = {"message": f"scripted failure {step.status}", "type": "server_error", "code": None}
                    self._send(step.status, {"error": error}, retry_after=step.status == 429)
                    return
                words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{len(llm.requests)}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "scripted"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": step.text},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": words,
                            "completion_tokens": len(str(step.text).split()),
                            "total_tokens": words + len(str(step.text).split()),
                        },
                    },
                )

            def _send(self, status: int, payload: dict[str, Any], retry_after: bool = False) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if retry_after:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

        return Handler


@pytest.fixture
def scripted_llm() -> Iterator[ScriptedLLM]:
    llm = ScriptedLLM()
    llm.start()
    try:
        yield llm
    finally:
        llm.stop()
