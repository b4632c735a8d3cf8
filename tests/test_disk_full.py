"""A full data directory, through the MCP client: every write says what happened and what to do, reads keep
working, and writes resume by themselves once there is space, without a restart.

Two ways to fill it. The faithful one: the real server over stdio with its data directory on a small tmpfs mounted
in a private mount namespace, filled by a file until the kernel answers ENOSPC (skipped where mount namespaces are
refused). The one that needs no privilege: SQLite's own size limit (``PRAGMA max_page_count``) on the stores'
connections, which fails a write with the very SQLITE_FULL error a full disk gives.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from server.settings import Settings
from tests.conftest import SANDBOX, ServerFactory, call, call_error, connect
from tests.llm_server import ScriptedLLM
from tests.polling import eventually
from tests.test_generation_tool import ARGS

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """SQLite whatever ``--backend`` says: these tests are about the server's SQLite files."""
    return settings.model_copy(update={"database_url": None})


ROOT = Path(__file__).resolve().parents[1]
WHAT_TO_DO = "free space there or move {}; reads still work and writes resume by themselves once there is space"
SQLITE_FULL = "database or disk is full"


def points(count: int, shift: float = 0.0) -> list[dict[str, Any]]:
    """``count`` metric points of one recent hour, spread over a few hosts (many rows: new database pages)."""
    start = time.time() - 3600 + shift
    return [
        {
            "name": "api.latency_ms",
            "value": float(i % 97),
            "timestamp": start + i * 0.5,
            "dimensions": {"host": f"h{i % 5}"},
        }
        for i in range(count)
    ]


def full_text(tool: str, kind: str, folder: Path, setting: str, reason: str = SQLITE_FULL) -> str:
    return f"Error executing tool {tool}: the {kind} {folder} is full ({reason}): {WHAT_TO_DO.format(setting)}"


# --- SQLite's size limit: in-process, no privilege needed -----------------------------------------------------------


@pytest.fixture
def databases(monkeypatch: pytest.MonkeyPatch) -> dict[str, sqlite3.Connection]:
    """The first SQLite connection the server opens to each file (its writing one; read connections come after), by
    file name, so a test can put a database at its size limit."""
    opened: dict[str, sqlite3.Connection] = {}
    connect_ = sqlite3.connect

    def recording(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect_(database, *args, **kwargs)
        opened.setdefault(Path(database).name, conn)
        return conn

    monkeypatch.setattr(sqlite3, "connect", recording)
    return opened


def size_limit(conn: sqlite3.Connection, *, full: bool) -> None:
    """Cap the database at its current size (no page can be added), or lift the cap. (A pragma that touches no
    transaction: safe beside the store's own use of the connection.)"""
    pages = conn.execute("PRAGMA page_count").fetchone()[0] if full else 1_073_741_823
    conn.execute(f"PRAGMA max_page_count = {pages}")


async def test_a_database_at_its_limit_is_reported_reads_go_on_and_writes_resume(
    make_server: ServerFactory,
    settings: Settings,
    databases: dict[str, sqlite3.Connection],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="telemetry.store.sqlite_db"):
        async with connect(make_server()) as mcp:
            await call(mcp, "ingest_telemetry", {"tenant_id": "shop", "metrics": points(200)})
            telemetry_db = databases["telemetry.sqlite3"]
            size_limit(telemetry_db, full=True)
            expected = full_text("ingest_telemetry", "data directory", settings.data_dir, "SELF_BUILDING_DATA_DIR")
            for shift in (1.0, 2.0):  # two refused writes, one episode
                assert (
                    await call_error(mcp, "ingest_telemetry", {"tenant_id": "shop", "metrics": points(3000, shift)})
                    == expected
                )

            status = await call(mcp, "get_system_status")
            assert status["host"]["cpu"]["percent"] >= 0
            insights = await call(mcp, "query_telemetry_insights", {"tenant_id": "shop"})
            assert insights["summary"]["total"] >= 0
            assert (await call(mcp, "analyze_self", {}))["calls_in_window"] >= 4

            size_limit(telemetry_db, full=False)  # space is back: the same write works, no restart
            done = await call(mcp, "ingest_telemetry", {"tenant_id": "shop", "metrics": points(3000, 3.0)})
            assert done["accepted"]["metrics"] == 3000

    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "telemetry.store.sqlite_db"]
    warned = [m for level, m in lines if level == "WARNING" and "telemetry.sqlite3" in m]
    assert len(warned) == 1, lines  # once per episode, not once per refused write
    assert f"the data directory {settings.data_dir} is full ({SQLITE_FULL})" in warned[0]
    assert any(level == "INFO" and "work again" in m and "telemetry.sqlite3" in m for level, m in lines), lines


# --- A real full disk: a tmpfs in a private mount namespace ----------------------------------------------------------


def _namespaces_refused(probe: Path) -> str | None:
    probe.mkdir()
    try:
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")


@pytest.fixture
def small_disk(tmp_path: Path) -> Path:
    """A folder that the server will see as a 24 MiB tmpfs of its own."""
    refused = _namespaces_refused(tmp_path / "probe")
    if refused is not None:
        pytest.skip(f"mount namespaces are refused here ({refused}); the SQLite size-limit test covers the logic")
    data = tmp_path / "data"
    data.mkdir()
    return data


