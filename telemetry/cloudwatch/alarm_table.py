"""The alarm states ``get_alarm_states`` serves. DescribeAlarms answers and EventBridge state-change events both
update one table; per alarm the state with the newest CloudWatch timestamp wins, so a DescribeAlarms answer older than
an event cannot undo it, nor a late event a newer answer. Each state keeps when CloudWatch last confirmed it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

AlarmSource = Literal["DescribeAlarms", "EventBridge"]
MAX_ALARMS = 10_000  # an account holds at most a few thousand; beyond this the least recently confirmed go


class AlarmState(BaseModel):
    name: str = Field(description="Alarm name.")
    state: str = Field(description="OK, ALARM or INSUFFICIENT_DATA.")
    reason: str = Field(description="Why, as CloudWatch says.")
    updated_at: float = Field(description="Unix time of the last state change.")
    metric: str | None = Field(None, description="Metric the alarm watches.")
    namespace: str | None = Field(None, description="Namespace of that metric.")
    tenant: str = Field(description="TenantId dimension of its metric, else the default.")
    component: str | None = Field(None, description="Component dimension of its metric.")
    source: AlarmSource = Field("DescribeAlarms", description="What last told this state.")
    age_seconds: float = Field(0.0, description="Seconds since CloudWatch last confirmed it.")


@dataclass(frozen=True, slots=True)
class AlarmUpdate:
    """One report of an alarm's state. ``None`` fields (and ``tenant`` when not ``tenant_known``) are not in the
    report: the table keeps what it knew."""

    state: AlarmState
    tenant_known: bool = True


@dataclass(slots=True)
class _Entry:
    state: AlarmState
    confirmed_at: float


class AlarmTable:
    """Thread-safe: queue receives and DescribeAlarms calls run in worker threads, reads on the event loop."""

    def __init__(self, clock: Callable[[], float] = time.time, max_alarms: int = MAX_ALARMS) -> None:
        self._clock = clock
        self._max = max_alarms
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self.refreshed_at: float | None = None  # when a DescribeAlarms of every followed alarm last succeeded

    def apply(self, update: AlarmUpdate) -> bool:
        """Take a report unless a newer state of the alarm is known; True when taken."""
        with self._lock:
            return self._apply(update, self._clock())

    def refreshed(self, states: Iterable[AlarmState], *, started: float) -> None:
        """A complete DescribeAlarms answer, asked at ``started``: alarms it no longer lists (deleted, renamed) are
        forgotten unless an event told of them after the call began."""
        with self._lock:
            now = self._clock()
            listed = set()
            for state in states:
                listed.add(state.name)
                self._apply(AlarmUpdate(state), now)
            for name in [n for n, e in self._entries.items() if n not in listed and e.confirmed_at < started]:
                del self._entries[name]
            self.refreshed_at = now

    def states(self) -> list[AlarmState]:
        """Every known state, by name, with its age."""
        with self._lock:
            now = self._clock()
            entries = sorted(self._entries.values(), key=lambda e: e.state.name)
            return [
                e.state.model_copy(update={"age_seconds": round(max(0.0, now - e.confirmed_at), 3)}) for e in entries
            ]

    @property
    def known(self) -> bool:
        with self._lock:
            return bool(self._entries)

    def _apply(self, update: AlarmUpdate, now: float) -> bool:
        new, current = update.state, self._entries.get(update.state.name)
        if current is not None:
            held = current.state
            if new.updated_at < held.updated_at:
                if new.source == "DescribeAlarms" and new.state == held.state:  # asked now: the state still holds
                    current.confirmed_at = now
                return False
            kept = {k: getattr(held, k) for k in ("metric", "namespace", "component") if getattr(new, k) is None}
            if not update.tenant_known:
                kept["tenant"] = held.tenant
            new = new.model_copy(update=kept)
        self._entries[new.name] = _Entry(new, now)
        if len(self._entries) > self._max:
            del self._entries[min(self._entries.values(), key=lambda e: e.confirmed_at).state.name]
        return True
