"""The record of generated tools: which exist, whose they are, which version of their code is served (the
:class:`ToolStore` protocol and its SQLite store; :mod:`.store_pg` has the PostgreSQL one)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from generators.sqlite_db import Database

ToolStatus = Literal["active", "broken", "removed"]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS generated_tools (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    module TEXT NOT NULL,
    status TEXT NOT NULL,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    calls INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE IF NOT EXISTS generated_tool_versions (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (tenant, name, sha256)
);
"""
_COLUMNS = (
    "tenant, name, module, status, version, sha256, deployment_id, created_at, updated_at, calls, failures, error"
)


@dataclass(slots=True)
class ToolRecord:
    """One generated tool: its tenant's component ``name`` in workspace file ``module``, the function of that name."""

    tenant: str
    name: str
    module: str  # workspace path, e.g. components/acme/duration_seconds.py
    status: ToolStatus
    version: int  # its code's number: 1 for the first, the next for new code; code served before keeps its number
    sha256: str  # of the code served now: its module and the workspace modules it imports ("" before the first load)
    deployment_id: str  # the deployment that brought it
    created_at: float
    updated_at: float
    calls: int = 0
    failures: int = 0
    error: str | None = None  # why it is broken


class ToolStore(Protocol):
    """Where the registry keeps its records (SQLite, or PostgreSQL for several replicas). Thread-safe, blocking."""

    def all(self) -> list[ToolRecord]:
        """Every record, by tenant and name."""
        ...

    def save(self, record: ToolRecord) -> None:
        """Insert or replace ``record``."""
        ...

    def version_of(self, tenant: str, name: str, sha256: str, served: int) -> int:
        """The version number of the tool's code ``sha256``: the one it had when it was served before (a rollback
        serves an earlier version again), else the next one after every number given so far and ``served`` (the
        version served now)."""
        ...

    def save_counts(self, counts: list[tuple[str, str, int, int]]) -> None:
        """The call counts (tenant, name, calls, failures) of saved tools, in one transaction; a count never goes
        down (a sync may have saved a newer one meanwhile), and nothing else of a record is touched."""
        ...

    def close(self) -> None: ...


class SqliteToolStore:
    """:class:`ToolStore` in a SQLite file. Thread-safe, blocking."""

    def __init__(self, path: Path) -> None:
        self._db = Database(path, _SCHEMA)
        with self._db.transaction() as conn:  # the code served before the version table existed keeps its number
            conn.execute(
                "INSERT OR IGNORE INTO generated_tool_versions (tenant, name, sha256, version) "
                "SELECT tenant, name, sha256, version FROM generated_tools WHERE sha256 <> ''"
            )

    def close(self) -> None:
        self._db.close()

    def all(self) -> list[ToolRecord]:
        with self._db.lock:
            rows = self._db.conn.execute(f"SELECT {_COLUMNS} FROM generated_tools ORDER BY tenant, name").fetchall()
        return [ToolRecord(*row) for row in rows]

    def save(self, record: ToolRecord) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO generated_tools ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.tenant, record.name, record.module, record.status, record.version, record.sha256,
                 record.deployment_id, record.created_at, record.updated_at, record.calls, record.failures,
                 record.error),
            )  # fmt: skip

    def version_of(self, tenant: str, name: str, sha256: str, served: int) -> int:
        """The version number of the tool's code ``sha256``: the one it had when it was served before (a rollback
        serves an earlier version again), else the next one after every number given so far and ``served`` (the
        version served now)."""
        with self._db.transaction() as conn:
            key = (tenant, name)
            row = conn.execute(
                "SELECT version FROM generated_tool_versions WHERE tenant = ? AND name = ? AND sha256 = ?",
                (*key, sha256),
            ).fetchone()
            if row is not None:
                return int(row[0])
            (top,) = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM generated_tool_versions WHERE tenant = ? AND name = ?", key
            ).fetchone()
            version = max(int(top), served) + 1
            conn.execute("INSERT INTO generated_tool_versions VALUES (?, ?, ?, ?)", (*key, sha256, version))
            return version

    def save_counts(self, counts: list[tuple[str, str, int, int]]) -> None:
        """The call counts (tenant, name, calls, failures) of saved tools, in one transaction; a count never goes
        down (a sync may have saved a newer one meanwhile), and nothing else of a record is touched."""
        with self._db.transaction() as conn:
            conn.executemany(
                "UPDATE generated_tools SET calls = MAX(calls, ?), failures = MAX(failures, ?) "
                "WHERE tenant = ? AND name = ?",
                [(calls, failures, tenant, name) for tenant, name, calls, failures in counts],
            )
