"""Pushes resource changes to clients of both protocol eras, and serves the legacy subscribe/setLevel methods.

* 2026-07-28 clients listen with ``subscriptions/listen``; we publish on the SDK's subscription bus.
* Legacy (2025-11-25 and older) clients subscribe with ``resources/subscribe``; ``MCPServer`` does not serve it,
  so we register it (and ``logging/setLevel``) on the low-level server, as the SDK docs advise.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import Awaitable
from typing import Any

import mcp.types as types
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourcesListChanged, ResourceUpdated, ToolsListChanged
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from telemetry.events import MonitoringEvent

logger = logging.getLogger(__name__)
EVENTS_URI = "monitoring://events"
STATUS_URI = "system://status"
_LEVELS: tuple[types.LoggingLevel, ...] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)
_SEVERITY_LEVEL: dict[str, types.LoggingLevel] = {
    "low": "info",
    "medium": "notice",
    "high": "warning",
    "critical": "error",
}


class Notifier:
    """Tracks legacy subscribers, log levels and sessions per connection, and fans resource updates out to everyone.

    Everything is held weakly by the connection (the session object a handler sees is a per-request proxy, while the
    connection lives exactly as long as the client is connected), and notifications go through the connection, so a
    client that goes away is forgotten without a failed send.
    """

    def __init__(self, bus: InMemorySubscriptionBus) -> None:
        self.bus = bus
        self._subscribers: dict[str, weakref.WeakSet[Connection]] = {}
        self._log_levels: weakref.WeakKeyDictionary[Connection, int] = weakref.WeakKeyDictionary()
        self._legacy: weakref.WeakSet[Connection] = weakref.WeakSet()
        self.updates_sent = 0

    def tracked(self) -> int:
        """How many connections are held (legacy sessions, subscribers, log levels): ends at zero as clients go."""
        subscribed = {id(c) for watchers in self._subscribers.values() for c in watchers}
        return len({id(c) for c in self._legacy} | subscribed | {id(c) for c in self._log_levels})

    def install(self, server: MCPServer) -> None:
        """Register the legacy handlers; this also makes the server declare ``resources.subscribe`` and logging."""
        # Serving logging to legacy sessions is deliberate; the SDK warns on every send otherwise.
        warnings.filterwarnings(
            "ignore", message="The logging capability is deprecated", category=MCPDeprecationWarning
        )
        lowlevel = server._lowlevel_server  # the SDK's documented route for methods MCPServer does not serve
        lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, self._subscribe)
        lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, self._unsubscribe)
        lowlevel.add_request_handler("logging/setLevel", types.SetLevelRequestParams, self._set_level)

    async def track_sessions(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Server middleware: remember connected legacy sessions, which get list-changed notifications pushed."""
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self._legacy.add(_connection(ctx.session))
        return await call_next(ctx)

    async def _subscribe(self, ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
        # Any URI may be watched; only our own resources ever fire.
        self._subscribers.setdefault(str(params.uri), weakref.WeakSet()).add(_connection(ctx.session))
        return types.EmptyResult()

    async def _unsubscribe(self, ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        watchers = self._subscribers.get(str(params.uri))
        if watchers is not None:
            watchers.discard(_connection(ctx.session))
        return types.EmptyResult()

    async def _set_level(self, ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
        self._log_levels[_connection(ctx.session)] = _LEVELS.index(params.level)
        return types.EmptyResult()

    async def resource_updated(self, uri: str) -> None:
        """Tell every listener (2026) and legacy subscriber that ``uri`` changed."""
        await self.bus.publish(ResourceUpdated(uri=uri))
        watchers = self._subscribers.get(uri, weakref.WeakSet())
        for connection in list(watchers):
            await _send(connection.send_resource_updated(uri), watchers, connection)
        self.updates_sent += 1

    async def resources_changed(self) -> None:
        """Tell every listener (2026) and connected legacy session that the resource list changed."""
        await self.bus.publish(ResourcesListChanged())
        for connection in list(self._legacy):
            await _send(connection.send_resource_list_changed(), self._legacy, connection)

    async def tools_changed(self) -> None:
        """Tell every listener (2026) and connected legacy session that the tool list changed."""
        await self.bus.publish(ToolsListChanged())
        for connection in list(self._legacy):
            await _send(connection.send_tool_list_changed(), self._legacy, connection)

    async def on_events(self, events: list[MonitoringEvent]) -> None:
        """Monitor listener: refresh ``monitoring://events`` and log new events to sessions that asked for logs."""
        await self.resource_updated(EVENTS_URI)
        for connection, floor in list(self._log_levels.items()):
            for event in events:
                level = _SEVERITY_LEVEL[event.severity]
                if _LEVELS.index(level) >= floor:
                    data = event.model_dump(mode="json")
                    if not await _send(connection.log(level, data, logger="monitoring"), self._log_levels, connection):
                        break


async def _send(
    sending: Awaitable[None],
    registry: weakref.WeakSet[Connection] | weakref.WeakKeyDictionary[Connection, int],
    connection: Connection,
) -> bool:
    """Await one notification; a connection that cannot take it any more is dropped from ``registry``."""
    try:
        await sending
    except Exception:
        logger.debug("dropping a connection that is gone", exc_info=True)
        if isinstance(registry, weakref.WeakSet):
            registry.discard(connection)
        else:
            registry.pop(connection, None)
        return False
    return True


def _connection(session: ServerSession) -> Connection:
    """The connection behind a per-request session proxy (the SDK offers no public accessor in 2.3)."""
    return session._connection
