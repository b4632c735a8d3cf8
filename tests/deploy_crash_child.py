"""A process that deploys (or rolls back) and can be stopped at a chosen step, for the SIGKILL crash tests.

python -m tests.deploy_crash_child WORKSPACE DATA_DIR ACTION STEP INDEX SLEEP [DEPLOYMENT_ID]

ACTION is ``deploy`` (the files of :func:`new_files`) or ``rollback`` (of DEPLOYMENT_ID). The version store and audit
log are the server's SQLite files in DATA_DIR, or, with ``SELF_BUILDING_CRASH_TEST_DATABASE_URL`` set, a PostgreSQL
database (the crash tests run on both). When the transaction reaches
its INDEX-th STEP (see ``generators.deploy.transaction.StepHook``) the process writes ``READY`` to stdout and waits to
be killed. ``STARTED`` is written just before the transaction begins. SLEEP (seconds) is slept after every step,
so that a kill at a random time lands mid-transaction.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from generators.deploy import Deployer, SqliteAuditLog, SqliteVersionStore
from generators.deploy.audit import AuditLog
from generators.deploy.audit_pg import PostgresAuditLog
from generators.deploy.store import VersionStore
from generators.deploy.store_pg import PostgresVersionStore
from generators.deploy.transaction import StepHook
from generators.pg_db import PostgresDatabase

FILE_COUNT = 6
URL_ENV = "SELF_BUILDING_CRASH_TEST_DATABASE_URL"


def new_files() -> dict[str, bytes]:
    """What the child deploys: FILE_COUNT files under components/, 64 KiB each."""
    return {f"components/m{i}.py": f"# new {i}\n".encode() * 6000 for i in range(FILE_COUNT)}


_pools: dict[str, PostgresDatabase] = {}  # one per database for the process


def close_databases() -> None:
    """Close the pools :func:`open_deployer` opened (the test's side ends with this)."""
    for db in _pools.values():
        db.close()
    _pools.clear()


def open_deployer(workspace: Path, data_dir: Path, hook: StepHook | None = None) -> Deployer:
    url = os.environ.get(URL_ENV)
    store: VersionStore
    audit: AuditLog
    if url:
        db = _pools.get(url) or _pools.setdefault(url, PostgresDatabase(url, max_size=2))
        store, audit = PostgresVersionStore(db), PostgresAuditLog(db)
    else:  # the server's own file names, so that a real server can start on what the killed process left
        store = SqliteVersionStore(data_dir / "versions.sqlite3")
        audit = SqliteAuditLog(data_dir / "audit.sqlite3")
    return Deployer(workspace, data_dir, store, audit, hook=hook)


def main(argv: list[str]) -> int:
    workspace, data_dir, action, stop_step, stop_index, pause = argv[:6]
    seen = {"count": 0}

    def hook(step: str, path: str) -> None:
        if step == stop_step:
            seen["count"] += 1
            if seen["count"] == int(stop_index):
                sys.stdout.write("READY\n")
                sys.stdout.flush()
                time.sleep(60)
        time.sleep(float(pause))

    deployer = open_deployer(Path(workspace), Path(data_dir), hook)
    sys.stdout.write("STARTED\n")
    sys.stdout.flush()
    if action == "deploy":
        deployer.deploy("default", "crashy", new_files(), actor="child", reason="crash test")
    else:
        deployer.rollback(argv[6], actor="child", reason="crash test")
    sys.stdout.write("DONE\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
