"""``self-building-mcp worker``: validate generated code and run the improvement cycle's benchmarks for the servers
(replicas) on one PostgreSQL database, taking the jobs from the database's queue
(``SELF_BUILDING_VALIDATION_ON_WORKERS=true`` on the servers). Run as many as the machines allow, each with the same
settings and workspace (a shared volume) as the servers; SIGTERM or Ctrl-C stops one after the job it is running."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

from server.settings import Settings

logger = logging.getLogger(__name__)
EXIT_USAGE = 2


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    commands.add_parser(
        "worker",
        parents=[common],
        help="validate generated code and run benchmarks for the servers on a PostgreSQL database",
        description="Take validation and benchmark jobs from the PostgreSQL queue (SELF_BUILDING_DATABASE_URL) and "
        "run them in the jail against the workspace, one at a time, until stopped (SIGTERM, Ctrl-C: after the job "
        "in hand). A worker that dies leaves its job to the next after its lease (SELF_BUILDING_LEASE_SECONDS).",
    )


def run(settings: Settings) -> int:
    if settings.database_url is None:
        sys.stderr.write(
            "self-building-mcp: error: a worker takes its jobs from PostgreSQL: set SELF_BUILDING_DATABASE_URL "
            "(with SQLite, validation runs in the server)\n"
        )
        return EXIT_USAGE
    from generators.jobs.queue_pg import PostgresJobs
    from generators.jobs.worker import Worker
    from generators.pg_db import PostgresDatabase
    from generators.validation import ValidationPipeline
    from generators.validation.jail import report
    from server.builders import jail_from, open_scratch, validation_config

    jail = jail_from(settings)
    scratch = open_scratch(settings)
    report(jail.status(scratch.path))
    pipeline = ValidationPipeline(validation_config(settings, scratch.path, jail))
    db = PostgresDatabase(settings.database_url.get_secret_value(), max_size=2)
    try:
        worker = Worker(PostgresJobs(db), pipeline, settings.workspace, lease_seconds=settings.lease_seconds)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: worker.stop())
        worker.run()
        logger.info("worker %s stopped after %d jobs", worker.name, worker.done)
    finally:
        pipeline.close()
        db.close()
        scratch.close()
    return 0
