"""Validation on workers (issue 17, step 4): the queue in PostgreSQL gives each job to one worker, takes a job back
from a worker whose lease ran out and ignores that worker's late answer; ``self-building-mcp worker`` processes
validate a generated tool for a server; a worker SIGKILLed in the middle of a job leaves it to another, which
finishes it (a real PostgreSQL, see :mod:`tests.postgres_server`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread
import psycopg
import pytest
from pydantic import SecretStr

from generators.errors import BenchmarkError
from generators.jobs.benchmark import KIND as BENCHMARK
from generators.jobs.benchmark import BenchmarkJob, BenchResult, LocalBenchmarks
from generators.jobs.queue_pg import MAX_ATTEMPTS, PostgresJobs, QueuedBenchmarks
from generators.jobs.validation import KIND, ValidationJob
from generators.measure.stats import Rule, interval_level, plan
from generators.pg_db import PostgresDatabase
from generators.validation.models import ValidationConfig
from server.settings import Settings
from tests.conftest import call, connect
from tests.fakes import FakeHostSource
from tests.llm_server import ScriptedLLM
from tests.polling import eventually, eventually_sync
from tests.postgres_server import PostgresServer, postgres  # noqa: F401 - the fixture
from tests.test_generated_tools import ARGS, NAME, REPLY
from tests.test_generation_tool import build
from tests.test_transports import server_env

pytestmark = pytest.mark.anyio
SLOW_TEST = "import time\n\n\ndef test_takes_a_while():\n    time.sleep(4)\n    assert True\n"


@pytest.fixture
def jobs(postgres: PostgresServer) -> Iterator[tuple[PostgresJobs, str]]:  # noqa: F811
    url = postgres.new_database()
    db = PostgresDatabase(url)
    try:
        yield PostgresJobs(db), url
    finally:
        db.close()


def expire(url: str, job_id: int) -> None:
    """The job's lease runs out now (as it would once its worker stopped extending it)."""
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE jobs SET lease_until = lease_until - 3600 WHERE id = %s", (job_id,))


def test_each_job_goes_to_one_worker_and_a_lost_lease_is_taken_over(jobs: tuple[PostgresJobs, str]) -> None:
    queue, url = jobs
    first, second = queue.put(KIND, {"n": 1}), queue.put(KIND, {"n": 2})
    a, b = queue.claim("a", [KIND], 60), queue.claim("b", [KIND], 60)
    assert a is not None and b is not None and (a.id, b.id) == (first, second) and a.payload == {"n": 1}
    assert queue.claim("c", [KIND], 60) is None and queue.claim("c", ["other"], 60) is None
    expire(url, first)  # a stopped answering
    again = queue.claim("c", [KIND], 60)
    assert again is not None and again.id == first and again.attempts == 2
    assert not queue.extend(first, "a", 60) and not queue.finish(first, "a", {"late": True}), "a's job is c's now"
    assert queue.finish(first, "c", {"ok": True}) and queue.finish(second, "b", None, "boom")
    done, failed = queue.outcome(first), queue.outcome(second)
    assert done is not None and (done.status, done.result, done.worker, done.attempts) == ("done", {"ok": True}, "c", 2)
    assert failed is not None and (failed.status, failed.error) == ("failed", "boom")
    third = queue.put(KIND, {"n": 3})
    for attempt in range(MAX_ATTEMPTS):  # workers die on it, again and again
        taken = queue.claim(f"w{attempt}", [KIND], 60)
        assert taken is not None and taken.id == third
        expire(url, third)
    assert queue.claim("w", [KIND], 60) is None
    gave_up = queue.outcome(third)
    assert gave_up is not None and gave_up.status == "failed" and f"stopped {MAX_ATTEMPTS} times" in str(gave_up.error)


