"""query_telemetry_insights judges each series on the history it has, and puts a service's degradation above the
server's own host figures (issue 12, points 5 and 10). Telemetry is pushed with ingest_telemetry through the client;
the server's own earlier samples are written into its store before it starts, as a previous run would have left them.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from server.databases import Databases
from server.settings import Settings
from telemetry.host.points import LOCAL_SOURCE
from telemetry.store.records import MetricPoint
from tests.backend import store_of
from tests.conftest import ServerFactory, call, connect

pytestmark = pytest.mark.anyio
STEP = 30  # seconds between points
POINTS = 120  # one hour of history
SERVICE = "checkout.latency_ms"


def wave(i: int) -> float:
    return 5 * math.sin(i / 7)  # deterministic noise


def stepped(low: float, high: float, at: int) -> list[float]:
    """An hour of points at ``low`` that steps to ``high`` from point ``at`` on."""
    return [(low if i < at else high) + wave(i) for i in range(POINTS)]


def stamps(now: float) -> list[float]:
    return [now - (POINTS - i) * STEP for i in range(POINTS)]


def service_points(now: float) -> list[dict[str, Any]]:
    """The issue's latency step, 120 → 310 ms, two points before the newest quarter of the hour begins."""
    values = stepped(120, 310, at=POINTS * 3 // 4 + 2)
    dims = {"Component": "checkout"}
    return [
        {"name": SERVICE, "value": v, "timestamp": t, "dimensions": dims}
        for t, v in zip(stamps(now), values, strict=True)
    ]


async def test_an_hour_of_history_is_judged_alike_in_a_day_window_and_an_hour_window(
    make_server: ServerFactory,
) -> None:
    """Before: the day window's baseline was its first 18 hours, which hold no point, so the step was a "trend"."""
    now = time.time()
    async with connect(make_server()) as client:
        pushed = await call(client, "ingest_telemetry", {"tenant_id": "shop", "metrics": service_points(now)})
        assert pushed["rejected"] == 0
        day = await call(client, "query_telemetry_insights", {"tenant_id": "shop"})
        hour = await call(client, "query_telemetry_insights", {"tenant_id": "shop", "time_range_hours": 1})
    ids = set()
    for result in (day, hour):
        found = [i for i in result["insights"] if i["metric"] == SERVICE and i["kind"] != "anomaly"]
        assert [(i["kind"], i["severity"]) for i in found] == [("degradation", "critical")], found
        evidence = found[0]["evidence"]
        assert 110 < evidence["baseline_mean"] < 130 and evidence["change_percent"] > 100
        # The baseline is the hour's first three quarters, the recent part its last quarter, in either window.
        assert evidence["baseline_from"] <= now - 58 * 60 and now - 16 * 60 <= evidence["recent_from"] <= now - 14 * 60
        ids.add(found[0]["id"])
    assert len(ids) == 1


def seed_own_samples(settings: Settings, now: float) -> None:
    """The server's own host samples of the last hour: its disk read rate swings by +227 % (activity, not health)
    and its CPU steps from 10 % to 40 % in the newest quarter, a critical rise of its own; both newer than the
    service's points, so newest-first would put them on top."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with store_of(settings, Databases.telemetry) as store:
        later = [t + STEP / 2 for t in stamps(now)]
        host = {"host": "fakehost"}
        rates = [1e6 * (1 + 0.02 * wave(i)) if i < POINTS * 3 // 4 else 3.27e6 for i in range(POINTS)]
        cpu = [(10 if i < POINTS * 3 // 4 else 40) + wave(i) / 5 for i in range(POINTS)]
        store.add_metrics(
            [MetricPoint("default", "host.disk.read_bytes_per_s", t, v, host, "Bytes/Second", LOCAL_SOURCE)
             for t, v in zip(later, rates, strict=True)]
            + [MetricPoint("default", "host.cpu.percent", t, v, host, "Percent", LOCAL_SOURCE)
               for t, v in zip(later, cpu, strict=True)]
        )  # fmt: skip


@pytest.mark.parametrize("window", [None, 1])
async def test_a_services_degradation_ranks_above_the_servers_own_host_figures(
    make_server: ServerFactory, settings: Settings, window: int | None
) -> None:
    now = time.time()
    seed_own_samples(settings, now)
    args: dict[str, Any] = {"tenant_id": "default"} | ({} if window is None else {"time_range_hours": window})
    async with connect(make_server()) as client:
        pushed = await call(client, "ingest_telemetry", {"tenant_id": "default", "metrics": service_points(now)})
        assert pushed["rejected"] == 0
        result = await call(client, "query_telemetry_insights", args)
    ranked = [(i["metric"], i["kind"], i["severity"], i.get("source")) for i in result["insights"]]
    service = ranked.index((SERVICE, "degradation", "critical", "agent"))
    own_cpu = ranked.index(("host.cpu.percent", "degradation", "critical", LOCAL_SOURCE))
    assert ranked[0][0] == SERVICE and service < own_cpu, ranked
    # A rate of disk reads measures how busy the host is, not how well it does: no degradation, no trend.
    assert [r for r in ranked if r[0] == "host.disk.read_bytes_per_s" and r[1] in ("degradation", "trend")] == []


async def test_a_shift_within_a_noisy_baselines_swings_is_not_critical(make_server: ServerFactory) -> None:
    """Severity takes the lesser of the shift's size against the baseline's level (+180 % here) and against its
    spread: 3.6 standard deviations of a baseline that swings between 50 and 150 is medium; the same +180 % out of
    a steady baseline is critical."""
    now = time.time()
    quarter = POINTS * 3 // 4
    noisy = [(50.0 if i % 2 else 150.0) if i < quarter else 280.0 for i in range(POINTS)]
    steady = [100.0 + wave(i) / 5 if i < quarter else 280.0 for i in range(POINTS)]
    metrics = [
        {"name": name, "value": v, "timestamp": t, "dimensions": {"Component": name.split(".")[0]}}
        for name, values in (("queue.wait_ms", noisy), ("db.query_latency_ms", steady))
        for t, v in zip(stamps(now), values, strict=True)
    ]
    async with connect(make_server()) as client:
        assert (await call(client, "ingest_telemetry", {"tenant_id": "t", "metrics": metrics}))["rejected"] == 0
        result = await call(
            client, "query_telemetry_insights", {"tenant_id": "t", "kinds": ["degradation"], "time_range_hours": 1}
        )
    found = {i["metric"]: i for i in result["insights"]}
    assert found["queue.wait_ms"]["severity"] == "medium" and 3 < found["queue.wait_ms"]["evidence"]["z_score"] < 5
    assert found["db.query_latency_ms"]["severity"] == "critical"
    assert found["queue.wait_ms"]["evidence"]["change_percent"] == pytest.approx(180, abs=5)
    assert [i["metric"] for i in result["insights"]] == ["db.query_latency_ms", "queue.wait_ms"]
