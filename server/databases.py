"""Which database every store lives in: SQLite files in the data directory (the default), or one PostgreSQL database
shared by several replicas (``SELF_BUILDING_DATABASE_URL=postgresql://…``). The lifespan opens each store through
:class:`Databases` and knows nothing else of the backend."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread

from generators.deploy import SqliteAuditLog, SqliteVersionStore
from generators.deploy.audit import AuditLog
from generators.deploy.store import VersionStore
from generators.improvement import SqliteCycleStore
from generators.improvement.attempts import AttemptArchive, SqliteAttemptArchive
from generators.improvement.store import CycleStore
from generators.llm.spend import Ledger, SpendLedger
from generators.pg_db import PostgresDatabase as GeneratorsDatabase
from generators.toolhost.store import SqliteToolStore, ToolStore
from server.settings import Settings
from telemetry.monitoring.events import EventStore, SqliteEventStore
from telemetry.selfcheck.calls import CallStore, SqliteCallStore
from telemetry.store.address import StoreAddress
from telemetry.store.pg_db import PostgresDatabase as TelemetryDatabase
from telemetry.store.records import TelemetryStore
from telemetry.store.sqlite_store import SqliteTelemetryStore

if TYPE_CHECKING:
    from generators.jobs.queue_pg import PostgresJobs


# Each store's SQLite file in the data directory (telemetry's and monitoring's are named by the settings).
FILES = {
    "calls": "tool_calls.sqlite3",
    "versions": "versions.sqlite3",
    "audit": "audit.sqlite3",
    "ledger": "llm_spend.sqlite3",
    "cycles": "cycles.sqlite3",
    "attempts": "attempts.sqlite3",
    "tools": "generated_tools.sqlite3",
}


class Databases:
    """Opens the stores on the configured backend (blocking methods: call them from a worker thread). With
    PostgreSQL, each package has its own pool on the one database (``generators`` and ``telemetry`` do not import
    each other); :meth:`open` registers their closing on the lifespan's exit stack."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.database_url.get_secret_value() if settings.database_url is not None else None
        self.replica = str(secrets.randbelow(2**31 - 2) + 1)  # this server's number (owner of its cycles)
        self._generators: GeneratorsDatabase | None = None
        self._telemetry: TelemetryDatabase | None = None

    def sqlite_path(self, store: str) -> Path:
        """Where store ``store`` (a method's name: ``telemetry``, ``events``, ``calls``, …) keeps its SQLite file."""
        if store == "telemetry":
            return self.settings.telemetry_db_path
        if store == "events":
            return self.settings.events_db_path
        return self.settings.data_dir / FILES[store]

    async def open(self, opened: AsyncExitStack) -> None:
        """Connect (PostgreSQL), closing on ``opened``'s exit; nothing for SQLite, whose stores open their own files."""
        await anyio.to_thread.run_sync(self.connect, opened.callback)

    def connect(self, on_close: Callable[[Callable[[], None]], object]) -> None:
        """:meth:`open`, blocking: ``on_close`` is given what closes each connection (a pool per package)."""
        if self.url is None:
            return
        self._generators = GeneratorsDatabase(self.url)
        on_close(self._generators.close)
        self._telemetry = TelemetryDatabase(self.url)
        on_close(self._telemetry.close)

    # -- telemetry's stores

    def telemetry(self) -> TelemetryStore:
        if self._telemetry is not None:
            from telemetry.store.pg_store import PostgresTelemetryStore

            return PostgresTelemetryStore(self._telemetry)
        return SqliteTelemetryStore(self.sqlite_path("telemetry"), readers=self.settings.store_read_connections)

    def telemetry_address(self) -> StoreAddress:
        """Where :meth:`telemetry` is, for another process (the analysis process) to open it too."""
        if self.url is not None:
            return StoreAddress(postgres_url=self.url)
        return StoreAddress(sqlite_path=self.sqlite_path("telemetry"))

    def events(self) -> EventStore:
        if self._telemetry is not None:
            from telemetry.monitoring.events_pg import PostgresEventStore

            return PostgresEventStore(self._telemetry)
        return SqliteEventStore(self.sqlite_path("events"))

    def calls(self) -> CallStore:
        if self._telemetry is not None:
            from telemetry.selfcheck.calls_pg import PostgresCallStore

            return PostgresCallStore(self._telemetry)
        return SqliteCallStore(self.sqlite_path("calls"))

    # -- the generators' stores

    def versions(self) -> VersionStore:
        if self._generators is not None:
            from generators.deploy.store_pg import PostgresVersionStore

            return PostgresVersionStore(self._generators)
        return SqliteVersionStore(self.sqlite_path("versions"))

    def audit(self, clock: Callable[[], float]) -> AuditLog:
        if self._generators is not None:
            from generators.deploy.audit_pg import PostgresAuditLog

            return PostgresAuditLog(self._generators, clock)
        return SqliteAuditLog(self.sqlite_path("audit"), clock)

    def ledger(self, clock: Callable[[], float]) -> Ledger:
        if self._generators is not None:
            from generators.llm.spend_pg import PostgresSpendLedger

            return PostgresSpendLedger(self._generators, clock)
        return SpendLedger(self.sqlite_path("ledger"), clock)

    def cycles(self) -> CycleStore:
        if self._generators is not None:
            from generators.improvement.store_pg import PostgresCycleStore

            return PostgresCycleStore(self._generators, owner=self.replica)
        return SqliteCycleStore(self.sqlite_path("cycles"), owner=self.replica)

    def attempts(self) -> AttemptArchive:
        if self._generators is not None:
            from generators.improvement.attempts_pg import PostgresAttemptArchive

            return PostgresAttemptArchive(self._generators)
        return SqliteAttemptArchive(self.sqlite_path("attempts"))

    def jobs(self) -> PostgresJobs | None:
        """The workers' queue, when validation goes to workers (PostgreSQL only: with SQLite it runs here)."""
        if self._generators is None or not self.settings.validation_on_workers:
            return None
        from generators.jobs.queue_pg import PostgresJobs

        return PostgresJobs(self._generators)

    def tools(self) -> ToolStore:
        if self._generators is not None:
            from generators.toolhost.store_pg import PostgresToolStore

            return PostgresToolStore(self._generators)
        return SqliteToolStore(self.sqlite_path("tools"))
