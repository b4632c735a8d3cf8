"""get_system_status, system://status, the GPU paths and the verdict, through the MCP client."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from telemetry.host.gpu import NvmlGpuSource
from telemetry.monitoring.monitor import LOOP_TASK
from tests.conftest import ServerFactory, call, connect
from tests.fake_clock import FakeClock
from tests.fakes import GIB, FakeHostSource, FakeNvml

pytestmark = pytest.mark.anyio


async def test_status_reports_every_host_figure(make_server: ServerFactory, host: FakeHostSource) -> None:
    host.set(cpu=42.5, memory=55.0, disk=60.0, load1=1.25)
    async with connect(make_server()) as client:
        status = await call(client, "get_system_status")
        second = await call(client, "get_system_status")  # served from the same sample
    assert host.samples == 1
    assert second["host"]["timestamp"] == status["host"]["timestamp"]
    assert status["verdict"] == "healthy" and status["reasons"] == []
    h = status["host"]
    assert h["hostname"] == "fakehost" and h["uptime_seconds"] == pytest.approx(3600, abs=5)
    assert h["cpu"] == {
        "percent": 42.5,
        "per_core": [42.5, 42.5],
        "logical_cores": 2,
        "load_average": [1.25, 1.25, 1.25],
        "iowait_percent": 1.0,
    }
    assert h["memory"]["percent"] == 55.0 and h["memory"]["total_bytes"] == 16 * GIB
    assert h["memory"]["swap_total_bytes"] == 4 * GIB
    assert [(d["mountpoint"], d["percent"]) for d in h["disks"]] == [("/", 60.0)]
    assert h["io_rates"] is None  # one sample: no rate yet
    assert status["gpu"] == {"available": False, "reason": "no GPU in tests", "driver_version": None, "devices": []}
    assert status["monitoring"]["running"] is False
    assert status["server"]["version"]
    assert status["server"]["calls_by_tool"] == {}  # a call is counted once it has returned
    assert second["server"]["calls_by_tool"] == {"get_system_status": 1}


async def test_stale_snapshot_is_refreshed_and_io_rates_appear(
    make_server: ServerFactory, host: FakeHostSource
) -> None:
    async with connect(make_server(status_max_age_seconds=0)) as client:
        await call(client, "get_system_status")
        status = await call(client, "get_system_status")
    assert host.samples == 2
    rates = status["host"]["io_rates"]
    assert rates is not None and rates["window_seconds"] > 0
    # The fake adds 1 MB to the sent counter per sample, 4 MB to disk writes.
    assert rates["disk_write_bytes_per_s"] == pytest.approx(4 * rates["net_sent_bytes_per_s"], rel=0.01)


async def test_verdicts_with_reasons(make_server: ServerFactory, host: FakeHostSource) -> None:
    async with connect(make_server(status_max_age_seconds=0)) as client:
        host.set(cpu=95)
        status = await call(client, "get_system_status")
        assert status["verdict"] == "degraded"
        assert status["reasons"] == ["CPU at 95.0% (limit 85%)"]
        host.set(cpu=10, disk=99)
        status = await call(client, "get_system_status")
        assert status["verdict"] == "critical"
        assert status["reasons"] == ["disk / at 99.0% (critical at 98%)"]


async def test_gpu_absent_when_driver_missing(make_server: ServerFactory) -> None:
    nvml = FakeNvml(fail_init="NVML Shared Library Not Found")
    async with connect(make_server(gpu=NvmlGpuSource(lambda: nvml))) as client:
        status = await call(client, "get_system_status")
    assert status["gpu"]["available"] is False
    assert status["gpu"]["reason"] == "NVIDIA driver not available: NVML Shared Library Not Found"


async def test_gpu_absent_when_library_missing(make_server: ServerFactory) -> None:
    def loader() -> object:
        raise ImportError("No module named 'pynvml'")

    async with connect(make_server(gpu=NvmlGpuSource(loader))) as client:
        status = await call(client, "get_system_status")
    assert status["gpu"]["available"] is False and "install nvidia-ml-py" in status["gpu"]["reason"]


async def test_gpu_devices_from_fake_nvml(make_server: ServerFactory) -> None:
    nvml = FakeNvml(devices=2)
    nvml.throttle[1] = 0x4 | 0x40
    nvml.temperature[1] = 99.0
    async with connect(make_server(gpu=NvmlGpuSource(lambda: nvml))) as client:
        status = await call(client, "get_system_status")
    gpu = status["gpu"]
    assert gpu["available"] is True and gpu["driver_version"] == "550.54.15" and len(gpu["devices"]) == 2
    dev0 = gpu["devices"][0]
    assert dev0 == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-0000-0",
        "utilization_percent": 75.0,
        "memory_utilization_percent": 40.0,
        "memory_used_bytes": 4 * GIB,
        "memory_total_bytes": 80 * GIB,
        "memory_percent": 5.0,
        "temperature_c": 60.0,
        "power_draw_watts": 350.0,
        "power_limit_watts": 700.0,
        "clock_graphics_mhz": 1755,
        "clock_memory_mhz": 2619,
        "clock_sm_max_mhz": 1980,
        "throttle_reasons": [],
        "ecc_errors_corrected": 3,
        "ecc_errors_uncorrected": 0,
        "processes": [{"pid": 1, "name": dev0["processes"][0]["name"], "used_memory_bytes": GIB}],
    }
    assert gpu["devices"][1]["throttle_reasons"] == ["sw_power_cap", "hw_thermal_slowdown"]
    assert gpu["devices"][1]["processes"] == []
    assert status["verdict"] == "critical"
    assert "GPU 1 at 99°C (critical at 95°C)" in status["reasons"]
    assert "GPU 1 throttled by hw_thermal_slowdown" in status["reasons"]


async def test_gpu_without_ecc_support_reports_none(make_server: ServerFactory) -> None:
    nvml = FakeNvml(devices=1)
    nvml.ecc_supported = False
    async with connect(make_server(gpu=NvmlGpuSource(lambda: nvml))) as client:
        status = await call(client, "get_system_status")
    dev = status["gpu"]["devices"][0]
    assert dev["ecc_errors_corrected"] is None and dev["ecc_errors_uncorrected"] is None


async def test_status_resource_matches_tool(make_server: ServerFactory, host: FakeHostSource) -> None:
    async with connect(make_server()) as client:
        tool = await call(client, "get_system_status")
        contents = (await client.read_resource("system://status")).contents
    resource = json.loads(contents[0].text)  # type: ignore[union-attr]
    assert contents[0].mime_type == "application/json"
    assert resource["host"] == {**tool["host"], "age_seconds": resource["host"]["age_seconds"]}
    assert resource["server"]["calls_by_tool"] == {"get_system_status": 1}


async def test_failures_are_counted(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        bad = await client.call_tool("get_top_processes", {"limit": 0})
        assert bad.is_error
        status = await call(client, "get_system_status")
    assert status["server"]["failures_by_tool"] == {"get_top_processes": 1}
    assert status["server"]["tool_failures"] == 1 and status["server"]["tool_calls"] == 1


async def test_smoke_with_real_psutil(settings: object, tmp_path: object) -> None:
    """One run against the real host: the figures are plausible, whatever machine this is."""
    from server.app import create_server
    from server.settings import Settings

    assert isinstance(settings, Settings)
    async with connect(create_server(settings)) as client:
        status = await call(client, "get_system_status")
    host = status["host"]
    assert 0 <= host["cpu"]["percent"] <= 100 and host["cpu"]["logical_cores"] >= 1
    assert len(host["cpu"]["per_core"]) == host["cpu"]["logical_cores"]
    assert host["memory"]["total_bytes"] > 0 and 0 < host["memory"]["percent"] <= 100
    assert host["disks"] and all(0 <= d["percent"] <= 100 for d in host["disks"])
    assert host["uptime_seconds"] > 0
    assert status["verdict"] in ("healthy", "degraded", "critical")
    assert isinstance(status["gpu"]["available"], bool)


async def test_monitoring_state_in_status(make_server: ServerFactory, host: FakeHostSource, clock: FakeClock) -> None:
    async with connect(make_server(clock=clock, status_max_age_seconds=0)) as client:
        await call(client, "set_monitoring_thresholds", {"consecutive_samples": 1})
        await call(client, "start_monitoring", {"interval_seconds": 0.1})
        host.set(memory=99)
        await clock.parked(LOOP_TASK)
        for _ in range(2):
            await clock.step(0.1, LOOP_TASK)
        status = await call(client, "get_system_status")
    assert status["monitoring"]["running"] is True and status["monitoring"]["active_events"] == 1
    assert status["verdict"] == "critical"
    assert any(r.startswith("open event #") and "Memory usage at 99.0%" in r for r in status["reasons"])


async def test_a_condition_both_the_live_check_and_an_open_event_flag_is_one_reason(
    make_server: ServerFactory, host: FakeHostSource, clock: FakeClock
) -> None:
    """Issue 12 point 4: the header read "open event #2: CPU usage at 94.2% (limit 85%); CPU at 94.2% (limit 85%)"."""
    async with connect(make_server(clock=clock, status_max_age_seconds=0)) as client:
        host.set(cpu=94.2, disk=90)
        await call(client, "set_monitoring_thresholds", {"consecutive_samples": 1})
        await call(client, "start_monitoring", {"interval_seconds": 0.1})
        await clock.parked(LOOP_TASK)  # the first sample is evaluated
        status = await call(client, "get_system_status")
        assert status["monitoring"]["active_events"] == 2
        monitoring = await call(client, "get_monitoring_status")
        await call(client, "stop_monitoring")
    assert status["verdict"] == "degraded" and status["note"] is None
    assert sorted(status["reasons"]) == [
        "open event #1: CPU usage at 94.2% (limit 85%)",
        "open event #2: Disk usage on / at 90.0% (limit 85%)",
    ]  # each condition once, with the event that tracks it
    assert sorted(monitoring["health"]["reasons"]) == sorted(status["reasons"])


async def test_events_left_open_when_monitoring_stops_do_not_hold_the_verdict(
    make_server: ServerFactory, host: FakeHostSource, clock: FakeClock
) -> None:
    """Issue 12 point 3: after Stop, an open memory_high event kept the verdict "degraded" with nothing left that
    could clear it. The verdict now rests on the live figures and a note says what is known."""
    async with connect(make_server(clock=clock, status_max_age_seconds=0)) as client:
        host.set(memory=95)
        await call(client, "set_monitoring_thresholds", {"consecutive_samples": 1})
        await call(client, "start_monitoring", {"interval_seconds": 0.1})
        await clock.parked(LOOP_TASK)  # the first sample is evaluated
        running = await call(client, "get_system_status")
        assert running["monitoring"]["active_events"] == 1
        stopped = await call(client, "stop_monitoring")
        still_high = await call(client, "get_system_status")  # the live figure still says so: one live reason
        host.set(memory=40)
        recovered = await call(client, "get_system_status")
        monitoring = await call(client, "get_monitoring_status")
        events = await call(client, "query_monitoring_events", {"event_type": "memory_high"})
    assert running["verdict"] == "degraded" and running["reasons"] == [
        "open event #1: Memory usage at 95.0% (limit 90%)"
    ]
    assert stopped["was_running"] is True and stopped["state"]["running"] is False
    assert still_high["verdict"] == "degraded" and still_high["reasons"] == ["memory at 95.0% (limit 90%)"]
    assert recovered["verdict"] == "healthy" and recovered["reasons"] == []
    last = stopped["state"]["last_sample_at"]
    at = datetime.fromtimestamp(last, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    assert recovered["note"] == (
        f"monitoring is stopped: 1 event open at its last sample ({at}) is not being updated and not counted in the "
        "verdict, which rests on the live figures (#1 memory_high (memory)); start monitoring to re-check them"
    )
    assert recovered["monitoring"]["active_events"] == 1  # still open in the store: nothing has cleared it
    assert monitoring["health"] == {"verdict": "healthy", "reasons": [], "note": recovered["note"]}
    assert [e["active"] for e in events["events"]] == [True]
