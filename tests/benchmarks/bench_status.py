"""get_system_status through the in-memory client: p50 and p99 over 1,000 calls (target p50 <= 2 ms)."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client

from server.app import create_server
from server.settings import Settings


async def measure(calls: int = 1000, warmup: int = 50) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", workspace=Path(tmp))
        async with Client(create_server(settings)) as client:
            for _ in range(warmup):
                await client.call_tool("get_system_status", {})
            times: list[float] = []
            for _ in range(calls):
                start = time.perf_counter()
                result = await client.call_tool("get_system_status", {})
                times.append((time.perf_counter() - start) * 1000)
                assert not result.is_error
    times.sort()
    return {
        "calls": calls,
        "p50_ms": statistics.median(times),
        "p99_ms": times[int(0.99 * len(times)) - 1],
        "max_ms": times[-1],
    }


def main() -> dict[str, float]:
    figures = anyio.run(measure)
    sys.stdout.write(
        f"get_system_status (in-memory, {figures['calls']:.0f} calls): p50 {figures['p50_ms']:.3f} ms, "
        f"p99 {figures['p99_ms']:.3f} ms, max {figures['max_ms']:.3f} ms  [target p50 <= 2 ms: "
        f"{'met' if figures['p50_ms'] <= 2 else 'MISSED'}]\n"
    )
    return figures


if __name__ == "__main__":
    main()
