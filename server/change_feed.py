"""Which resources changed: ``improvements://active``, ``deployments://{id}`` and the resource list.

The stores are wrapped (:class:`NotifyingVersionStore`, :class:`ObservedCycleStore`) so every write marks the
resources it changes, from whichever thread wrote it, as changes of the deployment's or cycle's tenant.
:class:`ChangeFeed` publishes the marks from the event loop, coalesced (a burst of writes to one deployment is one
update), through the :class:`~server.notifications.Notifier` to both protocol eras and the dashboard, where each
reaches only keys that may read its tenant. When the set of deployments that want attention changes (see
:func:`watched_deployments`), clients get a resource list-changed notification.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

import anyio

from generators.deploy import Deployment, DeploymentStatus, FileVersion, VersionStore
from generators.improvement.models import CandidateRecord, CandidateStatus, CycleRecord, CycleStatus, LeftOutEntry
from generators.improvement.store import CycleStore
from generators.loop import LoopHandOff
from server.push import UNKNOWN_TENANT
from tools.improvement import ACTIVE_URI

logger = logging.getLogger(__name__)
DEPLOYMENT_PREFIX = "deployments://"
MAX_LISTED = 50  # deployments listed as concrete resources (each of the two kinds)
TENANTS_REMEMBERED = 4096  # deployment and cycle ids whose tenant is kept at hand (per store)


def deployment_uri(deployment_id: str) -> str:
    return f"{DEPLOYMENT_PREFIX}{deployment_id}"


Watched = Callable[[], Awaitable[list[Deployment]]]


Change = tuple[str, str | None]  # a resource URI and the tenant it belongs to (None: no tenant's in particular)


class ChangeFeed:
    """Collects changed resource URIs (with their tenant) from any thread; :meth:`run` publishes them from the event
    loop. Each change carries its tenant, so that it reaches only clients that may read that tenant."""

    def __init__(
        self,
        resource_updated: Callable[[str, str | None], Awaitable[None]],
        resources_changed: Callable[[frozenset[str]], Awaitable[None]],
        watched: Watched,
        tools_changed: Callable[[frozenset[str] | None], Awaitable[None]],
    ) -> None:
        self._resource_updated = resource_updated
        self._resources_changed = resources_changed
        self._tools_changed = tools_changed
        self._tools_dirty = False
        self._watched = watched
        self._lock = threading.Lock()
        self._pending: set[Change] = set()
        self._listing_dirty = False
        self._tool_tenants: frozenset[str] | None = frozenset()  # whose tools changed (None: everyone's)
        self._event = anyio.Event()
        self._loop = LoopHandOff()
        self._listed: frozenset[tuple[str, str]] = frozenset()
        self._runs = 0  # run() loops going (one per lifespan of the server)
        self.on_deployments: list[Callable[[], Awaitable[object]]] = []  # run (in turn) after deployments changed
        # Told of the changes made here (not those other replicas made), once published: sends them to the others.
        self.on_local: Callable[[set[Change], bool], Awaitable[None]] | None = None
        self._local: set[Change] = set()
        self._local_listing = False

    def mark(
        self,
        uris: Sequence[str],
        *,
        tenant: str | None = None,
        listing: bool = False,
        tools: bool = False,
        remote: bool = False,
    ) -> None:
        """Note that ``uris`` (resources of ``tenant``, if given) changed (with ``listing``: the watched set may
        have; with ``tools``: the tool set did, for ``tenant`` only if given); callable from any thread. ``remote``:
        another replica made the change (it is published here, and not sent on to the other replicas again)."""
        with self._lock:
            idle = not (self._pending or self._listing_dirty or self._tools_dirty)
            self._pending.update((uri, tenant) for uri in uris)
            if not remote:
                self._local.update((uri, tenant) for uri in uris)
                self._local_listing = self._local_listing or listing
            self._listing_dirty = self._listing_dirty or listing
            self._tools_dirty = self._tools_dirty or tools
            if tools and self._tool_tenants is not None:
                self._tool_tenants = None if tenant is None else self._tool_tenants | {tenant}
        if idle:  # a wake is already on its way otherwise: the run loop drains everything at once
            self._wake()

    def _wake(self) -> None:
        # Never blocks the writing thread; not running (before start-up, after the loop closed): nobody to tell.
        self._loop.call_soon(self._set_event)

    def _set_event(self) -> None:
        self._event.set()  # the current event: run replaces it after each wake

    async def run(self) -> None:
        """Publish marks until cancelled (owned by the lifespan's task group). Several may run at once (each in-memory
        connection runs the server's lifespan): only the first start forgets what was marked before it."""
        binding = self._loop.bind()  # first: a mark from now on wakes this run (a wake for nothing is harmless)
        with self._lock:
            first, self._runs = self._runs == 0, self._runs + 1
            if first:  # what changed before start-up (tools registered, recovery) is nobody's news; once running,
                # marks not yet published are news, and a later start must neither drop them nor re-read the listing
                self._pending, self._listing_dirty, self._tools_dirty = set(), False, False
                self._tool_tenants = frozenset()
        try:
            if first:
                self._listed = await self._watched_ids()
            await self._serve()
        finally:
            with self._lock:
                self._runs -= 1
            self._loop.unbind(binding)  # only its own: another lifespan of the same server may have bound since

    async def _serve(self) -> None:
        while True:
            await self._event.wait()
            self._event = anyio.Event()  # replaced before draining: a mark after the drain wakes the next round
            with self._lock:
                changes, self._pending = self._pending, set()
                listing, self._listing_dirty = self._listing_dirty, False
                tools, self._tools_dirty = self._tools_dirty, False
                tool_tenants, self._tool_tenants = self._tool_tenants, frozenset()
                local, self._local = self._local, set()
                local_listing, self._local_listing = self._local_listing, False
            try:
                if listing:
                    for hook in self.on_deployments:
                        await hook()
                if tools:
                    await self._tools_changed(tool_tenants)
                await self._publish(changes, listing)
                if self.on_local is not None and (local or local_listing):
                    await self.on_local(local, local_listing)
            except Exception:
                logger.exception("publishing resource changes failed")

    async def _publish(self, changes: set[Change], listing: bool) -> None:
        if listing:
            now = await self._watched_ids()
            if now != self._listed:
                tenants = frozenset(tenant for _, tenant in now ^ self._listed)  # whose listing changed
                self._listed = now
                await self._resources_changed(tenants)
        for uri, tenant in sorted(changes, key=lambda change: (change[0], change[1] or "")):
            await self._resource_updated(uri, tenant)

    async def _watched_ids(self) -> frozenset[tuple[str, str]]:
        return frozenset((d.id, d.tenant) for d in await self._watched())


class _Tenants:
    """Whose deployment or cycle an id is (an id's tenant never changes): remembered for the newest ids, looked up
    in the store otherwise. Thread-safe: the stores are written from worker threads."""

    def __init__(self, lookup: Callable[[str], str | None]) -> None:
        self._lookup = lookup
        self._known: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, key: str, tenant: str) -> None:
        with self._lock:
            self._known[key] = tenant
            while len(self._known) > TENANTS_REMEMBERED:
                self._known.popitem(last=False)

    def of(self, key: str) -> str:
        with self._lock:
            known = self._known.get(key)
        if known is not None:
            return known
        tenant = self._lookup(key)
        if tenant is None:
            return UNKNOWN_TENANT
        self.remember(key, tenant)
        return tenant


