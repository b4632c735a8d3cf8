"""One PostgreSQL database for the records the generators keep, shared by several server replicas (issue 17): a
psycopg 3 connection pool (blocking: the stores are called from worker threads), and versioned migrations applied at
start-up, once, whichever replica starts first.

Each store names its migrations ``(version, sql)``; :meth:`PostgresDatabase.migrate` applies those not yet recorded in
``schema_migrations`` for that store, in order, each in its own transaction, under one advisory lock so that
replicas starting together do not apply one twice. A migration is never edited once released: a change is a new version.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.string import StrBinaryDumper, StrDumperUnknown
from psycopg_pool import ConnectionPool

MIGRATION_LOCK = 0x5E1FB111D  # the advisory lock every migration takes (one at a time, across replicas and stores)
_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    store TEXT NOT NULL,
    version INTEGER NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (store, version)
)
"""


NUL, REPLACEMENT = "\x00", "\ufffd"


def _without_nul(text: str) -> str:
    return text.replace(NUL, REPLACEMENT) if NUL in text else text


class NulSafeText(StrDumperUnknown):
    """Sends a string with each NUL character as U+FFFD: PostgreSQL's text cannot hold NUL, and psycopg refuses such a
    string (a log line, an agent's reason, a model's reply) with an error that would lose the whole write."""

    def dump(self, obj: str) -> bytes | bytearray | memoryview | None:
        return super().dump(_without_nul(obj))


class NulSafeBinaryText(StrBinaryDumper):
    """:class:`NulSafeText` for parameters sent in binary."""

    def dump(self, obj: str) -> bytes | bytearray | memoryview | None:
        return super().dump(_without_nul(obj))


def nul_safe(conn: psycopg.Connection[TupleRow]) -> None:
    """Make ``conn`` send strings with :class:`NulSafeText` (a pool's ``configure``)."""
    conn.adapters.register_dumper(str, NulSafeText)
    conn.adapters.register_dumper(str, NulSafeBinaryText)


class PostgresDatabase:
    """A pool of connections to ``url`` (``postgresql://…``); :meth:`close` ends them."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 30) -> None:
        self.pool = ConnectionPool(
            url, min_size=min_size, max_size=max_size, timeout=timeout, open=False, configure=nul_safe
        )
        self.pool.open(wait=True, timeout=timeout)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[TupleRow]]:
        """A connection inside one transaction: committed when the block ends, rolled back if it raises."""
        with self.pool.connection() as conn, conn.transaction():
            yield conn

    def migrate(self, store: str, migrations: Sequence[tuple[int, str]]) -> list[int]:
        """Apply ``store``'s migrations not applied yet, in order; the versions applied now."""
        applied: list[int] = []
        with self.pool.connection() as conn:
            for version, sql in sorted(migrations):
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))  # one replica at a time
                    conn.execute(_LEDGER)
                    done = conn.execute(
                        "SELECT 1 FROM schema_migrations WHERE store = %s AND version = %s", (store, version)
                    ).fetchone()
                    if done is not None:
                        continue
                    conn.execute(sql)
                    conn.execute("INSERT INTO schema_migrations (store, version) VALUES (%s, %s)", (store, version))
                    applied.append(version)
        return applied
