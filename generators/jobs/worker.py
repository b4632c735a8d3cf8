"""A worker: takes validation jobs from the PostgreSQL queue and runs them against its own copy of the workspace (the
same files as the servers'), one at a time, extending its lease while it works, until stopped. Several run side by
side, on one machine or many (``self-building-mcp worker``)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from generators.jobs.queue_pg import Claimed, PostgresJobs
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
        logger.info("worker %s takes validation jobs (workspace %s)", self.name, self.workspace)
        while not self._stopping.is_set() and not until():
            claimed = self.jobs.claim(self.name, [KIND], self.lease_seconds)
            if claimed is None:
                self._stopping.wait(self.idle)
                continue
            self._run(claimed)

    def _run(self, claimed: Claimed) -> None:
        started = time.monotonic()
        keeping = threading.Event()
        keeper = threading.Thread(target=self._keep, args=(claimed.id, keeping), daemon=True)
        keeper.start()
        try:
            report = ValidationJob.from_dict(claimed.payload).run(self.pipeline, self.workspace)
        except Exception as exc:  # the job's failure is its answer; the worker goes on
            logger.exception("validation job %d failed", claimed.id)
            self.jobs.finish(claimed.id, self.name, None, f"{type(exc).__name__}: {exc}")
            return
        finally:
            keeping.set()
            keeper.join()
        if self.jobs.finish(claimed.id, self.name, report.to_dict()):
            self.done += 1
            logger.info("validation job %d done in %.1f s (attempt %d)", claimed.id, time.monotonic() - started,
                        claimed.attempts)  # fmt: skip
        else:
            logger.warning("validation job %d was taken by another worker meanwhile; its answer stands", claimed.id)

    def _keep(self, job_id: int, done: threading.Event) -> None:
        while not done.wait(self.lease_seconds / 3):
            if not self.jobs.extend(job_id, self.name, self.lease_seconds):
                return
