"""Change notifications across replicas on one PostgreSQL database (``LISTEN``/``NOTIFY``, no extra broker): what
changed through this replica (a deployment, a cycle, the list of changes that want attention) is sent to the others,
and what the others send is published here as if it had changed here — to this replica's listeners, legacy
subscribers and dashboard pages, and to its generated-tool registry, which syncs on every change of deployments.

A notification carries the changed resources with their tenants and whether the listing may have changed; a change
too large for one notification (PostgreSQL's 8,000 bytes) is sent as "deployments and cycles changed". A replica
ignores its own notifications."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import anyio
import psycopg

from server.change_feed import Change, ChangeFeed
from tools.improvement import ACTIVE_URI

logger = logging.getLogger(__name__)
CHANNEL = "self_building_changes"
MAX_PAYLOAD = 7_000  # bytes of one notification (PostgreSQL's limit is 8,000)
RETRY_SECONDS = 5.0  # between attempts to listen again after the connection was lost


class ReplicaChanges:
    """One per replica: :meth:`send` (the feed's ``on_local``) and :meth:`listen` (a task of the lifespan)."""

    def __init__(self, url: str, feed: ChangeFeed) -> None:
        self.url = url
        self.feed = feed
        self.origin = uuid.uuid4().hex
        self._sender: psycopg.AsyncConnection[Any] | None = None
        self._sending = anyio.Lock()  # one send at a time on the sender; close waits for the one in flight
        self._closed = False

    async def send(self, changes: set[Change], listing: bool) -> None:
        payload = json.dumps({"origin": self.origin, "changes": sorted(changes, key=str), "listing": listing})
        if len(payload.encode()) > MAX_PAYLOAD:
            payload = json.dumps({"origin": self.origin, "changes": [[ACTIVE_URI, None]], "listing": True})
        async with self._sending:
            if self._closed:
                return
            if self._sender is None or self._sender.closed:
                self._sender = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
            await self._sender.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))

    async def listen(self) -> None:
        """Publish the other replicas' changes here until cancelled. A lost connection (the database restarting) is
        logged and made again every ``RETRY_SECONDS``; what changed meanwhile is caught up by publishing the listing
        and deployments as changed (the registry syncs) once it is back."""
        first = True
        while True:
            try:
                await self._listen(catch_up=not first)
            except (psycopg.Error, OSError) as exc:
                logger.warning("listening for other replicas' changes failed (%s); again in %g s", exc, RETRY_SECONDS)
            first = False
            await anyio.sleep(RETRY_SECONDS)

    async def _listen(self, *, catch_up: bool) -> None:
        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        try:
            await conn.execute(f"LISTEN {CHANNEL}")
            if catch_up:
                self.feed.mark([ACTIVE_URI], listing=True, remote=True)
            async for note in conn.notifies():
                try:
                    body = json.loads(note.payload)
                    if body.get("origin") == self.origin:
                        continue
                    self._publish(body)
                except (ValueError, TypeError, KeyError):
                    logger.warning("an unreadable change notification from another replica was ignored")
        finally:
            with anyio.CancelScope(shield=True):  # not ``async with conn``: its rollback, cancelled, skips the close
                await conn.close()

    def _publish(self, body: dict[str, Any]) -> None:
        by_tenant: dict[str | None, list[str]] = {}
        for uri, tenant in body["changes"]:
            by_tenant.setdefault(tenant, []).append(str(uri))
        listing = bool(body.get("listing"))
        for tenant, uris in by_tenant.items():
            self.feed.mark(uris, tenant=tenant, listing=listing, remote=True)
        if listing and not by_tenant:
            self.feed.mark([], listing=True, remote=True)

    async def close(self) -> None:
        """Close the sender, once a send in flight is over (a send after this sends nothing)."""
        self._closed = True
        async with self._sending:
            if self._sender is not None:
                await self._sender.close()
