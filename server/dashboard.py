"""``GET /dashboard`` (HTTP transport only): one page an operator keeps open, with live figures over server-sent events.

Protection: with API keys configured, the page asks for a key once and posts it (never in a URL); the server answers
with an opaque session cookie (HttpOnly, SameSite=Strict, path ``/dashboard``), and the key itself is neither stored
in the browser nor logged. Each request then acts as that key: the same roles and tenants as its tool calls
(``read`` to look, ``admin`` to start or stop monitoring, ``improve`` to roll back). Without keys the HTTP transport
only listens on loopback and the page is open there. Every route checks the Host and Origin headers like ``/mcp``
(DNS-rebinding protection), and actions need a JSON body and a custom header (no cross-site form posts).
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import Any, Protocol

import anyio
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecurityMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from generators.changes import restored
from generators.errors import GeneratorError, failure_text
from server.dashboard_data import BadQuery, InsightCache, dashboard_state, window_hours
from server.dashboard_stream import ChangeStreams
from server.http import transport_security
from server.jsonrpc_guard import loads_bounded
from server.notifications import Notifier
from server.settings import Settings
from telemetry.errors import TelemetryError
from telemetry.ingest import TENANT_PATTERN
from tools.access import AccessDenied, Caller, authorize, caller_from_token, current_caller
from tools.deployments import summary
from tools.errors import domain_message
from tools.outcome import kind_of
from tools.services import ServicesNotRunning, ServicesRef

logger = logging.getLogger(__name__)
# The HTTP status of each kind of refusal (tools.outcome); anything else the state does not allow now is 409.
KIND_STATUS = {"not_found": 404, "refused": 403, "conflict": 409, "invalid": 400, "unavailable": 503, "internal": 500}
COOKIE = "sbm_dashboard"
ACTION_HEADER = "x-dashboard-action"  # custom header: a cross-site form cannot send it
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 1_000
MAX_SESSIONS_PER_KEY = 20
MAX_FAILED_SIGN_INS = 10  # per client address and minute
ASSETS = {  # the page's files, served from server/static (no build step; uPlot is vendored, see its LICENSE there)
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "dashboard-charts.js": "text/javascript",
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
BODY_DEPTH = 8  # a dashboard action is a flat object
Handler = Callable[[Request], Awaitable[Response]]


class SessionStore(Protocol):
    """Where sign-ins are kept: this process's memory (:class:`Sessions`), or PostgreSQL for several replicas
    (:class:`server.dashboard_sessions.PostgresSessions`). Blocking: the dashboard calls it from worker threads."""

    def open(self, token: AccessToken) -> str: ...
    def get(self, session: str | None) -> AccessToken | None: ...
    def close(self, session: str | None) -> None: ...


class Sessions:
    """Dashboard sessions: an opaque id per sign-in, mapped to the key's verified token, for a limited time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._open: dict[str, tuple[float, AccessToken]] = {}
        self._lock = threading.Lock()  # called from worker threads

    def open(self, token: AccessToken) -> str:
        with self._lock:
            return self._open_locked(token)

    def _open_locked(self, token: AccessToken) -> str:
        now = self._clock()
        self._open = {k: v for k, v in self._open.items() if v[0] > now}
        mine = [k for k, v in self._open.items() if v[1].client_id == token.client_id]
        for old in mine[: max(0, len(mine) - MAX_SESSIONS_PER_KEY + 1)]:
            del self._open[old]  # a key's oldest sign-ins go first: one key cannot crowd out the others
        while len(self._open) >= MAX_SESSIONS:
            self._open.pop(next(iter(self._open)))  # the oldest sign-in goes first
        session = secrets.token_urlsafe(32)
        self._open[session] = (now + SESSION_SECONDS, token)
        return session

    def get(self, session: str | None) -> AccessToken | None:
        found = self._open.get(session or "")
        return found[1] if found is not None and found[0] > self._clock() else None

    def close(self, session: str | None) -> None:
        with self._lock:
            self._open.pop(session or "", None)


