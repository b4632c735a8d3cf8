"""Where a telemetry store lives, in a form another process can open (it pickles): the analysis process's way to
the server's store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from telemetry.store.records import TelemetryStore


@dataclass(frozen=True, slots=True)
class StoreAddress:
    """A SQLite file (``sqlite_path``) or a PostgreSQL database (``postgres_url``, kept out of ``repr``)."""

    sqlite_path: Path | None = None
    postgres_url: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.sqlite_path is None) == (self.postgres_url is None):
            raise ValueError("a store address is a SQLite path or a PostgreSQL URL, exactly one of them")

    def open(self) -> tuple[TelemetryStore, Callable[[], None]]:
        """The store, and what closes it (and, for PostgreSQL, its own small pool). Blocking."""
        if self.postgres_url is not None:
            from telemetry.store.pg_db import PostgresDatabase
            from telemetry.store.pg_store import PostgresTelemetryStore

            database = PostgresDatabase(self.postgres_url, max_size=2)
            try:
                return PostgresTelemetryStore(database), database.close
            except BaseException:
                database.close()
                raise
        from telemetry.store.sqlite_store import SqliteTelemetryStore

        assert self.sqlite_path is not None
        store = SqliteTelemetryStore(self.sqlite_path, readers=1)  # one process's analyses, one at a time
        return store, store.close
