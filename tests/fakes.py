"""Test doubles behind the telemetry Protocols: exact figures in, so thresholds can be checked exactly."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from telemetry.host.models import CpuStatus, DiskUsage, GpuStatus, HostSample, IoCounters, MemoryStatus

GIB = 2**30


@dataclass
class Figures:
    cpu: float = 10.0
    memory: float = 30.0
    disk: float = 40.0
    iowait: float = 1.0
    swap: float = 0.0
    load1: float = 0.5


@dataclass
class FakeHostSource:
    """Returns queued figures one sample at a time, then repeats the last ones. Thread-safe."""

    current: Figures = field(default_factory=Figures)
    pending: deque[Figures] = field(default_factory=deque)
    samples: int = 0
    mounts: tuple[str, ...] = ("/",)
    broken: bool = False  # True: reading the host fails (a crash in the tools that sample)
    clock: Callable[[], float] = time.time  # the samples' timestamps
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _io: int = 0

    def queue(self, *cpu_values: float, **fixed: float) -> None:
        """Queue one sample per CPU value; other figures from ``fixed`` or the current ones."""
        with self._lock:
            for cpu in cpu_values:
                base = self.pending[-1] if self.pending else self.current
                self.pending.append(Figures(**{**base.__dict__, **fixed, "cpu": cpu}))

    def set(self, **figures: float) -> None:
        with self._lock:
            self.pending.clear()
            self.current = Figures(**{**self.current.__dict__, **figures})

    def sample(self) -> HostSample:
        if self.broken:
            raise OSError("the host's figures could not be read")
        with self._lock:
            if self.pending:
                self.current = self.pending.popleft()
            fig = self.current
            self.samples += 1
            self._io += 1_000_000
            io = self._io
        total = 100 * GIB
        return HostSample(
            timestamp=self.clock(),
            hostname="fakehost",
            platform="Linux test",
            boot_time=self.clock() - 3600,
            cpu=CpuStatus(
                percent=fig.cpu,
                per_core=[fig.cpu, fig.cpu],
                logical_cores=2,
                load_average=(fig.load1, fig.load1, fig.load1),
                iowait_percent=fig.iowait,
            ),
            memory=MemoryStatus(
                total_bytes=16 * GIB,
                available_bytes=int(16 * GIB * (100 - fig.memory) / 100),
                used_bytes=int(16 * GIB * fig.memory / 100),
                percent=fig.memory,
                swap_total_bytes=4 * GIB,
                swap_used_bytes=int(4 * GIB * fig.swap / 100),
                swap_percent=fig.swap,
            ),
            disks=[
                DiskUsage(
                    mountpoint=m,
                    device="/dev/fake",
                    fstype="ext4",
                    total_bytes=total,
                    used_bytes=int(total * fig.disk / 100),
                    free_bytes=int(total * (100 - fig.disk) / 100),
                    percent=fig.disk,
                )
                for m in self.mounts
            ],
            io=IoCounters(net_bytes_sent=io, net_bytes_recv=2 * io, disk_read_bytes=3 * io, disk_write_bytes=4 * io),
        )


class NoGpu:
    def sample(self) -> GpuStatus:
        return GpuStatus(available=False, reason="no GPU in tests")

    def close(self) -> None:
        pass


class NVMLError(Exception):
    """Mimics pynvml.NVMLError."""


class FakeNvml:
    """The slice of the pynvml module that telemetry.host.gpu uses, with settable device figures."""

    def __init__(self, devices: int = 2, *, fail_init: str | None = None) -> None:
        self.fail_init = fail_init
        self.temperature = [60.0] * devices
        self.memory_used = [4 * GIB] * devices
        self.throttle = [0] * devices
        self.ecc_supported = True
        self.count = devices
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise NVMLError(self.fail_init)

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return f"GPU-0000-{h}"

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return SimpleNamespace(gpu=75, memory=40)

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return SimpleNamespace(used=self.memory_used[h], total=80 * GIB, free=80 * GIB - self.memory_used[h])

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> float:
        return self.temperature[h]

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return 350_000

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return 700_000

    def nvmlDeviceGetClockInfo(self, h: int, clock: int) -> int:
        return {0: 1755, 2: 2619}.get(clock, 0)

    def nvmlDeviceGetMaxClockInfo(self, h: int, clock: int) -> int:
        return 1980

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: int) -> int:
        return self.throttle[h]

    def nvmlDeviceGetTotalEccErrors(self, h: int, kind: int, counter: int) -> int:
        if not self.ecc_supported:
            raise NVMLError("Not Supported")
        return 3 if kind == 0 else 0

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return [SimpleNamespace(pid=1, usedGpuMemory=GIB)] if h == 0 else []

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: int) -> list[Any]:
        raise NVMLError("Not Supported")
