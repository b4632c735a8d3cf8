"""The generated tools' records in PostgreSQL, for several replicas on one database (each registers the same tools):
the same behaviour as :class:`generators.toolhost.store.SqliteToolStore`. A code's version number is given under a
per-tool advisory lock, so two replicas seeing the same new code at once give it one number."""

from __future__ import annotations

from generators.pg_db import PostgresDatabase
from generators.toolhost.store import ToolRecord

STORE = "generated_tools"
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE generated_tools (
            tenant TEXT NOT NULL,
            name TEXT NOT NULL,
            module TEXT NOT NULL,
            status TEXT NOT NULL,
            version INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            deployment_id TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            calls BIGINT NOT NULL DEFAULT 0,
            failures BIGINT NOT NULL DEFAULT 0,
            error TEXT,
            PRIMARY KEY (tenant, name)
        );
        CREATE TABLE generated_tool_versions (
            tenant TEXT NOT NULL,
            name TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            version INTEGER NOT NULL,
            PRIMARY KEY (tenant, name, sha256)
        );
        """,
    ),
)
_COLUMNS = (
    "tenant, name, module, status, version, sha256, deployment_id, created_at, updated_at, calls, failures, error"
)
_UPDATED = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS.split(", ")[2:])


class PostgresToolStore:
    """:class:`generators.toolhost.store.ToolStore` in PostgreSQL. Thread-safe (a connection per call)."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        db.migrate(STORE, MIGRATIONS)

    def close(self) -> None:
        """Nothing of its own to close: the database (shared by the stores) is closed by its owner."""

    def all(self) -> list[ToolRecord]:
        with self._db.pool.connection() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM generated_tools ORDER BY tenant, name").fetchall()
        return [ToolRecord(*row) for row in rows]

    def save(self, record: ToolRecord) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                f"INSERT INTO generated_tools ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                f" ON CONFLICT (tenant, name) DO UPDATE SET {_UPDATED}",
                (record.tenant, record.name, record.module, record.status, record.version, record.sha256,
                 record.deployment_id, record.created_at, record.updated_at, record.calls, record.failures,
                 record.error),
            )  # fmt: skip

    def version_of(self, tenant: str, name: str, sha256: str, served: int) -> int:
        key = (tenant, name)
        with self._db.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"generated_tool/{tenant}/{name}",))
            row = conn.execute(
                "SELECT version FROM generated_tool_versions WHERE tenant = %s AND name = %s AND sha256 = %s",
                (*key, sha256),
            ).fetchone()
            if row is not None:
                return int(row[0])
            top = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM generated_tool_versions WHERE tenant = %s AND name = %s", key
            ).fetchone()
            version = max(int(top[0]) if top else 0, served) + 1
            conn.execute("INSERT INTO generated_tool_versions VALUES (%s, %s, %s, %s)", (*key, sha256, version))
            return version

    def save_counts(self, counts: list[tuple[str, str, int, int]]) -> None:
        with self._db.transaction() as conn, conn.cursor() as cursor:
            cursor.executemany(
                "UPDATE generated_tools SET calls = GREATEST(calls, %s), failures = GREATEST(failures, %s)"
                " WHERE tenant = %s AND name = %s",
                [(calls, failures, tenant, name) for tenant, name, calls, failures in counts],
            )
