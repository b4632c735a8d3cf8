"""Threshold monitoring through the MCP client, with exact figures from a fake host source."""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from server.settings import Settings
from telemetry.host.gpu import NvmlGpuSource
from telemetry.host.sampler import Sampler
from telemetry.monitoring.events import MonitoringEvent, SqliteEventStore
from telemetry.monitoring.monitor import LOOP_TASK, Monitor
from telemetry.monitoring.thresholds import Thresholds
from tests.backend import on_postgresql
from tests.conftest import ServerFactory, call, call_error, connect
from tests.fake_clock import FakeClock
from tests.fakes import FakeHostSource, FakeNvml, NoGpu

pytestmark = pytest.mark.anyio
FAST = 0.1


@pytest.fixture
def host(clock: FakeClock) -> FakeHostSource:
    """Samples stamped with the server's (fake) time, so that events age as the clock is moved."""
    return FakeHostSource(clock=clock)


@pytest.fixture
def make_server(make_server: ServerFactory, clock: FakeClock) -> ServerFactory:
    """The server runs on the fake clock: its monitoring loop samples once per step the test makes."""
    return functools.partial(make_server, clock=clock)


async def run_samples(
    client: Client, host: FakeHostSource, clock: FakeClock, *cpu: float, interval: float = FAST, **fixed: float
) -> list[dict[str, Any]]:
    """Queue figures, let monitoring evaluate each of them (one clock step each), return all events newest first."""
    await clock.parked(LOOP_TASK)  # the loop is between two samples
    host.queue(*cpu, **fixed)
    for _ in cpu:
        await clock.step(interval, LOOP_TASK)  # returns once that sample is evaluated, stored and told
    return (await call(client, "query_monitoring_events", {"limit": 500}))["events"]


async def test_condition_must_hold_for_consecutive_samples(
    make_server: ServerFactory, host: FakeHostSource, clock: FakeClock
) -> None:
    async with connect(make_server()) as client:
        await call(client, "set_monitoring_thresholds", {"consecutive_samples": 3, "cpu_spike_points": 100})
        await call(client, "start_monitoring", {"interval_seconds": FAST})
        # Two breaches, a dip, two breaches: never three in a row, so nothing is raised.
        events = await run_samples(client, host, clock, 95, 95, 50, 95, 95, 50)
        assert [e for e in events if e["event_type"] == "cpu_high"] == []
        events = await run_samples(client, host, clock, 95, 95, 95)
        cpu = [e for e in events if e["event_type"] == "cpu_high"]
        assert len(cpu) == 1
        assert cpu[0]["active"] is True and cpu[0]["value"] == 95 and cpu[0]["threshold"] == 85
        assert cpu[0]["severity"] == "high"  # 10 of the 15 points between the limit and 100


async def test_ongoing_condition_updates_one_event_and_clears_with_hysteresis(
    make_server: ServerFactory, host: FakeHostSource, clock: FakeClock
) -> None:
    async with connect(make_server()) as client:
        await call(
            client,
            "set_monitoring_thresholds",
            {"consecutive_samples": 2, "clear_samples": 2, "hysteresis_points": 5, "memory_percent": 90},
        )
        await call(client, "start_monitoring", {"interval_seconds": FAST})
        host.set(memory=92)
        events = await run_samples(client, host, clock, 10, 10, 10, 10, 10, memory=93)
        memory = [e for e in events if e["event_type"] == "memory_high"]
        assert len(memory) == 1, memory  # five samples of one condition: one event, not five
        assert memory[0]["occurrences"] >= 4
        # 87 is below the threshold but inside the hysteresis band (85..90): still active.
        events = await run_samples(client, host, clock, 10, 10, 10, memory=87)
        memory = [e for e in events if e["event_type"] == "memory_high"]
        assert len(memory) == 1 and memory[0]["active"] is True
        # Below 85 for two samples: cleared.
        events = await run_samples(client, host, clock, 10, 10, memory=80)
        memory = [e for e in events if e["event_type"] == "memory_high"]
        assert len(memory) == 1
        assert memory[0]["active"] is False and memory[0]["resolved_at"] is not None
        assert memory[0]["peak"] == 93
        # A new breach afterwards is a new event.
        events = await run_samples(client, host, clock, 10, 10, memory=96)
        assert len([e for e in events if e["event_type"] == "memory_high"]) == 2


async def test_cpu_spike_and_disk_full(make_server: ServerFactory, host: FakeHostSource, clock: FakeClock) -> None:
    host.mounts = ("/", "/data")
    async with connect(make_server()) as client:
        await call(client, "set_monitoring_thresholds", {"consecutive_samples": 1})
        await call(client, "start_monitoring", {"interval_seconds": FAST})
        events = await run_samples(client, host, clock, 10, 40, 41, disk=90)
        spikes = [e for e in events if e["event_type"] == "cpu_spike"]
        assert len(spikes) == 1 and spikes[0]["value"] == pytest.approx(30) and spikes[0]["severity"] == "low"
        assert spikes[0]["active"] is False  # a spike is a moment, not a state
        disks = sorted(e["resource"] for e in events if e["event_type"] == "disk_full")
        assert disks == ["/", "/data"]
        # A second spike within five minutes folds into the same event.
        events = await run_samples(client, host, clock, 10, 80)
        spikes = [e for e in events if e["event_type"] == "cpu_spike"]
        assert len(spikes) == 1 and spikes[0]["occurrences"] == 2 and spikes[0]["severity"] == "medium"


