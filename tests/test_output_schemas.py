"""Every tool's structured result matches the output schema it declares in ``tools/list``, also with edge data.

Calls go through the official client, which validates each result against the listed schema (a mismatch raises
``Invalid structured content``), and each result is validated again here with ``jsonschema``. The tools come from
``tools/list``: a new tool is called too, and fails this test until it is given arguments or a stated reason below.

Edge data is pushed with ``ingest_telemetry`` first: series that are all zeros and then step up (no percentage
change exists against a zero baseline), constant series, the largest and smallest finite floats, unicode in every
free-text field, and items at their maximum sizes; property-based (hypothesis) for the telemetry-reading tools.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from mcp import Client
from mcp.types import Tool

from generators.deploy import Deployer, SqliteAuditLog, SqliteVersionStore
from generators.improvement import SqliteCycleStore
from generators.improvement.models import CandidateRecord, CycleRecord
from server.app import create_server
from server.settings import Settings
from tests.fakes import FakeHostSource, NoGpu

UNICODE = "Zürich ☃ 東京 \u202eltr \U0001f4a5 ∑ğ"
EDGE_TENANT = "edge"
HUGE, TINY = 1e108, 5e-324  # the largest value ingest takes (CloudWatch's range), the smallest float
MAX_ITEMS = 10_000
# Tools that cannot give a result without an outside service: what they must answer instead, and why.
EXPECTED_ERRORS = {
    "get_alarm_states": ("CloudWatch streaming is off", "CloudWatch is not configured in tests (no AWS)"),
    "generate_component": ("LLM", "no LLM is configured in tests"),
    "trigger_improvement_cycle": ("LLM", "no LLM is configured in tests"),
}


@dataclass
class Served:
    portal: BlockingPortal
    client: Client
    tools: dict[str, Tool]
    ids: dict[str, str]
    now: float

    def call(self, tool: str, args: dict[str, Any]) -> tuple[bool, Any]:
        """Call through the official client (which validates the result); validate it again against the listed
        schema. Returns whether it failed, and the error text or the structured result."""
        result = self.portal.call(self.client.call_tool, tool, args)
        if result.is_error:
            return True, result.content[0].text  # type: ignore[union-attr]
        schema = self.tools[tool].output_schema
        assert schema is not None, f"{tool} declares no output schema"
        Draft202012Validator.check_schema(schema)
        errors = sorted(Draft202012Validator(schema).iter_errors(result.structured_content), key=str)
        assert not errors, f"{tool}: {errors[0]}"
        return False, result.structured_content


def seed(settings: Settings) -> dict[str, str]:
    """Deployments (one deployed with text, unicode and binary files, one held for approval) and an improvement
    cycle, written before the server opens the same stores."""
    versions = SqliteVersionStore(settings.data_dir / "versions.sqlite3")
    audit = SqliteAuditLog(settings.data_dir / "audit.sqlite3")
    target = settings.workspace / "components/acme/a.py"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"def total(xs):\n    return sum(xs)\n")
    try:
        deployer = Deployer(settings.workspace, settings.data_dir, versions, audit, use_git=False)
        files = {
            "components/acme/a.py": f"def total(xs):  # {UNICODE}\n    return sum(x for x in xs)\n".encode(),
            "components/acme/blob.bin": bytes(range(256)) * 4,
            "components/acme/big.py": ("X = 1\n" * 20_000).encode(),
        }
        deployed = deployer.deploy("acme", "a", files, actor="cycle", reason=UNICODE)
        pending = deployer.propose(
            "acme", "b", {"components/acme/b.py": b"B = 2\n"}, actor="cycle", reason="shared", hold_for_approval=True
        )
    finally:
        versions.close()
        audit.close()
    cycles = SqliteCycleStore(settings.data_dir / "cycles.sqlite3")
    now = time.time()
    cycle = CycleRecord("cycle-edge", "acme", "local", "manual", "completed", now - 60, now, {"dry_run": True}, now)
    cycle.candidates = [
        CandidateRecord(
            "cycle-edge", 0, f"acme.{UNICODE}", "api.latency_ms", "kept", now, deployed.id, now + 3600,
            {"goal": UNICODE, "impact_score": 0.0, "risk": "low", "diff": "-a\n+b\n" * 10, "validation_passed": True,
             "figures": {"before": HUGE, "after": TINY, "note": UNICODE}, "reasons": [UNICODE]},
        ),
        CandidateRecord("cycle-edge", 1, "acme.c", "api.errors", "validation_failed", now),
    ]  # fmt: skip
    try:
        cycles.create(cycle)
        for candidate in cycle.candidates:
            cycles.save_candidate(candidate)
    finally:
        cycles.close()
    return {"deployed": deployed.id, "pending": pending.id, "cycle": cycle.id}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the module, driven from synchronous tests (hypothesis calls them once per example)."""
    tmp = tmp_path_factory.mktemp("schemas")
    settings = Settings(data_dir=tmp / "data", workspace=tmp / "ws", status_max_age_seconds=3600)
    settings.data_dir.mkdir(parents=True)
    ids = seed(settings)

    @asynccontextmanager
    async def running() -> Any:
        server = create_server(settings, host_source=FakeHostSource(), gpu_source=NoGpu())
        async with Client(server) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            yield client, tools

    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running()) as (client, tools):
        yield Served(portal, client, tools, ids, time.time())


