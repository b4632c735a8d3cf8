"""``GET /metrics`` (HTTP transport only): the Prometheus exposition of the server's metrics.

Protected like ``/mcp``: with API keys configured, a scrape sends ``Authorization: Bearer <key>`` of a key that may
see every tenant (the figures carry tenant labels). ``metrics_open_on_loopback`` lets a scraper on this machine in
without a key. Without any key configured the HTTP transport only binds to loopback, and ``/metrics`` is open there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mcp.server.auth.provider import TokenVerifier
from mcp.server.mcpserver import MCPServer
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from server.metrics import CONTENT_TYPE, ServerMetrics
from server.settings import Settings, is_loopback
from tools.access import ALL_TENANTS, TENANT_SCOPE

EVERY_TENANT = f"{TENANT_SCOPE}{ALL_TENANTS}"


def add_metrics_route(
    server: MCPServer, metrics: ServerMetrics, settings: Settings, verifier: TokenVerifier | None
) -> None:
    """Register ``GET /metrics`` on ``server`` (served by its streamable HTTP app)."""

    async def scrape(request: Request) -> Response:
        refusal = await _refusal(request, settings, verifier)
        if refusal is not None:
            return refusal
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    add_route: Callable[[Callable[[Request], Awaitable[Response]]], object] = server.custom_route(
        "/metrics", methods=["GET"], include_in_schema=False
    )
    add_route(scrape)


async def _refusal(request: Request, settings: Settings, verifier: TokenVerifier | None) -> Response | None:
    if verifier is None:
        return None
    client = request.client.host if request.client else ""
    if settings.metrics_open_on_loopback and is_loopback(client):
        return None
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    token = await verifier.verify_token(key.strip()) if scheme.lower() == "bearer" and key.strip() else None
    if token is None:
        return PlainTextResponse(
            "metrics need 'Authorization: Bearer <key>' (or metrics_open_on_loopback for a local scraper)\n",
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    if EVERY_TENANT not in token.scopes:
        return PlainTextResponse(
            f"key '{token.client_id}' may not read metrics: they cover every tenant, and it may not\n", status_code=403
        )
    return None
