"""Typed snapshots of the host and its GPUs. Every field carries a description: agents read these schemas."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Verdict = Literal["healthy", "degraded", "critical"]


class CpuStatus(BaseModel):
    percent: float = Field(description="Total CPU utilisation in percent (0-100) since the previous sample.")
    per_core: list[float] = Field(description="Utilisation in percent of each logical core, in core order.")
    logical_cores: int = Field(description="Number of logical cores.")
    load_average: tuple[float, float, float] | None = Field(
        None, description="1, 5 and 15 minute load averages (None where the platform has none)."
    )
    iowait_percent: float | None = Field(
        None, description="Share of CPU time spent waiting for I/O, in percent (None where not reported)."
    )


class MemoryStatus(BaseModel):
    total_bytes: int = Field(description="Physical memory in bytes.")
    available_bytes: int = Field(description="Memory available to new processes without swapping, in bytes.")
    used_bytes: int = Field(description="Memory in use, in bytes.")
    percent: float = Field(description="Memory in use in percent (0-100).")
    swap_total_bytes: int = Field(description="Swap size in bytes (0 when there is no swap).")
    swap_used_bytes: int = Field(description="Swap in use, in bytes.")
    swap_percent: float = Field(description="Swap in use in percent (0-100).")


class DiskUsage(BaseModel):
    mountpoint: str = Field(description="Mount point of the file system.")
    device: str = Field(description="Device or source of the file system.")
    fstype: str = Field(description="File system type.")
    total_bytes: int = Field(description="Size of the file system in bytes.")
    used_bytes: int = Field(description="Bytes in use.")
    free_bytes: int = Field(description="Bytes free for unprivileged users.")
    percent: float = Field(description="Space in use in percent (0-100).")


class IoCounters(BaseModel):
    """Cumulative counters as read from the OS; rates are derived from two of them."""

    net_bytes_sent: int = Field(description="Bytes sent over all network interfaces since boot.")
    net_bytes_recv: int = Field(description="Bytes received over all network interfaces since boot.")
    disk_read_bytes: int = Field(description="Bytes read from all disks since boot.")
    disk_write_bytes: int = Field(description="Bytes written to all disks since boot.")


class IoRates(BaseModel):
    net_sent_bytes_per_s: float = Field(description="Network send rate in bytes per second.")
    net_recv_bytes_per_s: float = Field(description="Network receive rate in bytes per second.")
    disk_read_bytes_per_s: float = Field(description="Disk read rate in bytes per second.")
    disk_write_bytes_per_s: float = Field(description="Disk write rate in bytes per second.")
    window_seconds: float = Field(description="Length of the window the rates were measured over, in seconds.")


class HostSample(BaseModel):
    """One raw reading of the host, as a source returns it."""

    timestamp: float = Field(description="Unix time of the reading, in seconds.")
    hostname: str = Field(description="Host name.")
    platform: str = Field(description="Operating system and release.")
    boot_time: float = Field(description="Unix time the host booted.")
    cpu: CpuStatus = Field(description="CPU utilisation and load.")
    memory: MemoryStatus = Field(description="Memory and swap.")
    disks: list[DiskUsage] = Field(description="Usage of each mounted file system.")
    io: IoCounters = Field(description="Cumulative network and disk I/O counters.")


class GpuProcess(BaseModel):
    pid: int = Field(description="Process id.")
    name: str = Field(description="Process name, when it can be read.")
    used_memory_bytes: int | None = Field(None, description="GPU memory the process uses, in bytes, when known.")


class GpuDevice(BaseModel):
    index: int = Field(description="NVML device index.")
    name: str = Field(description="Product name.")
    uuid: str = Field(description="Device UUID.")
    utilization_percent: float | None = Field(None, description="GPU core utilisation in percent.")
    memory_utilization_percent: float | None = Field(None, description="Memory controller utilisation in percent.")
    memory_used_bytes: int = Field(description="Device memory in use, in bytes.")
    memory_total_bytes: int = Field(description="Device memory, in bytes.")
    memory_percent: float = Field(description="Device memory in use, in percent.")
    temperature_c: float | None = Field(None, description="Core temperature in degrees Celsius.")
    power_draw_watts: float | None = Field(None, description="Current power draw in watts.")
    power_limit_watts: float | None = Field(None, description="Enforced power limit in watts.")
    clock_graphics_mhz: int | None = Field(None, description="Current graphics clock in MHz.")
    clock_memory_mhz: int | None = Field(None, description="Current memory clock in MHz.")
    clock_sm_max_mhz: int | None = Field(None, description="Maximum SM clock in MHz.")
    throttle_reasons: list[str] = Field(
        default_factory=list, description="Active clock throttle reasons (empty when the GPU runs unthrottled)."
    )
    ecc_errors_corrected: int | None = Field(None, description="Corrected ECC errors (volatile), when ECC is on.")
    ecc_errors_uncorrected: int | None = Field(None, description="Uncorrected ECC errors (volatile), when ECC is on.")
    processes: list[GpuProcess] = Field(default_factory=list, description="Processes using the device.")


class GpuStatus(BaseModel):
    available: bool = Field(description="True when NVML answered and devices could be read.")
    reason: str | None = Field(None, description="Why no GPU data is available (when available is false).")
    driver_version: str | None = Field(None, description="NVIDIA driver version.")
    devices: list[GpuDevice] = Field(default_factory=list, description="One entry per GPU.")


class HostStatus(BaseModel):
    """A host sample with derived figures (I/O rates, uptime)."""

    timestamp: float = Field(description="Unix time of the sample, in seconds.")
    age_seconds: float = Field(description="How old the sample was when served, in seconds.")
    hostname: str = Field(description="Host name.")
    platform: str = Field(description="Operating system and release.")
    uptime_seconds: float = Field(description="Seconds since the host booted.")
    cpu: CpuStatus = Field(description="CPU utilisation and load.")
    memory: MemoryStatus = Field(description="Memory and swap.")
    disks: list[DiskUsage] = Field(description="Usage of each mounted file system.")
    io_rates: IoRates | None = Field(
        None, description="Network and disk I/O rates; None until two samples exist to compute them."
    )


class Snapshot(BaseModel):
    """What the sampler keeps: the latest host and GPU readings."""

    host: HostStatus = Field(description="Host figures.")
    gpu: GpuStatus = Field(description="GPU figures, or why there are none.")


class ProcessInfo(BaseModel):
    pid: int = Field(description="Process id.")
    name: str = Field(description="Process name.")
    username: str | None = Field(None, description="Owner of the process, when readable.")
    cpu_percent: float = Field(description="CPU use in percent of one core over a 0.1 s window (may exceed 100).")
    memory_percent: float = Field(description="Resident memory in percent of physical memory.")
    rss_bytes: int = Field(description="Resident set size in bytes.")
    status: str = Field(description="Process state (running, sleeping, ...).")
