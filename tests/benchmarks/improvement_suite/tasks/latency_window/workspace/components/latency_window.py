"""A sliding window of a service's latest latencies, for its dashboard."""


class LatencyWindow:
    """The latest ``size`` latencies in milliseconds, oldest first."""

    def __init__(self, size: int) -> None:
        """An empty window of ``size`` latencies (at least 1)."""
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._values: list[float] = []

    def add(self, latency_ms: float) -> None:
        """Record a latency; when the window is full, the oldest one leaves."""
        values = list(self._values)
        values.append(latency_ms)
        self._values = values[-self.size :]

    def values(self) -> list[float]:
        """The latencies in the window, oldest first (a list the caller may change)."""
        return list(self._values)

    def mean(self) -> float:
        """The mean latency of the window; 0.0 when it is empty."""
        return sum(self._values) / len(self._values) if self._values else 0.0

    def __len__(self) -> int:
        """How many latencies the window holds."""
        return len(self._values)
