"""Legacy (2025-era) MCP sessions per API key, capped: one key cannot fill the server's session table.

The SDK's session manager allows ``max_sessions`` in all, first come first served: a single key that opens them all
(a few seconds of ``initialize`` calls) leaves every other key — the admin's included — with 503 until the idle
timeout. :class:`SessionsPerKey` sits on the ``/mcp`` route, behind authentication, and notes which key opened each
session; when a key opens one more than ``per_key`` allows, its oldest session is ended the way a client ends one (an
HTTP ``DELETE`` with that session id, as that key), so other keys are never affected. 2026-era requests have no
sessions and pass straight through.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)
SESSION_HEADER = b"mcp-session-id"
VERSION_HEADER = b"mcp-protocol-version"
ANONYMOUS = "(no key)"
MAX_KEYS = 10_000  # keys remembered at once (bounded by configuration; a guard against a misbehaving verifier)


class SessionsPerKey:
    """ASGI wrapper of the ``/mcp`` endpoint that caps the legacy sessions each key holds (oldest ended first)."""

    def __init__(self, app: ASGIApp, end_session: ASGIApp, per_key: int) -> None:
        self.app = app
        self._end_session = end_session  # the session manager's handler (no auth check: the key is already known)
        self._per_key = per_key
        self._sessions: OrderedDict[str, deque[tuple[str, Any]]] = OrderedDict()
        self.ended = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not _may_open_session(scope):
            await self.app(scope, receive, send)
            return
        opened: list[str] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                opened.extend(v.decode("latin-1") for k, v in message.get("headers", []) if k == SESSION_HEADER)
            await send(message)

        await self.app(scope, receive, watch)
        if opened:
            await self._opened(_key_of(scope), opened[0], scope)

    async def _opened(self, key: str, session_id: str, scope: Scope) -> None:
        mine = self._sessions.setdefault(key, deque())
        self._sessions.move_to_end(key)
        mine.append((session_id, scope.get("user")))
        while len(self._sessions) > MAX_KEYS:
            self._sessions.popitem(last=False)
        while len(mine) > self._per_key:
            old_id, user = mine.popleft()
            await self._end(old_id, user, scope)
            logger.info("key %s holds more than %d legacy sessions: ended its oldest", key, self._per_key)

    async def _end(self, session_id: str, user: Any, like: Scope) -> None:
        """End a session as its own client would: ``DELETE /mcp`` with its id, as the key that opened it."""
        headers = [(k, v) for k, v in like["headers"] if k in (b"host", b"authorization")]
        scope = {**like, "method": "DELETE", "headers": [*headers, (SESSION_HEADER, session_id.encode("latin-1"))]}
        scope["user"] = user

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def discard(_: Message) -> None:
            return None

        await self._end_session(scope, receive, discard)
        self.ended += 1


def _may_open_session(scope: Scope) -> bool:
    """A legacy request without a session id (only ``initialize`` can then succeed)."""
    headers = dict(scope["headers"])
    if SESSION_HEADER in headers:
        return False
    version = headers.get(VERSION_HEADER, b"").decode("latin-1")
    return version not in MODERN_PROTOCOL_VERSIONS


def _key_of(scope: Scope) -> str:
    user = scope.get("user")
    if isinstance(user, AuthenticatedUser):
        return str(user.access_token.client_id)
    return ANONYMOUS


def cap_sessions(app: Any, session_handler: ASGIApp, per_key: int, path: str = "/mcp") -> SessionsPerKey | None:
    """Wrap the endpoint of the Starlette route at ``path`` of ``app`` in :class:`SessionsPerKey`."""
    for route in app.routes:
        if getattr(route, "path", None) == path and hasattr(route, "app"):
            capped = SessionsPerKey(route.app, session_handler, per_key)
            route.app = capped
            return capped
    return None
