"""Drill: a well-behaved MCP client while hostile clients hold sockets (issue 11, point 1).

The server runs over HTTP with an open-file limit of 1,024 (systemd's default soft limit, as the hard limit too: the
worst case). For ``--seconds`` (default 60) the drill holds 2,000 idle TCP connections, 50 clients that send a request
head a byte a second and 20 that announce a 10 MB body and send it a byte a second — each reconnects at once when the
server closes it — while one well-behaved client calls a tool in a loop through the official MCP client. Printed: the
good client's success rate and latency (targets: >= 99 % and p99 <= 1 s), how much the server's log grew (target:
< 1 MB), its memory, and what the server's connection guard did.

    python -m tests.benchmarks.drill_abusive_clients [--seconds 60] [--source DIR]

``--source`` runs the server from another checkout (e.g. ``git archive`` of an older commit) for a figure to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import psutil
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

KEY = "drill-key-0123456789abcdef0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
IDLE, SLOW_HEAD, SLOW_BODY = 2000, 50, 20


def start_server(tmp: Path, source: Path, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELF_BUILDING_")}
    env.update(
        SELF_BUILDING_DATA_DIR=str(tmp / "data"),
        SELF_BUILDING_WORKSPACE=str(tmp / "ws"),
        SELF_BUILDING_MCP_API_KEY=KEY,
        PYTHONPATH=str(source),
        PYTHONUNBUFFERED="1",
    )

    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--transport", "http", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            cwd=source,
            preexec_fn=limit_files,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx2.TransportError):
            if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc, log
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not start: {log.read_text()[-2000:]}")


class Attack:
    def __init__(self, port: int, stop: asyncio.Event, reconnect_delay: float) -> None:
        self.port, self.stop, self.reconnect_delay = port, stop, reconnect_delay
        self.connects = 0
        self.failed_connects = 0

    async def hold(self, opening: bytes, trickle: bytes | None) -> None:
        """Connect, send ``opening``, then ``trickle`` once a second (or nothing); reconnect whenever closed."""
        while not self.stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                self.failed_connects += 1
                await asyncio.sleep(0.1)
                continue
            self.connects += 1
            try:
                if opening:
                    writer.write(opening)
                while not self.stop.is_set():
                    if trickle is None:
                        if not await reader.read(65536):
                            break
                        continue
                    with contextlib.suppress(TimeoutError):
                        if not await asyncio.wait_for(reader.read(65536), 1.0):
                            break
                    writer.write(trickle)
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.close()
            await asyncio.sleep(self.reconnect_delay)


class Good:
    """One well-behaved client's record: latencies of successful calls, failures and their kinds."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.latencies: list[float] = []
        self.failures = 0
        self.errors: collections.Counter[str] = collections.Counter()

    def failed(self, exc: BaseException | None = None) -> None:
        self.failures += 1
        if exc is not None:
            self.errors[_leaf(exc)] += 1

    def line(self) -> str:
        calls = len(self.latencies) + self.failures
        success = 100.0 * len(self.latencies) / calls if calls else 0.0
        ordered = sorted(self.latencies)
        p50 = statistics.median(ordered) * 1000 if ordered else float("nan")
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000 if ordered else float("nan")
        errors = f"; errors {dict(self.errors.most_common(3))}" if self.errors else ""
        return (
            f"{self.name}: {calls} calls, {success:.2f} % succeeded (target >= 99 %), p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms (target <= 1000 ms){errors}"
        )


def _client(url: str, http: httpx2.AsyncClient) -> Client:
    return Client(streamable_http_client(url, http_client=http))


async def pooled_client(port: int, stop: asyncio.Event, record: Good) -> None:
    """One client session, calling a tool again and again (a failed call counts, and the client reconnects)."""
    url = f"http://127.0.0.1:{port}/mcp"
    while not stop.is_set():
        try:
            async with httpx2.AsyncClient(headers=AUTH, timeout=30) as http, _client(url, http) as client:
                while not stop.is_set():
                    started = time.perf_counter()
                    result = await client.call_tool("get_monitoring_status", {})
                    if result.is_error:
                        record.failed()
                    else:
                        record.latencies.append(time.perf_counter() - started)
                    await asyncio.sleep(0.05)
        except Exception as exc:  # the drill counts any failure of the good client
            record.failed(exc)
            await asyncio.sleep(0.05)


