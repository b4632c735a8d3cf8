"""Issue 17's acceptance, with processes: three replicas of the real server (HTTP) and two validation workers on one
PostgreSQL, CloudWatch in moto's server mode and a scripted model. A write through one replica is read through
another; the lease holder's CloudWatch streaming starts an emergency cycle for a critical alarm; the holder is
SIGKILLed while the model is still writing; another replica takes the lease, takes the emergency up again with
exactly one new cycle, whose change a worker validates and which ends with it kept; every acknowledged telemetry
batch is still there. And the example HAProxy configuration in front of the replicas."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from server.dashboard import COOKIE
from server.leadership import LEADER, NAMESPACE
from tests.conftest import call
from tests.llm_server import ScriptedLLM
from tests.moto_server import MotoServer
from tests.moto_server import client as aws_client
from tests.polling import eventually, eventually_sync
from tests.postgres_server import PostgresServer, postgres  # noqa: F401 - the fixture
from tests.test_improvement_cycle import DEMO, FAST_STATS, latency_points
from tests.test_transports import free_port, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
KEY = "replicas-admin-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass
class Replica:
    name: str
    proc: subprocess.Popen[bytes]
    base: str
    log: Path


def start(tmp_path: Path, name: str, env: dict[str, str]) -> Replica:
    port = free_port()
    log = tmp_path / f"{name}.log"
    with log.open("wb") as err:  # a file, not a pipe nobody reads: a busy server must never block on its log
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--transport", "http", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**server_env(tmp_path, **env), "SELF_BUILDING_DATA_DIR": str(tmp_path / name)},
            cwd=tmp_path,
        )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.poll() is None, f"replica {name} exited: {log.read_text(errors='replace')[-3000:]}"
        try:
            return httpx2.get(f"{base}/health", timeout=1).status_code == 200
        except httpx2.TransportError:
            return False

    eventually_sync(answers, f"replica {name} answers /health", timeout=60)
    return Replica(name, proc, base, log)


@asynccontextmanager
async def mcp(replica: Replica) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(timeout=120, headers=AUTH) as http,
        Client(streamable_http_client(f"{replica.base}/mcp", http_client=http)) as client,
    ):
        yield client


def lease_holder(url: str) -> int | None:
    """The OS pid of the replica holding the lease (its lease connection names it), or None."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s AND l.granted",
            (NAMESPACE, LEADER),
        ).fetchone()
    return int(str(row[0]).rsplit("_", 1)[1]) if row else None


@pytest.fixture
def replicas(
    tmp_path: Path,
    aws: MotoServer,
    scripted_llm: ScriptedLLM,
    postgres: PostgresServer,  # noqa: F811
) -> Iterator[tuple[list[Replica], str, list[subprocess.Popen[bytes]]]]:
    """Three replicas, and two validation workers taking their jobs from the same database."""
    url = postgres.new_database()
    shutil.copytree(DEMO, tmp_path / "ws")  # one workspace, shared by the replicas (a shared volume in production)
    env = {
        "SELF_BUILDING_DATABASE_URL": url,
        "SELF_BUILDING_LEASE_SECONDS": "2",
        "SELF_BUILDING_REQUEST_STATE_KEY": "k" * 40,
        "SELF_BUILDING_MCP_API_KEY": KEY,
        "SELF_BUILDING_LLM_MODEL": "m",
        "SELF_BUILDING_LLM_BASE_URL": scripted_llm.base_url,
        "SELF_BUILDING_LLM_API_KEY": "k",
        "SELF_BUILDING_LLM_MAX_RETRIES": "0",
        "SELF_BUILDING_IMPROVEMENT_MONITORING_SECONDS": "0.5",
        "SELF_BUILDING_IMPROVEMENT_BENCHMARK_RUNS": "3",
        "SELF_BUILDING_ENABLE_CLOUDWATCH_STREAMING": "true",
        "SELF_BUILDING_CLOUDWATCH__ALARM_NAME_PREFIX": "shop-",
        "SELF_BUILDING_CLOUDWATCH__ALARM_CACHE_SECONDS": "0",
        "SELF_BUILDING_CLOUDWATCH__POLL_INTERVAL_SECONDS": "0.2",
        "SELF_BUILDING_VALIDATION_ON_WORKERS": "true",
        "SELF_BUILDING_WORKER_CLAIM_SECONDS": "600",  # the workers validate: the replicas never do it themselves
    }
    started: list[Replica] = []
    workers: list[subprocess.Popen[bytes]] = []
    try:
        started.extend(start(tmp_path, name, env) for name in ("a", "b", "c"))  # each kept as it starts
        for name in ("w1", "w2"):
            with (tmp_path / f"{name}.log").open("wb") as log:
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", "server", "worker"], stdout=log, stderr=log,
                    env={**server_env(tmp_path, **env), "SELF_BUILDING_DATA_DIR": str(tmp_path / name)},
                ))  # fmt: skip
        yield started, url, workers
    finally:
        procs = [replica.proc for replica in started] + workers
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "replicas" / "haproxy.cfg"
LEGACY_INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json", **AUTH}
ACTION = {"x-dashboard-action": "1"}


