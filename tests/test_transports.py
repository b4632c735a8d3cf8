"""The real process over stdio and over streamable HTTP (API key, Host allowlist, /health, unsafe binds)."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import PUBLIC_TOOLS, SANDBOX
from tests.polling import eventually_sync

ROOT = Path(__file__).resolve().parent.parent
KEY = "test-key-0123456789abcdef"


def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELF_BUILDING_")}
    env.update(
        SELF_BUILDING_DATA_DIR=str(tmp_path / "data"),
        SELF_BUILDING_WORKSPACE=str(tmp_path / "ws"),
        SELF_BUILDING_SANDBOX=SANDBOX,
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


PUSHED = [{"name": "x_ms", "value": float(i % 5), "timestamp": time.time() - 600 + i} for i in range(500)]


def test_stdio_stdout_carries_only_json_rpc(tmp_path: Path) -> None:
    """Spawn the real server, talk JSON-RPC, and check that every stdout line is a JSON-RPC message."""
    env = server_env(
        tmp_path,
        SELF_BUILDING_MONITORING_AUTOSTART="true",
        SELF_BUILDING_MONITORING_INTERVAL_SECONDS="0.1",
        SELF_BUILDING_LOG_LEVEL="DEBUG",
    )
    requests = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "get_system_status", "arguments": {}}},
        {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "tools/call",
            "params": {"name": "get_top_processes", "arguments": {"limit": 0}},
        },
        {
            "jsonrpc": "2.0",
            "id": 5,
            "method": "tools/call",
            "params": {"name": "analyze_system_performance", "arguments": {}},
        },
        {"jsonrpc": "2.0", "id": 6, "method": "no/such/method"},
        {  # metrics go to the detectors, which run in the analysis process: a child of a server whose stdout this is
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/call",
            "params": {"name": "ingest_telemetry", "arguments": {"tenant_id": "t", "metrics": PUSHED}},
        },
        {
            "jsonrpc": "2.0",
            "id": 8,
            "method": "tools/call",
            "params": {"name": "query_telemetry_insights", "arguments": {"tenant_id": "t"}},
        },
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    replies: dict[int, dict[str, Any]] = {}
    lines: list[str] = []

    def send(request: dict[str, Any]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        while "id" in request and request["id"] not in replies:
            line = proc.stdout.readline()
            assert line, "server closed stdout"
            lines.append(line)
            message = json.loads(line)
            if "id" in message and ("result" in message or "error" in message):
                replies[message["id"]] = message

    try:
        for request in requests:
            send(request)
        # Monitoring samples (and logs at DEBUG) in the background while requests are answered: ask until it has
        # sampled a few times, so that its ticks had the chance to write to stdout.
        deadline, samples = time.monotonic() + 60, 0
        for ask in itertools.count(100):
            status = {"name": "get_monitoring_status", "arguments": {}}
            send({"jsonrpc": "2.0", "id": ask, "method": "tools/call", "params": status})
            samples = replies[ask]["result"]["structuredContent"]["state"]["samples"]
            if samples >= 5 or time.monotonic() > deadline:
                break
        assert samples >= 5
    finally:
        out, err = proc.communicate(timeout=30)  # closes stdin: the server shuts down
    lines += out.splitlines(keepends=True)
    assert proc.returncode == 0, err
    for line in lines:
        assert json.loads(line)["jsonrpc"] == "2.0", line
    assert replies[1]["result"]["serverInfo"]["name"] == "self-building-mcp"
    assert "logging" in replies[1]["result"]["capabilities"]
    names = {tool["name"] for tool in replies[2]["result"]["tools"]}
    assert {"get_system_status", "start_monitoring", "generate_script", "save_script"} <= names
    assert replies[3]["result"]["structuredContent"]["verdict"] in ("healthy", "degraded", "critical")
    assert replies[4]["result"]["isError"] is True and "limit" in replies[4]["result"]["content"][0]["text"]
    assert replies[5]["result"]["structuredContent"]["samples"] >= 1
    assert replies[6]["error"]["code"] == -32601
    assert replies[7]["result"]["structuredContent"]["accepted"]["metrics"] == len(PUSHED)
    assert replies[8]["result"]["structuredContent"]["summary"]["series_analysed"] == 1
    assert "monitoring started" in err  # logs went to stderr


@pytest.mark.anyio
async def test_stdio_client_round_trip(tmp_path: Path) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "server", "serve"], env=server_env(tmp_path))
    with (tmp_path / "stderr.log").open("w", encoding="utf-8") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            result = await client.call_tool("get_system_status", {})
            second = await client.call_tool("get_system_status", {})
    assert not result.is_error and result.structured_content is not None
    assert second.structured_content is not None
    assert second.structured_content["server"]["calls_by_tool"] == {"get_system_status": 1}
    assert "Traceback" not in (tmp_path / "stderr.log").read_text(encoding="utf-8")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_http(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--transport", "http", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=server_env(tmp_path, **env),
        cwd=tmp_path,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.communicate()[1]}")
        try:
            return httpx2.get(f"{base}/health", timeout=1).status_code == 200
        except httpx2.TransportError:
            return False

    try:
        eventually_sync(answers, "the server answers /health", timeout=30)
    except AssertionError:
        proc.kill()
        raise
    return proc, base


INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def test_health_is_open_and_mcp_needs_the_key(http_server: str) -> None:
    health = httpx2.get(f"{http_server}/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    no_key = httpx2.post(f"{http_server}/mcp", json=INIT, headers=HEADERS, timeout=5)
    assert no_key.status_code == 401 and no_key.json()["error"] == "invalid_token"
    assert no_key.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx2.post(f"{http_server}/mcp", json=INIT, headers={**HEADERS, "Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401
    good = httpx2.post(
        f"{http_server}/mcp", json=INIT, headers={**HEADERS, "Authorization": f"Bearer {KEY}"}, timeout=5
    )
    assert good.status_code == 200


def test_bad_host_and_origin_are_rejected(http_server: str) -> None:
    auth = {**HEADERS, "Authorization": f"Bearer {KEY}"}
    bad_host = httpx2.post(f"{http_server}/mcp", json=INIT, headers={**auth, "Host": "evil.example:80"}, timeout=5)
    assert bad_host.status_code == 421
    bad_origin = httpx2.post(
        f"{http_server}/mcp", json=INIT, headers={**auth, "Origin": "http://evil.example"}, timeout=5
    )
    assert bad_origin.status_code == 403
    ok_origin = httpx2.post(
        f"{http_server}/mcp", json=INIT, headers={**auth, "Origin": "http://localhost:3000"}, timeout=5
    )
    assert ok_origin.status_code == 200


@pytest.mark.anyio
async def test_mcp_client_over_http_with_key(http_server: str) -> None:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as http,
        Client(streamable_http_client(f"{http_server}/mcp", http_client=http)) as client,
    ):
        status = await client.call_tool("get_system_status", {})
        tools = await client.list_tools()
        bad = await client.call_tool("set_monitoring_thresholds", {"cpu_percent": -1})
    assert not status.is_error and status.structured_content is not None
    assert {tool.name for tool in tools.tools} == PUBLIC_TOOLS
    assert bad.is_error


def test_wildcard_bind_keeps_dns_rebinding_protection(tmp_path: Path) -> None:
    proc, base = start_http(
        tmp_path, "--host", "0.0.0.0", SELF_BUILDING_MCP_API_KEY=KEY, SELF_BUILDING_ALLOWED_HOSTS="mcp.example:*"
    )
    try:
        auth = {**HEADERS, "Authorization": f"Bearer {KEY}"}
        evil = httpx2.post(f"{base}/mcp", json=INIT, headers={**auth, "Host": "evil.example"}, timeout=5)
        assert evil.status_code == 421
        listed = httpx2.post(f"{base}/mcp", json=INIT, headers={**auth, "Host": "mcp.example:8080"}, timeout=5)
        assert listed.status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_public_bind_without_key_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--transport", "http", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        env=server_env(tmp_path),
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "refusing to bind 0.0.0.0" in proc.stderr and "SELF_BUILDING_MCP_API_KEY" in proc.stderr
    assert proc.stdout == ""
