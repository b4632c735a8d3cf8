"""Threshold rules and the anti-flapping state machine that turns readings into monitoring events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from telemetry.host.models import Snapshot

EventType = Literal["cpu_high", "memory_high", "disk_full", "cpu_spike", "gpu_temperature_high", "gpu_memory_high"]
Severity = Literal["low", "medium", "high", "critical"]
EVENT_TYPES: tuple[EventType, ...] = (
    "cpu_high",
    "memory_high",
    "disk_full",
    "cpu_spike",
    "gpu_temperature_high",
    "gpu_memory_high",
)
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")


class Thresholds(BaseModel):
    """Limits that raise monitoring events, and how many samples it takes to raise and to clear one."""

    model_config = ConfigDict(extra="forbid")

    cpu_percent: float = Field(85.0, gt=0, le=100, description="cpu_high above this CPU %.")
    memory_percent: float = Field(90.0, gt=0, le=100, description="memory_high above this memory %.")
    disk_percent: float = Field(85.0, gt=0, le=100, description="disk_full above this % of any mount.")
    cpu_spike_points: float = Field(20.0, gt=0, le=100, description="cpu_spike above this jump between samples.")
    gpu_temperature_c: float = Field(85.0, gt=0, le=150, description="gpu_temperature_high above this °C.")
    gpu_memory_percent: float = Field(95.0, gt=0, le=100, description="gpu_memory_high above this %.")
    consecutive_samples: int = Field(2, ge=1, le=100, description="Samples in a row before an event is raised.")
    clear_samples: int = Field(2, ge=1, le=100, description="Samples in a row below the clear level to clear.")
    hysteresis_points: float = Field(5.0, ge=0, le=50, description="An event clears below threshold minus this.")


@dataclass(frozen=True)
class Reading:
    """One checked figure: which condition, on what, the value and its limit."""

    event_type: EventType
    resource: str
    value: float
    threshold: float
    unit: str

    @property
    def key(self) -> str:
        return f"{self.event_type}:{self.resource}"


def readings(snapshot: Snapshot, thresholds: Thresholds) -> list[Reading]:
    """Every thresholded figure of a snapshot (spikes are handled separately: they compare two samples)."""
    host = snapshot.host
    found = [
        Reading("cpu_high", "cpu", host.cpu.percent, thresholds.cpu_percent, "%"),
        Reading("memory_high", "memory", host.memory.percent, thresholds.memory_percent, "%"),
    ]
    found += [Reading("disk_full", d.mountpoint, d.percent, thresholds.disk_percent, "%") for d in host.disks]
    for dev in snapshot.gpu.devices:
        if dev.temperature_c is not None:
            found.append(
                Reading(
                    "gpu_temperature_high", f"gpu{dev.index}", dev.temperature_c, thresholds.gpu_temperature_c, "°C"
                )
            )
        if dev.memory_total_bytes:
            found.append(
                Reading("gpu_memory_high", f"gpu{dev.index}", dev.memory_percent, thresholds.gpu_memory_percent, "%")
            )
    return found


def severity_for(event_type: EventType, value: float, threshold: float) -> Severity:
    """Severity grows with how far past its limit a figure is."""
    if event_type == "cpu_spike":
        return "medium" if value >= 2 * threshold else "low"
    if event_type == "gpu_temperature_high":
        over = value - threshold
        return "critical" if over >= 10 else "high" if over >= 5 else "medium"
    room = max(100.0 - threshold, 1e-9)
    share = (value - threshold) / room
    if event_type in ("disk_full", "memory_high") and value >= 98:
        return "critical"
    return "critical" if share >= 0.8 else "high" if share >= 0.4 else "medium"


@dataclass
class ConditionState:
    """Where one condition stands between samples."""

    breaches: int = 0
    clears: int = 0
    event_id: int | None = None
    peak: float = 0.0


@dataclass(frozen=True)
class Transition:
    """What the tracker decided for a reading."""

    action: Literal["raise", "update", "resolve"]
    reading: Reading
    event_id: int | None
    peak: float


@dataclass
class ConditionTracker:
    """Debounces readings: raise after N breaches in a row, update while ongoing, clear with hysteresis."""

    states: dict[str, ConditionState] = field(default_factory=dict)

    def restore(self, key: str, event_id: int, peak: float) -> None:
        """Re-attach an event still open from before a restart, so it is updated and cleared, not duplicated."""
        self.states[key] = ConditionState(breaches=0, clears=0, event_id=event_id, peak=peak)

    def step(self, batch: list[Reading], thresholds: Thresholds) -> list[Transition]:
        out: list[Transition] = []
        seen: set[str] = set()
        for reading in batch:
            seen.add(reading.key)
            state = self.states.setdefault(reading.key, ConditionState())
            transition = self._advance(state, reading, thresholds)
            if transition is not None:
                out.append(transition)
        # A resource that vanished (unmounted disk, removed GPU) cannot still be breaching.
        for key in [k for k, s in self.states.items() if k not in seen and s.event_id is not None]:
            state = self.states.pop(key)
            event_type, _, resource = key.partition(":")
            gone = Reading(event_type, resource, 0.0, 0.0, "")  # type: ignore[arg-type]
            out.append(Transition("resolve", gone, state.event_id, state.peak))
        return out

    @staticmethod
    def _advance(state: ConditionState, reading: Reading, thresholds: Thresholds) -> Transition | None:
        breached = reading.value > reading.threshold
        if state.event_id is None:
            state.breaches = state.breaches + 1 if breached else 0
            if state.breaches >= thresholds.consecutive_samples:
                state.peak = reading.value
                state.breaches = 0
                return Transition("raise", reading, None, reading.value)
            return None
        state.peak = max(state.peak, reading.value)
        if reading.value < reading.threshold - thresholds.hysteresis_points:
            state.clears += 1
            if state.clears >= thresholds.clear_samples:
                event_id, peak = state.event_id, state.peak
                state.event_id, state.clears, state.peak = None, 0, 0.0
                return Transition("resolve", reading, event_id, peak)
            return None
        state.clears = 0
        return Transition("update", reading, state.event_id, state.peak) if breached else None
