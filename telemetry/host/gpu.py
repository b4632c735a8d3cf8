"""GPU readings through NVML (``nvidia-ml-py``, imported as ``pynvml``).

No driver, no library or no device is a normal state: the source then reports ``available=false`` with the
reason, and never raises. Blocking: run :meth:`NvmlGpuSource.sample` in a worker thread.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from telemetry.host.models import GpuDevice, GpuProcess, GpuStatus

logger = logging.getLogger(__name__)
T = TypeVar("T")

# NVML clock-event (throttle) reason bits, as documented in nvml.h.
THROTTLE_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
_TEMPERATURE_GPU = 0
_CLOCK_GRAPHICS, _CLOCK_SM, _CLOCK_MEM = 0, 1, 2
_ECC_CORRECTED, _ECC_UNCORRECTED, _ECC_VOLATILE = 0, 1, 0


class GpuSource(Protocol):
    """Anything that can read the GPUs (NVML in production, a fake in tests)."""

    def sample(self) -> GpuStatus:
        """Read every device. May block; never raises for a missing driver."""
        ...

    def close(self) -> None:
        """Release the library."""
        ...


def _load_pynvml() -> Any:
    return importlib.import_module("pynvml")


class NvmlGpuSource:
    """Reads NVIDIA GPUs via NVML. ``nvml`` is the pynvml module or an object with the same functions."""

    def __init__(self, nvml_loader: Callable[[], Any] = _load_pynvml) -> None:
        self._loader = nvml_loader
        self._nvml: Any = None
        self._reason: str | None = None
        self._driver: str | None = None
        self._lock = threading.Lock()
        self._initialised = False

    def _init(self) -> None:
        if self._initialised:
            return
        self._initialised = True
        try:
            nvml = self._loader()
        except ImportError as exc:
            self._reason = f"NVML library not installed ({exc}); install nvidia-ml-py"
            return
        try:
            nvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ... all mean "no GPU here"
            self._reason = f"NVIDIA driver not available: {_nvml_message(exc)}"
            return
        self._nvml = nvml
        self._driver = _text(_try(lambda: nvml.nvmlSystemGetDriverVersion()))

    def sample(self) -> GpuStatus:
        with self._lock:
            self._init()
            nvml = self._nvml
            if nvml is None:
                return GpuStatus(available=False, reason=self._reason or "NVML not initialised")
            try:
                count = int(nvml.nvmlDeviceGetCount())
            except Exception as exc:
                return GpuStatus(available=False, reason=f"NVML could not count devices: {_nvml_message(exc)}")
            if count == 0:
                return GpuStatus(available=False, reason="NVML found no GPU devices", driver_version=self._driver)
            devices = [self._device(nvml, index) for index in range(count)]
            return GpuStatus(available=True, driver_version=self._driver, devices=devices)

    def _device(self, nvml: Any, index: int) -> GpuDevice:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        util = _try(lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        mem = _try(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        used = int(mem.used) if mem is not None else 0
        total = int(mem.total) if mem is not None else 0
        power = _try(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        limit = _try(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
        return GpuDevice(
            index=index,
            name=_text(_try(lambda: nvml.nvmlDeviceGetName(handle))) or f"GPU {index}",
            uuid=_text(_try(lambda: nvml.nvmlDeviceGetUUID(handle))) or "",
            utilization_percent=float(util.gpu) if util is not None else None,
            memory_utilization_percent=float(util.memory) if util is not None else None,
            memory_used_bytes=used,
            memory_total_bytes=total,
            memory_percent=round(100.0 * used / total, 1) if total else 0.0,
            temperature_c=_float(_try(lambda: nvml.nvmlDeviceGetTemperature(handle, _TEMPERATURE_GPU))),
            power_draw_watts=round(power / 1000.0, 1) if power is not None else None,
            power_limit_watts=round(limit / 1000.0, 1) if limit is not None else None,
            clock_graphics_mhz=_try(lambda: int(nvml.nvmlDeviceGetClockInfo(handle, _CLOCK_GRAPHICS))),
            clock_memory_mhz=_try(lambda: int(nvml.nvmlDeviceGetClockInfo(handle, _CLOCK_MEM))),
            clock_sm_max_mhz=_try(lambda: int(nvml.nvmlDeviceGetMaxClockInfo(handle, _CLOCK_SM))),
            throttle_reasons=_throttle_reasons(nvml, handle),
            ecc_errors_corrected=_try(
                lambda: int(nvml.nvmlDeviceGetTotalEccErrors(handle, _ECC_CORRECTED, _ECC_VOLATILE))
            ),
            ecc_errors_uncorrected=_try(
                lambda: int(nvml.nvmlDeviceGetTotalEccErrors(handle, _ECC_UNCORRECTED, _ECC_VOLATILE))
            ),
            processes=_processes(nvml, handle),
        )

    def close(self) -> None:
        with self._lock:
            if self._nvml is not None:
                _try(self._nvml.nvmlShutdown)
                self._nvml = None
            self._initialised = False


def _throttle_reasons(nvml: Any, handle: Any) -> list[str]:
    getter = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
        nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None
    )
    if getter is None:
        return []
    mask = _try(lambda: int(getter(handle)))
    if not mask:
        return []
    return [name for bit, name in THROTTLE_REASONS.items() if mask & bit]


def _processes(nvml: Any, handle: Any) -> list[GpuProcess]:
    found: dict[int, GpuProcess] = {}
    for getter_name in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        getter = getattr(nvml, getter_name, None)
        procs = _try(lambda g=getter: g(handle)) if getter is not None else None  # type: ignore[misc]
        for proc in procs or []:
            pid = int(proc.pid)
            used = getattr(proc, "usedGpuMemory", None)
            found[pid] = GpuProcess(
                pid=pid, name=_process_name(pid), used_memory_bytes=int(used) if isinstance(used, int) else None
            )
    return sorted(found.values(), key=lambda p: p.pid)


def _process_name(pid: int) -> str:
    import psutil  # lazily: only needed when a GPU is present

    try:
        return str(psutil.Process(pid).name())
    except psutil.Error:
        return "?"


def _try(call: Callable[[], T]) -> T | None:
    """Run one NVML query; any NVML error (not supported, no permission, ...) becomes None."""
    try:
        return call()
    except Exception as exc:
        logger.debug("NVML query failed: %s", _nvml_message(exc))
        return None


def _nvml_message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
