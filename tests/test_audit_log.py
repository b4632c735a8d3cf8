"""The append-only audit log, on each backend: SQLite (embedded, the default) and PostgreSQL (several replicas on one
database; a real server, see :mod:`tests.postgres_server`). The same behaviour, the same guard in the database
itself."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from generators.deploy import SqliteAuditLog
from generators.deploy.audit import AuditLog
from generators.deploy.audit_pg import MIGRATIONS, STORE, PostgresAuditLog
from generators.pg_db import PostgresDatabase
from tests.postgres_server import PostgresServer, postgres  # noqa: F401 - the fixture


@dataclass
class Backend:
    make: Callable[[Callable[[], float]], AuditLog]  # an audit log on this backend's database, with that clock
    raw: Callable[[str], list[tuple[Any, ...]]]  # SQL run on that database beside the log, as an intruder would
    refused: type[Exception]  # what the database raises when it refuses


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path / "audit.sqlite3"

        def raw_sqlite(sql: str) -> list[tuple[Any, ...]]:
            with sqlite3.connect(path) as conn:
                return conn.execute(sql).fetchall()

        yield Backend(lambda clock: SqliteAuditLog(path, clock=clock), raw_sqlite, sqlite3.DatabaseError)
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.new_database()
    db = PostgresDatabase(url)

    def raw_pg(sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description else []

    try:
        yield Backend(lambda clock: PostgresAuditLog(db, clock=clock), raw_pg, psycopg.Error)
    finally:
        db.close()


def test_audit_log_appends_and_queries_newest_first(backend: Backend) -> None:
    clock = iter(range(100, 200)).__next__
    log = backend.make(lambda: float(clock()))
    for i in range(5):
        log.append("deployment" if i % 2 else "generation", f"s{i}", actor="bob", tenant="shop", detail={"i": i})

    page = log.query(limit=2)
    assert [e.subject for e in page.entries] == ["s4", "s3"] and page.has_more
    assert [e.subject for e in log.query(kind="deployment").entries] == ["s3", "s1"]
    assert [e.subject for e in log.query(since=103).entries] == ["s4", "s3"]
    assert not log.query(since=103).has_more
    assert log.query(kind="deployment").entries[0].detail == {"i": 3}
    assert log.query(tenant="other").entries == []
    kept = log.append("odd", "s5", actor="bob", tenant="shop", detail={"path": Path("/x"), "n": 1.5})
    assert kept.detail == {"path": "/x", "n": 1.5} == log.query(kind="odd").entries[0].detail  # never lost to JSON
    with pytest.raises(ValueError, match="limit"):
        log.query(limit=0)


def test_audit_rows_cannot_be_updated_or_deleted(backend: Backend) -> None:
    backend.make(lambda: 1.0).append("rollback", "d1", actor="bob", tenant="shop")
    with pytest.raises(backend.refused, match="append-only"):
        backend.raw("UPDATE audit_log SET actor = 'mallory'")
    with pytest.raises(backend.refused, match="append-only"):
        backend.raw("DELETE FROM audit_log")
    if backend.refused is psycopg.Error:  # SQLite has no TRUNCATE
        with pytest.raises(backend.refused, match="append-only"):
            backend.raw("TRUNCATE audit_log")
    assert backend.raw("SELECT actor FROM audit_log") == [("bob",)]


def test_postgresql_migrations_are_applied_once_whoever_starts_first(postgres: PostgresServer) -> None:  # noqa: F811
    """Two replicas' stores on one database: the first applies the schema, the second finds it applied."""
    url = postgres.new_database()
    first, second = PostgresDatabase(url), PostgresDatabase(url)
    try:
        assert first.migrate(STORE, MIGRATIONS) == [1]
        assert second.migrate(STORE, MIGRATIONS) == []
        PostgresAuditLog(second).append("deployment", "d1", actor="a", tenant="t")
        assert [e.subject for e in PostgresAuditLog(first).query().entries] == ["d1"]  # one table, both see it
    finally:
        first.close()
        second.close()