class FailedSignIns:
    """Failed sign-ins per client address over the last minute (a bounded table)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[str, list[float]] = {}

    def _recent(self, client: str) -> list[float]:
        now = self._clock()
        recent = [t for t in self._seen.get(client, []) if now - t < 60]
        if recent:
            self._seen[client] = recent
        else:
            self._seen.pop(client, None)
        return recent

    def too_many(self, client: str) -> bool:
        return len(self._recent(client)) >= MAX_FAILED_SIGN_INS

    def add(self, client: str) -> None:
        if len(self._seen) >= MAX_SESSIONS:
            self._seen.pop(next(iter(self._seen)))
        self._seen.setdefault(client, []).append(self._clock())


def _same_origin_as_none(request: Request) -> Request:
    """The request as the Host/Origin check sees it: a browser's ``Origin`` naming the very host it asked (the page
    served from this server) says nothing the Host check does not, so it is left out; any other Origin is checked."""
    origin = request.headers.get("origin")
    if origin is None or origin != f"{request.url.scheme}://{request.headers.get('host', '')}":
        return request
    headers = [(k, v) for k, v in request.scope["headers"] if k != b"origin"]
    return Request({**request.scope, "headers": headers}, request.receive)


def _first_tenant(caller: Caller, default: str) -> str:
    """The tenant a page shows first: the default one when the caller may use it, else the caller's first."""
    return default if caller.may_use(default) or not caller.tenants else sorted(caller.tenants)[0]


@functools.cache
def _asset(name: str) -> str:
    """A file of the page, read once per process."""
    return files("server").joinpath("static", name).read_text(encoding="utf-8")


