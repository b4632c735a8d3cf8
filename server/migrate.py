"""``self-building-mcp migrate --to postgresql://…``: move a data directory's SQLite stores into an empty PostgreSQL
database, so that the server (or several replicas) can run on it with everything it had.

Each store is opened on PostgreSQL first (its migrations make its tables), then every table the SQLite file and
the database share is copied row by row, in the file's own order (a table before those that refer to it), in one
transaction per store. The database must hold no records yet: nothing is merged or overwritten. The serial
counters are moved past the ids copied, and each table's rows are counted on both sides; the command fails (and
the stores' transactions are rolled back) if any count differs. The SQLite files are only read: they stay as they
were, and the server keeps using them until ``SELF_BUILDING_DATABASE_URL`` names the database.

Stop the server first: rows it writes while the copy runs would be missed.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import psycopg
from psycopg import sql
from pydantic import SecretStr

from server.databases import Databases
from server.settings import Settings
from telemetry.store.pg_db import nul_safe

logger = logging.getLogger(__name__)
BATCH = 5_000
SKIPPED_TABLES = frozenset({"schema_migrations", "sqlite_sequence"})
# Tables named otherwise in PostgreSQL, where every store shares one namespace: by file, SQLite name -> PostgreSQL's.
RENAMED = {"monitoring.sqlite3": {"events": "monitoring_events", "settings": "monitoring_settings"}}


class MigrationError(RuntimeError):
    """The move cannot be done (or did not add up); the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Moved:
    """One table copied: where from, and how many rows."""

    file: str
    table: str
    rows: int


# What opens each store on the configured backend (its migrations make its tables), by its SQLite file's name.
OPENERS: dict[str, Callable[[Databases], object]] = {
    "telemetry": lambda d: d.telemetry(),
    "events": lambda d: d.events(),
    "calls": lambda d: d.calls(),
    "versions": lambda d: d.versions(),
    "audit": lambda d: d.audit(lambda: 0.0),
    "ledger": lambda d: d.ledger(lambda: 0.0),
    "cycles": lambda d: d.cycles(),
    "attempts": lambda d: d.attempts(),
    "tools": lambda d: d.tools(),
}


def store_files(settings: Settings) -> list[tuple[Path, Callable[[Databases], object]]]:
    """Each SQLite file of the data directory, with what opens its store on the configured backend."""
    databases = Databases(settings)
    return [(databases.sqlite_path(store), opener) for store, opener in OPENERS.items()]


async def migrate(settings: Settings, url: str, report: Callable[[Moved], None]) -> list[Moved]:
    """Copy every SQLite store of ``settings.data_dir`` into the PostgreSQL database at ``url``."""
    target = settings.model_copy(update={"database_url": SecretStr(url)})
    databases = Databases(target)
    async with AsyncExitStack() as opened:
        await databases.open(opened)
        for path, open_store in store_files(settings):
            if path.exists():
                await anyio.to_thread.run_sync(open_store, databases)  # its tables, by its migrations
        return await anyio.to_thread.run_sync(_copy_all, settings, url, report)


def _copy_all(settings: Settings, url: str, report: Callable[[Moved], None]) -> list[Moved]:
    files = [path for path, _ in store_files(settings) if path.exists()]
    if not files:
        raise MigrationError(f"no SQLite store in {settings.data_dir}: nothing to move (is --data-dir right?)")
    moved: list[Moved] = []
    with psycopg.connect(url) as conn:
        nul_safe(conn)  # a NUL in a stored text goes over as U+FFFD, as the stores write it
        _refuse_if_used(conn, files)
        with conn.transaction():  # all or nothing
            for path in files:
                for item in _copy_file(conn, path):
                    moved.append(item)
                    report(item)
            _advance_serials(conn)
    return moved


def _tables(source: sqlite3.Connection, path: Path) -> list[tuple[str, str]]:
    """The file's tables to copy, in its order: (the name in SQLite, the name in PostgreSQL)."""
    rows = source.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid").fetchall()
    renamed = RENAMED.get(path.name, {})
    return [
        (name, renamed.get(name, name))
        for (name,) in rows
        if name not in SKIPPED_TABLES and not name.startswith("sqlite_")
    ]


def _columns(conn: psycopg.Connection[Any], table: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = %s",
        (table,),
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


def _refuse_if_used(conn: psycopg.Connection[Any], files: list[Path]) -> None:
    used: list[str] = []
    for path in files:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as source:
            for _, table in _tables(source, path):
                if not _columns(conn, table):
                    continue
                query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))
                row = conn.execute(query).fetchone()
                if row and row[0]:
                    used.append(table)
    if used:
        raise MigrationError(
            f"the database already holds records ({', '.join(sorted(set(used)))}): move into an empty database "
            "(nothing is merged or overwritten)"
        )


def _copy_file(conn: psycopg.Connection[Any], path: Path) -> Iterator[Moved]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as source:
        for origin, table in _tables(source, path):
            target = _columns(conn, table)
            if not target:
                logger.warning("%s: table %s has no counterpart in PostgreSQL; left out", path.name, origin)
                continue
            names = [row[1] for row in source.execute(f'PRAGMA table_info("{origin}")')]
            lost = [name for name in names if name not in target]
            if lost:  # nothing is dropped silently
                raise MigrationError(f"{path.name}: table {origin}: no place in PostgreSQL for {', '.join(lost)}")
            shared = names
            flags = [target[name] == "boolean" for name in shared]
            insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                sql.Identifier(table),
                sql.SQL(", ").join(map(sql.Identifier, shared)),
                sql.SQL(", ").join(sql.Placeholder() * len(shared)),
            )
            listed = ", ".join(f'"{name}"' for name in shared)
            cursor = source.execute(f'SELECT {listed} FROM "{origin}"')
            rows = 0
            with conn.cursor() as out:
                while batch := cursor.fetchmany(BATCH):
                    out.executemany(insert, [_converted(row, flags) for row in batch])
                    rows += len(batch)
            counted = conn.execute(sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(table))).fetchone()
            if counted is None or int(counted[0]) != rows:
                raise MigrationError(f"{path.name}: table {table}: {rows} rows read but {counted} in PostgreSQL")
            yield Moved(path.name, table, rows)


def _converted(row: tuple[Any, ...], flags: list[bool]) -> tuple[Any, ...]:
    """SQLite keeps booleans as 0 and 1."""
    return tuple(bool(value) if flag and value is not None else value for value, flag in zip(row, flags, strict=True))


def _advance_serials(conn: psycopg.Connection[Any]) -> None:
    """Serial columns go on after the ids copied (a row written later must not take one of theirs)."""
    rows = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND column_default LIKE 'nextval(%%'"
    ).fetchall()
    for table, column in rows:
        conn.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence({t}, {c}), COALESCE(MAX({col}), 0) + 1, false) FROM {tab}"
            ).format(t=sql.Literal(table), c=sql.Literal(column), col=sql.Identifier(column), tab=sql.Identifier(table))
        )
