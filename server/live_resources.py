"""Which resources changed, told to clients: ``improvements://active``, ``deployments://{id}`` and the resource list.

The stores are wrapped (:class:`ObservedVersionStore`, :class:`ObservedCycleStore`) so every write marks the
resources it changes, from whichever thread wrote it. :class:`ChangeFeed` publishes the marks from the event loop,
coalesced (a burst of writes to one deployment is one update), through the :class:`~server.notifications.Notifier`
to both protocol eras. Deployments that want attention (held for approval, or deployed and being watched by an
improvement cycle) are listed as concrete resources by :class:`SelfBuildingServer`; when that set changes, clients
get a resource list-changed notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.types import Resource as MCPResource
from prometheus_client import CollectorRegistry

from generators.deploy import Deployment, DeploymentStatus, FileVersion, SqliteVersionStore, VersionStore
from generators.improvement.models import CandidateRecord, CandidateStatus, CycleRecord, CycleStatus
from generators.improvement.store import CycleStore
from server.notifications import Notifier
from tools.access import current_caller

logger = logging.getLogger(__name__)
IMPROVEMENTS_URI = "improvements://active"
DEPLOYMENT_PREFIX = "deployments://"
MAX_LISTED = 50  # deployments listed as concrete resources (each of the two kinds)


def deployment_uri(deployment_id: str) -> str:
    return f"{DEPLOYMENT_PREFIX}{deployment_id}"


Watched = Callable[[], Awaitable[list[Deployment]]]


class ChangeFeed:
    """Collects changed resource URIs from any thread; :meth:`run` publishes them from the event loop."""

    def __init__(
        self,
        resource_updated: Callable[[str], Awaitable[None]],
        resources_changed: Callable[[], Awaitable[None]],
        watched: Watched,
        tools_changed: Callable[[], Awaitable[None]],
    ) -> None:
        self._resource_updated = resource_updated
        self._resources_changed = resources_changed
        self._tools_changed = tools_changed
        self._tools_dirty = False
        self._watched = watched
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._listing_dirty = False
        self._event = anyio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._listed: frozenset[str] = frozenset()

    def mark(self, uris: Sequence[str], *, listing: bool = False, tools: bool = False) -> None:
        """Note that ``uris`` changed (with ``listing``: the watched set may have; with ``tools``: the tool set did);
        callable from any thread."""
        with self._lock:
            idle = not (self._pending or self._listing_dirty or self._tools_dirty)
            self._pending.update(uris)
            self._listing_dirty = self._listing_dirty or listing
            self._tools_dirty = self._tools_dirty or tools
        if idle:  # a wake is already on its way otherwise: the run loop drains everything at once
            self._wake()

    def _wake(self) -> None:
        loop = self._loop
        if loop is None:
            return  # not running: changes before start-up need no notice
        if threading.get_ident() == self._loop_thread:
            self._event.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to tell
            loop.call_soon_threadsafe(self._event.set)  # never blocks the writing thread

    async def run(self) -> None:
        """Publish marks until cancelled (owned by the lifespan's task group)."""
        with self._lock:  # what changed before start-up (tools registered, recovery) is nobody's news
            self._pending, self._listing_dirty, self._tools_dirty = set(), False, False
        self._loop = asyncio.get_running_loop()  # the server runs on asyncio (anyio's default backend)
        self._loop_thread = threading.get_ident()
        self._listed = await self._watched_ids()
        try:
            await self._serve()
        finally:
            self._loop = None

    async def _serve(self) -> None:
        while True:
            await self._event.wait()
            self._event = anyio.Event()  # replaced before draining: a mark after the drain wakes the next round
            with self._lock:
                uris, self._pending = self._pending, set()
                listing, self._listing_dirty = self._listing_dirty, False
                tools, self._tools_dirty = self._tools_dirty, False
            try:
                if tools:
                    await self._tools_changed()
                await self._publish(uris, listing)
            except Exception:
                logger.exception("publishing resource changes failed")

    async def _publish(self, uris: set[str], listing: bool) -> None:
        if listing:
            now = await self._watched_ids()
            if now != self._listed:
                self._listed = now
                await self._resources_changed()
        for uri in sorted(uris):
            await self._resource_updated(uri)

    async def _watched_ids(self) -> frozenset[str]:
        return frozenset(d.id for d in await self._watched())


class ObservedVersionStore:
    """A :class:`VersionStore` whose writes mark ``deployments://{id}`` and ``improvements://active`` changed."""

    def __init__(self, inner: SqliteVersionStore, feed: ChangeFeed) -> None:
        self.inner = inner
        self._feed = feed

    def _changed(self, deployment_id: str) -> None:
        self._feed.mark([deployment_uri(deployment_id), IMPROVEMENTS_URI], listing=True)

    def create(self, deployment: Deployment, files: Sequence[FileVersion]) -> None:
        self.inner.create(deployment, files)
        self._changed(deployment.id)

    def get(self, deployment_id: str) -> Deployment | None:
        return self.inner.get(deployment_id)

    def files(self, deployment_id: str) -> list[FileVersion]:
        return self.inner.files(deployment_id)

    def update(self, deployment_id: str, status: DeploymentStatus, at: float, **fields: str | None) -> None:
        self.inner.update(deployment_id, status, at, **fields)
        self._changed(deployment_id)

    def merge_detail(self, deployment_id: str, detail: Mapping[str, Any]) -> None:
        self.inner.merge_detail(deployment_id, detail)
        self._feed.mark([deployment_uri(deployment_id)])

    def list(
        self, tenant: str | None = None, status: DeploymentStatus | None = None, limit: int = 20
    ) -> tuple[list[Deployment], bool]:
        return self.inner.list(tenant, status, limit)

    def close(self) -> None:
        self.inner.close()


class ObservedCycleStore:
    """A :class:`CycleStore` whose writes mark ``improvements://active`` (and the candidate's deployment) changed."""

    def __init__(self, inner: CycleStore, feed: ChangeFeed) -> None:
        self.inner = inner
        self._feed = feed

    def create(self, cycle: CycleRecord) -> None:
        self.inner.create(cycle)
        self._feed.mark([IMPROVEMENTS_URI])

    def save_candidate(self, candidate: CandidateRecord) -> None:
        self.inner.save_candidate(candidate)
        extra = [deployment_uri(candidate.deployment_id)] if candidate.deployment_id else []
        self._feed.mark([IMPROVEMENTS_URI, *extra], listing=True)

    def finish(self, cycle_id: str, status: CycleStatus, at: float, error: str | None = None) -> None:
        self.inner.finish(cycle_id, status, at, error)
        self._feed.mark([IMPROVEMENTS_URI])

    def get(self, cycle_id: str) -> CycleRecord | None:
        return self.inner.get(cycle_id)

    def by_status(self, status: CandidateStatus) -> list[CandidateRecord]:
        return self.inner.by_status(status)

    def by_deployment(self, deployment_id: str) -> CandidateRecord | None:
        return self.inner.by_deployment(deployment_id)

    def active(self, limit: int) -> tuple[list[CycleRecord], bool]:
        return self.inner.active(limit)

    def mark_interrupted(self, at: float) -> list[str]:
        ids = self.inner.mark_interrupted(at)
        if ids:
            self._feed.mark([IMPROVEMENTS_URI], listing=True)
        return ids

    def tallies(self) -> dict[str, dict[str, int]]:
        return self.inner.tallies()

    def close(self) -> None:
        self.inner.close()


def watched_deployments(versions: VersionStore, cycles: CycleStore) -> list[Deployment]:
    """Deployments that want attention now: held for approval, or deployed and watched by a cycle (blocking)."""
    held, _ = versions.list(None, "pending_approval", MAX_LISTED)
    monitored = [c.deployment_id for c in cycles.by_status("monitoring") if c.deployment_id][:MAX_LISTED]
    found = {d.id: d for d in held}
    for deployment_id in monitored:
        deployment = versions.get(deployment_id)
        if deployment is not None:
            found[deployment.id] = deployment
    return sorted(found.values(), key=lambda d: d.created_at, reverse=True)


class SelfBuildingServer(MCPServer):
    """``MCPServer`` whose resource list also names the deployments that want attention (``watched``), filtered
    to the tenants of the caller; that tells clients when a tool is added or removed while it runs (``feed``); and
    that tells long-lived HTTP streams when the server stops."""

    watched: Watched | None = None
    feed: ChangeFeed | None = None
    notifier: Notifier | None = None
    metrics_registry: CollectorRegistry | None = None  # the HTTP transport adds its connection figures to it
    on_http_stop: list[Callable[[], None]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_http_stop = []  # run when the HTTP server starts to stop (before it waits for open connections)

    def add_tool(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().add_tool(fn, *args, **kwargs)
        if self.feed is not None:
            self.feed.mark([], tools=True)

    def remove_tool(self, name: str) -> None:
        super().remove_tool(name)
        if self.feed is not None:
            self.feed.mark([], tools=True)

    async def list_resources(self) -> list[MCPResource]:
        resources = await super().list_resources()
        if self.watched is not None:
            caller = current_caller()  # the request's key: a tenant-limited key sees its tenants' deployments only
            if caller.has_role("read"):
                resources += [_resource(d) for d in await self.watched() if caller.may_use(d.tenant)]
        return resources


def _resource(d: Deployment) -> MCPResource:
    what = "held for approval" if d.status == "pending_approval" else "deployed and being watched"
    return MCPResource(
        uri=deployment_uri(d.id),
        name=f"deployment_{d.id}",
        title=f"Deployment of {d.component} ({d.tenant})",
        description=f"{d.component}: {what}. Updated when its status or figures change.",
        mime_type="application/json",
    )