def series(name: str, values: list[float], now: float, **dims: str) -> list[dict[str, Any]]:
    """Points spread over the last 23 hours, oldest first (the newest quarter is the recent window)."""
    step = 23 * 3600 / max(1, len(values))
    start = now - 23 * 3600
    return [{"name": name, "value": v, "timestamp": start + i * step, "dimensions": dims} for i, v in enumerate(values)]


def edge_batch(now: float) -> dict[str, Any]:
    zeros_then_step = [0.0] * 30 + [0.5] * 10  # what host.cpu.iowait_percent did: a zero baseline, then a step
    metrics = [
        *series("host.cpu.iowait_percent", zeros_then_step, now, Component="host"),
        *series("api.latency_ms", [0.0] * 40, now, Component="api"),
        *series("api.errors", [HUGE, -HUGE] * 20, now, Component=UNICODE),
        *series("api.throughput_rps", [TINY] * 30 + [HUGE] * 10, now, Component="api"),
        *series(
            "x" * 255,
            [1.0, 2.0, 3.0] * 10,
            now,
            **{(f"k{i}" + "é" * 128)[:128]: (UNICODE * 20)[:256] for i in range(30)},
        ),
    ]  # name, dimension names and values, and dimensions per point at their maximum
    logs = [
        {"message": (f"{UNICODE} failed after {i} ms " + "é" * 32_768)[:32_768], "level": "ERROR", "component": UNICODE}
        for i in range(5)
    ]
    events = [{"type": "deploy", "detail": {UNICODE: HUGE, "nested": {"deep": [TINY, UNICODE]}}, "id": UNICODE}]
    return {"tenant_id": EDGE_TENANT, "metrics": metrics, "logs": logs, "events": events}


def arguments(served: Served) -> dict[str, dict[str, Any]]:
    """Arguments per tool (others are called with none)."""
    ids = served.ids
    return {
        "start_monitoring": {"interval_seconds": 0.1, "thresholds": {"cpu_percent": 100, "hysteresis_points": 0}},
        "query_monitoring_events": {"since": "1d", "limit": 500},
        "set_monitoring_thresholds": {"cpu_percent": 0.001, "gpu_temperature_c": 150, "consecutive_samples": 100},
        "get_top_processes": {"sort_by": "memory", "limit": 100},
        "generate_script": {"issue_type": "disk_full", "platform": "bash"},
        "save_script": {"issue_type": "cpu_high", "platform": "powershell"},
        "ingest_telemetry": edge_batch(served.now),
        "query_telemetry_insights": {"tenant_id": EDGE_TENANT, "limit": 100},
        "query_error_patterns": {"tenant_id": EDGE_TENANT, "limit": 200},
        "list_deployments": {"tenant_id": "acme", "limit": 200},
        "get_deployment": {"deployment_id": ids["deployed"]},
        "rollback_deployment": {"deployment_id": ids["deployed"], "reason": UNICODE},
        "approve_change": {"change_id": ids["pending"], "approve": False, "reason": UNICODE},
        "query_audit_log": {"since": 0, "limit": 500},
        "generate_component": {"component_type": "utility", "requirements": UNICODE},
        "get_improvement_cycle": {"cycle_id": ids["cycle"]},
        "analyze_self": {"lookback_hours": 0.01},
    }


def test_every_tool_gives_a_result_its_output_schema_allows(served: Served) -> None:
    table = arguments(served)
    assert set(table) | set(EXPECTED_ERRORS) <= set(served.tools), "the table names a tool the server lacks"
    # Edge data first, so every tool after it reads it; monitoring stops and the self-analysis runs after the rest.
    last = ["stop_monitoring", "analyze_self"]
    order = ["ingest_telemetry", *sorted(set(served.tools) - {"ingest_telemetry", *last}), *last]
    results = {}
    for tool in order:
        failed, results[tool] = served.call(tool, table.get(tool, {}))
        if tool in EXPECTED_ERRORS:
            assert failed and EXPECTED_ERRORS[tool][0] in results[tool], (tool, results[tool])
        else:
            assert not failed, f"{tool} failed: {results[tool]}"
    assert results["ingest_telemetry"]["rejected"] == 0, results["ingest_telemetry"]["rejections"]
    assert results["stop_monitoring"]["was_running"] is True
    assert results["analyze_self"]["calls_analysed"] >= len(order) - 1


