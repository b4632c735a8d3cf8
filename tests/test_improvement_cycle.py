"""The improvement cycle end to end through the MCP tools, against a scripted local OpenAI-compatible server and the
demo workspace of ``examples/demo``: a faster change is kept, a slower one rolled back to the exact previous bytes,
dry runs write nothing, reviewed changes wait for approval and are monitored once approved, a regression seen only
in telemetry is rolled back, LLM failures are reported per candidate, and an interrupted cycle is reported as such
after a restart while its deployment is still judged."""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.types import ElicitResult
from pydantic import SecretStr

from generators.deploy import Deployer
from generators.improvement import CandidateRecord, CycleRecord
from generators.improvement.triggers import AUTONOMOUS_TASK
from generators.validation import StageName
from server.app import create_server
from server.settings import Settings
from telemetry.cloudwatch.config import CloudWatchConfig
from tests.backend import stores_of
from tests.conftest import call, call_error, connect
from tests.fake_clock import FakeClock
from tests.fakes import FakeHostSource, NoGpu
from tests.llm_server import ScriptedLLM
from tests.moto_server import MotoServer
from tests.moto_server import client as aws_client
from tests.polling import eventually
from tests.test_self_analysis import CRASH
from tests.waiting import cycle_when, finished, first_candidate_in, first_candidate_not_in, when_active_changes

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo" / "workspace"
STAGES: tuple[StageName, ...] = ("syntax", "imports", "security", "quality", "tenancy", "tests")
# The demo's scripted replies: the same edits the README's demo shows (one faster, one slower).
_DEMO_LLM_SPEC = importlib.util.spec_from_file_location("demo_scripted_llm", DEMO.parent / "scripted_llm.py")
assert _DEMO_LLM_SPEC is not None and _DEMO_LLM_SPEC.loader is not None
_DEMO_LLM = importlib.util.module_from_spec(_DEMO_LLM_SPEC)
_DEMO_LLM_SPEC.loader.exec_module(_DEMO_LLM)
FAST_STATS: str = _DEMO_LLM.FASTER
SLOW_WORDS: str = _DEMO_LLM.SLOWER
UNMATCHED = """components/slow_stats.py
```python
<<<<<<< SEARCH
    ordered = something_that_is_not_there()
=======
    ordered = sorted(values)
>>>>>>> REPLACE
```
"""


def latency_points(component: str, baseline: float, recent: float, now: float) -> list[dict[str, Any]]:
    """24 h of latency every 20 minutes; the newest quarter of the window at ``recent``."""
    points = []
    for i in range(72):
        ts = now - 24 * 3600 + 60 + i * 1200
        value = (recent if ts >= now - 6 * 3600 + 60 else baseline) + (i % 5)
        points.append(
            {"name": "latency_ms", "value": value, "timestamp": ts, "unit": "Milliseconds",
             "dimensions": {"Component": component}}
        )  # fmt: skip
    return points


def build(
    settings: Settings,
    llm: ScriptedLLM,
    clock: FakeClock | None = None,
    host: FakeHostSource | None = None,
    **overrides: Any,
) -> MCPServer:
    shutil.copytree(DEMO, settings.workspace, dirs_exist_ok=True)
    merged = settings.model_copy(
        update={
            "llm_model": "m",
            "llm_base_url": llm.base_url,
            "llm_api_key": SecretStr("k"),
            "llm_max_retries": 0,
            "improvement_monitoring_seconds": 0.5,
            "improvement_max_concurrency": 1,  # candidates ask the scripted LLM in impact order
            "improvement_benchmark_runs": 3,
        }
        | overrides
    )
    host = host or FakeHostSource()
    return create_server(merged, host_source=host, gpu_source=NoGpu(), clock=clock, validation_stages=STAGES)


async def push_degradations(client: Client, *components: tuple[str, float]) -> None:
    now = time.time()
    for component, recent in components:
        pushed = await call(
            client, "ingest_telemetry", {"tenant_id": "default", "metrics": latency_points(component, 100, recent, now)}
        )
        assert pushed["accepted"]["metrics"] == 72


