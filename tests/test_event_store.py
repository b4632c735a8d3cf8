"""Monitoring events, on each backend: SQLite (embedded, the default) and PostgreSQL (several replicas on one
database; a real server, see :mod:`tests.postgres_server`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from telemetry.monitoring.events import EventStore, NewEvent, SqliteEventStore
from telemetry.monitoring.events_pg import PostgresEventStore
from telemetry.store.pg_db import PostgresDatabase
from tests.postgres_server import postgres, two_stores  # noqa: F401 - the fixture

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[EventStore, EventStore]]:
    """Two on one database (two replicas, or a restart)."""
    yield from two_stores(
        request, lambda: SqliteEventStore(tmp_path / "e.sqlite3"), PostgresEventStore, PostgresDatabase
    )


def new(event_type: str = "cpu_high", at: float = 100.0, value: float = 95.0, active: bool = True) -> NewEvent:
    return NewEvent.model_validate(
        {"event_type": event_type, "severity": "high", "resource": "cpu", "message": "hot", "value": value,
         "threshold": 90.0, "timestamp": at, "active": active}
    )  # fmt: skip


async def test_an_event_is_raised_updated_resolved_and_seen_by_every_store(
    stores: tuple[EventStore, EventStore],
) -> None:
    first, second = stores
    raised = await first.add(new())
    assert (raised.occurrences, raised.peak, raised.active, raised.resolved_at) == (1, 95.0, True, None)
    touched = await second.touch(raised.id, value=91.0, peak=97.0, severity="critical", message="hotter", at=110.0)
    assert touched is not None
    assert (touched.value, touched.peak, touched.occurrences, touched.severity, touched.last_seen) == (
        91.0, 97.0, 2, "critical", 110.0,
    )  # fmt: skip
    again = await first.touch(raised.id, value=92.0, peak=93.0, severity="high", message="hot", at=120.0)
    assert again is not None and again.peak == 97.0  # the worst value stays
    resolved = await second.resolve(raised.id, at=130.0)
    assert resolved is not None and (resolved.active, resolved.resolved_at, resolved.last_seen) == (False, 130.0, 130.0)
    assert await first.resolve(raised.id, at=140.0) == resolved  # resolving twice changes nothing
    assert await first.touch(999, value=1.0, peak=1.0, severity="low", message="x", at=1.0) is None


async def test_queries_filter_page_prune_and_clear(stores: tuple[EventStore, EventStore]) -> None:
    first, second = stores
    for i in range(6):
        event = await first.add(new("memory_high" if i % 2 else "cpu_high", at=100.0 + i))
        if i < 2:
            await first.resolve(event.id, at=100.0 + i)
    page = await second.query(limit=2)
    assert [e.last_seen for e in page.events] == [105.0, 104.0] and page.total == 6 and page.has_more
    assert [e.last_seen for e in (await second.query(event_type="memory_high")).events] == [105.0, 103.0, 101.0]
    assert (await second.query(active=False)).total == 2 and (await second.query(since=104.0)).total == 2
    assert (await second.query(severity="low")).total == 0
    # the resolved ones older than 50 s go; then only the 3 newest are kept
    assert await second.prune(max_count=3, max_age_seconds=50.0, now=155.0) == 3
    assert [e.last_seen for e in (await first.query()).events] == [105.0, 104.0, 103.0]
    assert await first.clear() == 3 and (await second.query()).total == 0


async def test_settings_are_kept_and_replaced(stores: tuple[EventStore, EventStore]) -> None:
    first, second = stores
    assert await first.get_setting("thresholds") is None
    await first.put_setting("thresholds", '{"cpu": 90}')
    await second.put_setting("thresholds", '{"cpu": 80}')
    assert await first.get_setting("thresholds") == '{"cpu": 80}'