def start_worker(tmp_path: Path, name: str, url: str, settings: Settings) -> subprocess.Popen[bytes]:
    env = {
        **server_env(tmp_path),
        "SELF_BUILDING_DATABASE_URL": url,
        "SELF_BUILDING_LEASE_SECONDS": "1.5",
        "SELF_BUILDING_DATA_DIR": str(tmp_path / name),
        "SELF_BUILDING_WORKSPACE": str(settings.workspace),
    }
    with (tmp_path / f"{name}.log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "server", "worker"], stdout=log, stderr=log, env=env)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_workers_validate_what_a_server_generates(
    tmp_path: Path,
    settings: Settings,
    host: FakeHostSource,
    scripted_llm: ScriptedLLM,
    postgres: PostgresServer,  # noqa: F811
) -> None:
    url = postgres.new_database()
    scripted_llm.reply(REPLY)
    on_pg = settings.model_copy(
        update={"database_url": SecretStr(url), "validation_on_workers": True, "worker_claim_seconds": 600}
    )
    workers = [start_worker(tmp_path, name, url, settings) for name in ("w1", "w2")]
    try:
        async with connect(build(on_pg, host, scripted_llm)) as client:
            made = await call(client, "generate_component", ARGS)  # waits for a worker's answer (600 s claim)
            assert made["succeeded"], made["validation_text"]
            assert (await call(client, NAME, {"text": "1h30m"})) == {"seconds": 5400}
    finally:
        stop(workers)
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT status, worker FROM jobs ORDER BY id").fetchall()
    assert rows and all(status == "done" for status, _ in rows), rows
    pids = {str(p.pid) for p in workers}
    assert all(str(worker).split("-")[-2] in pids for _, worker in rows), (rows, pids)  # a worker's, not the server's


def test_a_worker_killed_mid_job_leaves_it_to_another_which_finishes_it(
    tmp_path: Path,
    settings: Settings,
    jobs: tuple[PostgresJobs, str],
) -> None:
    queue, url = jobs
    settings.workspace.mkdir(parents=True, exist_ok=True)
    job = ValidationJob({"tests/test_slow.py": SLOW_TEST}, stages=["tests"], test_paths=["tests/test_slow.py"])
    job_id = queue.put(KIND, job.to_dict())
    first = start_worker(tmp_path, "w1", url, settings)
    workers = [first]
    try:
        eventually_sync(lambda: (o := queue.outcome(job_id)) is not None and o.status == "running", "w1 takes it")
        taken = queue.outcome(job_id)
        assert taken is not None and str(taken.worker).split("-")[-2] == str(first.pid)
        workers.append(start_worker(tmp_path, "w2", url, settings))
        os.kill(first.pid, signal.SIGKILL)  # in the middle of the job's four seconds
        first.wait(timeout=30)
        eventually_sync(lambda: (o := queue.outcome(job_id)) is not None and o.status == "done", "the job is done",
                        timeout=120)  # fmt: skip
    finally:
        stop(workers)
    done = queue.outcome(job_id)
    assert done is not None and done.attempts == 2 and str(done.worker).split("-")[-2] == str(workers[1].pid)
    assert done.result is not None and done.result["passed"] is True, done.result
    assert [s["name"] for s in done.result["stages"]] == ["tests"]


async def test_a_job_no_worker_takes_runs_in_the_server(
    settings: Settings,
    host: FakeHostSource,
    scripted_llm: ScriptedLLM,
    postgres: PostgresServer,  # noqa: F811
) -> None:
    url = postgres.new_database()
    scripted_llm.reply(REPLY)
    on_pg = settings.model_copy(
        update={"database_url": SecretStr(url), "validation_on_workers": True, "worker_claim_seconds": 0.5}
    )
    async with connect(build(on_pg, host, scripted_llm)) as client:
        made = await call(client, "generate_component", ARGS)
        assert made["succeeded"], made["validation_text"]
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT status, worker FROM jobs").fetchall()
    assert rows and all(status == "done" and str(worker).startswith("server-") for status, worker in rows), rows


COSTLY = "components/costly.py"
MEASURE = "benchmarks/bench_costly.py"


def benchmark_job(after: str) -> BenchmarkJob:
    """The costly component's benchmark prints its cost: 10 before the change, whatever ``after`` makes it."""
    sizes = plan(3, 6)
    return BenchmarkJob.of(
        MEASURE, {COSTLY: b"COST = 10\n"}, {COSTLY: after.encode()}, sizes=sizes, timeout=60,
        rule=Rule(), goal="improve", level=interval_level(0.95, len(sizes)),
    )  # fmt: skip


