"""The analysis process: the detectors and the per-series analysis in a child process find what this process finds,
survive the child's death, and end with the server."""

from __future__ import annotations

import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import psutil
import pytest

from telemetry.learning.analysis_process import AnalysisProcess, AnalysisProcessError
from telemetry.learning.engine import LearningEngine, SeriesFindings
from telemetry.learning.live import AnomalyWatch
from telemetry.store.address import StoreAddress
from telemetry.store.records import MetricPoint
from telemetry.store.sqlite_store import SqliteTelemetryStore
from tests.conftest import ServerFactory, call, connect
from tests.polling import eventually_sync
from tests.test_transports import start_http

STEP = 60.0
NOW = 1_750_000_000.0


def series(
    name: str, dims: dict[str, str], values: list[float], start: float, tenant: str = "shop"
) -> list[MetricPoint]:
    return [MetricPoint(tenant, name, start + i * STEP, v, dims) for i, v in enumerate(values)]


def noisy(n: int, seed: int, level: float = 100.0) -> list[float]:
    rng = random.Random(seed)
    return [level + rng.gauss(0, 2) for _ in range(n)]


def workload() -> list[list[MetricPoint]]:
    """Batches of several series: spikes, a level shift (a degradation), a steady rise (a trend), quiet ones."""
    start = NOW - 900 * STEP
    spiky = noisy(900, 1)
    spiky[500] = spiky[820] = 400.0
    shifted = noisy(750, 2) + noisy(150, 3, level=160.0)
    rising = [50.0 + i * 0.2 + random.Random(i).gauss(0, 1) for i in range(900)]
    batches: list[list[MetricPoint]] = []
    for lo in range(0, 900, 150):
        hi = lo + 150
        batch = series("api.latency_ms", {"Component": "api", "host": "a"}, spiky[lo:hi], start + lo * STEP)
        batch += series("db.latency_ms", {"Component": "db"}, shifted[lo:hi], start + lo * STEP)
        batch += series("queue.depth_ms", {"Component": "queue"}, rising[lo:hi], start + lo * STEP)
        batch += series("quiet.value", {}, noisy(150, lo)[:], start + lo * STEP, tenant="other")
        batches.append(batch)
    return batches


def test_the_child_finds_what_this_process_finds(tmp_path: Path) -> None:
    store = SqliteTelemetryStore(tmp_path / "t.sqlite3")
    here = AnomalyWatch(history=store, max_series=100)
    child = AnalysisProcess(StoreAddress(sqlite_path=tmp_path / "t.sqlite3"), max_series=100)
    try:
        found_here, found_there = [], []
        for batch in workload():
            store.add_metrics(batch)
            found_here += here.observe(batch)
            found_there += child.observe(batch)
        assert found_there == found_here
        assert {e.detail["metric"] for e in found_here} >= {"api.latency_ms"}  # the spikes were found at all
        engine = LearningEngine(store, clock=lambda: NOW)
        for tenant in ("shop", "other"):
            for metric in (None, "db.latency_ms"):
                local = engine.series_findings(tenant, NOW - 86400, NOW, metric)
                assert child.series_findings(tenant, NOW - 86400, NOW, metric) == local
        shop = engine.series_findings("shop", NOW - 86400, NOW, None)
        assert {i.kind for i in shop.insights} == {"degradation", "trend"}  # something to compare, not nothing
        assert shop.series == 3 and shop.per_component[("db", "db.latency_ms")] == 1
        assert child.starts == 1
    finally:
        child.close()
        store.close()


def dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # left for multiprocessing to reap
    except psutil.NoSuchProcess:
        return True


def test_a_killed_child_is_replaced_and_resumes_from_the_stored_history(tmp_path: Path) -> None:
    store = SqliteTelemetryStore(tmp_path / "t.sqlite3")
    child = AnalysisProcess(StoreAddress(sqlite_path=tmp_path / "t.sqlite3"), max_series=100)
    try:
        start = NOW - 700 * STEP
        history = series("api.latency_ms", {"host": "a"}, noisy(600, 7), start)
        store.add_metrics(history)
        assert child.observe(history) == []
        pid = child.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        eventually_sync(lambda: dead(pid), "the killed child is gone")
        spike = series("api.latency_ms", {"host": "a"}, [100.0, 100.5, 450.0, 100.0], start + 600 * STEP)
        store.add_metrics(spike)
        # A new child primes the series from its 600 stored points: no new warm-up (300 points) hides the spike.
        found = child.observe(spike)
        assert [e.detail["value"] for e in found] == [450.0]
        assert child.starts == 2 and child.pid not in (None, pid)
    finally:
        child.close()
        store.close()


