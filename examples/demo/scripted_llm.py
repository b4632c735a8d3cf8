"""A tiny OpenAI-compatible chat-completions server for the demo: it answers like a model would, from a script.

It looks at which component the request is about and answers with a SEARCH/REPLACE edit: for ``slow_stats`` a real
speed-up (the built-in sort instead of an insertion sort), for ``word_index`` a change that passes every test but is
slower (``list.count`` per distinct word), so the demo shows one improvement kept and one rolled back.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FASTER = """The insertion sort is quadratic; sort once with the built-in sort.

components/slow_stats.py
```python
<<<<<<< SEARCH
    ordered: list[float] = []
    for value in values:
        index = 0
        while index < len(ordered) and ordered[index] < value:
            index += 1
        ordered.insert(index, value)
=======
    ordered = sorted(values)
>>>>>>> REPLACE
```
"""
SLOWER = """Count each distinct word with list.count.

components/word_index.py
```python
<<<<<<< SEARCH
    counts: dict[str, int] = {}
    for raw in text.lower().split():
        word = raw.strip(".,;:!?\\"'()")
        if word:
            counts[word] = counts.get(word, 0) + 1
    return counts
=======
    words = [w for w in (raw.strip(".,;:!?\\"'()") for raw in text.lower().split()) if w]
    return {word: words.count(word) for word in sorted(set(words))}
>>>>>>> REPLACE
```
"""


def answer(body: dict[str, Any]) -> str:
    """The scripted reply for a chat request."""
    task = next((str(m.get("content", "")) for m in body.get("messages", []) if m.get("role") == "user"), "")
    if "Improve components/slow_stats.py" in task:
        return FASTER
    if "Improve components/word_index.py" in task:
        return SLOWER
    return "I have nothing to change."


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        text = answer(body)
        ident, created, model = f"chatcmpl-demo-{time.time_ns()}", int(time.time()), body.get("model", "demo")
        usage = {"prompt_tokens": len(str(body)) // 4, "completion_tokens": len(text) // 4,
                 "total_tokens": (len(str(body)) + len(text)) // 4}  # fmt: skip
        if body.get("stream"):  # the server's client streams, as real endpoints do
            self._stream(ident, created, model, text, usage if body.get("stream_options") else None)
            return
        reply = {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": usage,
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, ident: str, created: int, model: str, text: str, usage: dict[str, int] | None) -> None:
        """Server-sent events: the answer in a few chunks, a finish chunk, the usage when asked, then [DONE]."""
        base = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
        pieces = [text[i : i + 200] for i in range(0, len(text), 200)]
        events = [{**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if usage is not None:
            events.append({**base, "choices": [], "usage": usage})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for event in events:
            self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True


def start() -> tuple[ThreadingHTTPServer, str]:
    """Start the server on a free loopback port; returns it and its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    return server, f"http://{host!s}:{port}/v1"
