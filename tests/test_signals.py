"""SIGINT and SIGTERM stop ``self-building-mcp serve`` cleanly on both transports: exit code 0, the databases closed
(SQLite removes a WAL file when its last connection closes, so none is left) and the buffered tool calls written.
Ctrl-C over stdio used to do nothing until the host closed stdin; SIGTERM killed it with everything open.
How long a stop takes is a figure of tests/benchmarks/bench_stop.py, not asserted here."""

from __future__ import annotations

import os
import pty
import signal
import sqlite3
import sys
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.conftest import mcp_as
from tests.test_stdio_protocol import INIT, collect, line
from tests.test_transports import KEY, server_env, start_http

STATUS_CALL = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get_system_status"}}


def assert_closed_cleanly(data_dir: Path) -> None:
    """Every database closed, and the tool call the test made written before that."""
    assert sorted(p.name for p in data_dir.glob("*.sqlite3-wal")) == []
    with sqlite3.connect(data_dir / "tool_calls.sqlite3") as db:
        tools = [row[0] for row in db.execute("SELECT tool FROM calls")]
    assert tools == ["get_system_status"]


@pytest.mark.anyio
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_stdio_server_stops_cleanly_on_a_signal(tmp_path: Path, signum: signal.Signals) -> None:
    with (tmp_path / "stderr.log").open("wb") as errlog:
        proc = await anyio.open_process(
            [sys.executable, "-m", "server", "serve"],
            env=server_env(tmp_path, SELF_BUILDING_LOG_LEVEL="INFO"),
            cwd=tmp_path,
            stderr=errlog,
        )
        try:
            assert proc.stdin is not None and proc.stdout is not None
            reader = BufferedByteReceiveStream(proc.stdout)
            initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            await proc.stdin.send(line(INIT) + line(initialized) + line(STATUS_CALL))
            replies, _ = await collect(reader, {"init", 2}, 0)
            assert "result" in replies[2]
            proc.send_signal(signum)  # stdin stays open: only the signal can stop it
            with anyio.fail_after(60):
                code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.aclose()
    log = (tmp_path / "stderr.log").read_text(encoding="utf-8")
    assert code == 0, log
    assert f"stdio server stopped: {signum.name}" in log  # written after the lifespan's exit
    assert "Traceback" not in log
    assert_closed_cleanly(tmp_path / "data")


@pytest.mark.anyio
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_http_server_stops_cleanly_on_a_signal(tmp_path: Path, signum: signal.Signals) -> None:
    proc, base = start_http(tmp_path, SELF_BUILDING_MCP_API_KEY=KEY)
    try:
        async with mcp_as(base, KEY) as client:
            result = await client.call_tool("get_system_status", {})
        assert not result.is_error
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert_closed_cleanly(tmp_path / "data")


@pytest.mark.anyio
async def test_on_a_terminal_it_says_what_it_is_and_ctrl_d_stops_it(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    try:
        proc = await anyio.open_process(
            [sys.executable, "-m", "server", "serve"],
            stdin=terminal,
            env=server_env(tmp_path, SELF_BUILDING_LOG_LEVEL="WARNING"),
            cwd=tmp_path,
        )
        os.close(terminal)
        try:
            assert proc.stdout is not None and proc.stderr is not None
            errors = BufferedByteReceiveStream(proc.stderr)
            with anyio.fail_after(60):
                first = await errors.receive_until(b"\n", 4096)  # the first thing it says, before it waits
            from server.stdio import TERMINAL_NOTICE

            assert first.decode() + "\n" == TERMINAL_NOTICE
            os.write(controller, line({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
            replies, _ = await collect(BufferedByteReceiveStream(proc.stdout), {1}, 0)
            assert replies[1]["result"] == {}
            os.write(controller, b"\x04")  # Ctrl-D: end of input
            with anyio.fail_after(60):
                code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.aclose()
    finally:
        os.close(controller)
    assert code == 0
    assert "Ctrl-C or Ctrl-D" in TERMINAL_NOTICE and "MCP host" in TERMINAL_NOTICE
