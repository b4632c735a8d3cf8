"""The background sampler: takes host and GPU readings off the event loop and keeps the latest snapshot."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import anyio.to_thread

from telemetry.host.gpu import GpuSource
from telemetry.host.models import GpuStatus, HostSample, HostStatus, IoRates, Snapshot
from telemetry.host.system import HostSource

logger = logging.getLogger(__name__)


class Sampler:
    """Serves the latest snapshot; refreshes it when older than ``max_age`` seconds (0: on every call).

    Readings run in a worker thread, so the event loop never blocks on psutil or NVML. Concurrent callers
    share one refresh. The last ``history`` snapshots are kept for analysis over a short window.
    """

    def __init__(
        self,
        host: HostSource,
        gpu: GpuSource,
        *,
        max_age: float = 5.0,
        history: int = 120,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._host = host
        self._gpu = gpu
        self.max_age = max_age
        self._clock = clock
        self._lock = anyio.Lock()
        self._latest: Snapshot | None = None
        self._previous_sample: HostSample | None = None
        self._history: deque[Snapshot] = deque(maxlen=history)
        self._listeners: list[Callable[[Snapshot], Awaitable[None]]] = []
        self.samples_taken = 0

    def add_listener(self, listener: Callable[[Snapshot], Awaitable[None]]) -> None:
        """Call ``listener`` with every new snapshot (after it is served); its errors are logged, not raised."""
        self._listeners.append(listener)

    @property
    def last(self) -> Snapshot | None:
        """The newest snapshot, or None before the first sample."""
        return self._latest

    def history(self) -> list[Snapshot]:
        """Snapshots kept for analysis, oldest first."""
        return list(self._history)

    async def latest(self) -> Snapshot:
        """The newest snapshot, refreshed first when missing or stale."""
        snap = self._latest
        if snap is not None and self.max_age > 0 and self._clock() - snap.host.timestamp <= self.max_age:
            return self._aged(snap)
        return await self.refresh(not_before=snap.host.timestamp if snap else None)

    async def refresh(self, not_before: float | None = None) -> Snapshot:
        """Take a new sample now (callers that queued behind another refresh reuse its result)."""
        async with self._lock:
            current = self._latest
            if not_before is not None and current is not None and current.host.timestamp > not_before:
                return self._aged(current)
            host_sample, gpu_status = await anyio.to_thread.run_sync(self._read)
            snap = Snapshot(host=self._derive(host_sample), gpu=gpu_status)
            self._previous_sample = host_sample
            self._latest = snap
            self._history.append(snap)
            self.samples_taken += 1
        for listener in self._listeners:
            try:
                await listener(snap)
            except Exception:  # recording a sample must never break serving it
                logger.exception("snapshot listener failed")
        return snap

    def _read(self) -> tuple[HostSample, GpuStatus]:
        return self._host.sample(), self._gpu.sample()

    def _derive(self, sample: HostSample) -> HostStatus:
        rates = None
        prev = self._previous_sample
        if prev is not None and sample.timestamp > prev.timestamp:
            window = sample.timestamp - prev.timestamp

            def rate(now: int, before: int) -> float:
                return round(max(0, now - before) / window, 1)

            rates = IoRates(
                net_sent_bytes_per_s=rate(sample.io.net_bytes_sent, prev.io.net_bytes_sent),
                net_recv_bytes_per_s=rate(sample.io.net_bytes_recv, prev.io.net_bytes_recv),
                disk_read_bytes_per_s=rate(sample.io.disk_read_bytes, prev.io.disk_read_bytes),
                disk_write_bytes_per_s=rate(sample.io.disk_write_bytes, prev.io.disk_write_bytes),
                window_seconds=round(window, 3),
            )
        return HostStatus(
            timestamp=sample.timestamp,
            age_seconds=0.0,
            hostname=sample.hostname,
            platform=sample.platform,
            uptime_seconds=round(max(0.0, sample.timestamp - sample.boot_time), 1),
            cpu=sample.cpu,
            memory=sample.memory,
            disks=sample.disks,
            io_rates=rates,
        )

    def _aged(self, snap: Snapshot) -> Snapshot:
        age = round(max(0.0, self._clock() - snap.host.timestamp), 3)
        return snap.model_copy(update={"host": snap.host.model_copy(update={"age_seconds": age})})

    def close(self) -> None:
        self._gpu.close()
