"""Request bodies bounded per route, before any handler reads them.

Starlette reads whatever body a client sends; a sign-in route that needs a few hundred bytes would otherwise take
300 MB from anyone, before checking a key. :class:`BodyLimits` reads each request's body up to the limit of its
route — refusing a larger ``Content-Length`` at once and a longer chunked body as soon as it passes the limit, with
413 — and hands the app the body it read. Slow senders are bounded separately, by the connection's read timeouts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

KIB = 1024
DEFAULT_LIMIT = 4 * KIB  # routes not listed: nothing served here expects more


class BodyLimits:
    """ASGI middleware: the first matching ``(path prefix, limit)`` applies, others get ``default``; a limit of None
    leaves the route to bound its own body (the SDK's ``/mcp`` endpoint does)."""

    def __init__(self, app: ASGIApp, limits: Sequence[tuple[str, int | None]], default: int = DEFAULT_LIMIT) -> None:
        self.app = app
        self._limits = tuple(limits)
        self._default = default

    def limit_for(self, path: str) -> int | None:
        return next((limit for prefix, limit in self._limits if path.startswith(prefix)), self._default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send, limit)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away while sending
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _too_large(send, limit)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # afterwards: the connection's own messages (a disconnect, for a stream)

        await self.app(scope, replay, send)


async def _too_large(send: Send, limit: int) -> None:
    message = f"request body too large: this route takes at most {limit} bytes"
    payload = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
