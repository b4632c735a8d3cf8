"""Request bodies bounded per route, and read whole, before any handler sees them.

Starlette reads whatever body a client sends; a sign-in route that needs a few hundred bytes would otherwise take
300 MB from anyone, before checking a key. :class:`BodyLimits` reads each request's body up to the limit of its
route — refusing a larger ``Content-Length`` at once and a longer chunked body as soon as it passes the limit, with
413 (a JSON-RPC error on ``/mcp``) — and hands the app the body it read. A client that goes away in the middle of
its body is noted at INFO here, so handlers never meet a half-read body (the SDK logs those with a traceback).
Slow senders are bounded separately, by the connection's read timeouts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from mcp.types import INVALID_REQUEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)
KIB = 1024
DEFAULT_LIMIT = 4 * KIB  # routes not listed: nothing served here expects more


class BodyLimits:
    """ASGI middleware: the first matching ``(path prefix, limit)`` applies, others get ``default``; paths under
    ``jsonrpc_prefix`` are answered in JSON-RPC's shape."""

    def __init__(
        self,
        app: ASGIApp,
        limits: Sequence[tuple[str, int]],
        default: int = DEFAULT_LIMIT,
        jsonrpc_prefix: str = "/mcp",
    ) -> None:
        self.app = app
        self._limits = tuple(limits)
        self._default = default
        self._jsonrpc_prefix = jsonrpc_prefix

    def limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in self._limits if path.startswith(prefix)), self._default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.limit_for(path)
        jsonrpc = path.startswith(self._jsonrpc_prefix)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send, limit, jsonrpc)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                logger.info("a client went away while sending its request to %s (%d bytes in)", path[:80], len(body))
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _too_large(send, limit, jsonrpc)
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


async def _too_large(send: Send, limit: int, jsonrpc: bool) -> None:
    message = f"request body too large: this route takes at most {limit} bytes"
    error = {"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": message}}
    payload = json.dumps(error if jsonrpc else {"error": message}).encode()
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
