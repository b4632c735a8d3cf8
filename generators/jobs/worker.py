"""A worker: takes validation and benchmark jobs from the PostgreSQL queue and runs them against its own copy of the
workspace (the same files as the servers'), one at a time, extending its lease while it works, until stopped. Several
run side by side, on one machine or many (``self-building-mcp worker``)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from generators.jobs.benchmark import KIND as BENCHMARK
from generators.jobs.benchmark import BenchmarkJob
from generators.jobs.queue_pg import Claimed, PostgresJobs, keep_lease
from generators.jobs.validation import KIND, ValidationJob
from generators.validation import ValidationPipeline

logger = logging.getLogger(__name__)


class Worker:
    """Runs jobs until :meth:`stop`; ``idle`` is how long to wait between looks at an empty queue."""

    def __init__(
        self,
        jobs: PostgresJobs,
        pipeline: ValidationPipeline,
        workspace: Path,
        *,
        lease_seconds: float = 30.0,
        idle: float = 0.2,
    ) -> None:
        self.jobs = jobs
        self.pipeline = pipeline
        self.workspace = workspace
        self.lease_seconds = lease_seconds
        self.idle = idle
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.done = 0
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self, until: Callable[[], bool] = lambda: False) -> None:
        """Take and run jobs until :meth:`stop` (or ``until()`` holds)."""
        logger.info("worker %s takes validation and benchmark jobs (workspace %s)", self.name, self.workspace)
        while not self._stopping.is_set() and not until():
            claimed = self.jobs.claim(self.name, [KIND, BENCHMARK], self.lease_seconds)
            if claimed is None:
                self._stopping.wait(self.idle)
                continue
            self._run(claimed)

    def _run(self, claimed: Claimed) -> None:
        started = time.monotonic()
        keeping = threading.Event()
        args = (self.jobs, claimed.id, self.name, self.lease_seconds, keeping)
        keeper = threading.Thread(target=keep_lease, args=args, daemon=True)
        keeper.start()
        what = "benchmark" if claimed.kind == BENCHMARK else "validation"
        try:
            result = self._answer(claimed)
        except Exception as exc:  # the job's failure is its answer; the worker goes on
            logger.exception("%s job %d failed", what, claimed.id)
            self.jobs.finish(claimed.id, self.name, None, f"{type(exc).__name__}: {exc}")
            return
        finally:
            keeping.set()
            keeper.join()
        if self.jobs.finish(claimed.id, self.name, result):
            self.done += 1
            logger.info("%s job %d done in %.1f s (attempt %d)", what, claimed.id, time.monotonic() - started,
                        claimed.attempts)  # fmt: skip
        else:
            logger.warning("%s job %d was taken by another worker meanwhile; its answer stands", what, claimed.id)

    def _answer(self, claimed: Claimed) -> dict[str, Any]:
        if claimed.kind == BENCHMARK:  # in the same sandbox limits and scratch folder as validation
            return BenchmarkJob.from_dict(claimed.payload).run(self.workspace, self.pipeline.config).to_dict()
        return ValidationJob.from_dict(claimed.payload).run(self.pipeline, self.workspace).to_dict()