@pytest.fixture
def balancer(tmp_path: Path, replicas: tuple[list[Replica], str, Any]) -> Iterator[str]:
    """The example HAProxy configuration, its addresses pointed at the replicas, in front of them."""
    if shutil.which("haproxy") is None:
        if os.environ.get("SELF_BUILDING_REQUIRE_HAPROXY") == "1":
            pytest.fail("HAProxy is missing: .ci/run installs it (apt-get install haproxy)")
        pytest.skip("HAProxy is not installed (Debian: apt-get install haproxy)")
    port = free_port()
    text = EXAMPLE.read_text(encoding="utf-8").replace("127.0.0.1:8765", f"127.0.0.1:{port}")
    for replica, example_port in zip(replicas[0], (8701, 8702, 8703), strict=True):
        text = text.replace(f"127.0.0.1:{example_port}", replica.base.removeprefix("http://"))
    config = tmp_path / "haproxy.cfg"
    config.write_text(text, encoding="utf-8")
    with (tmp_path / "haproxy.log").open("wb") as log:
        proc = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.poll() is None, (tmp_path / "haproxy.log").read_text(errors="replace")
        try:
            return httpx2.get(f"{base}/health", timeout=1).status_code == 200
        except httpx2.TransportError:
            return False

    try:
        eventually_sync(answers, "HAProxy answers /health", timeout=30)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_behind_the_example_load_balancer_any_replica_answers_and_a_legacy_session_stays_on_its_own(
    tmp_path: Path, replicas: tuple[list[Replica], str, Any], balancer: str
) -> None:
    started = replicas[0]
    front = Replica("lb", started[0].proc, balancer, started[0].log)
    async with mcp(front) as client:  # a 2026 client: sessionless, every request to the next replica
        for _ in range(6):
            await call(client, "get_system_status")
    served = (tmp_path / "haproxy.log").read_text(errors="replace")
    for replica in started:  # every replica answered some of the client's requests (the balancer's log says which)
        assert f"replicas/{replica.name} " in served, served[-2000:]
    total = 0
    for replica in started:
        async with mcp(replica) as direct:
            total += (await call(direct, "get_system_status"))["server"]["calls_by_tool"]["get_system_status"]
    assert total == 6, "the six calls through the balancer (a count leaves out the call that reads it)"
    with httpx2.Client(base_url=balancer, headers=HEADERS, timeout=30) as http:  # a legacy client: one session
        opened = http.post("/mcp", json=LEGACY_INIT)
        assert opened.status_code == 200, opened.text
        session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        done = http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
        assert done.status_code == 202, done.text
        for number in range(2, 9):  # round robin would send two of every three elsewhere: 404, unknown session
            listed = http.post("/mcp", json={"jsonrpc": "2.0", "id": number, "method": "tools/list"}, headers=session)
            assert listed.status_code == 200 and "get_system_status" in listed.text, (number, listed.text[:300])


