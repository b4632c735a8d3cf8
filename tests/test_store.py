"""The telemetry store: window queries, replacement, dedup, pruning, and crash safety under SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from telemetry.store.pg_db import PostgresDatabase
from telemetry.store.pg_store import PostgresTelemetryStore
from telemetry.store.records import EventRecord, LogRecord, MetricPoint, TelemetryStore
from telemetry.store.sqlite_store import SqliteTelemetryStore
from tests.postgres_server import PostgresServer, postgres  # noqa: F401 - the fixture

BATCH = 1_000


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TelemetryStore]:
    """The telemetry store on each backend (PostgreSQL: a real server, a database per test)."""
    if request.param == "sqlite":
        store = SqliteTelemetryStore(tmp_path / "t.db")
        yield store
        store.close()
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    db = PostgresDatabase(server.new_database())
    try:
        yield PostgresTelemetryStore(db)
    finally:
        db.close()


def test_whole_numbers_among_the_floats_of_a_batch_are_stored(backend_store: TelemetryStore) -> None:
    """A caller may give a timestamp or a value as an int (PostgreSQL's arrays of a batch must still be all floats)."""
    points = [MetricPoint("t", "m", 100 + i if i % 2 else 100.0 + i, i if i % 3 else float(i), {}) for i in range(12)]
    assert backend_store.add_metrics(points) == 12
    [series] = backend_store.series("t", name="m")
    assert series.timestamps == [100.0 + i for i in range(12)] and series.values == [float(i) for i in range(12)]
    [stats] = backend_store.series_stats("t", start=0, end=1_000, recent_share=0.25)
    assert stats.count == 12


def test_series_windows_replacement_and_pruning(backend_store: TelemetryStore) -> None:
    store = backend_store
    try:
        dims = {"Component": "api", "Region": "eu"}
        store.add_metrics([MetricPoint("t1", "latency", float(ts), float(ts) * 2, dims) for ts in range(100)])
        store.add_metrics(
            [MetricPoint("t1", "latency", 50.0, -1.0, {"Region": "eu", "Component": "api"})]
        )  # same series
        store.add_metrics([MetricPoint("t2", "latency", 1.0, 7.0, dims)])
        [series] = store.series("t1", name="latency", start=45, end=55)
        assert series.timestamps == [float(t) for t in range(45, 56)]
        assert series.values[5] == -1.0  # replaced, not duplicated
        assert series.key.dimensions == (("Component", "api"), ("Region", "eu"))
        store.add_metrics([MetricPoint("t1", "latency", 1.0, 1.0, {"Component": "db"})])  # another series, same name
        [only] = store.series("t1", name="latency", dimensions={"Region": "eu", "Component": "api"}, start=45, end=46)
        assert only.key == series.key and only.timestamps == [45.0, 46.0]
        assert store.series("t1", name="latency", dimensions={"Component": "web"}) == []
        assert len(store.series("t1", name="latency")) == 2
        assert store.last_timestamp("t1", "latency", dims) == 99.0
        assert store.last_timestamp("t1", "latency", {}) is None
        assert store.counts("t1").points == 101 and store.counts().points == 102
        assert store.add_events([EventRecord("t1", 5.0, "alarm", {"s": 1}, dedup_key="k1")]) == 1
        assert store.add_events([EventRecord("t1", 6.0, "alarm", {"s": 2}, dedup_key="k1")]) == 0
        assert store.add_events([EventRecord("t2", 6.0, "alarm", {}, dedup_key="k1")]) == 1  # per tenant
        store.add_logs([LogRecord("t1", 3.0, "boom", "ERROR", "api", {"code": 500})])
        assert store.prune(older_than=10.0) == 10 + 1 + 1 + 1 + 2  # points of t1 (both series), t2, the log, events
        assert store.counts("t1").points == 90 and store.logs("t1") == [] and store.events("t1") == []
    finally:
        store.close()


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from telemetry.store.sqlite_store import SqliteTelemetryStore
    from telemetry.store.records import MetricPoint

    if sys.argv[1].startswith("postgresql://"):
        from telemetry.store.pg_db import PostgresDatabase
        from telemetry.store.pg_store import PostgresTelemetryStore

        store = PostgresTelemetryStore(PostgresDatabase(sys.argv[1]))
    else:
        store = SqliteTelemetryStore(Path(sys.argv[1]))
    batch = 0
    while True:
        points = [MetricPoint("t", f"m{i % 10}", batch * 1_000 + i, float(batch), {"b": "x"}) for i in range(1_000)]
        store.add_metrics(points)
        sys.stdout.write(f"ack {batch}\\n")
        sys.stdout.flush()
        batch += 1
    """
)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_mid_ingest_keeps_every_acknowledged_batch(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    db = tmp_path / "crash.db"
    url = request.getfixturevalue("postgres").new_database() if backend == "postgresql" else None
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    target = url or str(db)
    proc = subprocess.Popen([sys.executable, str(script), target], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    acked = -1
    try:
        while acked < 30:
            line = proc.stdout.readline()
            assert line.startswith("ack "), line
            acked = int(line.split()[1])
    finally:
        proc.send_signal(signal.SIGKILL)  # in the middle of the next batch
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    pool: PostgresDatabase | None = None
    if url is not None:
        pool = PostgresDatabase(url)
        store: TelemetryStore = PostgresTelemetryStore(pool)
    else:
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        store = SqliteTelemetryStore(db)
    try:
        series = store.series("t")
        stored = {int(ts) for s in series for ts in s.timestamps}
        wanted = set(range((acked + 1) * BATCH))
        assert wanted <= stored  # every acknowledged batch is there, whole
        assert len(stored) % BATCH == 0  # and no batch is there in part
    finally:
        store.close()
        if pool is not None:
            pool.close()


def read_while_a_write_is_open(tmp_path: Path, readers: int, patience: float) -> bool:
    """Whether a query of the store finishes within ``patience`` seconds while an ingest's write transaction is open
    (in another thread)."""
    store = SqliteTelemetryStore(tmp_path / f"r{readers}.db", readers=readers)
    store.add_metrics([MetricPoint("t1", "latency", float(ts), 1.0) for ts in range(100)])
    writing, release = threading.Event(), threading.Event()

    def write() -> None:
        with store._db.transaction() as conn:  # an ingest in the middle of its transaction
            conn.execute("INSERT INTO logs (tenant, ts, level, message, component, attributes, source)"
                         " VALUES ('t1', 1, 'INFO', 'm', NULL, '{}', 'agent')")  # fmt: skip
            writing.set()
            release.wait(timeout=60)

    writer = threading.Thread(target=write)
    writer.start()
    assert writing.wait(timeout=30)
    done: list[int] = []
    reader = threading.Thread(target=lambda: done.append(len(store.series("t1")[0].values)))
    reader.start()
    reader.join(timeout=patience)
    finished = not reader.is_alive()
    release.set()
    writer.join()
    reader.join()
    store.close()
    assert done == [100]  # the snapshot before the write: all points, the uncommitted log not seen
    return finished


def test_a_query_never_waits_for_an_ingest(tmp_path: Path) -> None:
    assert read_while_a_write_is_open(tmp_path, readers=4, patience=60)
    assert not read_while_a_write_is_open(tmp_path, readers=0, patience=2)  # one connection for all: it waits


def test_both_backends_give_the_same_aggregates(tmp_path: Path, postgres: PostgresServer) -> None:  # noqa: F811
    """The learning engine reads the same figures whichever database holds the points."""
    sqlite_store = SqliteTelemetryStore(tmp_path / "t.db")
    db = PostgresDatabase(postgres.new_database())
    pg_store = PostgresTelemetryStore(db)
    try:
        for store in (sqlite_store, pg_store):
            for series in range(3):
                dims = {"Component": f"c{series}"}
                points = [MetricPoint("t1", "latency", 1e9 + ts * 60.0, 100.0 + (ts * 7 + series) % 13, dims)
                          for ts in range(500)]  # fmt: skip
                store.add_metrics(points)
            store.add_metrics([MetricPoint("t1", "latency", 1e9 + 30_000.0, 9.0, {"Component": "c9"})])
        kwargs: dict[str, Any] = {"start": 1e9, "end": 1e9 + 30_000.0, "recent_share": 0.25, "tail": 5}
        expected, got = sqlite_store.series_stats("t1", **kwargs), pg_store.series_stats("t1", **kwargs)
        assert [s.key for s in got] == [s.key for s in expected] and len(got) == 4
        for mine, theirs in zip(got, expected, strict=True):
            assert mine.baseline.count == theirs.baseline.count and mine.recent.count == theirs.recent.count
            for field in ("sum_y", "sum_yy", "sum_x", "sum_xx", "sum_xy"):
                for a, b in ((mine.baseline, theirs.baseline), (mine.recent, theirs.recent)):
                    assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-9, abs=1e-6)
            assert (mine.value_origin, mine.time_origin, mine.last_timestamp) == (
                theirs.value_origin, theirs.time_origin, theirs.last_timestamp,
            )  # fmt: skip
            assert mine.tail_mean == pytest.approx(theirs.tail_mean)
        key = expected[0].key
        assert pg_store.count_outside(key, start=1e9, end=2e9, low=101, high=110) == sqlite_store.count_outside(
            key, start=1e9, end=2e9, low=101, high=110
        )
    finally:
        sqlite_store.close()
        db.close()
