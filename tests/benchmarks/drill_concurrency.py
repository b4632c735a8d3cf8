"""Drill: many HTTP clients at once on a large store — do readers wait behind writers?

The real server runs over streamable HTTP in a subprocess, on a telemetry store filled beforehand with ``--points``
metric points (24 hours of 500 series). ``--clients`` MCP clients then call it for ``--seconds``, each in a loop,
picking by weight: ``ingest_telemetry`` of 1,000 points (40 %), ``query_telemetry_insights`` (20 %),
``get_system_status`` (20 %) and ``query_monitoring_events`` (20 %). It prints each call's p50 and p99 by tool, the
errors, the calls answered a second, the CPU of the server, of its analysis process and of the clients, and the resident
memory of the server with its analysis process after the first minute and at the end.

The same drill runs twice on copies of the same store, interleaving nothing but sharing the machine: first as the
server was before (``store_read_connections=0``: every read behind the one writing connection;
``analysis_max_concurrency=64``: analyses share every worker thread; ``analysis_process=false``: the detectors and
analyses in the server's own process), then as it is now (the defaults). Targets:
insights p50 <= 0.6 s, ingest p99 <= 0.3 s, 0 errors, memory flat after the first minute.

The clients run in this process, on the same cores as the server. ``--client sdk`` (the default) drives each with the
SDK's ``Client``, as an agent would; ``--client http`` posts the same tool calls as plain 2026-07-28 JSON-RPC requests
with ``httpx2`` — the server does the same work, the load generator about a fifth of it — so that on a small machine
the figures say more about the server than about the clients. The CPU both sides used is printed.

    python -m tests.benchmarks.drill_concurrency [--clients 16] [--seconds 120] [--points 1500000] [--client sdk]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psutil
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from server.settings import Settings
from telemetry.store.records import MetricPoint
from telemetry.store.sqlite_store import SqliteTelemetryStore
from tests.test_transports import start_http

SERIES = 500
WEIGHTS = {
    "ingest_telemetry": 40,
    "query_telemetry_insights": 20,
    "get_system_status": 20,
    "query_monitoring_events": 20,
}
BEFORE = {
    "SELF_BUILDING_STORE_READ_CONNECTIONS": "0",
    "SELF_BUILDING_ANALYSIS_MAX_CONCURRENCY": "64",
    "SELF_BUILDING_ANALYSIS_PROCESS": "false",
}
TARGETS = "targets: insights p50 <= 0.6 s, ingest p99 <= 0.3 s, 0 errors, memory flat after the first minute"


def fill(path: Path, points: int, now: float) -> None:
    """``points`` points over the last 24 hours, spread over :data:`SERIES` series of one tenant."""
    store = SqliteTelemetryStore(path)
    per_series = max(1, points // SERIES)
    step = 86_400 / per_series
    try:
        for series in range(SERIES):
            dims = {"Component": f"c{series % 100}", "Host": f"h{series // 100}"}
            start = now - 86_400 + 1
            batch = [
                MetricPoint("default", "latency_ms", start + i * step, 100.0 + (i * 7 + series) % 23, dims)
                for i in range(per_series)
            ]
            store.add_metrics(batch)
    finally:
        store.close()


def arguments(tool: str, now: float) -> dict[str, Any]:
    if tool == "ingest_telemetry":
        dims = {"Host": f"d{random.randrange(1000)}"}
        metrics = [
            {"name": "drill_ms", "value": float(i % 50), "timestamp": now - i * 0.01, "dimensions": dims}
            for i in range(1000)
        ]
        return {"tenant_id": "default", "metrics": metrics}
    if tool == "query_telemetry_insights":
        return {"tenant_id": "default", "time_range_hours": 24}
    if tool == "query_monitoring_events":
        return {"limit": 50}
    return {}


Seen = dict[str, list[float]]
Errors = dict[str, int]


async def sdk_client(base: str, until: float, seen: Seen, errors: Errors) -> None:
    """One agent: the SDK's client, calling tools one after another until ``until``."""
    tools, weights = list(WEIGHTS), list(WEIGHTS.values())
    async with (
        httpx2.AsyncClient(timeout=120) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
    ):
        while time.monotonic() < until:
            tool = random.choices(tools, weights)[0]
            args = arguments(tool, time.time())
            started = time.monotonic()
            try:
                result = await client.call_tool(tool, args)
                failed = result.is_error
            except Exception:  # a drill counts what a client would see, whatever it is
                failed = True
            seen[tool].append(time.monotonic() - started)
            if failed:
                errors[tool] += 1


PROTOCOL = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": PROTOCOL, "io.modelcontextprotocol/clientCapabilities": {}}
HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "MCP-Protocol-Version": PROTOCOL,
    "Mcp-Method": "tools/call",
}