async def test_three_replicas_one_lease_a_killed_holders_emergency_is_taken_up_once(
    replicas: tuple[list[Replica], str, list[subprocess.Popen[bytes]]], scripted_llm: ScriptedLLM
) -> None:
    started, url, workers = replicas
    cw = aws_client("cloudwatch")
    cw.put_metric_alarm(
        AlarmName="shop-HighLatency", MetricName="Latency", Namespace="Shop", Statistic="Average", Period=60,
        EvaluationPeriods=1, Threshold=100, ComparisonOperator="GreaterThanThreshold",
        Dimensions=[{"Name": "Component", "Value": "slow_stats"}],
    )  # fmt: skip
    await eventually(lambda: lease_holder(url) is not None, "a replica holds the lease", timeout=30)
    holder_pid = lease_holder(url)
    [holder] = [r for r in started if r.proc.pid == holder_pid]
    others = [r for r in started if r is not holder]

    async with mcp(holder) as lead, mcp(others[0]) as b, mcp(others[1]) as c:
        # a write through one replica is read through another; every batch acknowledged is counted later
        acknowledged = 0
        for i, client in enumerate((lead, b, c)):
            points = latency_points("slow_stats", 100, 180, time.time() - i)
            pushed = await call(client, "ingest_telemetry", {"tenant_id": "default", "metrics": points})
            acknowledged += pushed["accepted"]["metrics"]
        seen = await call(c, "query_telemetry_insights", {"tenant_id": "default"})
        assert seen["summary"]["series_analysed"] >= 1

        async def alarms_read() -> bool:  # the holder's first poll records the alarm's initial state
            sources = (await call(lead, "get_telemetry_sources"))["sources"]
            return any(s["name"] == "cloudwatch.alarms" and s["last_success"] is not None for s in sources)

        await eventually(alarms_read, "the lease holder polled the alarms", timeout=30)
        scripted_llm.stall(120, FAST_STATS)  # the holder's cycle: the model is still writing when it dies
        scripted_llm.reply(FAST_STATS)  # the cycle that takes the emergency up again
        cw.set_alarm_state(AlarmName="shop-HighLatency", StateValue="ALARM", StateReason="test: p99 above 100 ms")
        scripted_llm.wait_for_requests(1, timeout=60)
        started_cycles = (await call(b, "query_audit_log", {"kind": "improvement_cycle_started"}))["entries"]
        [first] = started_cycles
        assert (await call(c, "get_improvement_cycle", {"cycle_id": first["subject"]}))["status"] == "running"

    os.kill(holder.proc.pid, signal.SIGKILL)
    holder.proc.wait(timeout=30)
    await eventually(lambda: lease_holder(url) in {r.proc.pid for r in others}, "another replica takes the lease",
                     timeout=30)  # fmt: skip

    async with mcp(others[0]) as b, mcp(others[1]) as c:

        async def resumed() -> list[dict[str, Any]]:
            return (await call(b, "query_audit_log", {"kind": "improvement_cycle_resumed"}))["entries"]

        async def taken_up() -> bool:
            return bool(await resumed())

        await eventually(taken_up, "the emergency is taken up again", timeout=60)
        [entry] = await resumed()
        assert entry["detail"]["resumes"] == first["subject"]
        old = await call(c, "get_improvement_cycle", {"cycle_id": first["subject"]})
        assert old["status"] == "interrupted"

        async def ended() -> bool:
            found = await call(c, "get_improvement_cycle", {"cycle_id": entry["subject"]})
            return bool(found["status"] != "running")

        await eventually(ended, "the new emergency cycle ends", timeout=120)
        new = await call(b, "get_improvement_cycle", {"cycle_id": entry["subject"]})
        assert new["trigger"] == "emergency" and [k["status"] for k in new["candidates"]] == ["kept"], new
        assert len(await resumed()) == 1, "exactly one replica took the emergency up"
        everything = (await call(b, "query_audit_log", {"kind": "improvement_cycle_started"}))["entries"]
        assert len(everything) == 2, everything  # the holder's, and the one that took it up: no other
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT COUNT(*) FROM points p JOIN series s ON s.id = p.series_id"
                               " WHERE s.name = 'latency_ms'").fetchone()  # fmt: skip
            jobs = conn.execute("SELECT status, worker FROM jobs").fetchall()
        assert row is not None and row[0] >= acknowledged, "no acknowledged telemetry lost"
        pids = {str(w.pid) for w in workers}  # the change was validated by a worker, not by a replica
        assert jobs and all(status == "done" and str(worker).split("-")[-2] in pids for status, worker in jobs), jobs


def test_a_dashboard_sign_in_holds_on_every_replica_and_a_sign_out_ends_it_on_all(
    replicas: tuple[list[Replica], str, Any],
) -> None:
    started, url = replicas[0], replicas[1]
    with httpx2.Client(base_url=started[0].base, timeout=30) as http:  # signed in through a
        signed = http.post("/dashboard/api/login", json={"key": KEY}, headers=ACTION)
        assert signed.status_code == 200, signed.text
        cookie = {COOKIE: signed.cookies[COOKIE]}

    def state(replica: Replica) -> int:
        with httpx2.Client(base_url=replica.base, cookies=cookie, timeout=30) as browser:
            return browser.get("/dashboard/api/state").status_code

    assert [state(r) for r in started] == [200, 200, 200], "the same cookie holds on every replica"
    with httpx2.Client(base_url=started[1].base, cookies=cookie, timeout=30) as browser:  # signed out through b
        assert browser.post("/dashboard/api/logout", json={}, headers=ACTION).status_code == 200
    assert [state(r) for r in started] == [401, 401, 401], "and is over on every replica"
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT digest, token FROM dashboard_sessions").fetchall()
    assert all(KEY not in token and cookie[COOKIE] not in digest for digest, token in stored), "no secret stored"
