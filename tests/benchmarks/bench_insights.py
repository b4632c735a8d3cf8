"""query_telemetry_insights over a store of 1,000,000 points in 1,000 series (target <= 1 s).

The store holds a day of points per series: most are flat noise, some degrade in the newest quarter of the window,
some trend the wrong way all day, and a share carry a Component dimension (so opportunities are ranked). Figures are
p50 over a few runs of ``LearningEngine.analyze`` on the store and of the tool through the in-memory MCP client; the
target refers to the tool.
Run: python -m tests.benchmarks.bench_insights
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
from mcp import Client

from server.app import create_server
from server.settings import Settings
from telemetry.learning.engine import LearningEngine
from telemetry.store.records import MetricPoint
from telemetry.store.sqlite_store import SqliteTelemetryStore
from tests.fakes import FakeHostSource, NoGpu

SERIES = 1_000
POINTS = 1_000
RUNS = 5
TENANT = "bench"
SPAN = 23.5 * 3600  # inside the tool's default 24 h window, with room for the time the runs take


def _series_points(index: int, now: float, rng: random.Random) -> Iterator[MetricPoint]:
    """Series 0-49 degrade, 50-99 trend, the rest are flat noise; every other one names its component."""
    kind = "degrade" if index < 50 else "trend" if index < 100 else "flat"
    name = {"degrade": "api.latency_ms", "trend": "checkout.requests_per_s"}.get(kind, f"worker.metric{index % 20}")
    dims = {"host": f"h{index}"}
    if index % 2 == 0:
        dims["Component"] = f"c{index % 10}"
    start = now - SPAN
    step = SPAN / POINTS
    for i in range(POINTS):
        value = 100 + rng.gauss(0, 2)
        if kind == "degrade" and i >= 0.8 * POINTS:
            value += 60
        elif kind == "trend":
            value = 1000 - 0.6 * i + rng.gauss(0, 5)
        yield MetricPoint(TENANT, name, start + i * step, value, dims)


def build(path: Path, now: float) -> None:
    store = SqliteTelemetryStore(path)
    rng = random.Random(0)
    batch: list[MetricPoint] = []
    for index in range(SERIES):
        batch.extend(_series_points(index, now, rng))
        if len(batch) >= 50_000:
            store.add_metrics(batch)
            batch = []
    store.add_metrics(batch)
    store.close()


def engine_p50(path: Path) -> tuple[float, int]:
    store = SqliteTelemetryStore(path)
    engine = LearningEngine(store, clock=time.time)
    times: list[float] = []
    found = 0
    for _ in range(RUNS):
        start = time.perf_counter()
        found = engine.analyze(TENANT, window_hours=24).summary.total
        times.append(time.perf_counter() - start)
    store.close()
    return statistics.median(times), found


async def tool_p50(settings: Settings) -> tuple[float, int]:
    times: list[float] = []
    found = 0
    async with Client(create_server(settings, host_source=FakeHostSource(), gpu_source=NoGpu())) as client:
        for _ in range(RUNS):
            start = time.perf_counter()
            result = await client.call_tool("query_telemetry_insights", {"tenant_id": TENANT, "limit": 200})
            times.append(time.perf_counter() - start)
            assert not result.is_error and result.structured_content is not None, result.content
            found = int(result.structured_content["summary"]["total"])
    return statistics.median(times), found


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", workspace=Path(tmp))
        started = time.perf_counter()
        build(settings.telemetry_db_path, time.time())
        built = time.perf_counter() - started
        engine, engine_found = engine_p50(settings.telemetry_db_path)
        tool, tool_found = anyio.run(tool_p50, settings)
    sys.stdout.write(
        f"insights store: {SERIES:,} series x {POINTS:,} points built in {built:.1f} s\n"
        f"LearningEngine.analyze ({SERIES * POINTS:,} points, {engine_found} insights): p50 {engine:.3f} s "
        f"over {RUNS} runs\n"
        f"query_telemetry_insights (in-memory client, {tool_found} insights): p50 {tool:.3f} s over {RUNS} runs  "
        f"[target <= 1 s: {'met' if tool <= 1 else 'MISSED'}]\n"
    )
    return {"engine_p50_s": engine, "tool_p50_s": tool}


if __name__ == "__main__":
    main()
