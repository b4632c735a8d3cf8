"""Telemetry ingest: the store's Python API in batches (target >= 200,000 points/s) and ingest_telemetry through
the in-memory MCP client with 1,000 points per call (target >= 50,000 points/s)."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client

from server.app import create_server
from server.runtime import tune_process
from server.settings import Settings
from telemetry.store.records import MetricPoint
from telemetry.store.sqlite_store import SqliteTelemetryStore

POINTS = 500_000
BATCH = 10_000
CALLS = 100
PER_CALL = 1_000
RUNS = 3  # the median of three runs is printed


def store_rate() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteTelemetryStore(Path(tmp) / "bench.sqlite3")
        base = time.time() - 86400
        points = [
            MetricPoint("bench", f"metric{i % 100}", base + i // 100, float(i), {"Component": f"c{i % 10}"})
            for i in range(POINTS)
        ]
        start = time.perf_counter()
        for i in range(0, POINTS, BATCH):
            store.add_metrics(points[i : i + BATCH])
        elapsed = time.perf_counter() - start
        store.close()
    return POINTS / elapsed


async def tool_rate() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", workspace=Path(tmp))
        base = time.time() - 3600
        payloads = [
            [
                {"name": f"metric{j % 50}", "value": j, "timestamp": base + call + j / 1000, "dimensions": {"c": "x"}}
                for j in range(PER_CALL)
            ]
            for call in range(CALLS)
        ]
        async with Client(create_server(settings)) as client:
            await client.call_tool("ingest_telemetry", {"tenant_id": "bench", "metrics": payloads[0]})
            start = time.perf_counter()
            for payload in payloads:
                result = await client.call_tool("ingest_telemetry", {"tenant_id": "bench", "metrics": payload})
                assert not result.is_error and result.structured_content is not None
                assert result.structured_content["accepted"]["metrics"] == PER_CALL
            elapsed = time.perf_counter() - start
    return CALLS * PER_CALL / elapsed


def main() -> dict[str, float]:
    tune_process()  # as `self-building-mcp serve` does
    store = statistics.median(store_rate() for _ in range(RUNS))
    tool = statistics.median(anyio.run(tool_rate) for _ in range(RUNS))
    sys.stdout.write(
        f"store ingest ({POINTS:,} points in batches of {BATCH:,}, median of {RUNS}): {store:,.0f} points/s  "
        f"[target >= 200,000: {'met' if store >= 200_000 else 'MISSED'}]\n"
        f"ingest_telemetry (in-memory client, {PER_CALL:,} points per call, median of {RUNS}): {tool:,.0f} points/s  "
        f"[target >= 50,000: {'met' if tool >= 50_000 else 'MISSED'}]\n"
    )
    return {"store_points_per_s": store, "tool_points_per_s": tool}


if __name__ == "__main__":
    main()