def server_on(data: Path, pid_file: Path, llm: ScriptedLLM) -> StdioServerParameters:
    """The real server with ``data`` on a fresh tmpfs that only it sees (the workspace left at its default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELF_BUILDING_")}
    env.update(
        SELF_BUILDING_DATA_DIR=str(data),
        SELF_BUILDING_LLM_BASE_URL=llm.base_url,
        SELF_BUILDING_LLM_MODEL="m",
        SELF_BUILDING_SANDBOX=SANDBOX,
        SELF_BUILDING_LLM_API_KEY="k",
        PYTHONUNBUFFERED="1",
    )
    script = 'echo $$ > "$1" && mount -t tmpfs -o size=24m tmpfs "$2" && exec "$3" -m server serve'
    return StdioServerParameters(
        command="unshare",
        args=[
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            str(pid_file),
            str(data),
            sys.executable,
        ],
        env=env,
        cwd=str(ROOT),
    )


def fill(path: Path) -> None:
    """Write ``path`` until the file system has no byte left."""
    with path.open("wb", buffering=0) as handle:
        for size in (1 << 20, 1 << 16, 1 << 12, 1):
            block = b"\0" * size
            try:
                while True:
                    handle.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc


@pytest.mark.slow
async def test_a_full_disk_is_reported_reads_go_on_and_writes_resume(
    small_disk: Path, tmp_path: Path, scripted_llm: ScriptedLLM
) -> None:
    data, pid_file = small_disk, tmp_path / "server.pid"
    log = tmp_path / "stderr.log"
    script = {"issue_type": "cpu_high", "platform": "bash", "parameters": {"pid": 4242}}
    with log.open("w", encoding="utf-8") as errlog:
        async with Client(stdio_client(server_on(data, pid_file, scripted_llm), errlog=errlog)) as mcp:
            await call(mcp, "ingest_telemetry", {"tenant_id": "shop", "metrics": points(200)})
            # The server's own view of its data directory (its mount namespace), through /proc.
            seen = Path(f"/proc/{pid_file.read_text(encoding='utf-8').strip()}/root") / data.relative_to("/")
            filler = seen / "filler"
            fill(filler)

            expected = full_text("ingest_telemetry", "data directory", data, "SELF_BUILDING_DATA_DIR")
            assert (
                await call_error(mcp, "ingest_telemetry", {"tenant_id": "shop", "metrics": points(500, 1.0)})
                == expected
            )
            refused = await call_error(mcp, "set_monitoring_thresholds", {"consecutive_samples": 2})
            assert refused == full_text("set_monitoring_thresholds", "data directory", data, "SELF_BUILDING_DATA_DIR")
            refused = await call_error(mcp, "generate_component", ARGS)  # its audit entry cannot be written
            assert refused == full_text("generate_component", "data directory", data, "SELF_BUILDING_DATA_DIR")
            assert scripted_llm.requests == []  # refused before the model was asked
            saved = await call_error(mcp, "save_script", script)
            assert saved == full_text(
                "save_script", "workspace", data / "workspace", "SELF_BUILDING_WORKSPACE", "No space left on device"
            )

            await call(mcp, "get_system_status")  # reads go on
            assert (await call(mcp, "query_telemetry_insights", {"tenant_id": "shop"}))["summary"]["total"] >= 0
            assert (await call(mcp, "analyze_self", {}))["calls_in_window"] >= 7  # the calls kept in memory count too
            await wait_for_line(log, "writes to tool_calls.sqlite3 fail")  # the recorder's episode began

            filler.unlink()  # space is back: the same writes work, no restart
            done = await call(mcp, "ingest_telemetry", {"tenant_id": "shop", "metrics": points(500, 2.0)})
            assert done["accepted"]["metrics"] == 500
            await call(mcp, "set_monitoring_thresholds", {"consecutive_samples": 2})
            assert (await call(mcp, "save_script", script))["path"] == str(data / "workspace/scripts/fix_cpu_high.sh")
            await wait_for_line(log, "tool_calls.sqlite3 work again")  # the recorder wrote what it kept in memory
            assert (await call(mcp, "analyze_self", {}))["calls_in_window"] >= 10
    stderr = log.read_text(encoding="utf-8")
    for store in ("telemetry.sqlite3", "monitoring.sqlite3", "tool_calls.sqlite3"):  # one line per store and episode
        warnings = [line for line in _lines(stderr) if "WARNING" in line and f"writes to {store} fail" in line]
        assert len(warnings) == 1, (store, stderr)
        assert f"the data directory {data} is full ({SQLITE_FULL})" in warnings[0]
    assert "Traceback" not in stderr, stderr


def _lines(text: str) -> Iterator[str]:
    yield from text.splitlines()


async def wait_for_line(log: Path, text: str) -> None:
    """Wait (bounded) until the server's stderr has a line containing ``text``."""
    await eventually(lambda: text in log.read_text(encoding="utf-8"), f"the server logged {text!r}")
