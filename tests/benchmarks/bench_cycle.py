"""Improvement-cycle overhead per candidate, excluding LLM latency and test run time (target <= 1 s).

One candidate per cycle, through the MCP tool in process, on one long-running server (as in production: its mypy
worker and caches stay warm): the learning engine's analysis, the prompt, applying the (scripted, local) reply,
validation without the test stage, the journaled deploy, the cycle's persisted state, and the verdict from telemetry
and error counts. The demo workspace is used without its tests and benchmarks, so no test or benchmark run is timed,
and the monitoring period (50 ms) is subtracted. Between cycles the deployment is rolled back (not timed) so each
cycle improves the same module. The scripted LLM answers on loopback in a few milliseconds; that is left in (so the
figure errs high). Figures with and without the mypy stage.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from generators.validation import StageName
from server.app import create_server
from server.settings import Settings
from tests.conftest import call, connect
from tests.fakes import FakeHostSource, NoGpu
from tests.llm_server import ScriptedLLM
from tests.test_improvement_cycle import DEMO, FAST_STATS, latency_points

MONITORING_SECONDS = 0.05
STATIC: tuple[StageName, ...] = ("syntax", "imports", "security", "quality", "tenancy")


async def cycles(root: Path, llm: ScriptedLLM, stages: tuple[StageName, ...], runs: int) -> list[float]:
    workspace = root / "ws"
    shutil.copytree(DEMO, workspace, ignore=shutil.ignore_patterns("tests", "benchmarks"))
    settings = Settings(
        data_dir=root / "data", workspace=workspace, llm_model="m", llm_base_url=llm.base_url,
        llm_api_key=SecretStr("k"), llm_max_retries=0, improvement_monitoring_seconds=MONITORING_SECONDS,
    )  # fmt: skip
    server = create_server(settings, host_source=FakeHostSource(), gpu_source=NoGpu(), validation_stages=stages)
    times: list[float] = []
    async with connect(server) as client:
        points = latency_points("slow_stats", 100, 180, time.time())
        await call(client, "ingest_telemetry", {"tenant_id": "default", "metrics": points})
        for run in range(runs + 1):  # the first one warms up (mypy worker start, imports)
            llm.reply(FAST_STATS)
            started = time.perf_counter()
            cycle = await call(client, "trigger_improvement_cycle", {"max_improvements": 1})
            elapsed = time.perf_counter() - started
            [candidate] = cycle["candidates"]
            assert candidate["status"] == "kept", cycle
            await call(client, "rollback_deployment", {"deployment_id": candidate["deployment_id"], "reason": "bench"})
            if run:
                times.append((elapsed - MONITORING_SECONDS) * 1000)
    return times


def measure(runs: int, stages: tuple[StageName, ...]) -> dict[str, float]:
    llm = ScriptedLLM()
    llm.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            times = sorted(asyncio.run(cycles(Path(tmp), llm, stages, runs)))
    finally:
        llm.stop()
    return {"runs": runs, "p50_ms": statistics.median(times), "max_ms": times[-1]}


def main(runs: int = 7) -> None:
    logging.getLogger().setLevel(logging.WARNING)
    for label, stages in (("static stages", STATIC), ("static stages + mypy", (*STATIC, "types"))):
        figures = measure(runs, stages)
        sys.stdout.write(
            f"cycle overhead per candidate ({label}): p50 {figures['p50_ms']:.0f} ms, max {figures['max_ms']:.0f} ms "
            f"over {runs} cycles after one warm-up (target <= 1000 ms)\n"
        )


if __name__ == "__main__":
    main()