async def fresh_client(port: int, stop: asyncio.Event, record: Good) -> None:
    """A new connection and client for every call (timed from connect to result): the harder case under churn."""
    url = f"http://127.0.0.1:{port}/mcp"
    while not stop.is_set():
        started = time.perf_counter()
        try:
            async with httpx2.AsyncClient(headers=AUTH, timeout=30) as http, _client(url, http) as client:
                result = await client.call_tool("get_monitoring_status", {})
            if result.is_error:
                record.failed()
            else:
                record.latencies.append(time.perf_counter() - started)
        except Exception as exc:  # the drill counts any failure of the good client
            record.failed(exc)
        await asyncio.sleep(0.2)


async def attack(port: int, seconds: float, reconnect_delay: float) -> Attack:
    """The hostile clients (run in a process of their own, so that they do not starve the good client's loop)."""
    stop = asyncio.Event()
    hostile = Attack(port, stop, reconnect_delay)
    head = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port
    body = head + b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    tasks = [asyncio.create_task(hostile.hold(b"", None)) for _ in range(IDLE)]
    tasks += [asyncio.create_task(hostile.hold(head, b"X")) for _ in range(SLOW_HEAD)]
    tasks += [asyncio.create_task(hostile.hold(body, b"{")) for _ in range(SLOW_BODY)]
    await asyncio.sleep(seconds)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return hostile


def run_attack(port: int, seconds: float, reconnect_delay: float) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attacker's own sockets
    hostile = asyncio.run(attack(port, seconds, reconnect_delay))
    sys.stdout.write(f"{hostile.connects} {hostile.failed_connects}\n")


async def drill(port: int, seconds: float) -> list[Good]:
    stop = asyncio.Event()
    records = [Good("one session, many calls"), Good("a new connection per call")]
    tasks = [
        asyncio.create_task(pooled_client(port, stop, records[0])),
        asyncio.create_task(fresh_client(port, stop, records[1])),
    ]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    return records


def main(seconds: float = 60.0, source: Path | None = None, reconnect_delay: float = 1.0) -> None:
    root = source or Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        proc, log = start_server(tmp, root, port)
        size_before = log.stat().st_size
        try:
            hostile = subprocess.Popen(
                [sys.executable, "-m", "tests.benchmarks.drill_abusive_clients", "--attack", str(port),
                 "--seconds", str(seconds + 4), "--reconnect-delay", str(reconnect_delay)],
                stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
            )  # fmt: skip
            time.sleep(3)  # the attack is in place before the good client starts
            records = asyncio.run(drill(port, seconds))
            connects, failed_connects = hostile.communicate(timeout=120)[0].split()
            rss = psutil.Process(proc.pid).memory_info().rss / 2**20
            metrics = _guard_metrics(port)
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            if proc.poll() is None:
                proc.kill()
        grown = log.stat().st_size - size_before
    print(
        f"drill: {IDLE} idle, {SLOW_HEAD} slow-head, {SLOW_BODY} slow-body clients for {seconds:g} s, reconnecting "
        f"{reconnect_delay:g} s after the server closes them; server NOFILE 1024"
    )
    print(f"  server from {root}")
    for record in records:
        print(f"  good client, {record.line()}")
    print(f"  server log grew {grown / 1024:.1f} KiB (target < 1024 KiB); server RSS {rss:.0f} MiB")
    print(f"  hostile connects: {connects} made, {failed_connects} failed")
    print(f"  guard: {metrics or 'no figures (this server has no connection guard)'}")


def _leaf(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {str(exc)[:80]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _guard_metrics(port: int) -> str:
    try:
        text = httpx2.get(
            f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=10
        ).text
    except httpx2.HTTPError as exc:
        return f"/metrics unreachable ({type(exc).__name__})"
    keep = ("http_connections", "http_accept_errors", "log_lines_suppressed")
    return "; ".join(line for line in text.splitlines() if line.startswith(keep) and not line.startswith("#"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.drill_abusive_clients", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--source", type=Path, default=None, help="checkout to run the server from")
    parser.add_argument(
        "--reconnect-delay", type=float, default=1.0, help="seconds a hostile client waits before reconnecting"
    )
    parser.add_argument("--attack", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the hostile side only
    args = parser.parse_args()
    if args.attack:
        run_attack(args.attack, args.seconds, args.reconnect_delay)
    else:
        main(args.seconds, args.source, args.reconnect_delay)
