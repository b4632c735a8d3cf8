"""The record of generated tools: which exist, whose they are, which version of their code is served (SQLite)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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
    version: int  # 1 for its first code, +1 for each change of it (a new version, a rollback)
    sha256: str  # of the code served now ("" before the first load)
    deployment_id: str  # the deployment that brought it
    created_at: float
    updated_at: float
    calls: int = 0
    failures: int = 0
    error: str | None = None  # why it is broken


class SqliteToolStore:
    """Thread-safe, blocking."""

    def __init__(self, path: Path) -> None:
        self._db = Database(path, _SCHEMA)

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
