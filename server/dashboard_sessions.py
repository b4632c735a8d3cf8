"""Dashboard sign-ins kept in PostgreSQL, so that every replica knows them: a browser signed in through one replica
is signed in on all, and a sign-out through one ends it on all. Only a digest of each session id is stored (the id
is the cookie's secret), with the signed-in key's name and roles, never the key.

:class:`PostgresSessions` has :class:`server.dashboard.Sessions`' methods and limits; its times are wall-clock
seconds (they are compared across machines). The database is opened on first use.
"""

from __future__ import annotations

import atexit
import hashlib
import secrets
import threading
import time
from collections.abc import Callable

from mcp.server.auth.provider import AccessToken

from generators.pg_db import PostgresDatabase

STORE = "dashboard_sessions"
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE dashboard_sessions (
            digest TEXT PRIMARY KEY,
            client_id TEXT NOT NULL,
            token TEXT NOT NULL,
            opened_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX dashboard_sessions_by_key ON dashboard_sessions (client_id, opened_at);
        """,
    ),
)


def _digest(session: str) -> str:
    return hashlib.sha256(session.encode()).hexdigest()


class PostgresSessions:
    """Sign-ins shared by the replicas (blocking: the dashboard calls it from worker threads)."""

    def __init__(
        self, url: str, *, seconds: float, max_sessions: int, per_key: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._url = url
        self._seconds = seconds
        self._max = max_sessions
        self._per_key = per_key
        self._clock = clock
        self._db: PostgresDatabase | None = None
        self._opening = threading.Lock()

    def _database(self) -> PostgresDatabase:
        with self._opening:
            if self._db is None:
                db = PostgresDatabase(self._url, max_size=2)
                db.migrate(STORE, MIGRATIONS)
                self._db = db
                atexit.register(self.stop)
            return self._db

    def open(self, token: AccessToken) -> str:
        now = self._clock()
        session = secrets.token_urlsafe(32)
        with self._database().transaction() as conn:
            conn.execute("DELETE FROM dashboard_sessions WHERE expires_at <= %s", (now,))
            conn.execute(  # a key's oldest sign-ins go first: one key cannot crowd out the others
                "DELETE FROM dashboard_sessions WHERE digest IN (SELECT digest FROM dashboard_sessions"
                " WHERE client_id = %s ORDER BY opened_at DESC OFFSET %s)",
                (token.client_id, self._per_key - 1),
            )
            conn.execute(
                "DELETE FROM dashboard_sessions WHERE digest IN (SELECT digest FROM dashboard_sessions"
                " ORDER BY opened_at DESC OFFSET %s)",
                (self._max - 1,),
            )
            conn.execute(
                "INSERT INTO dashboard_sessions (digest, client_id, token, opened_at, expires_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                (_digest(session), token.client_id, token.model_dump_json(), now, now + self._seconds),
            )
        return session

    def get(self, session: str | None) -> AccessToken | None:
        if not session:
            return None
        with self._database().pool.connection() as conn:
            row = conn.execute(
                "SELECT token FROM dashboard_sessions WHERE digest = %s AND expires_at > %s",
                (_digest(session), self._clock()),
            ).fetchone()
        return None if row is None else AccessToken.model_validate_json(row[0])

    def close(self, session: str | None) -> None:
        if session:
            with self._database().transaction() as conn:
                conn.execute("DELETE FROM dashboard_sessions WHERE digest = %s", (_digest(session),))

    def stop(self) -> None:
        with self._opening:
            if self._db is not None:
                self._db.close()
                self._db = None
