"""The LLM spending ledger in PostgreSQL, for several replicas on one database: the same behaviour as
:class:`generators.llm.spend.SpendLedger`, so the caps hold for the replicas together, not each on its own; the
first to reach a cap writes its one audit entry."""

from __future__ import annotations

import time
from collections.abc import Callable

from generators.llm.spend import KEEP_DAYS, SpendScope, Spent, utc_day
from generators.pg_db import PostgresDatabase

STORE = "llm_spend"
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE spend_by_day (
            tenant TEXT NOT NULL,
            day TEXT NOT NULL,
            prompt_tokens BIGINT NOT NULL,
            completion_tokens BIGINT NOT NULL,
            cost DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (tenant, day)
        );
        CREATE TABLE spend_by_cycle (
            cycle_id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            prompt_tokens BIGINT NOT NULL,
            completion_tokens BIGINT NOT NULL,
            cost DOUBLE PRECISION NOT NULL,
            updated DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE cap_hits (
            cap TEXT NOT NULL,
            period TEXT NOT NULL,
            ts DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (cap, period)
        );
        """,
    ),
)


class PostgresSpendLedger:
    """:class:`generators.llm.spend.Ledger` in PostgreSQL. Thread-safe (a connection per call)."""

    def __init__(self, db: PostgresDatabase, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        db.migrate(STORE, MIGRATIONS)
        oldest = clock() - KEEP_DAYS * 86400
        with db.transaction() as conn:
            conn.execute("DELETE FROM spend_by_day WHERE day < %s", (utc_day(oldest),))
            conn.execute("DELETE FROM spend_by_cycle WHERE updated < %s", (oldest,))
            conn.execute("DELETE FROM cap_hits WHERE ts < %s", (oldest,))

    def close(self) -> None:
        """Nothing of its own to close: the database (shared by the stores) is closed by its owner."""

    def today(self) -> str:
        return utc_day(self._clock())

    def tenant_day(self, tenant: str, day: str | None = None) -> Spent:
        sql = "SELECT prompt_tokens + completion_tokens, cost FROM spend_by_day WHERE tenant = %s AND day = %s"
        return self._one(sql, (tenant, day or self.today()))

    def cycle(self, cycle_id: str) -> Spent:
        return self._one(
            "SELECT prompt_tokens + completion_tokens, cost FROM spend_by_cycle WHERE cycle_id = %s", (cycle_id,)
        )

    def add(self, scope: SpendScope, prompt_tokens: int, completion_tokens: int, cost: float) -> None:
        now = self._clock()
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO spend_by_day AS s VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant, day) DO UPDATE SET"
                " prompt_tokens = s.prompt_tokens + EXCLUDED.prompt_tokens,"
                " completion_tokens = s.completion_tokens + EXCLUDED.completion_tokens, cost = s.cost + EXCLUDED.cost",
                (scope.tenant, utc_day(now), prompt_tokens, completion_tokens, cost),
            )
            if scope.cycle_id is not None:
                conn.execute(
                    "INSERT INTO spend_by_cycle AS s VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (cycle_id) DO UPDATE"
                    " SET prompt_tokens = s.prompt_tokens + EXCLUDED.prompt_tokens,"
                    " completion_tokens = s.completion_tokens + EXCLUDED.completion_tokens,"
                    " cost = s.cost + EXCLUDED.cost, updated = EXCLUDED.updated",
                    (scope.cycle_id, scope.tenant, prompt_tokens, completion_tokens, cost, now),
                )

    def first_hit(self, cap: str, period: str) -> bool:
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO cap_hits VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", (cap, period, self._clock())
            )
        return cursor.rowcount == 1

    def _one(self, sql: str, params: tuple[str, ...]) -> Spent:
        with self._db.pool.connection() as conn:
            row = conn.execute(sql, params).fetchone()
        return Spent(int(row[0]), float(row[1])) if row else Spent(0, 0.0)
