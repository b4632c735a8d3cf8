"""The overall verdict (healthy, degraded, critical) with the reasons behind it.

Each condition is said once: an open monitoring event about a figure the live check also flags (the same
``event_type:resource`` key the monitor tracks) becomes one line, the event's. Open events only count while
monitoring runs: once it has stopped nothing updates or clears them, so the verdict rests on the live figures and a
note says which events were left open and since when.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from telemetry.host.models import Snapshot, Verdict
from telemetry.monitoring.events import MonitoringEvent
from telemetry.monitoring.monitor import Monitor
from telemetry.monitoring.thresholds import Thresholds

CRITICAL_PERCENT = 98.0
NOTE_EVENTS = 5  # events named in the note; the rest are counted


class Health(BaseModel):
    verdict: Verdict = Field(description="Overall health.")
    reasons: list[str] = Field(description="One line per unhealthy figure or open event.")
    note: str | None = Field(
        None, description="Set while monitoring is stopped with events left open: they are not counted in the verdict."
    )


class _Findings:
    """Lines by level, each under the condition key it is about (``None``: a finding no event tracks)."""

    def __init__(self) -> None:
        self.lines: dict[str, tuple[bool, str]] = {}  # key -> (critical, line), in the order found
        self._unkeyed = 0

    def add(self, key: str | None, line: str, *, critical: bool) -> None:
        if key is None:
            key, self._unkeyed = f"#{self._unkeyed}", self._unkeyed + 1
        self.lines[key] = (critical, line)

    def merge_event(self, event: MonitoringEvent) -> None:
        """The event's line replaces the live line of the same condition, at the worse of the two levels."""
        key = f"{event.event_type}:{event.resource}"
        live_critical = self.lines.pop(key, (False, ""))[0]
        self.lines[key] = (live_critical or event.severity == "critical", f"open event #{event.id}: {event.message}")

    def health(self, note: str | None) -> Health:
        critical = [line for is_critical, line in self.lines.values() if is_critical]
        degraded = [line for is_critical, line in self.lines.values() if not is_critical]
        if critical:
            return Health(verdict="critical", reasons=critical + degraded, note=note)
        if degraded:
            return Health(verdict="degraded", reasons=degraded, note=note)
        return Health(verdict="healthy", reasons=[], note=note)


def _gpu_findings(snapshot: Snapshot, limits: Thresholds, found: _Findings) -> None:
    for dev in snapshot.gpu.devices:
        temp, gpu = dev.temperature_c, f"gpu{dev.index}"
        if temp is not None and temp >= limits.gpu_temperature_c + 10:
            line = f"GPU {dev.index} at {temp:.0f}°C (critical at {limits.gpu_temperature_c + 10:g}°C)"
            found.add(f"gpu_temperature_high:{gpu}", line, critical=True)
        elif temp is not None and temp > limits.gpu_temperature_c:
            line = f"GPU {dev.index} at {temp:.0f}°C (limit {limits.gpu_temperature_c:g}°C)"
            found.add(f"gpu_temperature_high:{gpu}", line, critical=False)
        if dev.memory_total_bytes and dev.memory_percent > limits.gpu_memory_percent:
            line = f"GPU {dev.index} memory at {dev.memory_percent:.1f}% (limit {limits.gpu_memory_percent:g}%)"
            found.add(f"gpu_memory_high:{gpu}", line, critical=False)
        if dev.ecc_errors_uncorrected:
            found.add(None, f"GPU {dev.index} has {dev.ecc_errors_uncorrected} uncorrected ECC errors", critical=True)
        hard = [r for r in dev.throttle_reasons if r.startswith("hw_")]
        if hard:
            found.add(None, f"GPU {dev.index} throttled by {', '.join(hard)}", critical=False)


def assess(
    snapshot: Snapshot,
    thresholds: Thresholds,
    open_events: list[MonitoringEvent],
    *,
    monitoring: bool,
    last_sample_at: float | None = None,
) -> Health:
    """Judge a snapshot against the thresholds; while ``monitoring`` runs its open events count too (see the module
    docstring). ``last_sample_at``: the monitor's last sample, for the note once it has stopped."""
    found = _Findings()
    _gpu_findings(snapshot, thresholds, found)
    host = snapshot.host

    def check(key: str, label: str, value: float, limit: float, critical_at: float | None = CRITICAL_PERCENT) -> None:
        if critical_at is not None and value >= critical_at:
            found.add(key, f"{label} at {value:.1f}% (critical at {critical_at:g}%)", critical=True)
        elif value > limit:
            found.add(key, f"{label} at {value:.1f}% (limit {limit:g}%)", critical=False)

    check("cpu_high:cpu", "CPU", host.cpu.percent, thresholds.cpu_percent, critical_at=None)  # busy is not critical
    check("memory_high:memory", "memory", host.memory.percent, thresholds.memory_percent)
    for disk in host.disks:
        check(f"disk_full:{disk.mountpoint}", f"disk {disk.mountpoint}", disk.percent, thresholds.disk_percent)
    if not monitoring:
        return found.health(_stopped_note(open_events, last_sample_at))
    for event in open_events:
        found.merge_event(event)
    return found.health(None)


def assess_monitored(snapshot: Snapshot, monitor: Monitor) -> Health:
    """:func:`assess` with the monitor's thresholds, open events and whether it runs: what every status reports."""
    return assess(
        snapshot,
        monitor.thresholds,
        list(monitor.active.values()),
        monitoring=monitor.running,
        last_sample_at=monitor.last_sample_at,
    )


def _stopped_note(open_events: list[MonitoringEvent], last_sample_at: float | None) -> str | None:
    """What is known of events left open when monitoring stopped (``None`` when there are none)."""
    if not open_events:
        return None
    newest = sorted(open_events, key=lambda e: e.id, reverse=True)
    since = last_sample_at if last_sample_at is not None else max(e.last_seen for e in open_events)
    named = ", ".join(f"#{e.id} {e.event_type} ({e.resource})" for e in newest[:NOTE_EVENTS])
    more = f" and {len(newest) - NOTE_EVENTS} more" if len(newest) > NOTE_EVENTS else ""
    count = "1 event" if len(newest) == 1 else f"{len(newest)} events"
    at = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return (
        f"monitoring is stopped: {count} open at its last sample ({at}) {'is' if len(newest) == 1 else 'are'} not "
        f"being updated and not counted in the verdict, which rests on the live figures ({named}{more}); start "
        "monitoring to re-check them"
    )