def test_a_store_the_child_cannot_open_is_a_clear_error(tmp_path: Path) -> None:
    child = AnalysisProcess(StoreAddress(sqlite_path=tmp_path), max_series=10)
    try:
        with pytest.raises(AnalysisProcessError, match=r"could not open the telemetry store: \w+Error: "):
            child.series_findings("shop", 0.0, 1.0, None)
    finally:
        child.close()


def test_a_closed_process_refuses_requests(tmp_path: Path) -> None:
    SqliteTelemetryStore(tmp_path / "t.sqlite3").close()
    child = AnalysisProcess(StoreAddress(sqlite_path=tmp_path / "t.sqlite3"), max_series=10)
    assert child.series_findings("shop", 0.0, 1.0, None).series == 0
    child.close()
    assert child.pid is None
    with pytest.raises(AnalysisProcessError, match="shutting down"):
        child.series_findings("shop", 0.0, 1.0, None)


def test_a_store_address_is_one_of_the_two() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        StoreAddress()
    with pytest.raises(ValueError, match="exactly one"):
        StoreAddress(sqlite_path=Path("x"), postgres_url="postgresql://u:secret@h/db")
    assert "secret" not in repr(StoreAddress(postgres_url="postgresql://u:secret@h/db"))


def analysis_children() -> set[int]:
    """This process's children that are multiprocessing's spawned processes (the analysis process)."""
    found = set()
    for child in psutil.Process().children():
        try:
            if "multiprocessing.spawn" in " ".join(child.cmdline()):
                found.add(child.pid)
        except psutil.Error:
            continue
    return found


@pytest.mark.anyio
@pytest.mark.parametrize("in_child", [True, False], ids=["analysis process", "in the server's process"])
async def test_anomalies_through_the_client_either_way_and_the_child_ends_with_the_server(
    make_server: ServerFactory, in_child: bool
) -> None:
    before = analysis_children()
    now = time.time()
    values = noisy(800, 11)
    values[700] = 500.0
    start = now - 800 * 300.0
    metrics = [
        {"name": "api.latency_ms", "value": v, "timestamp": start + i * 300.0, "dimensions": {"host": "a"}}
        for i, v in enumerate(values)
    ]
    async with connect(make_server(analysis_process=in_child)) as client:
        for lo in range(0, 800, 200):
            await call(client, "ingest_telemetry", {"tenant_id": "shop", "metrics": metrics[lo : lo + 200]})
        # asked at once after the last ingest's answer: its batch is judged before the answer is read
        result = await call(client, "query_telemetry_insights", {"tenant_id": "shop", "time_range_hours": 72})
        during = analysis_children() - before
    anomalies = [i for i in result["insights"] if i["kind"] == "anomaly"]
    assert [a["evidence"]["latest_value"] for a in anomalies] == [500.0]
    assert len(during) == (1 if in_child else 0)
    assert not (analysis_children() - before)  # the server's exit stopped its child


def push_over_http(base: str) -> None:
    """An ingest, then insights, over plain 2026-07-28 JSON-RPC: the child judged the points and answered."""
    now = time.time()
    metrics = [{"name": "x_ms", "value": float(i % 5), "timestamp": now - 600 + i} for i in range(300)]
    calls = {"ingest_telemetry": {"tenant_id": "t", "metrics": metrics}, "query_telemetry_insights": {"tenant_id": "t"}}
    answers = {}
    for name, arguments in calls.items():
        envelope = {"protocolVersion": "2026-07-28", "clientCapabilities": {}}
        meta = {f"io.modelcontextprotocol/{key}": value for key, value in envelope.items()}
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments, "_meta": meta},
        }
        headers = {
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": "tools/call",
            "Mcp-Name": name,
        }
        answers[name] = httpx2.post(f"{base}/mcp", json=body, headers=headers, timeout=60).json()["result"]
    assert answers["ingest_telemetry"]["structuredContent"]["accepted"]["metrics"] == 300, answers
    assert answers["query_telemetry_insights"]["structuredContent"]["summary"]["series_analysed"] == 1, answers


def spawned_children(server: psutil.Process) -> list[psutil.Process]:
    return [c for c in server.children() if "multiprocessing.spawn" in " ".join(c.cmdline())]


