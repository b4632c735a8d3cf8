"""The streamable HTTP transport: ``/mcp`` (API key, DNS-rebinding protection) and ``GET /health``."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE, TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from server import __version__
from server.body_limits import KIB, BodyLimits
from server.http_limits import ConnectionCollector, ConnectionGuard, HttpLimits, connection_budget, guarded_protocol
from server.http_sessions import cap_sessions
from server.jsonrpc_guard import guard_json_rpc
from server.log_flood import FloodFilter, guard_handlers, install_loop_handler
from server.settings import Settings, is_loopback

logger = logging.getLogger(__name__)
LOOPBACK_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*")
LOOPBACK_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")
GRACEFUL_SHUTDOWN_SECONDS = 5
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
# Request bodies per route: /mcp as the SDK bounds it (4 MiB); a dashboard sign-in needs a few hundred bytes.
BODY_LIMITS = (
    ("/mcp", DEFAULT_MAX_REQUEST_BODY_SIZE),
    ("/dashboard/api/login", 4 * KIB),
    ("/dashboard/api/", 16 * KIB),
)
# Loggers a client can make write once per request or connection (bad requests, refused sessions, failed accepts).
FLOODABLE_LOGGERS = ("uvicorn", "asyncio", "mcp.server", "server.http", "server.body_limits")


class UnsafeBindError(ValueError):
    """Refusing to expose the server without an API key."""


def check_bind(settings: Settings) -> None:
    """Refuse to listen beyond this machine without an API key (the single key or a tenants file's keys)."""
    if not is_loopback(settings.http_host) and settings.mcp_api_key is None and settings.tenants_file is None:
        raise UnsafeBindError(
            f"refusing to bind {settings.http_host}: it accepts connections from other machines and no API key is "
            "set. Set SELF_BUILDING_MCP_API_KEY or SELF_BUILDING_TENANTS_FILE (clients then send "
            "'Authorization: Bearer <key>'), or bind to 127.0.0.1."
        )


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection with an explicit allowlist - also on 0.0.0.0, where the SDK would turn it off."""
    hosts = list(LOOPBACK_HOSTS)
    host = settings.http_host
    if host not in WILDCARD_BINDS and not is_loopback(host):
        hosts.append(f"[{host}]:*" if ":" in host else f"{host}:*")
    hosts += [h for h in settings.allowed_hosts if h not in hosts]
    origins = list(LOOPBACK_ORIGINS) + [o for o in settings.allowed_origins if o not in LOOPBACK_ORIGINS]
    if host in WILDCARD_BINDS and not settings.allowed_hosts:
        logger.warning(
            "listening on all interfaces but only loopback Host headers are allowed; set SELF_BUILDING_ALLOWED_HOSTS "
            "(e.g. 'myhost.example:*') so remote clients are accepted"
        )
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def build_http_app(server: MCPServer, settings: Settings) -> ASGIApp:
    """The ASGI app: ``/mcp`` plus ``/health`` and the other routes. Its lifespan runs the MCP session manager (and
    our services). Request bodies are bounded per route; each key holds a bounded number of legacy sessions."""
    started = time.time()

    async def health(_: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "name": server.name,
                "version": __version__,
                "uptime_seconds": round(time.time() - started, 1),
            }
        )

    add_route: Callable[[Callable[[Request], Awaitable[Response]]], object] = server.custom_route(
        "/health", methods=["GET"], include_in_schema=False
    )
    add_route(health)
    app = server.streamable_http_app(
        streamable_http_path="/mcp",
        transport_security=transport_security(settings),
        host=settings.http_host,
        session_idle_timeout=settings.legacy_session_idle_seconds,
    )
    cap_sessions(app, server.session_manager.handle_request, settings.legacy_sessions_per_key)
    guard_json_rpc(app, "/mcp")  # malformed JSON-RPC gets 400 and an error, never silence
    return BodyLimits(app, BODY_LIMITS)


def http_limits(settings: Settings, max_connections: int) -> HttpLimits:
    return HttpLimits(
        max_connections=max_connections,
        read_timeout=settings.http_read_timeout_seconds,
        request_timeout=settings.http_request_timeout_seconds,
        keepalive_timeout=settings.http_keepalive_timeout_seconds,
        write_timeout=settings.http_write_timeout_seconds,
    )


async def serve_http(server: MCPServer, settings: Settings) -> None:
    """Run uvicorn until interrupted, with bounded connections and a log that clients cannot flood."""
    check_bind(settings)
    app = build_http_app(server, settings)
    budget = connection_budget(settings.http_max_connections)
    guard = ConnectionGuard(http_limits(settings, budget.connections))
    flood = FloodFilter(FLOODABLE_LOGGERS)
    guard_handlers(flood)
    install_loop_handler(asyncio.get_running_loop(), guard.stats.count_accept_error)
    registry = getattr(server, "metrics_registry", None)
    if registry is not None:
        registry.register(ConnectionCollector(guard.stats, flood))
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        server_header=False,
        http=guarded_protocol(guard),
        backlog=budget.backlog,
        timeout_keep_alive=max(1, round(settings.http_keepalive_timeout_seconds)),
        # Long-lived streams (dashboard events, MCP SSE) do not hold a stop up: after this they are cut.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    logger.info(
        "serving MCP over HTTP at http://%s:%d/mcp (at most %d connections)",
        settings.http_host,
        settings.http_port,
        guard.limits.max_connections,
    )
    await _Uvicorn(config, getattr(server, "on_http_stop", [])).serve()


class _Uvicorn(uvicorn.Server):
    """uvicorn that first ends our own long-lived streams when it stops, so it need not wait for them."""

    def __init__(self, config: uvicorn.Config, on_stop: list[Callable[[], None]]) -> None:
        super().__init__(config)
        self._on_stop = on_stop

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for hook in self._on_stop:
            hook()
        await super().shutdown(sockets)
