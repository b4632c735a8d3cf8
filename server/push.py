"""Pushing to clients that may not read: one mechanism for every stream the server pushes on.

Each consumer (a legacy MCP connection, a 2026 ``subscriptions/listen`` stream, a dashboard event stream) gets an
:class:`Outbox`. Publishing only appends to it and never waits, so no consumer can hold up the monitor, the sampler
or another consumer. An outbox is bounded: when it is full its oldest entry goes (counted), and a change already
waiting is not queued twice (change notifications are level triggers: one says all). One task per consumer drains
its outbox through :func:`send_within`; a send the client takes none of for the stall bound ends that consumer
(counted): it is forgotten, its queue freed, and its stream closed as far as its transport allows.

Changes to one tenant's resources carry that tenant (:class:`TenantResourceUpdated`, :class:`TenantListChanged`);
:func:`may_see` lets them through only to callers that may read the tenant, as ``resources/list`` does.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Awaitable, Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar, get_args

import anyio
from mcp.server.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from tools.access import Caller

StreamKind = Literal["session", "listen", "dashboard"]
STREAM_KINDS: tuple[StreamKind, ...] = get_args(StreamKind)
T = TypeVar("T")


class PushStats(Collector):
    """Notifications dropped (a consumer's outbox was full) and consumers cut off (they took nothing for the stall
    bound), per kind of stream; registered on the server's metrics registry for ``/metrics``."""

    def __init__(self) -> None:
        self.dropped: Counter[StreamKind] = Counter()
        self.cut: Counter[StreamKind] = Counter()

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected fresh each scrape

    def collect(self) -> Iterator[Metric]:
        dropped = CounterMetricFamily(
            "mcp_notifications_dropped",
            "Notifications dropped because the client fell behind (its queue was full), by stream: session (a "
            "legacy MCP connection), listen (a 2026 subscriptions/listen stream), dashboard (an event stream).",
            labels=["stream"],
        )
        cut = CounterMetricFamily(
            "mcp_push_streams_cut",
            "Client streams ended because the client took no notification for notification_stall_seconds, by stream.",
            labels=["stream"],
        )
        for kind in STREAM_KINDS:
            dropped.add_metric([kind], self.dropped[kind])
            cut.add_metric([kind], self.cut[kind])
        yield from (dropped, cut)


class Outbox(Generic[T]):
    """One consumer's waiting notifications: at most ``limit``; when full the oldest goes (counted in ``stats``);
    an item whose ``key`` equals a waiting one's is not queued again (``key`` None: never coalesced)."""

    def __init__(
        self, limit: int, kind: StreamKind, stats: PushStats, key: Callable[[T], Hashable | None] = lambda _: None
    ) -> None:
        self._limit = limit
        self._kind = kind
        self._stats = stats
        self._key = key
        self._items: deque[T] = deque()
        self._waiting: set[Hashable] = set()
        self._ready = anyio.Event()
        self._closed = False
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        """Queue ``item`` without waiting (callable from listeners that must not block)."""
        if self._closed:
            return
        key = self._key(item)
        if key is not None:
            if key in self._waiting:
                return
            self._waiting.add(key)
        if len(self._items) >= self._limit:
            self._forget(self._items.popleft())
            self.dropped += 1
            self._stats.dropped[self._kind] += 1
        self._items.append(item)
        self._ready.set()

    def pop(self) -> T | None:
        """The oldest waiting item, or None when there is none (never waits)."""
        if not self._items:
            return None
        item = self._items.popleft()
        self._forget(item)
        return item

    async def get(self) -> T:
        """Wait for the oldest item. Raises ``anyio.EndOfStream`` once the outbox is closed."""
        while not self._items and not self._closed:
            self._ready = anyio.Event()
            await self._ready.wait()
        item = None if self._closed else self.pop()
        if item is None:
            raise anyio.EndOfStream
        return item

    def close(self) -> None:
        """Discard what waits and end :meth:`get` (the consumer is gone or being cut off)."""
        self._closed = True
        self._items.clear()
        self._waiting.clear()
        self._ready.set()

    def _forget(self, item: T) -> None:
        key = self._key(item)
        if key is not None:
            self._waiting.discard(key)


class Stalled(Exception):
    """The client took none of a send for the stall bound."""


async def send_within(seconds: float, sending: Awaitable[None]) -> None:
    """Await one send; raise :class:`Stalled` when it has not finished after ``seconds`` (it is then abandoned)."""
    with anyio.move_on_after(seconds) as scope:
        await sending
    if scope.cancelled_caught:
        raise Stalled


@dataclass(frozen=True)
class TenantResourceUpdated(ResourceUpdated):
    """A change to a resource of one tenant (a deployment, or the tenant's improvement cycles)."""

    tenant: str


@dataclass(frozen=True)
class TenantListChanged(ResourcesListChanged):
    """The resource list changed for these tenants only (deployments that want attention came or went)."""

    tenants: frozenset[str]


@dataclass(frozen=True)
class TenantToolsChanged(ToolsListChanged):
    """The tool list changed for these tenants only (their generated tools came, changed or went)."""

    tenants: frozenset[str]


# A tenant nobody is limited to: a change whose tenant could not be found reaches only keys for every tenant.
UNKNOWN_TENANT = ""


def may_see(caller: Caller, event: ServerEvent) -> bool:
    """Whether ``caller`` may be told of ``event``: a tenant's change needs the read role on that tenant."""
    if isinstance(event, TenantResourceUpdated):
        tenants: frozenset[str] = frozenset({event.tenant})
    elif isinstance(event, TenantListChanged | TenantToolsChanged):
        tenants = event.tenants
    else:
        return True
    return caller.has_role("read") and any(caller.may_use(t) for t in tenants)


def change_key(event: ServerEvent) -> str:
    """What a client can tell apart: the resource URI, or which list changed."""
    if isinstance(event, ResourceUpdated):
        return event.uri
    for kind in (ToolsListChanged, PromptsListChanged, ResourcesListChanged):
        if isinstance(event, kind):
            return kind.__name__
    return type(event).__name__
