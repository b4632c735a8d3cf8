"""A real PostgreSQL for tests: Debian's ``postgresql`` (``initdb`` into a temporary folder, ``pg_ctl start`` on a free
port). PostgreSQL refuses to run as root: where the tests run as root, the server runs as the ``postgres`` user. No
mocks. Where no PostgreSQL is installed the tests that need one skip, unless ``SELF_BUILDING_REQUIRE_POSTGRES`` is set
(``.ci/run`` sets it, and installs the package)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.moto_server import free_port

RUN_AS = "postgres"  # the user Debian's package creates


def find_program(name: str) -> str | None:
    """A PostgreSQL program: on the PATH, else in Debian's ``/usr/lib/postgresql/<version>/bin`` (the newest)."""
    found = shutil.which(name)
    if found is not None:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[-3]))
    return candidates[-1] if candidates else None


class PostgresServer:
    """One PostgreSQL cluster in its own folder, listening on 127.0.0.1 only, with trust authentication."""

    def __init__(self) -> None:
        initdb, pg_ctl = find_program("initdb"), find_program("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise FileNotFoundError("PostgreSQL is not installed (Debian: apt install postgresql)")
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.folder = Path(tempfile.mkdtemp(prefix="self-building-pg-"))
        self.port = free_port()
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        as_user = ["runuser", "-u", RUN_AS, "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed: {(done.stderr or done.stdout).strip()[-2000:]}")

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, RUN_AS, RUN_AS)
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def new_database(self) -> str:
        """A new, empty database on this server (one per test: nothing shared between tests); its URL."""
        import uuid

        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.dsn.rsplit("/", 1)[0] + f"/{name}"

    def drop_database(self, url: str) -> None:
        """Drop a database :meth:`new_database` made (its connections ended first), so that a long run's databases
        do not pile up on disk."""
        import psycopg
        from psycopg import sql

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def stop(self) -> None:
        try:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session (one per test worker)."""
    try:
        server = PostgresServer()
    except FileNotFoundError as exc:
        if os.environ.get("SELF_BUILDING_REQUIRE_POSTGRES"):
            raise
        pytest.skip(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class _Closable(Protocol):
    def close(self) -> None: ...


def two_stores(
    request: pytest.FixtureRequest,
    on_sqlite: Callable[[], Any],
    on_postgresql: Callable[[Any], Any],
    database: Callable[[str], _Closable],
) -> Iterator[tuple[Any, Any]]:
    """Two stores on one database (two replicas, or a restart), for a fixture parametrised ``["sqlite",
    "postgresql"]``: ``on_sqlite()`` opens one on the test's SQLite file, ``on_postgresql(db)`` one on a pool that
    ``database(url)`` opens to a new database of the session's server."""
    if request.param == "sqlite":
        first, second = on_sqlite(), on_sqlite()
        try:
            yield first, second
        finally:
            first.close()
            second.close()
        return
    url = request.getfixturevalue("postgres").new_database()
    pools = database(url), database(url)
    try:
        yield on_postgresql(pools[0]), on_postgresql(pools[1])
    finally:
        for pool in pools:
            pool.close()
