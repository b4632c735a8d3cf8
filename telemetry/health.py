"""The overall verdict (healthy, degraded, critical) with the reasons behind it."""

from __future__ import annotations

from pydantic import BaseModel, Field

from telemetry.events import MonitoringEvent
from telemetry.models import Snapshot, Verdict
from telemetry.thresholds import Thresholds

CRITICAL_PERCENT = 98.0


class Health(BaseModel):
    verdict: Verdict = Field(description="Overall health.")
    reasons: list[str] = Field(description="One line per unhealthy figure or open event.")


def _gpu_findings(snapshot: Snapshot, limits: Thresholds) -> tuple[list[str], list[str]]:
    critical: list[str] = []
    degraded: list[str] = []
    for dev in snapshot.gpu.devices:
        temp = dev.temperature_c
        if temp is not None and temp >= limits.gpu_temperature_c + 10:
            critical.append(f"GPU {dev.index} at {temp:.0f}°C (critical at {limits.gpu_temperature_c + 10:g}°C)")
        elif temp is not None and temp > limits.gpu_temperature_c:
            degraded.append(f"GPU {dev.index} at {temp:.0f}°C (limit {limits.gpu_temperature_c:g}°C)")
        if dev.memory_total_bytes and dev.memory_percent > limits.gpu_memory_percent:
            degraded.append(
                f"GPU {dev.index} memory at {dev.memory_percent:.1f}% (limit {limits.gpu_memory_percent:g}%)"
            )
        if dev.ecc_errors_uncorrected:
            critical.append(f"GPU {dev.index} has {dev.ecc_errors_uncorrected} uncorrected ECC errors")
        hard = [r for r in dev.throttle_reasons if r.startswith("hw_")]
        if hard:
            degraded.append(f"GPU {dev.index} throttled by {', '.join(hard)}")
    return critical, degraded


def assess(snapshot: Snapshot, thresholds: Thresholds, active_events: list[MonitoringEvent]) -> Health:
    """Judge a snapshot against the thresholds; open critical events also count."""
    critical, degraded = _gpu_findings(snapshot, thresholds)
    host = snapshot.host

    def check(label: str, value: float, limit: float, critical_at: float | None = CRITICAL_PERCENT) -> None:
        if critical_at is not None and value >= critical_at:
            critical.append(f"{label} at {value:.1f}% (critical at {critical_at:g}%)")
        elif value > limit:
            degraded.append(f"{label} at {value:.1f}% (limit {limit:g}%)")

    check("CPU", host.cpu.percent, thresholds.cpu_percent, critical_at=None)  # a busy CPU alone is not critical
    check("memory", host.memory.percent, thresholds.memory_percent)
    for disk in host.disks:
        check(f"disk {disk.mountpoint}", disk.percent, thresholds.disk_percent)
    for event in active_events:
        line = f"open event #{event.id}: {event.message}"
        (critical if event.severity == "critical" else degraded).append(line)
    if critical:
        return Health(verdict="critical", reasons=critical + degraded)
    if degraded:
        return Health(verdict="degraded", reasons=degraded)
    return Health(verdict="healthy", reasons=[])
