"""Typed snapshots of the host and its GPUs. Every field carries a description: agents read these schemas."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Verdict = Literal["healthy", "degraded", "critical"]


class CpuStatus(BaseModel):
    percent: float = Field(description="Total CPU use, % since the previous sample.")
    per_core: list[float] = Field(description="% per logical core, in order.")
    logical_cores: int = Field(description="Logical cores.")
    load_average: tuple[float, float, float] | None = Field(
        None, description="1, 5 and 15 min load averages (null: unsupported)."
    )
    iowait_percent: float | None = Field(None, description="% of CPU time waiting for I/O (null: not reported).")


class MemoryStatus(BaseModel):
    total_bytes: int = Field(description="Physical memory, bytes.")
    available_bytes: int = Field(description="Bytes available without swapping.")
    used_bytes: int = Field(description="Bytes in use.")
    percent: float = Field(description="% in use.")
    swap_total_bytes: int = Field(description="Swap size, bytes (0: none).")
    swap_used_bytes: int = Field(description="Swap bytes in use.")
    swap_percent: float = Field(description="% of swap in use.")


class DiskUsage(BaseModel):
    mountpoint: str = Field(description="Mount point.")
    device: str = Field(description="Device or source.")
    fstype: str = Field(description="File system type.")
    total_bytes: int = Field(description="Size, bytes.")
    used_bytes: int = Field(description="Bytes in use.")
    free_bytes: int = Field(description="Bytes free to unprivileged users.")
    percent: float = Field(description="% in use.")


class IoCounters(BaseModel):
    """Cumulative counters as read from the OS; rates are derived from two of them."""

    net_bytes_sent: int = Field(description="Bytes sent over all network interfaces since boot.")
    net_bytes_recv: int = Field(description="Bytes received over all network interfaces since boot.")
    disk_read_bytes: int = Field(description="Bytes read from all disks since boot.")
    disk_write_bytes: int = Field(description="Bytes written to all disks since boot.")


class IoRates(BaseModel):
    net_sent_bytes_per_s: float = Field(description="Network send, bytes/s.")
    net_recv_bytes_per_s: float = Field(description="Network receive, bytes/s.")
    disk_read_bytes_per_s: float = Field(description="Disk read, bytes/s.")
    disk_write_bytes_per_s: float = Field(description="Disk write, bytes/s.")
    window_seconds: float = Field(description="Seconds the rates cover.")


class HostSample(BaseModel):
    """One raw reading of the host, as a source returns it."""

    timestamp: float = Field(description="Unix time of the reading, in seconds.")
    hostname: str = Field(description="Host name.")
    platform: str = Field(description="OS and release.")
    boot_time: float = Field(description="Unix time the host booted.")
    cpu: CpuStatus = Field(description="CPU use and load.")
    memory: MemoryStatus = Field(description="Memory and swap.")
    disks: list[DiskUsage] = Field(description="Each mounted file system.")
    io: IoCounters = Field(description="Cumulative network and disk I/O counters.")


class GpuProcess(BaseModel):
    pid: int = Field(description="Process id.")
    name: str = Field(description="Process name, if readable.")
    used_memory_bytes: int | None = Field(None, description="GPU memory used, bytes, if known.")


class GpuDevice(BaseModel):
    index: int = Field(description="NVML device index.")
    name: str = Field(description="Product name.")
    uuid: str = Field(description="Device UUID.")
    utilization_percent: float | None = Field(None, description="Core use, %.")
    memory_utilization_percent: float | None = Field(None, description="Memory controller use, %.")
    memory_used_bytes: int = Field(description="Memory used, bytes.")
    memory_total_bytes: int = Field(description="Memory, bytes.")
    memory_percent: float = Field(description="Memory used, %.")
    temperature_c: float | None = Field(None, description="Core temperature, °C.")
    power_draw_watts: float | None = Field(None, description="Power draw, W.")
    power_limit_watts: float | None = Field(None, description="Power limit, W.")
    clock_graphics_mhz: int | None = Field(None, description="Graphics clock, MHz.")
    clock_memory_mhz: int | None = Field(None, description="Memory clock, MHz.")
    clock_sm_max_mhz: int | None = Field(None, description="Max SM clock, MHz.")
    throttle_reasons: list[str] = Field(default_factory=list, description="Active throttle reasons (empty: none).")
    ecc_errors_corrected: int | None = Field(None, description="Corrected ECC errors (volatile; ECC on).")
    ecc_errors_uncorrected: int | None = Field(None, description="Uncorrected ECC errors (volatile; ECC on).")
    processes: list[GpuProcess] = Field(default_factory=list, description="Processes on it.")


class GpuStatus(BaseModel):
    available: bool = Field(description="True when NVML read the devices.")
    reason: str | None = Field(None, description="Why not, when unavailable.")
    driver_version: str | None = Field(None, description="Driver version.")
    devices: list[GpuDevice] = Field(default_factory=list, description="One entry per GPU.")


class HostStatus(BaseModel):
    """A host sample with derived figures (I/O rates, uptime)."""

    timestamp: float = Field(description="Unix time of the sample.")
    age_seconds: float = Field(description="Sample age when served, s.")
    hostname: str = Field(description="Host name.")
    platform: str = Field(description="OS and release.")
    uptime_seconds: float = Field(description="Seconds since boot.")
    cpu: CpuStatus = Field(description="CPU use and load.")
    memory: MemoryStatus = Field(description="Memory and swap.")
    disks: list[DiskUsage] = Field(description="Each mounted file system.")
    io_rates: IoRates | None = Field(None, description="I/O rates; null until two samples exist.")


class Snapshot(BaseModel):
    """What the sampler keeps: the latest host and GPU readings."""

    host: HostStatus = Field(description="Host figures.")
    gpu: GpuStatus = Field(description="GPU figures, or why there are none.")


class ProcessInfo(BaseModel):
    pid: int = Field(description="Process id.")
    name: str = Field(description="Process name.")
    username: str | None = Field(None, description="Owner, if readable.")
    cpu_percent: float = Field(description="% of one core over 0.1 s (can pass 100).")
    memory_percent: float = Field(description="Resident memory, % of RAM.")
    rss_bytes: int = Field(description="Resident set size, bytes.")
    status: str = Field(description="State: running, sleeping, ...")