async def wait_until_finished(client: Client, cycle_id: str, timeout: float = 60) -> dict[str, Any]:
    """The cycle once it is no longer running."""
    return await cycle_when(client, cycle_id, finished, timeout)


async def wait_for_status(client: Client, cycle_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
    """The cycle once its first candidate has ``status`` (candidates appear once the opportunities are analysed)."""
    return await cycle_when(client, cycle_id, first_candidate_in(status), timeout)


def snapshot(workspace: Path) -> dict[str, bytes]:
    return {
        p.relative_to(workspace).as_posix(): p.read_bytes()
        for p in workspace.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


async def test_faster_change_is_kept_slower_one_rolled_back_byte_identical(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(FAST_STATS)
    scripted_llm.reply(SLOW_WORDS)
    server = build(settings, scripted_llm)
    before = snapshot(settings.workspace) if settings.workspace.exists() else {}
    progress: list[str] = []

    async def on_progress(current: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with connect(server) as client:
        before = snapshot(settings.workspace)
        await push_degradations(client, ("slow_stats", 180), ("word_index", 130))
        result = await client.call_tool(
            "trigger_improvement_cycle", {"max_improvements": 2}, progress_callback=on_progress
        )
        assert not result.is_error, result.content
        cycle = result.structured_content
        assert cycle is not None
        assert cycle["status"] == "completed", cycle
        stats, words = cycle["candidates"]
        assert (stats["component"], words["component"]) == ("slow_stats", "word_index"), "ranked by impact"
        assert stats["impact_score"] > words["impact_score"]

        assert stats["status"] == "kept", stats
        assert "+    ordered = sorted(values)" in stats["diff"] and stats["validation_passed"] is True
        bench = stats["figures"]["benchmark"]
        assert bench["script"] == "benchmarks/bench_slow_stats.py" and 3 <= len(bench["before"]) == len(bench["after"])
        assert bench["after_median"] < bench["before_median"] and bench["change_percent"] < -10
        assert stats["figures"]["tests"]["status"] == "passed" and stats["reasons"] == []
        assert "ordered = sorted(values)" in (settings.workspace / "components/slow_stats.py").read_text()

        assert words["status"] == "rolled_back", words
        assert words["figures"]["benchmark"]["change_percent"] > 10
        assert any("bench_word_index.py is" in r and "slower" in r for r in words["reasons"])
        assert (settings.workspace / "components/word_index.py").read_bytes() == before["components/word_index.py"]

        detail = await call(client, "get_deployment", {"deployment_id": words["deployment_id"]})
        assert detail["status"] == "rolled_back" and detail["rollback_reason"].startswith("regression:")
        assert detail["detail"]["figures"]["benchmark"]["change_percent"] > 10
        assert detail["detail"]["validation"]["passed"] is True and detail["detail"]["cycle_id"] == cycle["cycle_id"]
        kept = await call(client, "get_deployment", {"deployment_id": stats["deployment_id"]})
        assert kept["status"] == "deployed" and kept["detail"]["reasons"] == []

        audit = await call(client, "query_audit_log", {"limit": 100})
        kinds = [e["kind"] for e in audit["entries"]]
        for kind in ("improvement_cycle_started", "generation_result", "deployment", "improvement_verdict",
                     "rollback", "improvement_cycle_finished"):  # fmt: skip
            assert kind in kinds, kinds
        requests = [e for e in audit["entries"] if e["kind"] == "generation_request"]
        assert {e["actor"] for e in requests} == {"local"} and len(requests) == 2
        again = await call(client, "get_improvement_cycle", {"cycle_id": cycle["cycle_id"]})
        assert [c["status"] for c in again["candidates"]] == ["kept", "rolled_back"]

    after = snapshot(settings.workspace)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    assert changed == {"components/slow_stats.py"}, "only the kept change remains"
    stages = {m.split(":", 1)[0] for m in progress}
    assert {"opportunities", "generate", "validate", "deploy", "measure", "rollback", "done"} <= stages, progress


async def test_dry_run_validates_and_writes_nothing(settings: Settings, scripted_llm: ScriptedLLM) -> None:
    scripted_llm.reply(FAST_STATS)
    server = build(settings, scripted_llm)
    async with connect(server) as client:
        before = snapshot(settings.workspace)
        await push_degradations(client, ("slow_stats", 180))
        cycle = await call(client, "trigger_improvement_cycle", {"dry_run": True, "max_improvements": 1})
        listed = await call(client, "list_deployments", {})
    (only,) = cycle["candidates"]
    assert cycle["dry_run"] is True and only["status"] == "dry_run" and only["deployment_id"] is None
    assert "+    ordered = sorted(values)" in only["diff"] and only["validation_passed"] is True
    assert listed["deployments"] == []
    assert snapshot(settings.workspace) == before


async def test_reviewed_change_waits_for_approval_then_is_monitored(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(FAST_STATS)
    server = build(settings, scripted_llm, improvement_review_components=["slow_stats"])
    async with connect(server) as client:
        before = snapshot(settings.workspace)
        await push_degradations(client, ("slow_stats", 180))
        cycle = await call(client, "trigger_improvement_cycle", {"max_improvements": 1})
        (held,) = cycle["candidates"]
        assert held["status"] == "pending_approval" and "improvement_review_components" in held["message"]
        assert snapshot(settings.workspace) == before
        pending = await call(client, "list_pending_approvals")
        assert [c["deployment_id"] for c in pending["changes"]] == [held["deployment_id"]]
        await call(client, "approve_change", {"change_id": held["deployment_id"], "approve": True, "reason": "ok"})
        found = await cycle_when(client, cycle["cycle_id"], first_candidate_not_in("pending_approval", "monitoring"))
    assert found["candidates"][0]["status"] == "kept", found
    assert found["candidates"][0]["figures"]["benchmark"]["change_percent"] < -10


async def test_regression_seen_in_telemetry_is_rolled_back(settings: Settings, scripted_llm: ScriptedLLM) -> None:
    scripted_llm.reply(FAST_STATS)
    clock = FakeClock()  # the monitoring period passes when the test says, however busy the machine
    server = build(settings, scripted_llm, clock, improvement_monitoring_seconds=3.0, improvement_wait_seconds=0)
    async with connect(server) as client:
        before = snapshot(settings.workspace)
        shutil.rmtree(settings.workspace / "benchmarks")  # telemetry is the only evidence
        await push_degradations(client, ("slow_stats", 180))
        cycle = await call(client, "trigger_improvement_cycle", {"max_improvements": 1})
        await wait_for_status(client, cycle["cycle_id"], "monitoring")
        worse = [
            {
                "name": "latency_ms",
                "value": 450.0 + i,
                "timestamp": clock() + 1.0 + i * 0.1,  # within the monitoring period
                "dimensions": {"Component": "slow_stats"},
            }
            for i in range(5)
        ]
        await call(client, "ingest_telemetry", {"tenant_id": "default", "metrics": worse})
        clock.advance(4.0)  # past the monitoring period: judged
        found = await wait_until_finished(client, cycle["cycle_id"])
    (only,) = found["candidates"]
    assert only["status"] == "rolled_back", only
    telemetry = only["figures"]["telemetry"]
    assert telemetry["after_points"] == 5 and telemetry["worse_percent"] > 10
    assert any("latency_ms is" in r and "worse since the deployment" in r for r in only["reasons"])
    assert (settings.workspace / "components/slow_stats.py").read_bytes() == before["components/slow_stats.py"]


@pytest.mark.parametrize("status", [429, 500])
async def test_llm_errors_are_reported_per_candidate(
    settings: Settings, scripted_llm: ScriptedLLM, status: int
) -> None:
    scripted_llm.fail(status)
    server = build(settings, scripted_llm)
    async with connect(server) as client:
        await push_degradations(client, ("slow_stats", 180))
        cycle = await call(client, "trigger_improvement_cycle", {"max_improvements": 1})
    (only,) = cycle["candidates"]
    assert cycle["status"] == "failed" and only["status"] == "error" and cycle["outcomes"] == {"error": 1}
    assert "the LLM could not be asked" in only["message"] and only["deployment_id"] is None


async def test_llm_timeout_is_reported(settings: Settings, scripted_llm: ScriptedLLM) -> None:
    scripted_llm.stall(3.0)
    server = build(settings, scripted_llm, llm_timeout_seconds=0.5)
    async with connect(server) as client:
        await push_degradations(client, ("slow_stats", 180))
        cycle = await call(client, "trigger_improvement_cycle", {"max_improvements": 1})
    (only,) = cycle["candidates"]
    assert only["status"] == "error" and "could not be asked" in only["message"]


async def test_unmatched_search_is_fed_back_and_a_later_round_succeeds(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(UNMATCHED)
    scripted_llm.reply(FAST_STATS)
    server = build(settings, scripted_llm)
    async with connect(server) as client:
        await push_degradations(client, ("slow_stats", 180))
        cycle = await call(client, "trigger_improvement_cycle", {"dry_run": True, "max_improvements": 1})
    (only,) = cycle["candidates"]
    assert only["status"] == "dry_run"
    retry = scripted_llm.requests[1]["messages"][-1]["content"]
    assert "the SEARCH text matches nothing in the file" in retry, retry


async def test_no_llm_and_no_opportunities(settings: Settings, scripted_llm: ScriptedLLM) -> None:
    server = build(settings, scripted_llm, llm_model=None)
    async with connect(server) as client:
        error = await call_error(client, "trigger_improvement_cycle", {})
    assert "SELF_BUILDING_LLM" in error
    server = build(settings, scripted_llm)
    async with connect(server) as client:
        cycle = await call(client, "trigger_improvement_cycle", {})
        missing = await call_error(client, "get_improvement_cycle", {"cycle_id": "nope"})
    assert cycle["status"] == "nothing_to_do" and cycle["candidates"] == [] and cycle["left_out"] == []
    assert "no opportunities" in cycle["message"] and "no improvement cycle has id 'nope'" in missing
    assert scripted_llm.requests == []


async def test_interrupted_cycle_is_reported_and_its_deployment_still_judged(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(FAST_STATS)
    server = build(settings, scripted_llm, improvement_monitoring_seconds=2.0, improvement_wait_seconds=0)
    async with connect(server) as client:
        await push_degradations(client, ("slow_stats", 180))
        cycle = await call(client, "trigger_improvement_cycle", {"max_improvements": 1})
        await wait_for_status(client, cycle["cycle_id"], "monitoring")
    # The server stopped mid-monitoring; a new process on the same data picks it up.
    restarted = build(settings, scripted_llm, improvement_monitoring_seconds=2.0)
    async with connect(restarted) as client:
        first = await call(client, "get_improvement_cycle", {"cycle_id": cycle["cycle_id"]})
        assert first["status"] == "interrupted" and "stopped" in (first["error"] or "")
        found = await cycle_when(client, cycle["cycle_id"], first_candidate_not_in("monitoring"))
    assert found["candidates"][0]["status"] == "kept", found


async def test_critical_alarm_starts_one_emergency_cycle_per_component(
    settings: Settings, scripted_llm: ScriptedLLM, aws: MotoServer
) -> None:
    cw = aws_client("cloudwatch")
    for name in ("shop-HighLatency", "shop-HighErrorRate", "shop-LowDisk"):
        cw.put_metric_alarm(
            AlarmName=name, MetricName="Latency", Namespace="Shop", Statistic="Average", Period=60,
            EvaluationPeriods=1, Threshold=100, ComparisonOperator="GreaterThanThreshold",
            Dimensions=[{"Name": "Component", "Value": "slow_stats"}],
        )  # fmt: skip
    scripted_llm.reply(FAST_STATS)
    watch = CloudWatchConfig(alarm_name_prefix="shop-", alarm_cache_seconds=0, poll_interval_seconds=0.2,
                             retry_attempts=2, retry_initial_seconds=0.01)  # fmt: skip
    server = build(settings, scripted_llm, enable_cloudwatch_streaming=True, cloudwatch=watch)
    async with connect(server) as client:

        async def alarms_read() -> bool:  # the first poll records the alarms' initial states (their change counts)
            sources = (await call(client, "get_telemetry_sources"))["sources"]
            return any(s["name"] == "cloudwatch.alarms" and s["last_success"] is not None for s in sources)

        await eventually(alarms_read, "a poll read the alarms", timeout=30)
        for name in ("shop-HighLatency", "shop-HighErrorRate", "shop-LowDisk"):
            cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test: p99 above 100 ms")
        started = await when_active_changes(  # the bound: a cycle within 30 s of the alarm
            client,
            lambda: call(client, "query_audit_log", {"kind": "improvement_cycle_started"}),
            lambda found: bool(found["entries"]),
            timeout=30,
        )
        cycle_id = started["entries"][0]["subject"]
        cycle = await wait_until_finished(client, cycle_id)
        skipped = await call(client, "query_audit_log", {"kind": "emergency_cycle_skipped"})
        started = await call(client, "query_audit_log", {"kind": "improvement_cycle_started"})
    assert cycle["trigger"] == "emergency" and len(started["entries"]) == 1
    (only,) = cycle["candidates"]
    assert (only["component"], only["metric"], only["status"]) == ("slow_stats", "Latency", "kept"), only
    assert "alarm shop-High" in only["goal"]
    assert len(skipped["entries"]) == 1 and "already working" in skipped["entries"][0]["detail"]["why"]


async def test_candidate_caught_mid_deploy_is_judged_after_the_restart(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    """What a stop mid-deploy leaves (recorded as deploying, the deploy finished by start-up recovery) is monitored
    and judged by the next server; one whose deployment never happened is reported interrupted."""
    shutil.copytree(DEMO, settings.workspace)
    data = settings.data_dir
    with stores_of(settings) as databases:  # the server's stores, on its backend
        cycles, versions, audit = databases.cycles(), databases.versions(), databases.audit(time.time)
        deployer = Deployer(settings.workspace, data, versions, audit)
        module = settings.workspace / "components/slow_stats.py"
        faster = module.read_text().replace("    ordered: list[float] = []\n", "    ordered = sorted(values)\n")
        faster = faster.split("    for value in values:")[0] + "    rank" + faster.split("    rank", 1)[1]
        done = deployer.deploy("default", "slow_stats", {"components/slow_stats.py": faster.encode()},
                               actor="improvement-cycle", reason="test", deployment_id="d" * 32)  # fmt: skip
        now = time.time()
        cycles.create(CycleRecord("c" * 32, "default", "local", "manual", "running", now, now, {}))
        for position, (component, deployment) in enumerate((("slow_stats", done.id), ("word_index", "e" * 32))):
            cycles.save_candidate(
                CandidateRecord("c" * 32, position, component, "latency_ms", "deploying", now, deployment,
                                detail={"direction": "up_is_bad", "test_paths": [f"tests/test_{component}.py"]})
            )  # fmt: skip
        for store in (cycles, versions, audit):
            store.close()
    server = build(settings, scripted_llm)
    async with connect(server) as client:
        found = await cycle_when(client, "c" * 32, first_candidate_not_in("deploying", "monitoring"))
    assert found["status"] == "interrupted"
    stats, words = found["candidates"]
    assert stats["status"] == "kept" and stats["figures"]["benchmark"]["change_percent"] < -10, stats
    assert words["status"] == "interrupted" and "never recorded" in words["message"]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_held_change_is_put_to_a_client_that_supports_elicitation(
    settings: Settings, scripted_llm: ScriptedLLM, mode: str
) -> None:
    """A legacy session can be asked (push elicitation): the user's approval deploys the change, which is then
    judged. A 2026-era session has no back channel: the change waits for approve_change."""
    scripted_llm.reply(FAST_STATS)
    server = build(settings, scripted_llm, improvement_review_components=["slow_stats"])
    asked: list[str] = []

    async def answer(context: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"approve": True, "reason": "looks right"})

    async with (
        Client(server, raise_exceptions=True, mode=mode, elicitation_callback=answer) as client,  # type: ignore[arg-type]
        connect(server) as watcher,  # a 2026-era client: it can listen for the changes of the cycle
    ):
        await push_degradations(client, ("slow_stats", 180))
        cycle = await call(client, "trigger_improvement_cycle", {"max_improvements": 1})
        found = await cycle_when(watcher, cycle["cycle_id"], first_candidate_not_in("monitoring"))
        decisions = await call(client, "query_audit_log", {"kind": "approval_decision"})
    status = found["candidates"][0]["status"]
    if mode == "legacy":
        assert len(asked) == 1 and "slow_stats" in asked[0] and "ordered = sorted(values)" in asked[0]
        assert status == "kept" and decisions["entries"][0]["detail"]["reason"] == "looks right"
    else:
        assert status == "pending_approval" and decisions["entries"] == []


async def test_autonomous_mode_runs_cycles_on_its_schedule(settings: Settings, scripted_llm: ScriptedLLM) -> None:
    scripted_llm.reply(FAST_STATS)
    scripted_llm.reply("Nothing to change.", times=20)  # later scheduled cycles find no matching edit
    clock = FakeClock()
    hour = 3600.0
    server = build(settings, scripted_llm, clock, enable_autonomous_improvements=True, autonomous_interval_hours=1)
    async with connect(server) as client:
        await push_degradations(client, ("slow_stats", 180))
        await clock.parked(AUTONOMOUS_TASK)
        assert (await call(client, "query_audit_log", {"kind": "improvement_cycle_started"}))["entries"] == []
        await clock.step(hour, AUTONOMOUS_TASK)  # the schedule's hour has passed: the cycle has started
        cycle_id = await first_cycle_id(client)
        await cycle_when(client, cycle_id, first_candidate_in("monitoring"))
        clock.advance(1.0)  # past the monitoring period (half a second), not the schedule's next hour: judged
        cycle = await cycle_when(client, cycle_id, finished)
        assert len((await call(client, "query_audit_log", {"kind": "improvement_cycle_started"}))["entries"]) == 1
    assert cycle["trigger"] == "autonomous" and cycle["candidates"][0]["status"] == "kept", cycle


async def first_cycle_id(client: Client) -> str:
    """The id of the one cycle started so far (once its start is audited)."""
    started = await when_active_changes(
        client,
        lambda: call(client, "query_audit_log", {"kind": "improvement_cycle_started"}),
        lambda found: bool(found["entries"]),
    )
    (entry,) = started["entries"]
    assert entry["actor"] == "autonomous" and entry["detail"]["trigger"] == "autonomous"
    return str(entry["subject"])


async def test_autonomous_mode_off_by_default(settings: Settings, scripted_llm: ScriptedLLM) -> None:
    clock = FakeClock()
    server = build(settings, scripted_llm, clock, autonomous_interval_hours=1)
    async with connect(server) as client:
        await push_degradations(client, ("slow_stats", 180))
        assert clock.sleepers(AUTONOMOUS_TASK) == 0  # no schedule waits for its hour
        clock.advance(10 * 3600)
        await anyio.wait_all_tasks_blocked()
        started = await call(client, "query_audit_log", {"kind": "improvement_cycle_started"})
    assert started["entries"] == [] and scripted_llm.requests == []


async def test_a_tenant_cycle_never_touches_the_shared_root(settings: Settings, scripted_llm: ScriptedLLM) -> None:
    """Tenant acme's opportunity for slow_stats finds no components/acme/slow_stats.py: the root module (the default
    tenant's) is not a fallback, so nothing is asked or written."""
    server = build(settings, scripted_llm)
    async with connect(server) as client:
        before = snapshot(settings.workspace)
        points = latency_points("slow_stats", 100, 180, time.time())
        await call(client, "ingest_telemetry", {"tenant_id": "acme", "metrics": points})
        cycle = await call(client, "trigger_improvement_cycle", {"tenant_id": "acme", "max_improvements": 1})
    (only,) = cycle["left_out"]
    assert cycle["status"] == "nothing_to_do" and cycle["candidates"] == []
    assert only["reason"] == "no_module" and "components/[acme/]slow_stats.py" in only["message"]
    assert scripted_llm.requests == [] and snapshot(settings.workspace) == before


async def test_a_module_changed_while_the_model_worked_is_not_overwritten(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.stall(2.0, FAST_STATS)
    server = build(settings, scripted_llm, improvement_wait_seconds=0)
    async with connect(server) as client:
        await push_degradations(client, ("slow_stats", 180))
        cycle = await call(client, "trigger_improvement_cycle", {"max_improvements": 1})
        await anyio.to_thread.run_sync(scripted_llm.wait_for_requests, 1)
        module = settings.workspace / "components/slow_stats.py"
        edited = module.read_bytes() + b"\n# edited by a person meanwhile\n"
        module.write_bytes(edited)
        found = await wait_until_finished(client, cycle["cycle_id"])
    (only,) = found["candidates"]
    assert only["status"] == "deploy_failed" and "changed since the change was generated" in only["message"], only
    assert module.read_bytes() == edited


async def test_active_improvements_resource_follows_a_cycle(settings: Settings, scripted_llm: ScriptedLLM) -> None:
    """A client that listens sees improvements://active and the resource list change while another client works."""
    scripted_llm.reply(FAST_STATS)
    server = build(settings, scripted_llm, improvement_review_components=["slow_stats"])
    events: list[Any] = []
    async with connect(server) as watcher, connect(server) as actor:
        await push_degradations(actor, ("slow_stats", 180))
        async with watcher.listen(resources_list_changed=True, resource_subscriptions=["improvements://active"]) as sub:
            cycle = await call(actor, "trigger_improvement_cycle", {"max_improvements": 1})
            (held,) = cycle["candidates"]
            assert held["status"] == "pending_approval"
            with anyio.fail_after(10):
                async for event in sub:
                    events.append(event)
                    names = {type(e).__name__ for e in events}
                    if {"ResourceUpdated", "ResourcesListChanged"} <= names:
                        break
        active = json.loads((await watcher.read_resource("improvements://active")).contents[0].text)  # type: ignore[union-attr]
        listed = {str(r.uri) for r in (await watcher.list_resources()).resources}
        await call(actor, "approve_change", {"change_id": held["deployment_id"], "approve": True, "reason": "ok"})
        await wait_until_finished(actor, cycle["cycle_id"])
        await cycle_when(actor, cycle["cycle_id"], first_candidate_not_in("monitoring"), timeout=30)
        after = json.loads((await watcher.read_resource("improvements://active")).contents[0].text)  # type: ignore[union-attr]
    assert {getattr(e, "uri", None) for e in events} >= {"improvements://active"}
    assert [c["cycle_id"] for c in active["cycles"]] == [cycle["cycle_id"]]
    assert active["cycles"][0]["candidates"][0]["status"] == "pending_approval"
    assert f"deployments://{held['deployment_id']}" in listed
    assert after == {"cycles": [], "has_more": False}


SERVER_MODULE = '''"""A stand-in for the server's own tools/performance.py (the workspace holds the server's source)."""


from collections.abc import Callable


def analyze_system_performance(read: Callable[[], float]) -> dict[str, float]:
    return {"cpu": read()}
'''
SERVER_FIX = """Report an unreadable host instead of crashing.

tools/performance.py
```python
<<<<<<< SEARCH
    return {"cpu": read()}
=======
    try:
        return {"cpu": read()}
    except OSError:
        return {}
>>>>>>> REPLACE
```

tests/test_performance.py
```python
from tools.performance import analyze_system_performance


def test_an_unreadable_host_gives_no_figures() -> None:
    def unreadable() -> float:
        raise OSError("the host's figures could not be read")

    assert analyze_system_performance(unreadable) == {} and analyze_system_performance(lambda: 1.0) == {"cpu": 1.0}
```
"""  # a change is accepted only with tests that run its lines (the module had none)


async def test_self_analysis_findings_lead_a_cycle_to_the_servers_own_code(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    """A tool that keeps crashing becomes a self-analysis insight whose component is the server's own module; with the
    server's source as the workspace, a cycle improves that module and holds the change for review."""
    scripted_llm.reply(SERVER_FIX)
    host = FakeHostSource()
    server = build(settings, scripted_llm, host=host, self_analysis_interval_hours=0.0005)
    (settings.workspace / "tools").mkdir()
    (settings.workspace / "tools" / "performance.py").write_text(SERVER_MODULE, encoding="utf-8")
    component = "tools.performance.analyze_system_performance"
    async with connect(server) as client:
        host.broken = True
        for _ in range(6):
            crashed = CRASH.fullmatch(await call_error(client, "analyze_system_performance", {}))
            assert crashed is not None and crashed.group(1) == "analyze_system_performance"

        async def found() -> bool:
            insights = await call(client, "query_telemetry_insights", {"tenant_id": "default"})
            return any(o["component"] == component for o in insights["opportunities"])

        await eventually(found, f"an opportunity for {component}", timeout=30, every=0.2)
        # A change of the server's own code is a high-risk change: the caller has to accept that risk.
        cycle = await call(client, "trigger_improvement_cycle", {"max_improvements": 1, "risk_tolerance": "high"})
        (candidate,) = cycle["candidates"]
        assert candidate["component"] == component
        assert candidate["status"] == "pending_approval", (candidate["status"], candidate["message"])
        assert "part of the server itself" in candidate["message"]
        assert (settings.workspace / "tools" / "performance.py").read_text(encoding="utf-8") == SERVER_MODULE
        change = {"change_id": candidate["deployment_id"], "approve": True, "reason": "reviewed"}
        await call(client, "approve_change", change)
        deployed = await call(client, "get_deployment", {"deployment_id": candidate["deployment_id"]})
    assert deployed["paths"] == ["tests/test_performance.py", "tools/performance.py"]
    assert deployed["status"] == "deployed"
    assert "except OSError" in (settings.workspace / "tools" / "performance.py").read_text(encoding="utf-8")


async def test_pushed_telemetry_cannot_aim_a_cycle_at_the_servers_own_code(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    """A dotted component from pushed telemetry (an ingest key chooses its dimensions) is never looked up as one of
    the server's modules: only the server's self-analysis can name those."""
    scripted_llm.reply(SERVER_FIX)
    server = build(settings, scripted_llm)
    (settings.workspace / "tools").mkdir()
    (settings.workspace / "tools" / "performance.py").write_text(SERVER_MODULE, encoding="utf-8")
    async with connect(server) as client:
        await push_degradations(client, ("tools.performance.analyze_system_performance", 180))
        cycle = await call(client, "trigger_improvement_cycle", {"max_improvements": 1, "risk_tolerance": "high"})
    (left_out,) = cycle["left_out"]
    assert cycle["candidates"] == [] and left_out["reason"] == "no_module"
    assert "no module for component" in left_out["message"]
    assert (settings.workspace / "tools" / "performance.py").read_text(encoding="utf-8") == SERVER_MODULE
    assert scripted_llm.requests == []
