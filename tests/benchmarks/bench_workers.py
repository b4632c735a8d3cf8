"""Candidate evaluation on workers (issue 17, step 4): one improvement cycle of 8 candidates, validated and benchmarked
(the verdict's adaptive runs) by 1, 2 and 4 ``self-building-mcp worker`` processes taking the jobs from PostgreSQL's
queue; and, for reference, the same cycle on one server with SQLite (all of it in its own threads). Prints each wall
time, the jobs of each kind, and the speed-up over 1 worker.

Each run starts from a fresh database and a copy of a workspace with 8 slow components (the demo's ``slow_stats``
under 8 names, each with its tests and benchmark) whose latency degraded; the scripted model answers each candidate
with the demo's faster edit of its own module. The cycle takes all 8 at once (``improvement_max_concurrency`` 8).
Needs Debian's ``postgresql`` (the tests' :mod:`tests.postgres_server`).

    python -m tests.benchmarks.bench_workers [--workers 1 2 4]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from pydantic import SecretStr

from server.app import create_server
from server.settings import Settings
from tests.conftest import SANDBOX, call, connect
from tests.fakes import FakeHostSource, NoGpu
from tests.llm_server import ScriptedLLM
from tests.postgres_server import PostgresServer
from tests.test_improvement_cycle import DEMO, FAST_STATS, latency_points
from tests.test_transports import server_env

CANDIDATES = 8


def workspace(root: Path) -> Path:
    """The demo's slow_stats as slow_stats_0 .. slow_stats_7, each with its tests and benchmark."""
    ws = root / "ws"
    for folder, name in (("components", "slow_stats.py"), ("tests", "test_slow_stats.py"),
                         ("benchmarks", "bench_slow_stats.py")):  # fmt: skip
        text = (DEMO / folder / name).read_text(encoding="utf-8")
        (ws / folder).mkdir(parents=True, exist_ok=True)
        for k in range(CANDIDATES):
            target = ws / folder / name.replace("slow_stats", f"slow_stats_{k}")
            target.write_text(text.replace("components.slow_stats", f"components.slow_stats_{k}"), encoding="utf-8")
    return ws


def answer(body: dict[str, Any]) -> str:
    """The faster edit of the module the request is about."""
    text = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
    found = re.search(r"components/(slow_stats_\d+)\.py", text)
    module = found.group(1) if found else "slow_stats_0"
    return FAST_STATS.replace("components/slow_stats.py", f"components/{module}.py")


async def one_cycle(root: Path, llm: ScriptedLLM, url: str | None, workers: int) -> float:
    ws = workspace(root)
    settings = Settings(
        data_dir=root / "data", workspace=ws, sandbox=SANDBOX, llm_model="m", llm_base_url=llm.base_url,
        llm_api_key=SecretStr("k"), llm_max_retries=0, improvement_monitoring_seconds=0.5,
        improvement_max_concurrency=CANDIDATES, improvement_benchmark_runs=3,
        database_url=SecretStr(url) if url else None, validation_on_workers=url is not None,
        worker_claim_seconds=3600, improvement_wait_seconds=3600,
    )  # fmt: skip
    env = {**server_env(root), "SELF_BUILDING_DATABASE_URL": url or "", "SELF_BUILDING_WORKSPACE": str(ws)}
    procs = [
        subprocess.Popen([sys.executable, "-m", "server", "worker"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env={**env, "SELF_BUILDING_DATA_DIR": str(root / f"w{n}")})
        for n in range(workers)
    ]  # fmt: skip
    try:
        server = create_server(settings, host_source=FakeHostSource(), gpu_source=NoGpu())
        async with connect(server) as client:
            now = time.time()
            for k in range(CANDIDATES):
                points = latency_points(f"slow_stats_{k}", 100, 180 + k, now)
                await call(client, "ingest_telemetry", {"tenant_id": "default", "metrics": points})
            started = time.perf_counter()
            cycle = await call(client, "trigger_improvement_cycle", {"max_improvements": CANDIDATES})
            elapsed = time.perf_counter() - started
        if url is not None:
            with psycopg.connect(url) as conn:
                rows = conn.execute(
                    "SELECT kind, COUNT(*), MIN(created_at), MAX(updated_at), SUM(updated_at - created_at),"
                    " COUNT(*) FILTER (WHERE worker LIKE 'server-%%') FROM jobs GROUP BY kind ORDER BY kind DESC"
                ).fetchall()
            for kind, count, first, last, total, here in rows:
                sys.stdout.write(f"  {count} {kind} jobs ({here} run by the server): first queued to last done "
                                 f"{last - first:.1f} s, queued-to-done {total / count:.1f} s each\n")  # fmt: skip
        statuses = sorted(c["status"] for c in cycle["candidates"])
        if statuses != ["kept"] * CANDIDATES:
            sys.stderr.write(f"warning: candidates ended {statuses}\n")
        return elapsed
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)


async def bench(counts: list[int]) -> None:
    llm = ScriptedLLM()
    llm.respond(answer)
    llm.start()
    with tempfile.TemporaryDirectory() as tmp:
        postgres = PostgresServer()
        postgres.start()
        try:
            out = sys.stdout
            local = await one_cycle(Path(tmp) / "sqlite", llm, None, 0)
            out.write(f"one server, SQLite, validation in its threads: {local:6.1f} s\n")
            first: float | None = None
            for n in counts:
                wall = await one_cycle(Path(tmp) / f"w{n}", llm, postgres.new_database(), n)
                first = first or wall
                out.write(f"{n} worker(s): {wall:6.1f} s   speed-up over {counts[0]}: {first / wall:4.2f}x\n")
                out.flush()
        finally:
            postgres.stop()
            llm.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    asyncio.run(bench(parser.parse_args().workers))