def test_a_worsening_from_a_zero_baseline_has_no_percentage(served: Served) -> None:
    """The case that broke the official client: ``change_percent`` against a baseline of zeros."""
    points = series("disk.iowait_percent", [0.0] * 30 + [2.0] * 10, served.now)
    failed, stored = served.call("ingest_telemetry", {"tenant_id": "zeros", "metrics": points})
    assert not failed and stored["accepted"]["metrics"] == 40, stored
    failed, answer = served.call("query_telemetry_insights", {"tenant_id": "zeros"})
    assert not failed, answer
    (insight,) = [i for i in answer["insights"] if i["kind"] == "degradation"]
    assert insight["evidence"]["change_percent"] is None
    assert insight["evidence"]["baseline_mean"] == 0 and insight["evidence"]["recent_mean"] == 2
    assert "from a baseline of zero" in insight["summary"]


# Hypothesis: any telemetry a tenant can push leaves the telemetry-reading tools' results within their schemas.
FLOATS = st.one_of(
    st.floats(min_value=-HUGE, max_value=HUGE),
    st.sampled_from([0.0, -0.0, HUGE, -HUGE, TINY, -TINY, 1e-300, 1e100]),
)
# The simplest example hypothesis tries first is the case that broke the official client: a zero baseline, a step.
STEPS = st.one_of(st.sampled_from([0.5, -0.5, HUGE, -HUGE, TINY]), st.floats(min_value=TINY, max_value=HUGE))
NAMES = st.one_of(  # names whose direction is known (a rise or a fall is bad), some neutral, some made up
    st.sampled_from(["api.latency_ms", "queue.wait", "api.errors", "api.throughput_rps", "cpu", "temp_c", "x" * 255]),
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,40}", fullmatch=True),
)
TEXT = st.text(min_size=1, max_size=64)
SHAPES = st.sampled_from(["zeros_then_step", "step", "constant", "random", "alternating_extremes"])


@st.composite
def telemetry(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    now = time.time()
    metrics: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 4))):
        name, shape, count = draw(NAMES), draw(SHAPES), draw(st.integers(10, 60))
        level, step = draw(FLOATS), draw(STEPS)
        calm = count * 4 // 5  # the step lands inside the newest quarter, after a baseline
        values = {
            "zeros_then_step": [0.0] * calm + [step] * (count - calm),
            "step": [level] * calm + [level + step] * (count - calm),
            "constant": [level] * count,
            "random": draw(st.lists(FLOATS, min_size=count, max_size=count)),
            "alternating_extremes": [HUGE if i % 2 else -HUGE for i in range(count)],
        }[shape]
        dims = draw(st.dictionaries(st.sampled_from(["Component", "host", UNICODE]), TEXT, max_size=3))
        metrics += series(name, values, now, **dims)
    logs = [
        {"message": message, "level": level, "component": component}
        for message, level, component in draw(
            st.lists(st.tuples(st.text(min_size=1, max_size=300), st.sampled_from(["INFO", "ERROR"]), TEXT), max_size=8)
        )
    ]
    events = [
        {"type": "note", "detail": {t: t, "figure": f}} for t, f in draw(st.lists(st.tuples(TEXT, FLOATS), max_size=3))
    ]
    return metrics, logs, events


_tenants = itertools.count()


@pytest.mark.filterwarnings("ignore:Generating overly large repr")  # a failing example's data is long, by design
@hypothesis_settings(
    max_examples=20,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(pushed=telemetry())
def test_telemetry_tools_stay_within_their_schemas_for_any_data(
    served: Served, pushed: tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]
) -> None:
    tenant = f"h{next(_tenants)}"
    metrics, logs, events = pushed
    failed, _ = served.call(
        "ingest_telemetry", {"tenant_id": tenant, "metrics": metrics, "logs": logs, "events": events}
    )
    assert not failed
    for tool, args in [
        ("query_telemetry_insights", {"tenant_id": tenant, "limit": 100}),
        ("query_telemetry_insights", {"tenant_id": tenant, "metric_name": metrics[0]["name"] if metrics else "x"}),
        ("query_error_patterns", {"tenant_id": tenant, "limit": 200}),
    ]:
        failed, answer = served.call(tool, args)
        assert not failed, (tool, answer)


def test_the_largest_batch_is_taken_and_read_back(served: Served) -> None:
    """``MAX_ITEMS`` items in one call (the documented maximum), then the tools that read them."""
    points = series("bulk.latency_ms", [float(i % 97) for i in range(MAX_ITEMS)], served.now, Component="bulk")
    failed, stored = served.call("ingest_telemetry", {"tenant_id": "bulk", "metrics": points})
    assert not failed and stored["accepted"]["metrics"] == MAX_ITEMS, stored
    for tool in ("query_telemetry_insights", "query_error_patterns"):
        failed, answer = served.call(tool, {"tenant_id": "bulk"})
        assert not failed, answer
