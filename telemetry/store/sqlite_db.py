"""The SQLite set-up every telemetry store shares: one connection in WAL mode behind a lock, write transactions that
take the write lock up front, and "disk full" turned into :class:`StorageFullError`, logged once per episode.
(``generators`` keeps its own: the two packages do not import each other.)"""

from __future__ import annotations

import contextlib
import errno
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from telemetry.errors import StorageFullError

logger = logging.getLogger(__name__)

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
MAX_ROWS_PER_STATEMENT = 2048
REMIND_SECONDS = 3600.0  # a long episode is logged again this often, not on every failed write


def full_reason(exc: BaseException) -> str | None:
    """Why ``exc`` means "no space" (SQLite's SQLITE_FULL, or ENOSPC / EDQUOT from the OS), or ``None``."""
    if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        return exc.strerror or str(exc)
    return None


def insert_rows(conn: sqlite3.Connection, head: str, rows: Sequence[Sequence[object]], tail: str = "") -> int:
    """Run ``{head} VALUES (?, …), (?, …) … {tail}`` for ``rows`` in a few statements of many rows (at most
    :data:`MAX_ROWS_PER_STATEMENT`, in sizes that are powers of two so that the connection's statement cache keeps
    them); the number of rows inserted or changed.

    Not ``executemany``: ``sqlite3`` lets go of the GIL around every step of a statement and executemany steps once
    per row, so while other threads run Python each row waits for the GIL again — a batch of 1,000 points held the
    write lock 27 ms under the concurrency drill instead of 1.7 ms, and 0.7 s beside one busy thread. Here the GIL is
    given up once per statement. Rows with the same key in one statement behave as they would one after another.
    """
    if not rows:
        return 0
    width = len(rows[0])
    limit = max(1, min(MAX_ROWS_PER_STATEMENT, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    one = "(" + ", ".join("?" * width) + ")"
    changed, start, size = 0, 0, 1 << (limit.bit_length() - 1)
    while start < len(rows):
        while size > len(rows) - start:
            size //= 2
        chunk = rows[start : start + size]
        cur = conn.execute(f"{head} VALUES {', '.join([one] * size)} {tail}", [v for row in chunk for v in row])
        changed += cur.rowcount
        start += size
    return changed


class FullEpisodes:
    """Logs a store's "disk full" episodes: one WARNING when writes start failing (again every hour while they go on)
    and one INFO when a write works again. Background writers retry every second; a line per failure would bury the
    log and fill the disk that is already full."""

    def __init__(self, what: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.failures = 0
        self._clock = clock
        self._since: float | None = None
        self._warned_at = 0.0

    @property
    def full(self) -> bool:
        return self._since is not None

    def failed(self, error: StorageFullError) -> None:
        now = self._clock()
        self.failures += 1
        if self._since is None:
            self._since = now
        elif now - self._warned_at < REMIND_SECONDS:
            logger.debug("write to %s refused again: %s", self.what, error.reason)
            return
        self._warned_at = now
        logger.warning(
            "%s: writes to %s fail until there is space (%d so far); reads still work and writes resume by "
            "themselves; free space there or move SELF_BUILDING_DATA_DIR",
            error, self.what.name, self.failures,
        )  # fmt: skip

    def succeeded(self) -> None:
        if self._since is None:
            return
        logger.info("writes to %s work again (%d refused over %.0f s while it was full)",
                    self.what, self.failures, self._clock() - self._since)  # fmt: skip
        self._since, self.failures = None, 0


class WalDatabase:
    """One SQLite file (WAL, ``synchronous=NORMAL``: a committed transaction survives a crash of this process, not of
    the OS) with one writing connection behind ``lock``, and ``readers`` read-only connections: WAL lets readers
    read a consistent snapshot while the writer writes, so a read never waits for a write, nor for another read while
    a connection is free (``readers=0``: reads share the writer's connection and lock). Callers use it from worker
    threads."""

    def __init__(self, path: Path, schema: str, *, timeout: float = 30, readers: int = 0) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.episodes = FullEpisodes(path)
        self._pool: queue.Queue[sqlite3.Connection] = queue.Queue()
        self._readers = readers
        with self.writing():  # creating the folder, the file or its tables needs space too
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout)
            try:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.executescript(schema)
                for _ in range(readers):
                    reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout)
                    self._pool.put(reader)
                    reader.execute("PRAGMA query_only=ON")
            except BaseException:
                self._readers = self._pool.qsize()  # those made so far, none in use
                self._close_all()
                raise

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for a read, its queries in one read transaction (one consistent snapshot): one of the
        readers (waiting only while all are busy), else the writer's under its lock."""
        if not self._readers:
            with self.lock:
                yield self.conn
            return
        conn = self._pool.get()
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
        finally:
            self._pool.put(conn)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Run a write: "disk full" becomes :class:`StorageFullError` (logged once per episode); a write that works
        ends the episode."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            reason = full_reason(exc)
            if reason is None:
                raise
            error = StorageFullError(self.path.parent, reason)
            self.episodes.failed(error)
            raise error from exc
        self.episodes.succeeded()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction under the lock (BEGIN IMMEDIATE), rolled back if the body raises."""
        with self.lock, self.writing():
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # also when COMMIT failed: the next BEGIN must find no transaction open
                    self.conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close every connection (waiting for reads in flight to give theirs back)."""
        with self.lock:
            self._close_all()

    def _close_all(self) -> None:
        readers, self._readers = self._readers, 0  # closing twice waits for nothing
        for _ in range(readers):
            with contextlib.suppress(queue.Empty):
                self._pool.get(timeout=60).close()
        self.conn.close()
