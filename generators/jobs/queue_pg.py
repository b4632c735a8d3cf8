"""The job queue in PostgreSQL: a ``jobs`` table that workers take from with ``FOR UPDATE SKIP LOCKED`` (each job to
one worker, none waiting on another's lock), under a lease the worker keeps extending while it works. A worker that
dies stops extending it: once it has run out, the next worker to ask takes the job again (at most
:data:`MAX_ATTEMPTS` times in all). A worker's answer counts only while the job is still its own (a worker that
lost its lease cannot overwrite the next one's answer). Times are the database's, so the machines' clocks do not
matter.

:class:`JobWaiter` is the server's side, for :class:`QueuedValidation` and :class:`QueuedBenchmarks`: it puts a job in
the queue and waits for its answer; a job no worker has taken (or kept) within ``claim_seconds`` is taken by the server
itself and run here, so cycles go on when no worker runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread

from generators.jobs.benchmark import KIND as BENCHMARK
from generators.jobs.benchmark import BenchmarkJob, Benchmarks, BenchResult
from generators.jobs.validation import KIND, LocalValidation, ValidationJob, report_from_dict
from generators.pg_db import PostgresDatabase
from generators.validation import ValidationReport

logger = logging.getLogger(__name__)
STORE = "jobs"
MAX_ATTEMPTS = 3  # a job whose workers died this many times fails (its code may be what kills them)
KEEP_SECONDS = 86_400.0  # finished jobs are deleted after a day
Local = TypeVar("Local")
UNKNOWN = "unknown"  # the side a benchmark failed on, when its job failed as a whole
NOW = "extract(epoch from clock_timestamp())"
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        f"""
        CREATE TABLE jobs (
            id BIGSERIAL PRIMARY KEY,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'queued',
            attempts INTEGER NOT NULL DEFAULT 0,
            worker TEXT,
            lease_until DOUBLE PRECISION,
            result TEXT,
            error TEXT,
            created_at DOUBLE PRECISION NOT NULL DEFAULT {NOW},
            updated_at DOUBLE PRECISION NOT NULL DEFAULT {NOW}
        );
        CREATE INDEX jobs_open ON jobs (id) WHERE status IN ('queued', 'running');
        """,
    ),
)


class JobFailedError(RuntimeError):
    """The job could not be done: its code raised, or workers died on it :data:`MAX_ATTEMPTS` times."""


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # queued, running, done, failed
    result: dict[str, Any] | None
    error: str | None
    worker: str | None
    attempts: int


class PostgresJobs:
    """The queue's operations (blocking; thread-safe: a pooled connection per call)."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        db.migrate(STORE, MIGRATIONS)

    def put(self, kind: str, payload: dict[str, Any]) -> int:
        with self._db.transaction() as conn:
            row = conn.execute(
                "INSERT INTO jobs (kind, payload) VALUES (%s, %s) RETURNING id", (kind, json.dumps(payload))
            ).fetchone()
        assert row is not None
        return int(row[0])

    def claim(self, worker: str, kinds: Sequence[str], lease: float, job_id: int | None = None) -> Claimed | None:
        """Take the oldest job of ``kinds`` that is queued or whose lease ran out (``job_id``: that one, if it is) for
        ``lease`` seconds; None when there is none."""
        with self._db.transaction() as conn:
            conn.execute(
                f"UPDATE jobs SET status = 'failed', updated_at = {NOW}, lease_until = NULL,"
                f" error = 'the workers running it stopped ' || attempts || ' times'"
                f" WHERE status = 'running' AND lease_until < {NOW} AND attempts >= %s",
                (MAX_ATTEMPTS,),
            )
            open_job = f"(status = 'queued' OR (status = 'running' AND lease_until < {NOW}))"
            which = f"{open_job} AND id = %(id)s" if job_id is not None else f"{open_job} AND kind = ANY(%(kinds)s)"
            row = conn.execute(
                f"UPDATE jobs SET status = 'running', worker = %(worker)s, attempts = attempts + 1,"
                f" lease_until = {NOW} + %(lease)s, updated_at = {NOW}"
                f" WHERE id = (SELECT id FROM jobs WHERE {which} ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
                " RETURNING id, kind, payload, attempts",
                {"worker": worker, "lease": lease, "kinds": list(kinds), "id": job_id},
            ).fetchone()
        if row is None:
            return None
        return Claimed(int(row[0]), str(row[1]), json.loads(row[2]), int(row[3]))

    def extend(self, job_id: int, worker: str, lease: float) -> bool:
        """Keep the job for ``lease`` seconds more; False when it is no longer this worker's."""
        with self._db.transaction() as conn:
            cursor = conn.execute(
                f"UPDATE jobs SET lease_until = {NOW} + %s, updated_at = {NOW}"
                " WHERE id = %s AND worker = %s AND status = 'running'",
                (lease, job_id, worker),
            )
        return cursor.rowcount == 1

    def finish(self, job_id: int, worker: str, result: dict[str, Any] | None, error: str | None = None) -> bool:
        """Record the answer (or the error) if the job is still this worker's."""
        with self._db.transaction() as conn:
            cursor = conn.execute(
                f"UPDATE jobs SET status = %s, result = %s, error = %s, lease_until = NULL, updated_at = {NOW}"
                " WHERE id = %s AND worker = %s AND status = 'running'",
                ("done" if error is None else "failed", None if result is None else json.dumps(result), error,
                 job_id, worker),
            )  # fmt: skip
            conn.execute(
                f"DELETE FROM jobs WHERE status IN ('done', 'failed') AND updated_at < {NOW} - %s", (KEEP_SECONDS,)
            )
        return cursor.rowcount == 1

    def outcome(self, job_id: int) -> Outcome | None:
        with self._db.pool.connection() as conn:
            row = conn.execute(
                "SELECT status, result, error, worker, attempts FROM jobs WHERE id = %s", (job_id,)
            ).fetchone()
        if row is None:
            return None
        return Outcome(str(row[0]), json.loads(row[1]) if row[1] else None, row[2], row[3], int(row[4]))


