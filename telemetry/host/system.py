"""Host readings through psutil. Blocking: callers run :meth:`PsutilHostSource.sample` in a worker thread."""

from __future__ import annotations

import os
import platform
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import psutil

from telemetry.host.models import CpuStatus, DiskUsage, HostSample, IoCounters, MemoryStatus, ProcessInfo

# Pseudo and read-only image file systems that say nothing about free space.
_IGNORED_FSTYPES = frozenset({"squashfs", "iso9660", "tmpfs", "devtmpfs", "overlay", "proc", "sysfs", "nsfs"})
# The kernel counts CPU time in scheduler ticks (usually 10 ms): a shorter window reads 0 % or noise.
MIN_CPU_WINDOW_SECONDS = 0.25


class HostSource(Protocol):
    """Anything that can take one reading of the host (psutil in production, fixed figures in tests)."""

    def sample(self) -> HostSample:
        """Take one reading. May block; never called on the event loop."""
        ...


class CpuMeter:
    """CPU use between two readings of the kernel's cumulative CPU times, with this meter's own baseline.

    Not ``psutil.cpu_percent(interval=None)``: it keeps its previous reading per *thread*, and samples are taken on
    whichever worker thread is free, so a first reading on a thread compared two instants microseconds apart and
    said 0 % even with every core saturated. The arithmetic is psutil's (busy = total - idle - iowait; on Linux the
    guest times are already inside user and nice).
    """

    def __init__(
        self,
        min_window: float = MIN_CPU_WINDOW_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._min_window = min_window
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._times = psutil.cpu_times(percpu=True)
        self._at = clock()
        self._measured = False

    def read(self) -> tuple[list[float], float | None]:
        """Per-core busy percentages and the iowait percentage since the previous reading (or since the meter was
        made). The first reading waits until its window is at least ``min_window`` long; later ones never wait."""
        with self._lock:
            if not self._measured:
                self._sleep(max(0.0, self._min_window - (self._clock() - self._at)))
                self._measured = True
            before, now = self._times, psutil.cpu_times(percpu=True)
            self._times, self._at = now, self._clock()
        if len(before) != len(now):  # a core came or went: no common window this time
            return [0.0] * len(now), None
        deltas = [_deltas(a, b) for a, b in zip(before, now, strict=True)]
        per_core = [_busy_percent(d) for d in deltas]
        total = sum(_total(d) for d in deltas)
        iowait = [d.get("iowait") for d in deltas]
        if any(v is None for v in iowait):
            return per_core, None
        return per_core, round(100.0 * sum(v or 0.0 for v in iowait) / total, 1) if total > 0 else 0.0


def _deltas(before: Any, after: Any) -> dict[str, float]:
    # Counters can step back a little (psutil issues 392, 645, 1210): clamp at zero, as psutil and top do.
    return {field: max(0.0, getattr(after, field) - getattr(before, field)) for field in after._fields}


def _total(delta: dict[str, float]) -> float:
    return sum(delta.values()) - delta.get("guest", 0.0) - delta.get("guest_nice", 0.0)


def _busy_percent(delta: dict[str, float]) -> float:
    total = _total(delta)
    busy = total - delta.get("idle", 0.0) - delta.get("iowait", 0.0)
    return round(min(100.0, max(0.0, 100.0 * busy / total)), 1) if total > 0 else 0.0


class PsutilHostSource:
    """Reads the real host with psutil."""

    def __init__(self) -> None:
        self._cpu = CpuMeter()  # its baseline is now: the first sample measures CPU use from here
        self._boot_time = psutil.boot_time()
        self._hostname = socket.gethostname()
        self._platform = f"{platform.system()} {platform.release()}"

    def sample(self) -> HostSample:
        per_core, iowait = self._cpu.read()
        total = round(sum(per_core) / len(per_core), 1) if per_core else 0.0
        vm = psutil.virtual_memory()
        swap = psutil.swap_memory()
        net = psutil.net_io_counters()
        disk_io = psutil.disk_io_counters()
        return HostSample(
            timestamp=time.time(),
            hostname=self._hostname,
            platform=self._platform,
            boot_time=self._boot_time,
            cpu=CpuStatus(
                percent=total,
                per_core=per_core,
                logical_cores=len(per_core),
                load_average=_load_average(),
                iowait_percent=iowait,
            ),
            memory=MemoryStatus(
                total_bytes=vm.total,
                available_bytes=vm.available,
                used_bytes=vm.total - vm.available,
                percent=float(vm.percent),
                swap_total_bytes=swap.total,
                swap_used_bytes=swap.used,
                swap_percent=float(swap.percent),
            ),
            disks=_disk_usage(),
            io=IoCounters(
                net_bytes_sent=net.bytes_sent if net else 0,
                net_bytes_recv=net.bytes_recv if net else 0,
                disk_read_bytes=disk_io.read_bytes if disk_io else 0,
                disk_write_bytes=disk_io.write_bytes if disk_io else 0,
            ),
        )


def _load_average() -> tuple[float, float, float] | None:
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return None
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def _usage(mountpoint: str, device: str, fstype: str) -> DiskUsage:
    usage = psutil.disk_usage(mountpoint)
    return DiskUsage(
        mountpoint=mountpoint,
        device=device,
        fstype=fstype,
        total_bytes=usage.total,
        used_bytes=usage.used,
        free_bytes=usage.free,
        percent=float(usage.percent),
    )


def _disk_usage() -> list[DiskUsage]:
    disks: list[DiskUsage] = []
    seen: set[str] = set()
    for part in psutil.disk_partitions(all=False):
        if part.mountpoint in seen or part.fstype in _IGNORED_FSTYPES:
            continue
        try:
            disks.append(_usage(part.mountpoint, part.device, part.fstype))
        except OSError:  # unreadable or vanished mount
            continue
        seen.add(part.mountpoint)
    if not disks:  # containers often mount / as overlay: still report the root file system
        disks.append(_usage("/", "rootfs", "unknown"))
    return disks


def top_processes(sort_by: str, limit: int) -> list[ProcessInfo]:
    """The ``limit`` processes using the most CPU or memory. Blocking (about 0.1 s to measure CPU)."""
    attrs = ["pid", "name", "username", "memory_info", "memory_percent", "status"]
    procs = list(psutil.process_iter(attrs))
    for proc in procs:
        try:
            proc.cpu_percent(None)
        except psutil.Error:
            continue
    time.sleep(0.1)
    rows: list[ProcessInfo] = []
    for proc in procs:
        try:
            cpu = proc.cpu_percent(None)
        except psutil.Error:
            continue
        info = proc.info
        mem = info.get("memory_info")
        rows.append(
            ProcessInfo(
                pid=proc.pid,
                name=info.get("name") or "?",
                username=info.get("username"),
                cpu_percent=round(float(cpu), 1),
                memory_percent=round(float(info.get("memory_percent") or 0.0), 2),
                rss_bytes=int(mem.rss) if mem else 0,
                status=info.get("status") or "unknown",
            )
        )
    if sort_by == "cpu":
        rows.sort(key=lambda row: (row.cpu_percent, row.rss_bytes), reverse=True)
    else:
        rows.sort(key=lambda row: row.rss_bytes, reverse=True)
    return rows[:limit]