class NotifyingVersionStore:
    """A :class:`VersionStore` whose writes mark ``deployments://{id}`` and ``improvements://active`` changed, as
    changes of the deployment's tenant."""

    def __init__(self, inner: VersionStore, feed: ChangeFeed) -> None:
        self.inner = inner
        self._feed = feed
        self._tenants = _Tenants(self._tenant_in_store)

    def _tenant_in_store(self, deployment_id: str) -> str | None:
        found = self.inner.get(deployment_id)
        return found.tenant if found is not None else None

    def _changed(self, deployment_id: str) -> None:
        tenant = self._tenants.of(deployment_id)
        self._feed.mark([deployment_uri(deployment_id), ACTIVE_URI], tenant=tenant, listing=True)

    def create(self, deployment: Deployment, files: Sequence[FileVersion]) -> None:
        self.inner.create(deployment, files)
        self._tenants.remember(deployment.id, deployment.tenant)
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
        self._feed.mark([deployment_uri(deployment_id)], tenant=self._tenants.of(deployment_id))

    def list(
        self, tenant: str | None = None, status: DeploymentStatus | None = None, limit: int = 20
    ) -> tuple[list[Deployment], bool]:
        return self.inner.list(tenant, status, limit)

    def close(self) -> None:
        self.inner.close()


class ObservedCycleStore:
    """A :class:`CycleStore` whose writes mark ``improvements://active`` (and the candidate's deployment) changed,
    as changes of the cycle's tenant."""

    def __init__(self, inner: CycleStore, feed: ChangeFeed) -> None:
        self.inner = inner
        self._feed = feed
        self._tenants = _Tenants(self._tenant_in_store)

    def _tenant_in_store(self, cycle_id: str) -> str | None:
        found = self.inner.get(cycle_id)
        return found.tenant if found is not None else None

    def create(self, cycle: CycleRecord) -> None:
        self.inner.create(cycle)
        self._tenants.remember(cycle.id, cycle.tenant)
        self._feed.mark([ACTIVE_URI], tenant=cycle.tenant)

    def save_candidate(self, candidate: CandidateRecord, was: CandidateStatus | None = None) -> None:
        self.inner.save_candidate(candidate, was)
        extra = [deployment_uri(candidate.deployment_id)] if candidate.deployment_id else []
        self._feed.mark([ACTIVE_URI, *extra], tenant=self._tenants.of(candidate.cycle_id), listing=True)

    def finish(self, cycle_id: str, status: CycleStatus, at: float, error: str | None = None) -> None:
        self.inner.finish(cycle_id, status, at, error)
        self._feed.mark([ACTIVE_URI], tenant=self._tenants.of(cycle_id))

    def set_left_out(self, cycle_id: str, entries: list[LeftOutEntry], total: int) -> None:
        self.inner.set_left_out(cycle_id, entries, total)
        self._feed.mark([ACTIVE_URI], tenant=self._tenants.of(cycle_id))

    def get(self, cycle_id: str) -> CycleRecord | None:
        return self.inner.get(cycle_id)

    def by_status(self, status: CandidateStatus) -> list[CandidateRecord]:
        return self.inner.by_status(status)

    def by_deployment(self, deployment_id: str) -> CandidateRecord | None:
        return self.inner.by_deployment(deployment_id)

    def active(self, limit: int) -> tuple[list[CycleRecord], bool]:
        return self.inner.active(limit)

    @property
    def owner(self) -> str:
        return self.inner.owner

    def orphans(self, alive: Collection[str]) -> list[CycleRecord]:
        return self.inner.orphans(alive)

    def adopt(self, cycle_id: str, alive: Collection[str]) -> bool:
        return self.inner.adopt(cycle_id, alive)

    def interrupt(self, cycle_id: str, at: float) -> bool:
        if not self.inner.interrupt(cycle_id, at):
            return False
        self._feed.mark([ACTIVE_URI], tenant=self._tenants.of(cycle_id), listing=True)
        return True

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
