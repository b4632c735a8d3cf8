"""Bottleneck analysis over the sampler's recent snapshots, with evidence and concrete suggestions."""

from __future__ import annotations

from statistics import fmean
from typing import Literal

from pydantic import BaseModel, Field

from telemetry.host.models import ProcessInfo, Snapshot
from telemetry.monitoring.thresholds import Thresholds

Resource = Literal["cpu", "memory", "disk", "io", "gpu"]
IOWAIT_PERCENT = 20.0
BENIGN_THROTTLE = frozenset({"gpu_idle", "applications_clocks_setting"})
_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}


class Bottleneck(BaseModel):
    resource: Resource = Field(description="The limiting resource.")
    severity: Literal["low", "medium", "high", "critical"] = Field(description="How much it limits.")
    summary: str = Field(description="One line for a human.")
    evidence: dict[str, float | str] = Field(description="The figures that show it.")
    suggestions: list[str] = Field(description="Next steps, most useful first.")
    remediation_template: str | None = Field(None, description="A remediation template for it (list_script_templates).")


class PerformanceReport(BaseModel):
    window_seconds: float = Field(description="Seconds the averages cover.")
    samples: int = Field(description="Snapshots used.")
    bottlenecks: list[Bottleneck] = Field(description="Worst first.")
    summary: str = Field(description="One paragraph for a human.")
    top_processes: list[ProcessInfo] = Field(description="Busiest processes.")


def _grade(value: float, limit: float) -> Literal["low", "medium", "high", "critical"]:
    share = (value - limit) / max(100.0 - limit, 1e-9)
    return "critical" if share >= 0.8 else "high" if share >= 0.4 else "medium" if share >= 0 else "low"


def _cpu(history: list[Snapshot], limits: Thresholds, top: list[ProcessInfo]) -> list[Bottleneck]:
    cpu = fmean(s.host.cpu.percent for s in history)
    latest = history[-1].host.cpu
    load1 = latest.load_average[0] if latest.load_average else None
    if cpu <= limits.cpu_percent and (load1 is None or load1 <= 1.5 * latest.logical_cores):
        return []
    hogs = ", ".join(f"{p.name} (pid {p.pid}, {p.cpu_percent:.0f}%)" for p in top[:3]) or "none measured"
    evidence: dict[str, float | str] = {"cpu_percent_avg": round(cpu, 1), "logical_cores": latest.logical_cores}
    if load1 is not None:
        evidence["load_1m"] = load1
    evidence["top_processes"] = hogs
    return [
        Bottleneck(
            resource="cpu",
            severity=_grade(max(cpu, limits.cpu_percent), limits.cpu_percent),
            summary=f"CPU saturated: {cpu:.0f}% average over {len(history)} samples",
            evidence=evidence,
            suggestions=[
                f"Inspect the busiest processes: {hogs}",
                "Lower the priority of batch work (renice) or move it off-peak",
                "Add cores or spread the load over more hosts if the demand is legitimate",
            ],
            remediation_template="cpu_high",
        )
    ]


def _memory(history: list[Snapshot], limits: Thresholds) -> list[Bottleneck]:
    mem = history[-1].host.memory
    if mem.percent <= limits.memory_percent and mem.swap_percent <= 50:
        return []
    return [
        Bottleneck(
            resource="memory",
            severity=_grade(max(mem.percent, limits.memory_percent), limits.memory_percent),
            summary=f"Memory pressure: {mem.percent:.0f}% used, swap {mem.swap_percent:.0f}%",
            evidence={
                "memory_percent": mem.percent,
                "available_bytes": mem.available_bytes,
                "swap_percent": mem.swap_percent,
            },
            suggestions=[
                "Find the largest resident processes (get_top_processes sort_by=memory)",
                "Restart leaking services; cap them with memory limits (systemd MemoryMax, cgroups)",
                "Add memory or reduce caches and worker counts",
            ],
            remediation_template="memory_high",
        )
    ]


