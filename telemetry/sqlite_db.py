"""The SQLite set-up every telemetry store shares: one connection in WAL mode behind a lock, and write transactions
that take the write lock up front. (``generators`` keeps its own: the two packages do not import each other.)"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def open_wal(path: Path, schema: str, *, timeout: float = 30) -> tuple[sqlite3.Connection, threading.Lock]:
    """Open (creating folders and tables as needed) ``path`` in WAL mode, synchronous=NORMAL: a committed transaction
    survives a crash of this process (not of the OS). Callers use the connection from worker threads, under the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(schema)
    except BaseException:
        conn.close()
        raise
    return conn, threading.Lock()


@contextmanager
def immediate(conn: sqlite3.Connection, lock: threading.Lock) -> Iterator[sqlite3.Connection]:
    """A write transaction under the lock (BEGIN IMMEDIATE), rolled back if the body raises."""
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # also when COMMIT itself failed: the next BEGIN must find no transaction open
                conn.execute("ROLLBACK")
            raise
