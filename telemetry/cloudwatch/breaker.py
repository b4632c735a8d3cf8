"""A circuit breaker per AWS call path: closed, open after N failures in a row, half-open probe after a cool-down."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field

BreakerState = Literal["closed", "open", "half_open"]


class BreakerStatus(BaseModel):
    state: BreakerState = Field(description="open: calls skipped; half_open: one probe.")
    consecutive_failures: int = Field(description="Failures in a row.")
    opened_at: float | None = Field(None, description="Unix time it last opened.")
    retry_at: float | None = Field(None, description="Unix time of the next probe (when open).")


class CircuitBreaker:
    """Not thread-safe by itself: each source uses its breaker from one task at a time."""

    def __init__(
        self, failure_threshold: int = 5, cooldown_seconds: float = 30.0, clock: Callable[[], float] = time.time
    ):
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at: float | None = None

    @property
    def state(self) -> BreakerState:
        opened = self._opened_at
        if self._state == "open" and opened is not None and self._clock() - opened >= self.cooldown_seconds:
            self._state = "half_open"
        return self._state

    def allow(self) -> bool:
        """Whether a call may go out now (closed, or the single half-open probe)."""
        return self.state != "open"

    def record_success(self) -> None:
        self._state, self._failures, self._opened_at = "closed", 0, None

    def record_failure(self) -> None:
        self._failures += 1
        if self._state == "half_open" or self._failures >= self.failure_threshold:
            self._state, self._opened_at = "open", self._clock()

    def status(self) -> BreakerStatus:
        state = self.state
        retry_at = self._opened_at + self.cooldown_seconds if state == "open" and self._opened_at else None
        return BreakerStatus(
            state=state, consecutive_failures=self._failures, opened_at=self._opened_at, retry_at=retry_at
        )
