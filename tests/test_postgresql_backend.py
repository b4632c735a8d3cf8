"""The server on PostgreSQL (``database_url``): every store in one database, so two servers on it — two replicas —
serve one logical server: what one writes, the other reads (a real PostgreSQL, see :mod:`tests.postgres_server`)."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import psycopg
import pytest
from pydantic import SecretStr

from server.settings import Settings
from tests.conftest import call, connect
from tests.fakes import FakeHostSource
from tests.llm_server import ScriptedLLM
from tests.polling import eventually
from tests.postgres_server import PostgresServer, postgres  # noqa: F401 - the fixture
from tests.test_generated_tools import ARGS, NAME, REPLY, tool_list_change
from tests.test_generation_tool import build

pytestmark = pytest.mark.anyio


def replica(settings: Settings, url: str, name: str) -> Settings:
    """One replica's settings: its own data directory (scratch, snapshots), the shared database and workspace."""
    return settings.model_copy(update={"data_dir": settings.data_dir / name, "database_url": SecretStr(url)})


async def test_two_replicas_on_one_postgresql_serve_one_logical_server(
    settings: Settings,
    host: FakeHostSource,
    scripted_llm: ScriptedLLM,
    postgres: PostgresServer,  # noqa: F811
) -> None:
    url = postgres.new_database()
    scripted_llm.reply(REPLY)
    a = build(replica(settings, url, "a"), host, scripted_llm)
    b = build(replica(settings, url, "b"), host, scripted_llm)
    point = {"name": "latency_ms", "value": 5.0, "timestamp": time.time(), "dimensions": {"Component": "api"}}
    async with connect(a) as first, connect(b) as second:
        made = await call(first, "generate_component", ARGS)  # a tool, deployed through replica a
        assert made["succeeded"], made["validation_text"]
        deployment_id = made["deployment"]["deployment_id"]
        seen = await call(second, "get_deployment", {"deployment_id": deployment_id})  # read through replica b
        assert seen["status"] == "deployed" and seen["paths"] == made["files"]
        audit = await call(second, "query_audit_log", {"kind": "deployment"})
        assert [e["subject"] for e in audit["entries"]] == [deployment_id]
        pushed = await call(first, "ingest_telemetry", {"tenant_id": "acme", "metrics": [point]})
        assert pushed["accepted"]["metrics"] == 1
        insights = await call(second, "query_telemetry_insights", {"tenant_id": "acme"})
        assert insights["summary"]["series_analysed"] == 1  # b analyses the series a stored
    # A replica started now serves the tool a deployed (the registry and the deployments are shared; a running
    # replica hears of it once changes cross replicas: issue 17's third step).
    async with connect(build(replica(settings, url, "c"), host, scripted_llm)) as third:
        assert (await call(third, NAME, {"text": "1h30m"})) == {"seconds": 5400}
    for name in ("a", "b", "c"):
        assert not list((settings.data_dir / name).glob("*.sqlite3")), "no store in a SQLite file"
    assert not Path(settings.data_dir / "versions.sqlite3").exists()


async def test_a_change_through_one_replica_is_heard_on_the_other(
    settings: Settings,
    host: FakeHostSource,
    scripted_llm: ScriptedLLM,
    postgres: PostgresServer,  # noqa: F811
) -> None:
    """A tool deployed through replica a: replica b hears of the deployment (LISTEN/NOTIFY), syncs its registry,
    serves the tool and tells its own listeners that its tool list changed."""
    url = postgres.new_database()
    scripted_llm.reply(REPLY)
    a = build(replica(settings, url, "a"), host, scripted_llm)
    b = build(replica(settings, url, "b"), host, scripted_llm)
    async with connect(a) as first, connect(b) as second:
        async with tool_list_change(second) as changed:  # a listener on b
            made = await call(first, "generate_component", ARGS)  # through a
            assert made["succeeded"], made["validation_text"]
            with anyio.fail_after(30):
                await changed.wait()
        assert (await call(second, NAME, {"text": "2m5s"})) == {"seconds": 125}  # b serves it, without a restart


async def test_a_replica_whose_listening_connection_dropped_listens_again_and_catches_up(
    settings: Settings,
    host: FakeHostSource,
    scripted_llm: ScriptedLLM,
    postgres: PostgresServer,  # noqa: F811
) -> None:
    """The database ends replica a's listening connection (as a restart of PostgreSQL would); meanwhile a tool is
    deployed through replica b. a listens again and catches up: it serves the tool. It never goes down."""
    url = postgres.new_database()
    scripted_llm.reply(REPLY)
    a = build(replica(settings, url, "a"), host, scripted_llm)
    b = build(replica(settings, url, "b"), host, scripted_llm)
    async with connect(a) as first, connect(b) as second:

        def listeners() -> list[int]:
            with psycopg.connect(url, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
                ).fetchall()
            return [int(r[0]) for r in rows]

        await eventually(lambda: len(listeners()) == 2, "both replicas listen")
        with psycopg.connect(url, autocommit=True) as conn:
            for pid in listeners():
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert (await call(second, "generate_component", ARGS))["succeeded"]

        async def served() -> bool:
            return NAME in {t.name for t in (await first.list_tools()).tools}

        await eventually(served, "replica a serves the tool deployed through b", timeout=60)
        assert (await call(first, NAME, {"text": "45s"})) == {"seconds": 45}
