"""Recorded tool calls, on each backend: SQLite (embedded, the default) and PostgreSQL (several replicas on one
database; a real server, see :mod:`tests.postgres_server`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetry.selfcheck.calls import CallStore, SqliteCallStore, ToolCall
from telemetry.selfcheck.calls_pg import PostgresCallStore
from telemetry.store.pg_db import PostgresDatabase
from tests.postgres_server import postgres, two_stores  # noqa: F401 - the fixture


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CallStore, CallStore]]:
    """Two on one database (two replicas, or a restart)."""
    yield from two_stores(request, lambda: SqliteCallStore(tmp_path / "c.sqlite3"), PostgresCallStore, PostgresDatabase)


def call(ts: float, tenant: str = "acme", tool: str = "t", error: str | None = None) -> ToolCall:
    return ToolCall(ts, tool, tenant, "key", 0.25, "error" if error else "ok", error)


def test_calls_of_every_replica_are_read_in_a_window_newest_kept_oldest_first(
    stores: tuple[CallStore, CallStore],
) -> None:
    first, second = stores
    first.add([call(float(ts)) for ts in range(0, 100, 2)])
    second.add([call(float(ts), tenant="globex", error="internal") for ts in range(1, 100, 2)])
    second.add([])
    calls, total = first.calls(start=10, end=19)
    assert total == 10 and [c.ts for c in calls] == [float(t) for t in range(10, 20)]
    newest, total = second.calls(start=0, end=99, limit=3)
    assert total == 100 and [c.ts for c in newest] == [97.0, 98.0, 99.0]
    mine, total = first.calls(start=0, end=99, tenants=["globex"], limit=2)
    assert total == 50 and [(c.tenant, c.outcome, c.error_kind) for c in mine] == [("globex", "error", "internal")] * 2
    assert second.calls(start=0, end=99, tenants=[]) == ([], 0)
    assert first.prune(older_than=50) == 50
    assert second.calls(start=0, end=99)[1] == 50
