"""Pushes resource changes to clients of both protocol eras, and serves the legacy subscribe/setLevel methods.

* 2026-07-28 clients listen with ``subscriptions/listen``; we publish on the SDK's subscription bus, and serve the
  method ourselves (:class:`~server.listen.ListenStreams`) so that its streams are bounded like every other.
* Legacy (2025-11-25 and older) clients subscribe with ``resources/subscribe``; ``MCPServer`` does not serve it,
  so we register it (and ``logging/setLevel``) on the low-level server, as the SDK docs advise.

No client can hold anything up (see :mod:`server.push`): publishing only queues, per connection and bounded; one
task per connection sends, and a connection that takes nothing for ``stall_seconds`` is dropped from push and, on
HTTP, has its session closed. Changes to a tenant's resources reach only connections whose key may read it.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import mcp.types as types
from anyio.abc import TaskGroup
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourcesListChanged, ResourceUpdated, ToolsListChanged
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from server.listen import ListenStreams
from server.push import (
    Outbox,
    PushStats,
    Stalled,
    TenantListChanged,
    TenantResourceUpdated,
    TenantToolsChanged,
    may_see,
    send_within,
)
from telemetry.monitoring.events import MonitoringEvent
from tools.access import Caller, current_caller

logger = logging.getLogger(__name__)
EVENTS_URI = "monitoring://events"
STATUS_URI = "system://status"
MAX_SUBSCRIPTIONS = 1_000  # resources one connection may watch
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


@dataclass(frozen=True)
class _Note:
    """One notification waiting for a connection: a resource update, a list change, or a log entry."""

    method: str
    uri: str | None = None
    level: types.LoggingLevel | None = None
    data: Any = None


def _note_key(note: _Note) -> Hashable | None:
    return None if note.level is not None else (note.method, note.uri)  # log entries are never coalesced


@dataclass(eq=False)
class _Peer:
    """What one connection asked for, who it is (for tenant checks) and what waits for it."""

    outbox: Outbox[_Note]
    caller: Caller
    legacy: bool = False
    uris: set[str] = field(default_factory=set)
    log_floor: int | None = None
    sending: bool = False


class Notifier:
    """Tracks legacy sessions, subscriptions and log levels per connection, and fans changes out to everyone.

    Everything is held weakly by the connection (the session object a handler sees is a per-request proxy, while the
    connection lives exactly as long as the client is connected), so a client that goes away is forgotten without a
    failed send. Senders run in the task group given to :meth:`serve_in` (the lifespan's).
    """

    def __init__(self, bus: InMemorySubscriptionBus, *, queue_max: int = 256, stall_seconds: float = 30.0) -> None:
        self.bus = bus
        self.queue_max = queue_max
        self.stall_seconds = stall_seconds
        self.stats = PushStats()
        self.listen = ListenStreams(bus, queue_max=queue_max, stall_seconds=stall_seconds, stats=self.stats)
        self._peers: weakref.WeakKeyDictionary[Connection, _Peer] = weakref.WeakKeyDictionary()
        self._task_groups: list[TaskGroup] = []
        self._server: MCPServer | None = None

    def tracked(self) -> int:
        """How many connections are held (legacy sessions, subscribers, log levels): ends at zero as clients go."""
        return len(self._peers)

    def install(self, server: MCPServer) -> None:
        """Register the legacy handlers (the server then declares ``resources.subscribe`` and logging) and our
        ``subscriptions/listen``."""
        # Serving logging to legacy sessions is deliberate; the SDK warns on every send otherwise.
        warnings.filterwarnings(
            "ignore", message="The logging capability is deprecated", category=MCPDeprecationWarning
        )
        self._server = server
        lowlevel = server._lowlevel_server  # the SDK's documented route for methods MCPServer does not serve
        lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, self._subscribe)
        lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, self._unsubscribe)
        lowlevel.add_request_handler("logging/setLevel", types.SetLevelRequestParams, self._set_level)
        lowlevel.add_request_handler("subscriptions/listen", types.SubscriptionsListenRequestParams, self.listen)

    def serve_in(self, task_group: TaskGroup) -> Callable[[], None]:
        """Run the per-connection senders in ``task_group`` until the returned callable is called."""
        self._task_groups.append(task_group)
        return lambda: self._task_groups.remove(task_group)

    async def track_sessions(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Server middleware: remember connected legacy sessions, which get list-changed notifications pushed."""
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self._peer(ctx.session).legacy = True
        return await call_next(ctx)

    async def _subscribe(self, ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
        # Any URI may be watched; only our own resources ever fire, and a tenant's only for keys that may read it.
        peer = self._peer(ctx.session)
        if len(peer.uris) >= MAX_SUBSCRIPTIONS and str(params.uri) not in peer.uris:
            raise MCPError(
                types.INVALID_PARAMS,
                f"this session already watches {MAX_SUBSCRIPTIONS} resources; unsubscribe from some first",
            )
        peer.uris.add(str(params.uri))
        return types.EmptyResult()

    async def _unsubscribe(self, ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        peer = self._peers.get(_connection(ctx.session))
        if peer is not None:
            peer.uris.discard(str(params.uri))
        return types.EmptyResult()

    async def _set_level(self, ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
        self._peer(ctx.session).log_floor = _LEVELS.index(params.level)
        return types.EmptyResult()

    async def resource_updated(self, uri: str, tenant: str | None = None) -> None:
        """Tell every listener (2026) and legacy subscriber that ``uri`` changed (a resource of ``tenant``, if
        given: then only those whose key may read that tenant)."""
        event = ResourceUpdated(uri=uri) if tenant is None else TenantResourceUpdated(uri=uri, tenant=tenant)
        await self.bus.publish(event)
        note = _Note("notifications/resources/updated", uri=uri)
        self._push(note, lambda peer: uri in peer.uris and may_see(peer.caller, event))

    async def resources_changed(self, tenants: frozenset[str] | None = None) -> None:
        """Tell every listener (2026) and connected legacy session that the resource list changed (for those
        ``tenants`` only, if given)."""
        event = ResourcesListChanged() if tenants is None else TenantListChanged(tenants=tenants)
        await self.bus.publish(event)
        self._push(_Note("notifications/resources/list_changed"), lambda p: p.legacy and may_see(p.caller, event))

    async def tools_changed(self, tenants: frozenset[str] | None = None) -> None:
        """Tell every listener (2026) and connected legacy session that the tool list changed (for those
        ``tenants`` only, if given: their generated tools, which only keys that may read them see)."""
        event = ToolsListChanged() if tenants is None else TenantToolsChanged(tenants=tenants)
        await self.bus.publish(event)
        self._push(_Note("notifications/tools/list_changed"), lambda peer: peer.legacy and may_see(peer.caller, event))

    async def on_events(self, events: list[MonitoringEvent]) -> None:
        """Monitor listener: refresh ``monitoring://events`` and log new events to sessions that asked for logs.
        Only queues: it never waits for a client."""
        await self.resource_updated(EVENTS_URI)
        logged = [(_SEVERITY_LEVEL[e.severity], e.model_dump(mode="json")) for e in events]
        for connection, peer in list(self._peers.items()):
            if peer.log_floor is None:
                continue
            for level, data in logged:
                if _LEVELS.index(level) >= peer.log_floor:
                    peer.outbox.put(_Note("notifications/message", level=level, data=data))
            self._kick(connection, peer)

    def _peer(self, session: ServerSession) -> _Peer:
        connection = _connection(session)
        peer = self._peers.get(connection)
        if peer is None:
            outbox = Outbox[_Note](self.queue_max, "session", self.stats, key=_note_key)
            peer = self._peers[connection] = _Peer(outbox, current_caller())
        else:
            peer.caller = current_caller()
        return peer

    def _push(self, note: _Note, wants: Callable[[_Peer], bool]) -> None:
        for connection, peer in list(self._peers.items()):
            if wants(peer):
                peer.outbox.put(note)
                self._kick(connection, peer)

    def _kick(self, connection: Connection, peer: _Peer) -> None:
        """Start the connection's sender unless it runs (it holds the connection only while it has work)."""
        if peer.sending or not peer.outbox or not self._task_groups:
            return
        peer.sending = True
        try:
            self._task_groups[-1].start_soon(self._drain, connection, peer)
        except RuntimeError:  # the lifespan is ending: nothing more is sent
            peer.sending = False

    async def _drain(self, connection: Connection, peer: _Peer) -> None:
        try:
            while (note := peer.outbox.pop()) is not None:
                await send_within(self.stall_seconds, _send(connection, note))
        except Stalled:
            await self._cut(connection, peer)
        except Exception:  # the SDK drops sends to closed streams itself; anything else: the connection is unusable
            logger.debug("dropping a connection that cannot take notifications", exc_info=True)
            self._forget(connection, peer)
        finally:
            peer.sending = False

    async def _cut(self, connection: Connection, peer: _Peer) -> None:
        """Drop a connection that takes nothing: no more notifications for it, and its HTTP session closed."""
        self._forget(connection, peer)
        self.stats.cut["session"] += 1
        closed = (
            connection.session_id is not None
            and self._server is not None
            and await _close_http_session(self._server, connection.session_id)
        )
        logger.warning(
            "a connection of %r took no notification for %g s: dropped it from push (%d notifications were dropped "
            "for it)%s", peer.caller.name, self.stall_seconds, peer.outbox.dropped,
            "; closed its HTTP session (its next request is answered 404)" if closed else "",
        )  # fmt: skip

    def _forget(self, connection: Connection, peer: _Peer) -> None:
        if self._peers.get(connection) is peer:
            del self._peers[connection]
        peer.outbox.close()


async def _send(connection: Connection, note: _Note) -> None:
    if note.level is not None:
        await connection.log(note.level, note.data, logger="monitoring")
    elif note.uri is not None:
        await connection.send_resource_updated(note.uri)
    elif note.method == "notifications/resources/list_changed":
        await connection.send_resource_list_changed()
    else:
        await connection.send_tool_list_changed()


async def _close_http_session(server: MCPServer, session_id: str) -> bool:
    """End the legacy HTTP session ``session_id``: its requests and standalone GET stream end on the server side and
    it is answered 404 from then on (so the client starts a new session and subscribes again). The socket itself is
    the HTTP server's to cut (its write timeout), as the session manager cannot reach it."""
    try:
        manager = server.session_manager
    except RuntimeError:  # not serving HTTP (stdio, in-memory)
        return False
    transport = manager._server_instances.get(session_id)  # the SDK (2.3) offers no public lookup by session id
    if transport is None:
        return False
    try:
        await transport.terminate()
    except Exception:  # it is being dropped from push either way
        logger.exception("closing the HTTP session of a connection that took nothing failed")
        return False
    return True


def _connection(session: ServerSession) -> Connection:
    """The connection behind a per-request session proxy (the SDK offers no public accessor in 2.3)."""
    return session._connection
