"""One SQLite file for a record the generators keep (deployments, the audit log, improvement cycles): WAL,
``synchronous=FULL`` (these records must survive an OS crash like the files they describe), one connection behind a
lock so every method is thread-safe, ``BEGIN IMMEDIATE`` transactions, and "disk full" raised as
:class:`generators.errors.StorageFullError`."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from generators.errors import storage_full


class Database:
    """Opens (creating its folder) and sets up one SQLite file; ``schema`` is run on every open."""

    def __init__(self, path: Path, schema: str, *, foreign_keys: bool = False) -> None:
        self.path = path
        self.lock = threading.Lock()
        with storage_full(path.parent):
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            with self.lock:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=FULL")
                if foreign_keys:
                    self.conn.execute("PRAGMA foreign_keys=ON")
                self.conn.executescript(schema)

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one write transaction, under the lock; rolled back if the block raises."""
        with self.lock, storage_full(self.path.parent):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # also when COMMIT itself failed: the next BEGIN must find none open
                    self.conn.execute("ROLLBACK")
                raise
