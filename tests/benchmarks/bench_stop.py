"""How long ``self-building-mcp serve`` takes to stop on SIGINT and SIGTERM, per transport (target: <= 2 s).

Each run starts the real server, makes one tool call (so the lifespan has opened everything and the tool-call buffer
holds something to write), sends the signal and times until the process has exited. Medians of a few runs.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

TARGET_SECONDS = 2.0
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
}
CALL = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get_system_status", "arguments": {}}}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def environment(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELF_BUILDING_")}
    env.update(SELF_BUILDING_DATA_DIR=str(tmp / "data"), SELF_BUILDING_WORKSPACE=str(tmp / "ws"))
    return env


def stop_stdio(tmp: Path, signum: int) -> float:
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=environment(tmp),
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write((json.dumps(INIT) + "\n" + json.dumps(CALL) + "\n").encode())
    proc.stdin.flush()
    proc.stdout.readline()
    proc.stdout.readline()
    return timed_stop(proc, signum)


def stop_http(tmp: Path, signum: int) -> float:
    from tests.test_transports import start_http

    proc, base = start_http(tmp)
    reply = httpx2.post(f"{base}/mcp", json=INIT, headers=HEADERS, timeout=30)
    session = {**HEADERS, "Mcp-Session-Id": reply.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
    httpx2.post(f"{base}/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
    httpx2.post(f"{base}/mcp", json=CALL, headers=session, timeout=30)
    return timed_stop(proc, signum)


def timed_stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str], signum: int) -> float:
    start = time.perf_counter()
    proc.send_signal(signum)
    proc.communicate(timeout=60)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.returncode
    return elapsed


def measure(rounds: int = 3) -> dict[str, float]:
    figures: dict[str, float] = {}
    for transport, stop in (("stdio", stop_stdio), ("http", stop_http)):
        for signum in (signal.SIGINT, signal.SIGTERM):
            times = []
            for _ in range(rounds):
                with tempfile.TemporaryDirectory() as tmp:
                    times.append(stop(Path(tmp), signum))
            figures[f"{transport} {signum.name}"] = statistics.median(times)
    return figures


def main() -> dict[str, float]:
    figures = measure()
    worst = max(figures.values())
    sys.stdout.write(
        "stop on a signal (median of 3): "
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in figures.items())
        + f"  [target <= {TARGET_SECONDS:g} s: {'met' if worst <= TARGET_SECONDS else 'MISSED'}]\n"
    )
    return figures


if __name__ == "__main__":
    main()