async def test_gpu_conditions_from_fake_nvml(
    make_server: ServerFactory, host: FakeHostSource, clock: FakeClock
) -> None:
    nvml = FakeNvml(devices=2)
    async with connect(make_server(gpu=NvmlGpuSource(lambda: nvml))) as client:
        await call(client, "set_monitoring_thresholds", {"consecutive_samples": 1, "gpu_temperature_c": 80})
        await call(client, "start_monitoring", {"interval_seconds": FAST})
        nvml.temperature[1] = 96.0
        nvml.memory_used[0] = 79 * 2**30
        events = await run_samples(client, host, clock, 10, 10)
        found = {(e["event_type"], e["resource"], e["severity"]) for e in events}
        assert ("gpu_temperature_high", "gpu1", "critical") in found
        assert ("gpu_memory_high", "gpu0", "high") in found  # 98.75% is 3.75 of the 5 points above 95
        assert not any(e["resource"] == "gpu0" and e["event_type"] == "gpu_temperature_high" for e in events)


async def test_events_persist_across_restart_and_open_ones_continue(
    make_server: ServerFactory, host: FakeHostSource, clock: FakeClock, settings: Settings
) -> None:
    async with connect(make_server()) as client:
        await call(client, "set_monitoring_thresholds", {"consecutive_samples": 1, "disk_percent": 80})
        await call(client, "start_monitoring", {"interval_seconds": FAST})
        events = await run_samples(client, host, clock, 10, disk=90)
        first = [e for e in events if e["event_type"] == "disk_full"]
        assert len(first) == 1
    if not on_postgresql(settings):
        with sqlite3.connect(settings.events_db_path) as db:  # the store is SQLite in WAL mode
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # A new process on the same data directory: events and thresholds are still there.
    async with connect(make_server()) as client:
        status = await call(client, "get_monitoring_status")
        assert status["state"]["thresholds"]["disk_percent"] == 80
        assert status["state"]["active_events"] == 1
        assert [e["id"] for e in status["recent_events"]] == [first[0]["id"]]
        await call(client, "start_monitoring", {"interval_seconds": FAST})
        events = await run_samples(client, host, clock, 10, 10, disk=91)
        disk = [e for e in events if e["event_type"] == "disk_full"]
        assert len(disk) == 1 and disk[0]["id"] == first[0]["id"] and disk[0]["value"] == 91


async def test_retention_prunes_by_count(make_server: ServerFactory, host: FakeHostSource, clock: FakeClock) -> None:
    async with connect(make_server(events_max_count=10)) as client:
        await call(client, "set_monitoring_thresholds", {"consecutive_samples": 1, "cpu_spike_points": 5})
        await call(client, "start_monitoring", {"interval_seconds": FAST})
        # Alternating figures: every other sample spikes; with coalescing they fold, so use memory flaps instead.
        for _ in range(12):
            await run_samples(client, host, clock, 10, 10, memory=95)
            await run_samples(client, host, clock, 10, 10, memory=20)
        page = await call(client, "query_monitoring_events", {"limit": 500})
        assert page["total"] == 10 and len(page["events"]) == 10 and page["has_more"] is False


async def test_query_filters_limit_and_has_more(
    make_server: ServerFactory, host: FakeHostSource, clock: FakeClock
) -> None:
    host.mounts = ("/a", "/b", "/c")
    async with connect(make_server()) as client:
        await call(client, "set_monitoring_thresholds", {"consecutive_samples": 1})
        await call(client, "start_monitoring", {"interval_seconds": FAST})
        await run_samples(client, host, clock, 95, disk=99)
        page = await call(client, "query_monitoring_events", {"event_type": "disk_full", "limit": 2})
        assert page["total"] == 3 and len(page["events"]) == 2 and page["has_more"] is True
        assert all(e["event_type"] == "disk_full" and e["severity"] == "critical" for e in page["events"])
        newest_first = [e["last_seen"] for e in page["events"]]
        assert newest_first == sorted(newest_first, reverse=True)
        page = await call(client, "query_monitoring_events", {"severity": "critical", "since": "1h"})
        assert page["total"] == 3
        page = await call(client, "query_monitoring_events", {"since": "2999-01-01T00:00:00Z"})
        assert page == {"events": [], "total": 0, "has_more": False}
        error = await call_error(client, "query_monitoring_events", {"since": "yesterday-ish"})
        assert "since='yesterday-ish' is not a time" in error
        cleared = await call(client, "clear_monitoring_events")
        assert cleared["deleted"] >= 4
        assert (await call(client, "query_monitoring_events"))["total"] == 0


