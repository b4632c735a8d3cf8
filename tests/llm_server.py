"""A local OpenAI-compatible HTTP server with scripted answers, so tests exercise the real ``openai`` client path.

Script replies with :meth:`ScriptedLLM.reply` (text; optionally paced chunk by chunk, without usage),
:meth:`fail` (an HTTP status with an OpenAI error body), :meth:`stall` (answer after a delay, to trip the client's
timeout) and :meth:`stall_midway` (half the answer, a silence, then the rest). Replies are consumed in order; with
none left the server answers 500 so a test that asked more than it scripted fails loudly. Every request body is
recorded (``requests``), with how many requests were in flight when it arrived (``in_flight``).

A request with ``"stream": true`` is answered as server-sent events (``data: {chunk}`` lines, one word per chunk
unless ``chunks`` says how many, a final usage chunk when ``stream_options.include_usage`` asks for it, then
``data: [DONE]``); otherwise as one JSON body after the whole scripted time. :meth:`one_at_a_time` makes the server
serve one request at a time, as a local model on a CPU does: the others wait, silent, until it is done;
:meth:`gather` holds the answers until a number of requests are in flight, so a test can count on them overlapping.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class _Scripted:
    text: str | None = None
    status: int = 200
    delay: float = 0.0  # silence before the answer starts (headers included)
    pace: float = 0.0  # silence before each chunk
    chunks: int | None = None  # None: one chunk per word
    usage: bool = True  # False: an endpoint that never reports usage
    midway: float = 0.0  # silence after the first half of the chunks
    retry_after: str | None = None


class ScriptedLLM:
    def __init__(self) -> None:
        self._script: deque[_Scripted] = deque()
        self._responder: Callable[[dict[str, Any]], str] | None = None
        self.requests: list[dict[str, Any]] = []
        self.in_flight: list[int] = []  # per request: how many were in flight (itself included) when it arrived
        self.reject_stream_options = False  # True: answer 400 to a request that sends stream_options
        self._flying = 0
        self._gather: int | None = None
        self._arrived = threading.Condition()
        self._serial: threading.Lock | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.llm = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def peak_in_flight(self) -> int:
        return max(self.in_flight, default=0)

    def reply(
        self, text: str, times: int = 1, *, pace: float = 0.0, chunks: int | None = None, usage: bool = True
    ) -> None:
        """Answer ``text``; streamed, each of its chunks comes ``pace`` seconds after the one before."""
        self._script.extend(_Scripted(text=text, pace=pace, chunks=chunks, usage=usage) for _ in range(times))

    def respond(self, answer: Callable[[dict[str, Any]], str]) -> None:
        """Once the script is used up, answer each request with ``answer(request body)`` (a reply that depends on
        the request, for candidates that ask in any order)."""
        self._responder = answer

    def _answer_for(self, body: dict[str, Any]) -> _Scripted:
        return _Scripted(status=500) if self._responder is None else _Scripted(text=self._responder(body))

    def fail(self, status: int, times: int = 1, *, retry_after: str | None = None) -> None:
        """Answer HTTP ``status`` (a 429 says ``Retry-After: 0`` unless ``retry_after`` says otherwise)."""
        header = retry_after if retry_after is not None else ("0" if status == 429 else None)
        self._script.extend(_Scripted(status=status, retry_after=header) for _ in range(times))

    def stall(self, seconds: float, text: str = "late") -> None:
        """Say nothing for ``seconds`` (not even the headers), then answer ``text``."""
        self._script.append(_Scripted(text=text, delay=seconds))

    def stall_midway(self, text: str, seconds: float) -> None:
        """Stream the first half of ``text``, go silent for ``seconds``, then stream the rest."""
        self._script.append(_Scripted(text=text, midway=seconds))

    def one_at_a_time(self) -> None:
        """Serve one request at a time: one that arrives while another is served waits for it, silent."""
        self._serial = threading.Lock()

    def gather(self, count: int) -> None:
        """Answer nothing until ``count`` requests are in flight at once (once; at most 30 s), so that a test can
        count on them overlapping."""
        self._gather = count

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()  # ends scripted silences, so no handler thread outlives the test by long
        self._server.shutdown()
        self._server.server_close()

    def _next(self, body: dict[str, Any]) -> _Scripted:
        with self._lock:
            self.requests.append(body)
            self._flying += 1
            self.in_flight.append(self._flying)
            if self.reject_stream_options and body.get("stream_options"):
                step = _Scripted(status=400)  # refused before the script is read: no scripted answer is used up
            else:
                step = self._script.popleft() if self._script else self._answer_for(body)
        with self._arrived:
            self._arrived.notify_all()
        return step

    def wait_for_requests(self, count: int, timeout: float = 30) -> None:
        """Block until ``count`` requests have arrived in all (run it in a worker thread); TimeoutError if not."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requests) >= count, timeout=timeout):
                raise TimeoutError(f"{len(self.requests)} of {count} requests arrived within {timeout:g} s")

    def _gathered(self) -> None:
        with self._arrived:
            count = self._gather
            if count is not None and self._arrived.wait_for(lambda: self._flying >= count, timeout=30):
                self._gather = None

    def _landed(self) -> None:
        with self._lock:
            self._flying -= 1

    def _quiet(self, seconds: float) -> bool:
        """Silence for ``seconds``; False when the server is stopping."""
        return seconds <= 0 or not self._stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    llm: ScriptedLLM


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    _counted = False  # this request is counted in flight

    @property
    def llm(self) -> ScriptedLLM:
        return self.server.llm

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        step = self.llm._next(body)
        self._counted = True
        try:
            with self.llm._serial or nullcontext():
                self._answer(body, step)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): nothing to answer
        finally:
            self._land()

    def _land(self) -> None:
        """No longer in flight: before the answer's last bytes go out, so that a client that sends its next request
        as soon as it has read them never finds this one still counted (it did, on a busy machine)."""
        if self._counted:
            self._counted = False
            self.llm._landed()

    def _answer(self, body: dict[str, Any], step: _Scripted) -> None:
        self.llm._gathered()
        if not self.llm._quiet(step.delay):
            return
        if step.status != 200:
            error = {"message": f"scripted failure {step.status}", "type": "server_error", "code": None}
            self._send(step.status, {"error": error}, retry_after=step.retry_after)
            return
        text = str(step.text)
        pieces = _pieces(text, step.chunks)
        words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        usage = {"prompt_tokens": words, "completion_tokens": len(text.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream"):
            options = body.get("stream_options") or {}
            self._stream(body, step, pieces, usage if step.usage and options.get("include_usage") else None)
            return
        if not self.llm._quiet(step.pace * len(pieces) + step.midway):  # the time the model takes to write it
            return
        self._send(
            200,
            {
                **_head(body, "chat.completion"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                **({"usage": usage} if step.usage else {}),
            },
        )

    def _stream(self, body: dict[str, Any], step: _Scripted, pieces: list[str], usage: dict[str, int] | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()  # HTTP/1.0: the body ends when the connection closes
        head = _head(body, "chat.completion.chunk")
        half = len(pieces) // 2
        for index, piece in enumerate(pieces):
            if index == half and not self.llm._quiet(step.midway):
                return
            if not self.llm._quiet(step.pace):
                return
            delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
            self._event({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        self._event({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if usage is not None:
            self._event({**head, "choices": [], "usage": usage})
        self._land()
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _send(self, status: int, payload: dict[str, Any], retry_after: str | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self._land()
        self.wfile.write(data)


def _head(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-scripted",
        "object": kind,
        "created": int(time.time()),
        "model": body.get("model", "scripted"),
    }


def _pieces(text: str, chunks: int | None) -> list[str]:
    """``text`` in pieces that join back to it: one per word, or ``chunks`` about equal ones."""
    if chunks is None:
        words = re.findall(r"\s*\S+", text)
        if not words:
            return [text]
        words[-1] += text[len("".join(words)) :]  # trailing whitespace stays with the last word
        return words
    size = max(1, -(-len(text) // chunks))
    return [text[i : i + size] for i in range(0, len(text), size)] or [text]


@pytest.fixture
def scripted_llm() -> Iterator[ScriptedLLM]:
    llm = ScriptedLLM()
    llm.start()
    try:
        yield llm
    finally:
        llm.stop()
