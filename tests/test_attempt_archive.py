"""The archive of improvement attempts, on each backend: SQLite (embedded, the default) and PostgreSQL (several
replicas on one database; a real server, see :mod:`tests.postgres_server`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from generators.improvement.attempts import Attempt, AttemptArchive, SqliteAttemptArchive
from generators.improvement.attempts_pg import PostgresAttemptArchive
from generators.pg_db import PostgresDatabase
from tests.postgres_server import postgres, two_stores  # noqa: F401 - the fixture


@pytest.fixture(params=["sqlite", "postgresql"])
def archives(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[AttemptArchive, AttemptArchive]]:
    """Two on one database (two replicas, or a restart)."""
    yield from two_stores(
        request, lambda: SqliteAttemptArchive(tmp_path / "a.sqlite3"), PostgresAttemptArchive, PostgresDatabase
    )


def attempt(cycle: str, at: float, outcome: str = "deployed", component: str = "slow", number: int = 1) -> Attempt:
    return Attempt("acme", component, cycle, 0, number, at, outcome, "why", "+new line", "f" * 32, {"n": 1})  # type: ignore[arg-type]


def test_attempts_are_recorded_replaced_settled_and_read_newest_first(
    archives: tuple[AttemptArchive, AttemptArchive],
) -> None:
    first, second = archives
    first.record(attempt("c1", 1.0, "refused"))
    first.record(attempt("c2", 2.0))
    first.record(attempt("c2", 2.5, "held", number=2))
    first.record(attempt("c3", 3.0, component="other"))
    second.record(attempt("c1", 1.5, "not_chosen"))  # the same cycle, opportunity and number: replaced
    second.settle("c2", 0, "kept", "2 % faster", {"effect_percent": -2.0})
    found = first.recent("acme", "slow")
    assert [(a.cycle_id, a.number, a.outcome) for a in found] == [
        ("c2", 2, "kept"),
        ("c2", 1, "kept"),
        ("c1", 1, "not_chosen"),
    ]
    assert found[0].effect_percent == -2.0 and found[0].reason == "2 % faster"
    assert found[2].figures == {"n": 1} and found[2].diff == "+new line" and found[2].fingerprint == "f" * 32
    assert [a.cycle_id for a in second.recent("acme", "slow", limit=1)] == ["c2"]
    assert second.recent("globex", "slow") == []
