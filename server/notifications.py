"""Pushes resource changes to clients of both protocol eras, and serves the legacy subscribe/setLevel methods.

* 2026-07-28 clients listen with ``subscriptions/listen``; we publish on the SDK's subscription bus.
* Legacy (2025-11-25 and older) clients subscribe with ``resources/subscribe``; ``MCPServer`` does not serve it,
  so we register it (and ``logging/setLevel``) on the low-level server, as the SDK docs advise.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import mcp.types as types
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
    """Tracks legacy subscribers and log levels per session, and fans resource updates out to everyone."""

    def __init__(self, bus: InMemorySubscriptionBus) -> None:
        self.bus = bus
        # Keyed weakly by the connection: the session object a handler sees is a per-request proxy, while the
        # connection lives exactly as long as the client is connected.
        self._subscribers: dict[str, weakref.WeakKeyDictionary[object, ServerSession]] = {}
        self._log_levels: weakref.WeakKeyDictionary[object, tuple[ServerSession, int]] = weakref.WeakKeyDictionary()
        self._legacy_sessions: weakref.WeakKeyDictionary[object, ServerSession] = weakref.WeakKeyDictionary()
        self.updates_sent = 0

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
            self._legacy_sessions[_connection(ctx.session)] = ctx.session
        return await call_next(ctx)

    async def _subscribe(self, ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
        # Any URI may be watched; only our own resources ever fire.
        session: ServerSession = ctx.session
        self._subscribers.setdefault(str(params.uri), weakref.WeakKeyDictionary())[_connection(session)] = session
        return types.EmptyResult()

    async def _unsubscribe(self, ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        watchers = self._subscribers.get(str(params.uri))
        if watchers is not None:
            watchers.pop(_connection(ctx.session), None)
        return types.EmptyResult()

    async def _set_level(self, ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
        self._log_levels[_connection(ctx.session)] = (ctx.session, _LEVELS.index(params.level))
        return types.EmptyResult()

    async def resource_updated(self, uri: str) -> None:
        """Tell every listener (2026) and legacy subscriber that ``uri`` changed."""
        await self.bus.publish(ResourceUpdated(uri=uri))
        watchers = self._subscribers.get(uri)
        for key, session in list(watchers.items()) if watchers is not None else []:
            try:
                await session.send_resource_updated(uri)
            except Exception:  # a closed session: forget it
                logger.debug("dropping a subscriber whose session is gone", exc_info=True)
                watchers.pop(key, None)  # type: ignore[union-attr]
        self.updates_sent += 1

    async def resources_changed(self) -> None:
        """Tell every listener (2026) and connected legacy session that the resource list changed."""
        await self.bus.publish(ResourcesListChanged())
        await self._to_legacy_sessions(ServerSession.send_resource_list_changed)

    async def tools_changed(self) -> None:
        """Tell every listener (2026) and connected legacy session that the tool list changed."""
        await self.bus.publish(ToolsListChanged())
        await self._to_legacy_sessions(ServerSession.send_tool_list_changed)

    async def _to_legacy_sessions(self, send: Callable[[ServerSession], Awaitable[None]]) -> None:
        for key, session in list(self._legacy_sessions.items()):
            try:
                await send(session)
            except Exception:
                logger.debug("dropping a legacy session that is gone", exc_info=True)
                self._legacy_sessions.pop(key, None)

    async def on_events(self, events: list[MonitoringEvent]) -> None:
        """Monitor listener: refresh ``monitoring://events`` and log new events to sessions that asked for logs."""
        await self.resource_updated(EVENTS_URI)
        for key, (session, floor) in list(self._log_levels.items()):
            for event in events:
                level = _SEVERITY_LEVEL[event.severity]
                if _LEVELS.index(level) < floor:
                    continue
                try:
                    await session.send_log_message(level, event.model_dump(mode="json"), logger="monitoring")
                except Exception:
                    logger.debug("dropping a log subscriber whose session is gone", exc_info=True)
                    self._log_levels.pop(key, None)
                    break


def _connection(session: ServerSession) -> object:
    """The connection behind a per-request session proxy (the SDK offers no public accessor in 2.3)."""
    return getattr(session, "_connection", session)
