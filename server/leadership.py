"""Several replicas on one PostgreSQL database: which of them is alive, and which one runs the background work that
must run once (retention, the periodic self-analysis, CloudWatch streaming, the autonomous schedule, adopting the
cycles of replicas that are gone).

Both are PostgreSQL session advisory locks on one connection per replica, the lease connection: a replica holds the
lock of its own number while it lives, and at most one holds the leader's lock. A lock ends with its session, so a
replica that dies (SIGKILL, a lost machine) frees both as soon as the database sees its connection end: at once for a
closed socket, and within ``lease_seconds`` for a silent one, as the session is refused to stay idle longer than that
(``idle_session_timeout``; the replica's heartbeat queries keep a live one busy). The others try for the lease every
third of it. A leader whose heartbeat fails stops its background work before it tries again.

A replica that cannot reach the database keeps serving what it can, and neither leads nor counts as alive.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable

import anyio
import psycopg
from anyio.abc import TaskGroup

logger = logging.getLogger(__name__)
NAMESPACE = 0x5E1F  # the first key of every lock here (PostgreSQL's two-key advisory locks)
LEADER = 0  # the second key of the leader's lock; replicas are numbered from 1
Duties = Callable[[TaskGroup], Awaitable[None]]


class Lease:
    """One per replica, owned by the lifespan: :meth:`run` is a task of it."""

    def __init__(self, url: str, *, seconds: float, replica: str) -> None:
        """``replica``: this replica's number (1 to 2**31 - 1), the owner of its cycles."""
        self.url = url
        self.seconds = seconds
        self.replica = replica
        self.leading = False
        self.ready = anyio.Event()  # set once the first attempt is over: another leads, or this one's duties started
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    @property
    def beat(self) -> float:
        """Seconds between heartbeats (and attempts to take the lease)."""
        return self.seconds / 3

    async def run(self, duties: Duties) -> None:
        """Be present, and lead whenever the lease is free, until cancelled: ``duties`` starts the leader's work in a
        task group that is cancelled when the lease is lost. A lost connection is logged and made again."""
        while True:
            try:
                await self._session(duties)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                logger.warning("replica %s: the lease connection failed (%s); again in %g s", self.replica, exc,
                               self.beat)  # fmt: skip
            self.ready.set()
            await anyio.sleep(self.beat)

    async def alive(self) -> set[str]:
        """The numbers of the replicas alive now (this one included while its connection holds)."""
        if self._conn is None:
            return set()
        cursor = await self._conn.execute(
            "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objsubid = 2 AND granted"
            " AND objid <> %s",
            (NAMESPACE, LEADER),
        )
        return {str(row[0]) for row in await cursor.fetchall()}

    async def _session(self, duties: Duties) -> None:
        options = (
            f"-c application_name=self-building-mcp_replica_{self.replica}_pid_{os.getpid()}"
            f" -c idle_session_timeout={int(self.seconds * 1000)} -c tcp_keepalives_idle={max(1, int(self.beat))}"
            " -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3"
        )
        with anyio.fail_after(self.seconds * 2):
            conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, options=options)
        try:
            await conn.execute("SELECT pg_advisory_lock(%s, %s)", (NAMESPACE, int(self.replica)))
            self._conn = conn
            while True:
                if await self._try_lead(conn):
                    await self._lead(conn, duties)
                    return  # the lease was lost with its connection: a new one
                self.ready.set()
                await anyio.sleep(self.beat)
        finally:
            self._conn = None
            with anyio.CancelScope(shield=True):  # not ``async with conn``: its rollback, cancelled, skips the close
                await conn.close()

    async def _try_lead(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> bool:
        with anyio.fail_after(self.beat):
            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (NAMESPACE, LEADER))
            row = await cursor.fetchone()
        return bool(row and row[0])

    async def _lead(self, conn: psycopg.AsyncConnection[tuple[object, ...]], duties: Duties) -> None:
        logger.warning("replica %s holds the lease: it runs the background work", self.replica)
        self.leading = True
        lost = ""
        try:
            async with anyio.create_task_group() as group:
                await duties(group)
                self.ready.set()
                while not lost:
                    await anyio.sleep(self.beat)
                    try:
                        with anyio.fail_after(self.beat):
                            await conn.execute("SELECT 1")
                    except (psycopg.Error, OSError, TimeoutError) as exc:
                        lost = str(exc) or type(exc).__name__
                group.cancel_scope.cancel()
        finally:
            self.leading = False
        logger.warning("replica %s lost the lease (%s): its background work stopped", self.replica, lost)