CLAIM_SECONDS = LEASE_SECONDS = 30.0  # the defaults: how long a job waits for a worker, and a taker's lease


def backoff(waited: float) -> float:
    """How long to wait before asking for a job's answer again, ``waited`` seconds in: soon at first, then 0.5 s."""
    return min(0.5, 0.05 + waited / 10)


class JobWaiter:
    """The server's side of the queue (blocking: it waits in a worker thread): puts a job in and waits for a worker's
    answer; a job nobody took, or whose worker stopped, within ``claim_seconds`` it takes itself and runs here, so
    cycles go on when no worker runs."""

    def __init__(
        self,
        jobs: PostgresJobs,
        *,
        claim_seconds: float = CLAIM_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
        poll: Callable[[float], float] = backoff,
    ) -> None:
        self.jobs = jobs
        self.claim_seconds = claim_seconds
        self.lease_seconds = lease_seconds
        self.name = f"server-{uuid.uuid4().hex[:8]}"
        self._poll = poll

    def run(self, kind: str, what: str, payload: dict[str, Any], here: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The answer to the job (``what`` names it in messages); ``here`` runs it in this process when nobody does.

        Raises:
            JobFailedError: it failed (or left the queue).
        """
        job_id = self.jobs.put(kind, payload)
        waited = 0.0
        while True:
            found = self.jobs.outcome(job_id)
            if found is None:
                raise JobFailedError(f"{what} job {job_id} vanished from the queue")
            if found.status == "done" and found.result is not None:
                return found.result
            if found.status == "failed":
                raise JobFailedError(f"{what} job {job_id} failed: {found.error}")
            if found.status in ("queued", "running") and waited >= self.claim_seconds:  # nobody took it, or kept it
                result = self._here(kind, what, job_id, here)
                if result is not None:
                    return result
            pause = self._poll(waited)
            time.sleep(pause)  # the caller's worker thread: nothing else waits on it
            waited += pause
            _stop_if_cancelled()

    def _here(self, kind: str, what: str, job_id: int, here: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """Take the job (if still nobody's, or its worker's lease ran out) and run it in this process."""
        if self.jobs.claim(self.name, [kind], self.lease_seconds, job_id) is None:
            return None
        logger.warning("%s job %d: no worker took it, or kept it, in %g s; running it here", what, job_id,
                       self.claim_seconds)  # fmt: skip
        done = threading.Event()
        keeper = threading.Thread(target=keep_lease, args=(self.jobs, job_id, self.name, self.lease_seconds, done))
        keeper.start()
        try:
            result = here()
        except Exception as exc:
            self.jobs.finish(job_id, self.name, None, str(exc) or repr(exc))
            raise
        finally:
            done.set()
            keeper.join()
        self.jobs.finish(job_id, self.name, result)
        return result


class _Queued(Generic[Local]):
    """Jobs through the queue (:class:`JobWaiter`), with the server as the worker of last resort (``local``)."""

    def __init__(
        self,
        jobs: PostgresJobs,
        local: Local,
        *,
        claim_seconds: float = CLAIM_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
        poll: Callable[[float], float] = backoff,
    ) -> None:
        self.local = local
        self.waiter = JobWaiter(jobs, claim_seconds=claim_seconds, lease_seconds=lease_seconds, poll=poll)

    @property
    def name(self) -> str:
        return self.waiter.name


class QueuedValidation(_Queued[LocalValidation]):
    """:class:`~generators.jobs.validation.Validation` through the queue."""

    async def validate(self, job: ValidationJob) -> ValidationReport:
        def here() -> dict[str, Any]:
            return job.run(self.local.pipeline, self.local.workspace).to_dict()

        result = await anyio.to_thread.run_sync(self.waiter.run, KIND, "validation", job.to_dict(), here)
        return report_from_dict(result)


class QueuedBenchmarks(_Queued[Benchmarks]):
    """:class:`~generators.jobs.benchmark.Benchmarks` through the queue (blocking, as its callers are)."""

    def run(self, job: BenchmarkJob) -> BenchResult:
        try:
            result = self.waiter.run(BENCHMARK, "benchmark", job.to_dict(), lambda: self.local.run(job).to_dict())
        except JobFailedError as exc:  # workers died on it, or it raised there: no figure, and nobody's fault
            return BenchResult(None, error=str(exc), side=UNKNOWN)
        return BenchResult.from_dict(result)


def _stop_if_cancelled() -> None:
    """Raise the host task's cancellation in the worker thread that waits (the server stops: it must not wait out the
    job); the job stays in the queue, where a worker may still finish it."""
    with contextlib.suppress(RuntimeError):  # not a thread of anyio.to_thread.run_sync: nothing to check
        anyio.from_thread.check_cancelled()


def keep_lease(jobs: PostgresJobs, job_id: int, worker: str, lease: float, done: threading.Event) -> None:
    """Extend ``worker``'s lease of the job every third of it until ``done`` (or the job is no longer its own)."""
    while not done.wait(lease / 3):
        if not jobs.extend(job_id, worker, lease):
            return
