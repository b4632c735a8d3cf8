"""Drill: one key opens legacy MCP sessions as fast as it can (issue 11, point 3).

A read-only key sends ``--sessions`` (default 10,000) legacy ``initialize`` requests; then the admin key initializes
and calls a tool. Printed: how long the flood took, the server's memory before and after (RSS), how many of the
flooding key's sessions are still alive (at most ``legacy_sessions_per_key``), and whether the admin got in.

    python -m tests.benchmarks.drill_session_flood [--sessions 10000] [--source DIR]

``--source`` runs the server from another checkout (e.g. ``git archive`` of an older commit) for a figure to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import psutil

READER, ADMIN = "r" * 32, "a" * 32
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "drill", "version": "1"}},
}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
TENANTS = """
[[keys]]
name = "reader"
key_env = "DRILL_READER_KEY"
tenants = ["*"]
roles = ["read"]

[[keys]]
name = "admin"
key_env = "DRILL_ADMIN_KEY"
tenants = ["*"]
roles = ["admin"]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(tmp: Path, source: Path, port: int) -> subprocess.Popen[bytes]:
    (tmp / "tenants.toml").write_text(TENANTS, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELF_BUILDING_")}
    env.update(
        SELF_BUILDING_DATA_DIR=str(tmp / "data"),
        SELF_BUILDING_WORKSPACE=str(tmp / "ws"),
        SELF_BUILDING_TENANTS_FILE=str(tmp / "tenants.toml"),
        DRILL_READER_KEY=READER,
        DRILL_ADMIN_KEY=ADMIN,
        PYTHONPATH=str(source),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--transport", "http", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=source,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx2.TransportError):
            if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


def initialize(http: httpx2.Client, url: str, key: str) -> tuple[int, str | None]:
    reply = http.post(url, json=INIT, headers={**HEADERS, "Authorization": f"Bearer {key}"})
    return reply.status_code, reply.headers.get("mcp-session-id")


def alive(http: httpx2.Client, url: str, key: str, session: str) -> bool:
    headers = {**HEADERS, "Authorization": f"Bearer {key}", "mcp-session-id": session}
    return http.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "ping"}, headers=headers).status_code == 200


def main(sessions: int = 10_000, source: Path | None = None) -> None:
    root = source or Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory() as tmp_name:
        port = free_port()
        proc = start(Path(tmp_name), root, port)
        url = f"http://127.0.0.1:{port}/mcp"
        try:
            server = psutil.Process(proc.pid)
            rss_before = server.memory_info().rss / 2**20
            opened: list[str] = []
            refused = 0
            started = time.perf_counter()
            with httpx2.Client(timeout=30) as http:
                for _ in range(sessions):
                    _, session = initialize(http, url, READER)
                    if session:
                        opened.append(session)
                    else:
                        refused += 1
                flood_seconds = time.perf_counter() - started
                rss_after = server.memory_info().rss / 2**20
                still = sum(alive(http, url, READER, s) for s in opened[-100:])
                admin_status, admin_session = initialize(http, url, ADMIN)
                admin_ok = admin_session is not None and alive(http, url, ADMIN, admin_session)
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            if proc.poll() is None:
                proc.kill()
    print(f"drill: one read-only key opens {sessions} legacy sessions, then the admin key initializes")
    print(f"  server from {root}")
    print(f"  flood: {flood_seconds:.1f} s, {len(opened)} opened, {refused} refused; "
          f"RSS {rss_before:.0f} -> {rss_after:.0f} MiB")  # fmt: skip
    print(f"  of the flooding key's newest 100 sessions, {still} still alive (the rest were ended to keep its cap)")
    print(f"  admin: initialize {admin_status}, {'in and answered' if admin_ok else 'locked out'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.drill_session_flood", description=__doc__)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--source", type=Path, default=None, help="checkout to run the server from")
    args = parser.parse_args()
    main(args.sessions, args.source)
