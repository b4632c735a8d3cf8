"""``GET /metrics`` on the real HTTP server: Prometheus text that the official parser reads, counters that move with
real tool calls and ingestion, and the API-key protection (or a loopback scraper let in by the setting)."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import mcp_as
from tests.polling import eventually
from tests.test_tenants import ACME_KEY, ADMIN_KEY, TENANTS_TOML
from tests.test_transports import KEY, start_http

pytestmark = pytest.mark.slow


def scrape(base: str, key: str | None = KEY) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx2.get(f"{base}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.mark.anyio
async def test_counters_move_with_real_tool_calls(http_server: str) -> None:
    before = scrape(http_server)
    assert ("mcp_tool_calls_total", (("outcome", "ok"), ("tool", "get_system_status"))) not in before
    points = [{"name": "shop.latency_ms", "value": float(i)} for i in range(3)]
    async with mcp_as(http_server, KEY) as client:
        await client.call_tool("get_system_status", {})
        await client.call_tool("get_system_status", {})
        bad = await client.call_tool("get_deployment", {"deployment_id": "no-such-deployment"})
        await client.call_tool("ingest_telemetry", {"tenant_id": "acme", "metrics": points})
        assert bad.is_error
        middle = scrape(http_server)
        await client.call_tool("get_system_status", {})
    after = scrape(http_server)

    ok = ("mcp_tool_calls_total", (("outcome", "ok"), ("tool", "get_system_status")))
    assert middle[ok] == 2 and after[ok] == 3
    assert middle[("mcp_tool_calls_total", (("outcome", "error"), ("tool", "get_deployment")))] == 1
    assert after[("mcp_tool_call_duration_seconds_count", (("tool", "get_system_status"),))] == 3
    assert after[("mcp_tool_call_duration_seconds_sum", (("tool", "get_system_status"),))] > 0
    ingested = ("telemetry_items_ingested_total", (("kind", "metric"), ("source", "agent"), ("tenant", "acme")))
    assert after[ingested] == 3
    assert after[("improvement_cycles_started_total", ())] == 0
    assert after[("codegen_requests_total", ())] == 0
    assert after[("improvement_deployments_total", (("outcome", "rolled_back"),))] == 0

    def drained(figures: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> bool:
        # the first batch started the analysis process (on the detectors' thread, after the ingest was answered)
        started = figures[("analysis_process_starts_total", ())] == 1
        return started and figures[("anomaly_detection_pending_batches", ())] == 0

    await eventually(lambda: drained(scrape(http_server)), "the analysis process judged the batches")
    assert scrape(http_server)[("anomaly_detection_failed_batches_total", ())] == 0


def test_metrics_need_the_key(http_server: str) -> None:
    assert httpx2.get(f"{http_server}/metrics", timeout=10).status_code == 401
    wrong = httpx2.get(f"{http_server}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401 and "Bearer" in wrong.headers["www-authenticate"]
    assert KEY not in wrong.text


def test_loopback_scraper_can_be_let_in_without_a_key(tmp_path: Path) -> None:
    proc, base = start_http(tmp_path, SELF_BUILDING_MCP_API_KEY=KEY, SELF_BUILDING_METRICS_OPEN_ON_LOOPBACK="true")
    try:
        samples = scrape(base, key=None)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert ("improvement_cycles_started_total", ()) in samples


def test_a_key_limited_to_some_tenants_may_not_read_metrics(tmp_path: Path) -> None:
    (tmp_path / "tenants.toml").write_text(TENANTS_TOML, encoding="utf-8")
    env = {"SELF_BUILDING_TENANTS_FILE": str(tmp_path / "tenants.toml"), "SELF_BUILDING_MCP_API_KEY": ADMIN_KEY}
    proc, base = start_http(tmp_path, BETA_READER_KEY="beta-reader-key-0123456789abcdef", **env)
    try:
        limited = httpx2.get(f"{base}/metrics", headers={"Authorization": f"Bearer {ACME_KEY}"}, timeout=10)
        admin = httpx2.get(f"{base}/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert limited.status_code == 403 and "every tenant" in limited.text
    assert admin.status_code == 200


@pytest.mark.anyio
async def test_monitoring_events_and_breaker_state_are_scraped(tmp_path: Path) -> None:
    """A memory threshold every host exceeds raises a monitoring event; CloudWatch at an address where nothing
    listens opens the alarms breaker. Both show in the scrape."""
    unreachable = (
        '{"alarm_names": ["HighLatency"], "endpoint_url": "http://127.0.0.1:9", "poll_interval_seconds": 0.1,'
        ' "breaker_failure_threshold": 1, "breaker_cooldown_seconds": 3600, "retry_attempts": 1}'
    )
    proc, base = start_http(
        tmp_path, SELF_BUILDING_MCP_API_KEY=KEY, SELF_BUILDING_ENABLE_CLOUDWATCH_STREAMING="true",
        SELF_BUILDING_CLOUDWATCH=unreachable, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
    )  # fmt: skip
    try:
        async with mcp_as(base, KEY) as client:
            await client.call_tool("set_monitoring_thresholds", {"memory_percent": 1, "consecutive_samples": 1})
            await client.call_tool("start_monitoring", {"interval_seconds": 0.2})
            raised: list[float] = []

            def counted() -> bool:
                samples = scrape(base)
                raised[:] = [v for (name, labels), v in samples.items()
                             if name == "monitoring_events_total" and ("type", "memory_high") in labels]  # fmt: skip
                breaker = samples.get(("cloudwatch_breaker_state", (("source", "cloudwatch.alarms"),)))
                return bool(raised) and breaker == 2

            await eventually(counted, "the memory event counted and the alarms' breaker open", 30, every=0.2)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert raised == [1.0], "counted once when raised, not on every update"
