"""The LLM spending ledger, on each backend: SQLite (embedded, the default) and PostgreSQL (several replicas on one
database, whose caps hold together; a real server, see :mod:`tests.postgres_server`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from generators.llm.spend import Ledger, SpendLedger, SpendScope
from generators.llm.spend_pg import PostgresSpendLedger
from generators.pg_db import PostgresDatabase
from tests.postgres_server import PostgresServer, postgres  # noqa: F401 - the fixture

Make = Callable[[Callable[[], float]], Ledger]


@pytest.fixture(params=["sqlite", "postgresql"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Make]:
    """Ledgers on one database, each with its clock (two replicas, or a restart)."""
    if request.param == "sqlite":
        made: list[Ledger] = []

        def sqlite_ledger(clock: Callable[[], float]) -> Ledger:
            made.append(SpendLedger(tmp_path / "spend.sqlite3", clock=clock))
            return made[-1]

        yield sqlite_ledger
        for ledger in made:
            ledger.close()
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    db = PostgresDatabase(server.new_database())
    try:
        yield lambda clock: PostgresSpendLedger(db, clock=clock)
    finally:
        db.close()


def test_spending_adds_up_per_tenant_day_and_cycle_across_ledgers(make: Make) -> None:
    now = [1_700_000_000.0]
    first, second = make(lambda: now[0]), make(lambda: now[0])
    first.add(SpendScope("acme", cycle_id="c1"), 10, 5, 0.25)
    second.add(SpendScope("acme", cycle_id="c1"), 100, 50, 1.0)  # another replica: the same totals
    second.add(SpendScope("globex"), 7, 0, 0.0)
    spent = first.tenant_day("acme")
    assert (spent.tokens, spent.cost) == (165, 1.25) and second.cycle("c1").tokens == 165
    assert first.tenant_day("globex").tokens == 7 and first.cycle("none").tokens == 0
    now[0] += 86400  # a new UTC day starts from nothing; the cycle's total stays
    assert second.tenant_day("acme").tokens == 0 and second.cycle("c1").tokens == 165
    assert first.first_hit("tokens_per_tenant_day", "acme/2023-11-14") is True
    assert second.first_hit("tokens_per_tenant_day", "acme/2023-11-14") is False  # one audit entry per hit
    now[0] += 401 * 86400  # kept 400 days: a ledger opened later forgets older totals
    assert make(lambda: now[0]).cycle("c1").tokens == 0