def _disks(history: list[Snapshot], limits: Thresholds) -> list[Bottleneck]:
    return [
        Bottleneck(
            resource="disk",
            severity=_grade(disk.percent, limits.disk_percent),
            summary=f"Disk {disk.mountpoint} is {disk.percent:.0f}% full",
            evidence={"mountpoint": disk.mountpoint, "percent": disk.percent, "free_bytes": disk.free_bytes},
            suggestions=[
                f"Find the largest directories under {disk.mountpoint} (du -xh --max-depth=2)",
                "Rotate and compress logs; clear package caches and old build artefacts",
                "Grow the volume or move data elsewhere",
            ],
            remediation_template="disk_full",
        )
        for disk in history[-1].host.disks
        if disk.percent > limits.disk_percent
    ]


def _io(history: list[Snapshot]) -> list[Bottleneck]:
    iowaits = [s.host.cpu.iowait_percent for s in history if s.host.cpu.iowait_percent is not None]
    if not iowaits or fmean(iowaits) <= IOWAIT_PERCENT:
        return []
    wait = fmean(iowaits)
    evidence: dict[str, float | str] = {"iowait_percent_avg": round(wait, 1)}
    rates = history[-1].host.io_rates
    if rates is not None:
        evidence["disk_read_bytes_per_s"] = rates.disk_read_bytes_per_s
        evidence["disk_write_bytes_per_s"] = rates.disk_write_bytes_per_s
    return [
        Bottleneck(
            resource="io",
            severity="high" if wait > 2 * IOWAIT_PERCENT else "medium",
            summary=f"CPUs wait on I/O {wait:.0f}% of the time",
            evidence=evidence,
            suggestions=[
                "Find the processes doing the most I/O (iotop -o)",
                "Check disk health and latency (disk_health template, iostat -x 1)",
                "Move hot data to faster storage or add caching",
            ],
            remediation_template="disk_health",
        )
    ]


def _gpus(history: list[Snapshot], limits: Thresholds) -> list[Bottleneck]:
    found: list[Bottleneck] = []
    for dev in history[-1].gpu.devices:
        hot = dev.temperature_c is not None and dev.temperature_c > limits.gpu_temperature_c
        full = dev.memory_percent > limits.gpu_memory_percent
        throttled = [r for r in dev.throttle_reasons if r not in BENIGN_THROTTLE]
        if not (hot or full or throttled):
            continue
        causes = [c for c in ("hot" if hot else "", "memory full" if full else "") if c] + throttled
        found.append(
            Bottleneck(
                resource="gpu",
                severity="high" if hot or throttled else "medium",
                summary=f"GPU {dev.index} ({dev.name}) is limited: {', '.join(causes)}",
                evidence={
                    "temperature_c": dev.temperature_c if dev.temperature_c is not None else "n/a",
                    "memory_percent": dev.memory_percent,
                    "utilization_percent": dev.utilization_percent if dev.utilization_percent is not None else "n/a",
                    "throttle_reasons": ", ".join(dev.throttle_reasons) or "none",
                },
                suggestions=[
                    "Check cooling and airflow; look at the fan and the chassis temperature",
                    "Reduce batch sizes or move jobs to another GPU if memory is full",
                    "Look at nvidia-smi -q -d PERFORMANCE for the throttle cause",
                ],
            )
        )
    return found


def analyze(history: list[Snapshot], thresholds: Thresholds, top: list[ProcessInfo]) -> PerformanceReport:
    """Find what limits the host, from averages over ``history`` (oldest first, at least one snapshot)."""
    found = (
        _cpu(history, thresholds, top)
        + _memory(history, thresholds)
        + _disks(history, thresholds)
        + _io(history)
        + _gpus(history, thresholds)
    )
    found.sort(key=lambda b: _RANK[b.severity])
    latest = history[-1].host
    if found:
        summary = "Bottlenecks: " + "; ".join(b.summary for b in found) + "."
    else:
        cpu = fmean(s.host.cpu.percent for s in history)
        fullest = max((d.percent for d in latest.disks), default=0.0)
        summary = (
            f"No bottleneck: CPU {cpu:.0f}% average, memory {latest.memory.percent:.0f}%, fullest disk {fullest:.0f}%."
        )
    return PerformanceReport(
        window_seconds=round(latest.timestamp - history[0].host.timestamp, 1),
        samples=len(history),
        bottlenecks=found,
        summary=summary,
        top_processes=top,
    )