async def http_client(base: str, until: float, seen: Seen, errors: Errors) -> None:
    """The same calls as :func:`sdk_client`, each one plain JSON-RPC POST of the 2026-07-28 protocol (sessionless)."""
    tools, weights = list(WEIGHTS), list(WEIGHTS.values())
    async with httpx2.AsyncClient(timeout=120) as http:
        request_id = 0
        while time.monotonic() < until:
            tool = random.choices(tools, weights)[0]
            request_id += 1
            params = {"name": tool, "arguments": arguments(tool, time.time()), "_meta": ENVELOPE}
            body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})
            started = time.monotonic()
            try:
                reply = await http.post(f"{base}/mcp", content=body, headers={**HEADERS, "Mcp-Name": tool})
                answer = reply.json()
                failed = reply.status_code != 200 or "error" in answer or answer["result"].get("isError", False)
            except Exception:  # a drill counts what a client would see, whatever it is
                failed = True
            seen[tool].append(time.monotonic() - started)
            if failed:
                errors[tool] += 1


CLIENTS = {"sdk": sdk_client, "http": http_client}


def family(server: psutil.Process) -> list[psutil.Process]:
    """The server's process and its children (the analysis process)."""
    try:
        return [server, *server.children(recursive=True)]
    except psutil.Error:
        return [server]


def cpu_seconds(process: psutil.Process) -> float:
    try:
        return float(sum(process.cpu_times()[:2]))
    except psutil.Error:
        return 0.0


def rss_mib(processes: list[psutil.Process]) -> float:
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run(label: str, data: Path, clients: int, seconds: float, env: dict[str, str], client: str) -> None:
    proc, base = start_http(data.parent, **env)
    server = psutil.Process(proc.pid)
    seen: Seen = defaultdict(list)
    errors: Errors = defaultdict(int)
    rss: list[tuple[float, float]] = []
    loop = CLIENTS[client]
    try:
        started = time.monotonic()
        until = started + seconds
        server_cpu, client_cpu = cpu_seconds(server), time.process_time()
        children: dict[int, tuple[psutil.Process, float]] = {}  # pid -> (process, its CPU when first seen)
        async with anyio.create_task_group() as group:
            for _ in range(clients):
                group.start_soon(loop, base, until, seen, errors)
            while time.monotonic() < until:
                processes = family(server)
                for child in processes[1:]:
                    children.setdefault(child.pid, (child, 0.0))
                rss.append((time.monotonic() - started, rss_mib(processes)))
                await anyio.sleep(5)  # a drill samples over wall time; tests never do
        elapsed = time.monotonic() - started
        server_cpu = cpu_seconds(server) - server_cpu
        children_cpu = sum(cpu_seconds(child) - before for child, before in children.values())
        client_cpu = time.process_time() - client_cpu
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    out = sys.stdout
    calls = sum(len(times) for times in seen.values())
    out.write(
        f"{label}: {calls / elapsed:.0f} calls/s; CPU: server {server_cpu / elapsed:.2f} cores "
        f"(+ analysis process {children_cpu / elapsed:.2f}), {client} clients {client_cpu / elapsed:.2f} cores\n"
    )
    for tool in WEIGHTS:
        times = seen[tool]
        out.write(
            f"  {tool:26} {len(times):5d} calls  p50 {statistics.median(times) if times else float('nan'):7.3f} s"
            f"  p99 {percentile(times, 0.99):7.3f} s  errors {errors[tool]}\n"
        )
    after_minute = next((mib for at, mib in rss if at >= 60), rss[-1][1] if rss else float("nan"))
    end = rss[-1][1] if rss else float("nan")
    out.write(
        f"  server memory (with its analysis process): {after_minute:.0f} MiB after the first minute, "
        f"{end:.0f} MiB at the end\n"
    )
    out.flush()


async def drill(clients: int, seconds: float, points: int, client: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        template = root / "template.sqlite3"
        filled = time.monotonic()
        fill(template, points, time.time())
        sys.stdout.write(f"store: {points} points in {SERIES} series, filled in {time.monotonic() - filled:.0f} s; "
                         f"{clients} {client} clients for {seconds:g} s each run\n")  # fmt: skip
        for label, env in (("before (one connection, analyses unbounded)", BEFORE), ("now (defaults)", {})):
            home = root / label.split()[0] / "home"
            home.mkdir(parents=True)
            db = Settings(data_dir=home / "data").telemetry_db_path
            db.parent.mkdir(parents=True)
            shutil.copyfile(template, db)
            await run(label, home / "data", clients, seconds, env, client)
        sys.stdout.write(TARGETS + "\n")


def main(clients: int = 16, seconds: float = 120.0, points: int = 1_500_000, client: str = "sdk") -> None:
    anyio.run(drill, clients, seconds, points, client)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--points", type=int, default=1_500_000)
    parser.add_argument("--client", choices=sorted(CLIENTS), default="sdk")
    options = parser.parse_args()
    main(options.clients, options.seconds, options.points, options.client)
