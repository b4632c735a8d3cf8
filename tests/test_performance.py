"""analyze_system_performance and get_top_processes through the MCP client."""

from __future__ import annotations

import os

import pytest

from telemetry.host.gpu import NvmlGpuSource
from tests.conftest import ServerFactory, call, call_error, connect
from tests.fakes import FakeHostSource, FakeNvml

pytestmark = pytest.mark.anyio


async def test_no_bottleneck_on_a_quiet_host(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        report = await call(client, "analyze_system_performance")
    assert report["bottlenecks"] == []
    assert report["summary"].startswith("No bottleneck: CPU 10% average, memory 30%, fullest disk 40%")
    assert report["samples"] == 1


async def test_bottlenecks_named_with_evidence_and_suggestions(
    make_server: ServerFactory, host: FakeHostSource
) -> None:
    host.set(cpu=97, memory=95, disk=99, iowait=45, load1=6.0)
    nvml = FakeNvml(devices=1)
    nvml.temperature[0] = 92.0
    nvml.throttle[0] = 0x20
    async with connect(make_server(gpu=NvmlGpuSource(lambda: nvml))) as client:
        report = await call(client, "analyze_system_performance")
    by_resource = {b["resource"]: b for b in report["bottlenecks"]}
    assert set(by_resource) == {"cpu", "memory", "disk", "io", "gpu"}
    cpu = by_resource["cpu"]
    assert cpu["evidence"]["cpu_percent_avg"] == 97.0 and cpu["evidence"]["load_1m"] == 6.0
    assert cpu["severity"] == "critical" and cpu["remediation_template"] == "cpu_high"
    assert by_resource["disk"]["evidence"]["mountpoint"] == "/" and by_resource["disk"]["severity"] == "critical"
    assert by_resource["memory"]["remediation_template"] == "memory_high"
    assert by_resource["io"]["evidence"]["iowait_percent_avg"] == 45.0 and by_resource["io"]["severity"] == "high"
    assert "sw_thermal_slowdown" in by_resource["gpu"]["summary"] and "hot" in by_resource["gpu"]["summary"]
    assert all(b["suggestions"] for b in report["bottlenecks"])
    severities = [b["severity"] for b in report["bottlenecks"]]
    order = ["critical", "high", "medium", "low"]
    assert severities == sorted(severities, key=order.index)  # worst first
    assert report["summary"].startswith("Bottlenecks: ")


async def test_top_processes_real(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        by_memory = await call(client, "get_top_processes", {"sort_by": "memory", "limit": 5})
        by_cpu = await call(client, "get_top_processes", {})
    rows = by_memory["processes"]
    assert by_memory["sort_by"] == "memory" and 1 <= len(rows) <= 5
    assert [r["rss_bytes"] for r in rows] == sorted((r["rss_bytes"] for r in rows), reverse=True)
    assert len(by_cpu["processes"]) <= 10 and by_cpu["sort_by"] == "cpu"
    pids = {r["pid"] for r in by_cpu["processes"]} | {r["pid"] for r in rows}
    assert all(isinstance(p, int) and p > 0 for p in pids)
    assert os.getpid() in {r["pid"] for r in (await _all(make_server))}


async def _all(make_server: ServerFactory) -> list[dict[str, object]]:
    async with connect(make_server()) as client:
        return (await call(client, "get_top_processes", {"sort_by": "memory", "limit": 100}))["processes"]


async def test_top_processes_bad_input(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        assert "limit" in await call_error(client, "get_top_processes", {"limit": 0})
        assert "limit" in await call_error(client, "get_top_processes", {"limit": 101})
        error = await call_error(client, "get_top_processes", {"sort_by": "disk"})
        assert "sort_by" in error and "'cpu' or 'memory'" in error
        error = await call_error(client, "get_top_processes", {"limit": "lots"})
        assert "limit" in error and "valid integer" in error
        assert (await call(client, "get_top_processes", {"limit": 1}))["processes"]
