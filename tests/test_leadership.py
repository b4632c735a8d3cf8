"""Several replicas on one PostgreSQL: one at a time holds the lease of the background work, another takes it when
it stops, and the lease holder adopts the cycles of a replica that is gone — an interrupted emergency is taken up
again by exactly one new cycle (a real PostgreSQL, see :mod:`tests.postgres_server`)."""

from __future__ import annotations

from typing import Any

import anyio
import psycopg
import pytest

from generators.improvement import CandidateRecord, CycleRecord
from generators.improvement.store_pg import PostgresCycleStore
from generators.pg_db import PostgresDatabase
from server.app import create_server
from server.leadership import LEADER, NAMESPACE
from server.settings import Settings
from tests.conftest import call, connect
from tests.fakes import FakeHostSource, NoGpu
from tests.polling import eventually
from tests.postgres_server import PostgresServer, postgres  # noqa: F401 - the fixture
from tests.test_postgresql_backend import replica

pytestmark = pytest.mark.anyio
LEASE = 1.5  # seconds: a replica that stops answering loses the lease this fast (one that stops cleanly, at once)
DEAD = "99"  # the number of a replica that is gone (it holds no lock)


def server(settings: Settings, url: str, name: str, host: FakeHostSource) -> Any:
    return create_server(
        replica(settings, url, name).model_copy(update={"lease_seconds": LEASE}), host_source=host, gpu_source=NoGpu()
    )


def locks(url: str) -> tuple[dict[str, int], int | None]:
    """What the database says (the replicas' presence and lease locks): each replica alive by its number with the
    pid of its lease connection, and the pid holding the lease."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT objid, pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objsubid = 2 AND granted",
            (NAMESPACE,),
        ).fetchall()
    alive = {str(objid): int(pid) for objid, pid in rows if int(objid) != LEADER}
    leader = next((int(pid) for objid, pid in rows if int(objid) == LEADER), None)
    return alive, leader


def leader(url: str) -> str | None:
    """The number of the replica that holds the lease."""
    alive, pid = locks(url)
    return next((number for number, holder in alive.items() if holder == pid), None)


async def test_one_replica_leads_and_another_takes_the_lease_when_it_stops(
    settings: Settings,
    host: FakeHostSource,
    postgres: PostgresServer,  # noqa: F811
) -> None:
    url = postgres.new_database()
    up, stop_a, a_stopped = anyio.Event(), anyio.Event(), anyio.Event()

    async def run_a() -> None:  # a in a task of its own, so that a can stop while b goes on
        async with connect(server(settings, url, "a", host)) as client:
            await call(client, "get_system_status")
            up.set()
            await stop_a.wait()
        a_stopped.set()

    async with anyio.create_task_group() as group:
        group.start_soon(run_a)
        await up.wait()
        await eventually(lambda: leader(url) is not None, "a, alone, takes the lease")
        [a] = locks(url)[0]
        assert leader(url) == a
        async with connect(server(settings, url, "b", host)) as second:
            await call(second, "get_system_status")
            await eventually(lambda: len(locks(url)[0]) == 2, "b is present")
            [b] = set(locks(url)[0]) - {a}
            assert leader(url) == a, "a keeps the lease while it lives"
            stop_a.set()
            await a_stopped.wait()
            assert a not in locks(url)[0], "a's presence ended with its connection"
            await eventually(lambda: leader(url) == b, "b takes the lease once a stopped", timeout=30)
            assert (await call(second, "get_system_status"))["verdict"]  # b serves on


async def test_the_lease_holder_adopts_a_gone_replicas_cycles_and_takes_up_its_emergency_once(
    settings: Settings,
    host: FakeHostSource,
    postgres: PostgresServer,  # noqa: F811
) -> None:
    url = postgres.new_database()
    db = PostgresDatabase(url)
    try:  # what a replica that died left in the database: two running cycles, one of an alarm
        gone = PostgresCycleStore(db, owner=DEAD)
        params: dict[str, Any] = {"analysis_window_hours": 24.0, "max_improvements": 1, "dry_run": False,
                                  "risk_tolerance": "high", "component": "slow_stats", "metric": "latency_ms",
                                  "reason": "alarm HighLatency: latency above 500 ms"}  # fmt: skip
        gone.create(CycleRecord("manual1", "default", "local", "manual", "running", 1.0, 1.0, {"max": 1}))
        gone.create(CycleRecord("alarm1", "default", "alarm:HighLatency", "emergency", "running", 2.0, 2.0, params))
        gone.save_candidate(CandidateRecord("alarm1", 0, "slow_stats", "latency_ms", "generating", 2.0))
    finally:
        db.close()
    async with connect(server(settings, url, "a", host)) as first, connect(server(settings, url, "b", host)) as second:

        async def resumed() -> list[dict[str, Any]]:
            return (await call(first, "query_audit_log", {"kind": "improvement_cycle_resumed"}))["entries"]

        async def taken_up() -> bool:
            return len(await resumed()) > 0

        await eventually(taken_up, "the interrupted emergency is taken up again", timeout=30)
        manual = await call(second, "get_improvement_cycle", {"cycle_id": "manual1"})
        alarm = await call(second, "get_improvement_cycle", {"cycle_id": "alarm1"})
        assert manual["status"] == "interrupted" and alarm["status"] == "interrupted"
        assert [c["status"] for c in alarm["candidates"]] == ["interrupted"]
        [entry] = await resumed()
        assert entry["detail"] == {"resumes": "alarm1", "component": "slow_stats"}
        new = await call(first, "get_improvement_cycle", {"cycle_id": entry["subject"]})
        assert new["trigger"] == "emergency"

        async def settled() -> bool:
            found = await call(second, "get_improvement_cycle", {"cycle_id": entry["subject"]})
            return bool(found["status"] != "running")

        await eventually(settled, "the new emergency cycle ends (nothing to change: no module)")
        with anyio.fail_after(30):
            assert len(await resumed()) == 1, "exactly one replica took the emergency up"
