"""The generated tools' records, on each backend: SQLite (embedded, the default) and PostgreSQL (several replicas on
one database; a real server, see :mod:`tests.postgres_server`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from generators.pg_db import PostgresDatabase
from generators.toolhost.store import SqliteToolStore, ToolRecord, ToolStore
from generators.toolhost.store_pg import PostgresToolStore
from tests.postgres_server import postgres, two_stores  # noqa: F401 - the fixture


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ToolStore, ToolStore]]:
    """Two on one database (two replicas, or a restart)."""
    yield from two_stores(request, lambda: SqliteToolStore(tmp_path / "t.sqlite3"), PostgresToolStore, PostgresDatabase)


def record(version: int = 1, sha: str = "a" * 64, calls: int = 0) -> ToolRecord:
    return ToolRecord("acme", "d", "components/acme/d.py", "active", version, sha, "dep1", 1.0, 2.0, calls, 0, None)


def test_records_are_saved_replaced_and_read_back_by_another_store(stores: tuple[ToolStore, ToolStore]) -> None:
    first, second = stores
    first.save(record())
    first.save(ToolRecord("acme", "b", "components/acme/b.py", "broken", 1, "", "dep2", 1.0, 1.0, 0, 0, "no def"))
    first.save(record(version=2, sha="b" * 64, calls=7))  # replaced, not added
    assert [(r.name, r.version, r.calls, r.error) for r in second.all()] == [("b", 1, 0, "no def"), ("d", 2, 7, None)]


def test_a_codes_number_is_kept_and_counts_never_go_down(stores: tuple[ToolStore, ToolStore]) -> None:
    first, second = stores
    first.save(record())
    assert first.version_of("acme", "d", "a" * 64, served=0) == 1
    assert second.version_of("acme", "d", "b" * 64, served=1) == 2  # new code: the next number, whichever store
    assert first.version_of("acme", "d", "a" * 64, served=2) == 1  # served before: its own number again
    first.save_counts([("acme", "d", 10, 2)])
    second.save_counts([("acme", "d", 4, 1)])  # a stale copy: it lowers nothing
    [saved] = second.all()
    assert (saved.calls, saved.failures, saved.version, saved.sha256) == (10, 2, 1, "a" * 64)


def test_the_same_new_code_seen_at_once_by_two_stores_gets_one_number(stores: tuple[ToolStore, ToolStore]) -> None:
    stores[0].save(record())
    got: list[int] = []
    together = threading.Barrier(2)

    def ask(store: ToolStore) -> None:
        together.wait(timeout=30)  # both ask at the same moment (as two replicas syncing one deployment)
        got.append(store.version_of("acme", "d", "c" * 64, 1))

    threads = [threading.Thread(target=ask, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == [2, 2]