def costly_workspace(settings: Settings) -> LocalBenchmarks:
    """The costly component and its benchmark in the workspace; benchmarks run here, against it."""
    (settings.workspace / "components").mkdir(parents=True, exist_ok=True)
    (settings.workspace / "benchmarks").mkdir(parents=True, exist_ok=True)
    (settings.workspace / COSTLY).write_text("COST = 10\n")
    (settings.workspace / MEASURE).write_text("from components.costly import COST\n\nprint(COST)\n")
    return LocalBenchmarks(settings.workspace, ValidationConfig())


def test_a_benchmark_runs_on_a_worker_as_it_would_in_the_server(
    tmp_path: Path, settings: Settings, jobs: tuple[PostgresJobs, str]
) -> None:
    """The verdict's benchmark as a job: a worker process runs it against the workspace, stops when the statistical
    test can tell (the rule travels with the job) and sends the figures back, the same as measured here; a benchmark
    that fails on the new code comes back as that failure, raised where it was asked for."""
    queue, url = jobs
    here = costly_workspace(settings)
    expected = here.run(benchmark_job("COST = 5\n"))
    assert expected.figures is not None and expected.decision == "better", expected
    assert (expected.figures.before, expected.figures.after, expected.looks) == ([10.0] * 6, [5.0] * 6, 2)
    workers = [start_worker(tmp_path, "w1", url, settings)]
    queued = QueuedBenchmarks(queue, here, claim_seconds=600)  # the worker's answer, never the server's
    try:
        got = queued.run(benchmark_job("COST = 5\n"))
        broken = queued.run(benchmark_job("raise SystemExit('the new code does not import')\n"))
    finally:
        stop(workers)
    assert got == expected
    with pytest.raises(BenchmarkError, match="does not import") as failed:
        broken.raise_error()
    assert failed.value.side == "after"
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT kind, status, worker FROM jobs ORDER BY id").fetchall()
    assert [(kind, status) for kind, status, _ in rows] == [("benchmark", "done")] * 2
    assert all(str(worker).split("-")[-2] == str(workers[0].pid) for _, _, worker in rows), rows


async def test_a_server_that_stops_does_not_wait_out_a_benchmark_no_worker_took(jobs: tuple[PostgresJobs, str]) -> None:
    """The cycle waits for a worker's benchmark in a worker thread; when the server stops, the wait ends with it (the
    job stays queued for a worker) instead of waiting out the claim time and then measuring here."""
    queue, _ = jobs
    queued = QueuedBenchmarks(queue, LocalBenchmarks(Path("/nonexistent"), ValidationConfig()), claim_seconds=20)
    with anyio.fail_after(120):
        async with anyio.create_task_group() as group:
            group.start_soon(partial(anyio.to_thread.run_sync, queued.run, benchmark_job("COST = 5\n")))
            await eventually(lambda: queue.outcome(1) is not None, "the job is queued")
            group.cancel_scope.cancel()
    left = queue.outcome(1)
    assert left is not None and (left.status, left.worker) == ("queued", None), left


async def test_a_job_whose_worker_stopped_with_no_other_left_is_run_by_the_server(
    settings: Settings, jobs: tuple[PostgresJobs, str]
) -> None:
    """The last worker took the benchmark and died: once its lease has run out and the claim time has passed, the
    server takes the job itself (a second attempt) instead of waiting for a worker that will never come."""
    queue, url = jobs
    queued = QueuedBenchmarks(queue, costly_workspace(settings), claim_seconds=2)
    with anyio.fail_after(120):
        async with anyio.create_task_group() as group:
            group.start_soon(partial(anyio.to_thread.run_sync, queued.run, benchmark_job("COST = 5\n")))
            await eventually(lambda: queue.outcome(1) is not None, "the job is queued")
            ghost = queue.claim("ghost", [BENCHMARK], 60)  # the last worker takes it ...
            assert ghost is not None and ghost.id == 1
            expire(url, 1)  # ... and stops answering
            await eventually(lambda: (o := queue.outcome(1)) is not None and o.status == "done", "the job is done")
    done = queue.outcome(1)
    assert done is not None and done.worker == queued.name and done.attempts == 2, done
    assert done.result is not None and BenchResult.from_dict(done.result).decision == "better"
