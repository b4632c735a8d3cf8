"""Writing many rows to SQLite in a few statements: the same rows as one statement per row, in far fewer steps."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.store.records import EventRecord, LogRecord, MetricPoint
from telemetry.store.sqlite_db import MAX_ROWS_PER_STATEMENT, insert_rows
from telemetry.store.sqlite_store import SqliteTelemetryStore

UPSERT = ("INSERT INTO t (k, v)", "ON CONFLICT (k) DO UPDATE SET v = excluded.v, n = t.n + 1")
IGNORE = ("INSERT INTO t (k, v)", "ON CONFLICT DO NOTHING")


def table() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v REAL, n INTEGER NOT NULL DEFAULT 0)")
    return conn


def one_by_one(rows: list[tuple[int, float]], head: str, tail: str) -> tuple[list[tuple[int, float, int]], int]:
    conn = table()
    changed = sum(conn.execute(f"{head} VALUES (?, ?) {tail}", row).rowcount for row in rows)
    return conn.execute("SELECT k, v, n FROM t ORDER BY k").fetchall(), changed


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 40), st.floats(allow_nan=False)), max_size=1_300),
    clause=st.sampled_from([UPSERT, IGNORE]),
)
def test_many_rows_in_a_statement_end_as_one_statement_per_row(
    rows: list[tuple[int, float]], clause: tuple[str, str]
) -> None:
    """Same table and same count of changed rows, duplicates of a key included (the last wins an upsert, the first
    stays when conflicts are ignored), across the statement size."""
    conn = table()
    changed = insert_rows(conn, clause[0], rows, clause[1])
    assert (conn.execute("SELECT k, v, n FROM t ORDER BY k").fetchall(), changed) == one_by_one(rows, *clause)


@pytest.mark.parametrize("count", [1, 2, 3, MAX_ROWS_PER_STATEMENT - 1, MAX_ROWS_PER_STATEMENT, 1_000, 2_049])
def test_rows_go_in_statements_of_many_rows(count: int) -> None:
    conn = table()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    insert_rows(conn, *IGNORE[:1], [(k, 1.0) for k in range(count)])
    conn.set_trace_callback(None)
    assert conn.execute("SELECT COUNT(*), SUM(k) FROM t").fetchone() == (count, count * (count - 1) // 2)
    full, rest = divmod(count, MAX_ROWS_PER_STATEMENT)
    assert len(statements) == full + rest.bit_count()  # executemany: one per row


def test_a_statement_stays_within_the_connections_variable_limit() -> None:
    conn = table()
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 7)  # three rows of two values
    insert_rows(conn, *IGNORE[:1], [(k, 0.5) for k in range(10)])
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (10,)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteTelemetryStore]:
    store = SqliteTelemetryStore(tmp_path / "t.db")
    yield store
    store.close()


def test_a_batch_of_a_thousand_items_is_written_in_a_few_statements(store: SqliteTelemetryStore) -> None:
    """Each statement a write runs gives up the GIL and waits for it again: a batch must not cost one per item."""
    now = time.time()
    statements: list[str] = []
    store._db.conn.set_trace_callback(statements.append)
    store.add_metrics([MetricPoint("t", "m", now - i, float(i), {"Host": "a"}) for i in range(1_000)])
    store.add_logs([LogRecord("t", now - i, f"line {i}", "info", "api", {}) for i in range(1_000)])
    stored = store.add_events(
        [EventRecord("t", now - i, "deploy", {"i": i}, "agent", f"e{i % 600}") for i in range(1_000)]
    )
    store._db.conn.set_trace_callback(None)
    assert stored == 600  # a repeated id is stored once, in one batch too
    assert len(statements) < 60, statements
    counts = store.counts("t")
    assert (counts.points, counts.logs, counts.events) == (1_000, 1_000, 600)