def ignored_signals(pid: int) -> set[int]:
    """The signals process ``pid`` ignores (Linux: the SigIgn mask of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            mask = int(line.split()[1], 16)
            return {number for number in range(1, 64) if mask & (1 << (number - 1))}
    raise AssertionError("no SigIgn line")


@contextmanager
def server_with_child(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], psutil.Process]]:
    """A real HTTP server whose analysis process has judged an ingest and answered insights; killed on the way out."""
    proc, base = start_http(tmp_path)
    try:
        server = psutil.Process(proc.pid)
        push_over_http(base)
        eventually_sync(lambda: len(spawned_children(server)) == 1, "the analysis process runs")
        [child] = spawned_children(server)
        yield proc, child
    finally:
        proc.kill()


def test_sigterm_to_the_whole_process_group_stops_server_and_child_cleanly(tmp_path: Path) -> None:
    with server_with_child(tmp_path) as (proc, child):
        assert {signal.SIGINT, signal.SIGTERM} <= ignored_signals(child.pid)
        child.send_signal(signal.SIGTERM)  # what a service manager sends every process of the group
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "starting a new one" not in err  # the child was not killed by it: the server stopped it
    eventually_sync(lambda: dead(child.pid), "the analysis process ended with the server")


def test_the_child_ends_when_the_server_is_killed(tmp_path: Path) -> None:
    with server_with_child(tmp_path) as (proc, child):
        proc.kill()  # no shutdown at all: the child sees its pipe close
        proc.communicate(timeout=60)
        eventually_sync(lambda: dead(child.pid), "the orphaned analysis process ended")  # (or is a zombie)


def test_a_slow_start_never_puts_answers_out_of_step(tmp_path: Path) -> None:
    """A child that misses its start-up time is ended: its late "ready" never answers a later request."""
    path = tmp_path / "t.sqlite3"
    SqliteTelemetryStore(path).close()
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # the child's store waits for this lock to check its schema
    child = AnalysisProcess(StoreAddress(sqlite_path=path), max_series=10, start_seconds=1, retry_start_seconds=0)
    try:
        with pytest.raises(AnalysisProcessError, match=r"could not start .*did not start in 1 s"):
            child.series_findings("shop", 0.0, 1.0, None)
        assert child.pid is None  # stopped: not left running to answer a later request with its "ready"
        lock.execute("ROLLBACK")
        child.start_seconds = 60  # the next start: a spawn alone may take over a second on a busy machine
        assert isinstance(child.series_findings("shop", 0.0, 1.0, None), SeriesFindings)
        assert child.observe(series("m", {}, [1.0, 2.0], NOW)) == []
        assert isinstance(child.series_findings("shop", 0.0, 1.0, None), SeriesFindings)
        assert child.starts == 2
    finally:
        child.close()
        lock.close()


def test_after_a_failed_start_requests_fail_at_once_for_a_while_and_insights_use_this_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteTelemetryStore(tmp_path / "t.sqlite3")
    store.add_metrics(series("api.latency_ms", {"Component": "api"}, noisy(100, 5), NOW - 100 * STEP))
    child = AnalysisProcess(StoreAddress(sqlite_path=tmp_path), max_series=10)  # a folder: it cannot start
    local = LearningEngine(store, clock=lambda: NOW).series_findings
    try:
        with pytest.raises(AnalysisProcessError, match="trying again in 10 s"):
            child.observe(series("m", {}, [1.0], NOW))
        with pytest.raises(AnalysisProcessError, match="trying again"):
            child.observe(series("m", {}, [1.0], NOW))
        assert child.starts == 1  # the second request did not spawn another child
        with caplog.at_level(logging.WARNING):
            found = child.series_findings_or(local)("shop", NOW - 86400, NOW, None)
        assert found == local("shop", NOW - 86400, NOW, None) and found.series == 1
        assert "runs in the server's process this time" in caplog.text
    finally:
        child.close()
        store.close()
    with pytest.raises(AnalysisProcessError, match="shutting down"):  # closed: no quiet fallback either
        child.series_findings_or(local)("shop", NOW - 86400, NOW, None)


EXIT_WITHOUT_CLOSE = """
import sys
from pathlib import Path
from telemetry.learning.analysis_process import AnalysisProcess
from telemetry.store.address import StoreAddress
from telemetry.store.sqlite_store import SqliteTelemetryStore

path = Path(sys.argv[1])
SqliteTelemetryStore(path).close()
child = AnalysisProcess(StoreAddress(sqlite_path=path), max_series=10)
print(child.series_findings("shop", 0.0, 1.0, None).series, flush=True)
# no close(): the interpreter's exit must still end the child, which ignores SIGTERM
"""


def test_an_interpreter_that_exits_without_closing_does_not_wait_for_its_child(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", EXIT_WITHOUT_CLOSE, str(tmp_path / "t.sqlite3")],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "0\n"
