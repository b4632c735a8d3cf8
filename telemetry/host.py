"""Host readings through psutil. Blocking: callers run :meth:`PsutilHostSource.sample` in a worker thread."""

from __future__ import annotations

import os
import platform
import socket
import time
from typing import Protocol

import psutil

from telemetry.models import CpuStatus, DiskUsage, HostSample, IoCounters, MemoryStatus, ProcessInfo

# Pseudo and read-only image file systems that say nothing about free space.
_IGNORED_FSTYPES = frozenset({"squashfs", "iso9660", "tmpfs", "devtmpfs", "overlay", "proc", "sysfs", "nsfs"})


class HostSource(Protocol):
    """Anything that can take one reading of the host (psutil in production, fixed figures in tests)."""

    def sample(self) -> HostSample:
        """Take one reading. May block; never called on the event loop."""
        ...


class PsutilHostSource:
    """Reads the real host with psutil."""

    def __init__(self) -> None:
        # cpu_percent(interval=None) measures since the previous call: prime it so the first sample is real.
        psutil.cpu_percent(interval=None, percpu=True)
        psutil.cpu_times_percent(interval=None)
        self._boot_time = psutil.boot_time()
        self._hostname = socket.gethostname()
        self._platform = f"{platform.system()} {platform.release()}"

    def sample(self) -> HostSample:
        per_core = [float(v) for v in psutil.cpu_percent(interval=None, percpu=True)]
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
                iowait_percent=_iowait(),
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


def _iowait() -> float | None:
    value = getattr(psutil.cpu_times_percent(interval=None), "iowait", None)
    return float(value) if value is not None else None


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