async def test_start_stop_and_status(make_server: ServerFactory, host: FakeHostSource, clock: FakeClock) -> None:
    async with connect(make_server()) as client:
        status = await call(client, "get_monitoring_status")
        assert status["state"]["running"] is False and status["state"]["interval_seconds"] == 30
        started = await call(client, "start_monitoring", {"interval_seconds": 0.5, "thresholds": {"cpu_percent": 70}})
        assert started["state"]["running"] is True
        assert started["state"]["interval_seconds"] == 0.5
        assert started["state"]["thresholds"]["cpu_percent"] == 70
        assert started["health"]["verdict"] == "healthy"
        stopped = await call(client, "stop_monitoring")
        assert stopped["was_running"] is True and stopped["state"]["running"] is False
        before = host.samples  # final: stop() returns once the loop has ended, a sample in flight included
        assert clock.sleepers(LOOP_TASK) == 0  # no loop waits for its next sample
        clock.advance(10)  # twenty intervals
        await anyio.wait_all_tasks_blocked()
        assert host.samples == before  # the loop really stopped: nothing sampled since
        assert (await call(client, "stop_monitoring"))["was_running"] is False


async def test_autostart_from_settings(make_server: ServerFactory, host: FakeHostSource, clock: FakeClock) -> None:
    async with connect(make_server(monitoring_autostart=True, monitoring_interval_seconds=FAST)) as client:
        await clock.parked(LOOP_TASK)  # started with the server, with no call: sampled once, waits for the next
        await clock.step(FAST, LOOP_TASK)
        assert host.samples >= 2
        status = await call(client, "get_monitoring_status")
        assert status["state"]["running"] is True and status["state"]["samples"] >= 2


async def test_threshold_validation(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        error = await call_error(client, "set_monitoring_thresholds", {"cpu_percent": 150})
        assert "invalid thresholds" in error and "cpu_percent" in error and "100" in error
        error = await call_error(client, "set_monitoring_thresholds", {"consecutive_samples": 0})
        assert "consecutive_samples" in error
        error = await call_error(client, "start_monitoring", {"interval_seconds": 0})
        assert "interval_seconds" in error
        error = await call_error(client, "start_monitoring", {"thresholds": {"cpu": 50}})
        assert "cpu" in error and "Extra inputs are not permitted" in error
        # Nothing changed, and the server still serves.
        status = await call(client, "get_monitoring_status")
        assert status["state"]["thresholds"]["cpu_percent"] == 85
        assert status["state"]["running"] is False


async def test_events_resource_lists_events(make_server: ServerFactory, host: FakeHostSource, clock: FakeClock) -> None:
    async with connect(make_server()) as client:
        await call(client, "set_monitoring_thresholds", {"consecutive_samples": 1})
        await call(client, "start_monitoring", {"interval_seconds": FAST})
        await run_samples(client, host, clock, 99)
        contents = (await client.read_resource("monitoring://events")).contents
        text = contents[0].text  # type: ignore[union-attr]
        assert '"event_type": "cpu_high"' in text and '"has_more": false' in text


async def test_retention_prunes_resolved_events_by_age(
    make_server: ServerFactory, host: FakeHostSource, clock: FakeClock
) -> None:
    async with connect(make_server(events_max_age_days=0.5 / 86400)) as client:  # half a second
        await call(client, "set_monitoring_thresholds", {"consecutive_samples": 1, "clear_samples": 1})
        await call(client, "start_monitoring", {"interval_seconds": FAST})
        events = await run_samples(client, host, clock, 10, 10, memory=95)
        events = await run_samples(client, host, clock, 10, memory=20)
        old = [e for e in events if e["event_type"] == "memory_high"]
        assert len(old) == 1 and old[0]["active"] is False
        clock.advance(0.6)  # the resolved event is older than the half second kept
        events = await run_samples(client, host, clock, 10, disk=99)  # a change triggers pruning
    assert [e["event_type"] for e in events] == ["disk_full"]  # the resolved, aged event is gone; the open one stays


async def test_a_listener_still_at_work_does_not_hold_up_clear(tmp_path: Path, host: FakeHostSource) -> None:
    """Listeners are told after the monitor's lock is released: clearing does not wait for one still at work."""
    store = SqliteEventStore(tmp_path / "events.sqlite3")
    monitor = Monitor(Sampler(host, NoGpu()), store)
    monitor.thresholds = Thresholds(consecutive_samples=1)
    busy, release = anyio.Event(), anyio.Event()

    async def slow_listener(events: list[MonitoringEvent]) -> None:
        if not busy.is_set():  # the first batch only: as a send to a client that reads nothing would
            busy.set()
            await release.wait()

    monitor.add_listener(slow_listener)
    host.set(memory=99)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor.tick)
            with anyio.fail_after(10):
                await busy.wait()
            with anyio.fail_after(10):
                deleted = await monitor.clear()
            release.set()
    finally:
        store.close()
    assert deleted == 1 and monitor.active == {}