class Dashboard:
    """The dashboard's routes: each handler runs as the signed-in key (see :meth:`guarded`)."""

    def __init__(
        self, settings: Settings, verifier: TokenVerifier | None, ref: ServicesRef, notifier: Notifier
    ) -> None:
        self.settings = settings
        self.verifier = verifier
        self.ref = ref
        self.security = TransportSecurityMiddleware(transport_security(settings))
        self.sessions: SessionStore = Sessions()
        if settings.database_url is not None:  # several replicas: every one knows every sign-in
            from server.dashboard_sessions import PostgresSessions

            self.sessions = PostgresSessions(
                settings.database_url.get_secret_value(), seconds=SESSION_SECONDS, max_sessions=MAX_SESSIONS,
                per_key=MAX_SESSIONS_PER_KEY,
            )  # fmt: skip
        self.failures = FailedSignIns()
        self.insights = InsightCache()
        self.streams = ChangeStreams(notifier, settings.dashboard_update_seconds)

    def routes(self) -> list[tuple[str, str, bool, Handler]]:
        """(path, method, needs a signed-in key, handler) of every route."""
        assets = [(f"/dashboard/{name}", "GET", False, self._asset_handler(name)) for name in ASSETS]
        return [
            ("/dashboard", "GET", False, self.page),
            *assets,
            ("/dashboard/api/session", "GET", False, self.session_state),
            ("/dashboard/api/login", "POST", False, self.login),
            ("/dashboard/api/logout", "POST", False, self.logout),
            ("/dashboard/api/state", "GET", True, self.state),
            ("/dashboard/api/monitoring", "POST", True, self.monitoring),
            ("/dashboard/api/rollback", "POST", True, self.rollback),
            ("/dashboard/api/stream", "GET", True, self.stream),
        ]

    def guarded(self, handler: Handler, method: str, signed_in: bool) -> Handler:
        """Host/Origin checks for every route; for actions a JSON body and the custom header; then the caller."""

        async def guard(request: Request) -> Response:
            refusal = await self.security.validate_request(_same_origin_as_none(request), is_post=method == "POST")
            if refusal is not None:
                return refusal
            if method == "POST" and request.headers.get(ACTION_HEADER) != "1":
                return _error(403, f"dashboard actions need the {ACTION_HEADER} header")
            token = await anyio.to_thread.run_sync(self.sessions.get, request.cookies.get(COOKIE))
            if signed_in and self.verifier is not None and token is None:
                return _error(401, "sign in with an API key first")
            reset = auth_context_var.set(AuthenticatedUser(token)) if token is not None else None
            try:
                return await handler(request)
            except (BadBody, BadQuery) as exc:
                return _error(400, str(exc))
            except AccessDenied as exc:
                return _error(403, str(exc))
            except ToolError as exc:  # a refusal: its kind (the type of what was raised) picks the status
                return _error(KIND_STATUS.get(kind_of(exc), 409), str(exc))
            except (GeneratorError, TelemetryError) as exc:  # a domain error of a use case: the same, in its words
                words = (
                    failure_text(exc, logger, "a dashboard action") if exc.kind == "internal" else domain_message(exc)
                )
                return _error(KIND_STATUS.get(exc.kind, 409), words or str(exc))
            except ServicesNotRunning:  # start-up or shutdown
                logger.debug("dashboard request while the server is not running", exc_info=True)
                return _error(503, "the server is starting or stopping; try again shortly")
            finally:
                if reset is not None:
                    auth_context_var.reset(reset)

        return guard

    async def page(self, _: Request) -> Response:
        return Response(_asset("dashboard.html"), media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    def _asset_handler(self, name: str) -> Handler:
        async def asset(_: Request) -> Response:
            return Response(_asset(name), media_type=ASSETS[name], headers=SECURITY_HEADERS)

        return asset

    async def session_state(self, request: Request) -> Response:
        token = await anyio.to_thread.run_sync(self.sessions.get, request.cookies.get(COOKIE))
        return _json({"needs_key": self.verifier is not None, "signed_in": self.verifier is None or token is not None})

    async def login(self, request: Request) -> Response:
        if self.verifier is None:
            return _json({"signed_in": True})
        client = request.client.host if request.client else "?"
        if self.failures.too_many(client):
            return _error(429, f"too many failed sign-ins from {client}; wait a minute and try again")
        key = str((await _body(request)).get("key", "")).strip()
        token = await self.verifier.verify_token(key) if key else None
        if token is None:
            self.failures.add(client)
            await anyio.sleep(0.5)  # slows down guessing
            return _error(401, "that API key is not valid")
        if not caller_from_token(token).has_role("read"):
            return _error(403, f"key {token.client_id!r} may not read, so it cannot use the dashboard")
        response = _json({"signed_in": True, "name": token.client_id})
        session = await anyio.to_thread.run_sync(self.sessions.open, token)
        response.set_cookie(
            COOKIE, session, max_age=SESSION_SECONDS, path="/dashboard", httponly=True,
            samesite="strict", secure=request.url.scheme == "https",
        )  # fmt: skip
        return response

    async def logout(self, request: Request) -> Response:
        await anyio.to_thread.run_sync(self.sessions.close, request.cookies.get(COOKIE))
        response = _json({"signed_in": False})
        response.delete_cookie(COOKIE, path="/dashboard")
        return response

    async def state(self, request: Request) -> Response:
        svc = self.ref.get()
        tenant = request.query_params.get("tenant") or _first_tenant(current_caller(), svc.default_tenant)
        if not TENANT_PATTERN.match(tenant):
            return _error(400, f"tenant {tenant[:64]!r} is not a valid tenant id")
        event_type = request.query_params.get("event_type") or None
        hours = window_hours(request.query_params.get("window_hours"))
        return _json(await dashboard_state(svc, self.insights, tenant, event_type, hours))

    async def monitoring(self, request: Request) -> Response:
        authorize("admin")
        svc = self.ref.get()
        action = (await _body(request)).get("action")
        if action == "start":
            await svc.monitor.start()
        elif action == "stop":
            await svc.monitor.stop()
        else:
            return _error(400, "action must be 'start' or 'stop'")
        return _json(svc.monitor.state().model_dump(mode="json"))

    async def rollback(self, request: Request) -> Response:
        body = await _body(request)
        deployment_id, reason = str(body.get("deployment_id", "")), str(body.get("reason", "")).strip()
        if not deployment_id or not reason:
            return _error(400, "give deployment_id and a reason")
        caller = authorize("improve")
        changes = self.ref.get().changes  # the same use case as rollback_deployment's
        found = await changes.visible(caller, deployment_id)
        authorize("improve", found.tenant)
        done = await changes.rollback(caller, found, reason[:2000])
        return _json({"deployment": summary(done).model_dump(mode="json"), "message": restored(done)})

    async def stream(self, _: Request) -> Response:
        # The caller is read now: the stream runs after this handler has returned, outside its sign-in.
        return self.streams.response(current_caller(), {**SECURITY_HEADERS, "X-Accel-Buffering": "no"})


def add_dashboard_routes(
    server: MCPServer,
    settings: Settings,
    verifier: TokenVerifier | None,
    ref: ServicesRef,
    notifier: Notifier,
) -> Dashboard:
    """Register ``/dashboard`` and its API on ``server`` (served by its streamable HTTP app)."""
    dashboard = Dashboard(settings, verifier, ref, notifier)
    for path, method, signed_in, handler in dashboard.routes():
        add: Callable[[Handler], object] = server.custom_route(path, methods=[method], include_in_schema=False)
        add(dashboard.guarded(handler, method, signed_in))
    return dashboard


class BadBody(ValueError):
    """A dashboard action's body is not a small JSON object."""


async def _body(request: Request) -> dict[str, Any]:
    """The action's JSON object (``{}`` for no body); depth-safe: a deeply nested body is refused, never a 500."""
    raw = await request.body()  # bounded per route before it gets here (server.body_limits)
    if not raw.strip():
        return {}
    try:
        body = loads_bounded(raw, max_depth=BODY_DEPTH)
    except ValueError as exc:
        raise BadBody(f"the request body must be a JSON object ({str(exc)[:120]})") from None
    if not isinstance(body, dict):
        raise BadBody(f"the request body must be a JSON object, not {type(body).__name__}")
    return body


def _json(data: Any, status: int = 200) -> Response:
    return JSONResponse(data, status_code=status, headers=SECURITY_HEADERS)


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)
