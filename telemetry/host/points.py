"""Turns the sampler's snapshots into metric points (source ``local``) for the telemetry store."""

from __future__ import annotations

from telemetry.host.models import Snapshot
from telemetry.store.records import MetricPoint

LOCAL_SOURCE = "local"


def snapshot_points(snapshot: Snapshot, tenant: str) -> list[MetricPoint]:
    """The host and GPU figures of one snapshot as metric points."""
    host = snapshot.host
    ts = host.timestamp
    hostname = {"host": host.hostname}

    def point(name: str, value: float, unit: str, **dims: str) -> MetricPoint:
        return MetricPoint(tenant, name, ts, float(value), {**hostname, **dims}, unit, LOCAL_SOURCE)

    points = [
        point("host.cpu.percent", host.cpu.percent, "Percent"),
        point("host.memory.percent", host.memory.percent, "Percent"),
        point("host.swap.percent", host.memory.swap_percent, "Percent"),
    ]
    if host.cpu.load_average is not None:
        points.append(point("host.load.1m", host.cpu.load_average[0], "Count"))
    if host.cpu.iowait_percent is not None:
        points.append(point("host.cpu.iowait_percent", host.cpu.iowait_percent, "Percent"))
    points += [point("host.disk.percent", d.percent, "Percent", mount=d.mountpoint) for d in host.disks]
    rates = host.io_rates
    if rates is not None:
        points += [
            point("host.net.sent_bytes_per_s", rates.net_sent_bytes_per_s, "Bytes/Second"),
            point("host.net.recv_bytes_per_s", rates.net_recv_bytes_per_s, "Bytes/Second"),
            point("host.disk.read_bytes_per_s", rates.disk_read_bytes_per_s, "Bytes/Second"),
            point("host.disk.write_bytes_per_s", rates.disk_write_bytes_per_s, "Bytes/Second"),
        ]
    for dev in snapshot.gpu.devices:
        gpu = str(dev.index)
        points.append(point("gpu.memory.percent", dev.memory_percent, "Percent", gpu=gpu))
        if dev.utilization_percent is not None:
            points.append(point("gpu.utilization.percent", dev.utilization_percent, "Percent", gpu=gpu))
        if dev.temperature_c is not None:
            points.append(point("gpu.temperature.c", dev.temperature_c, "None", gpu=gpu))
        if dev.power_draw_watts is not None:
            points.append(point("gpu.power.watts", dev.power_draw_watts, "None", gpu=gpu))
    return points
