"""The first snapshot's CPU figure is measured over a real window.

It used to read 0 % (and ``healthy``) with every core saturated: psutil keeps ``cpu_percent``'s previous reading per
thread, the source primed it on the event loop's thread and sampled on a worker thread, so the first sample compared
two readings microseconds apart. Here the kernel's CPU counters are replaced by a saturated machine's: they advance
with real time, in whole scheduler ticks, as /proc/stat does.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import psutil
import pytest

from server.app import create_server
from server.settings import Settings
from tests.conftest import call, connect
from tests.fakes import NoGpu

TICK = 0.01  # seconds per scheduler tick (USER_HZ = 100)


class SaturatedKernel:
    """``psutil.cpu_times`` of a machine whose every core is busy: busy time grows with time, idle time does not."""

    def __init__(self, cores: int = 2) -> None:
        self.cores = cores
        self._type: Any = type(psutil.cpu_times())
        self._started = time.monotonic()

    def __call__(self, percpu: bool = False) -> Any:
        busy = 1000.0 + math.floor((time.monotonic() - self._started) / TICK) * TICK
        zero = dict.fromkeys(self._type._fields, 0.0)
        core = self._type(**{**zero, "user": busy, "idle": 500.0})
        if percpu:
            return [core] * self.cores
        return self._type(**{**zero, "user": busy * self.cores, "idle": 500.0 * self.cores})


@pytest.mark.anyio
async def test_a_saturated_host_is_not_healthy_at_first_sight(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(psutil, "cpu_times", SaturatedKernel())
    server = create_server(settings, gpu_source=NoGpu())  # the real psutil host source, on the faked kernel counters
    async with connect(server) as client:
        status = await call(client, "get_system_status")
    cpu = status["host"]["cpu"]
    assert cpu["per_core"] == [100.0, 100.0] and cpu["percent"] == 100.0
    assert status["verdict"] != "healthy" and any("CPU" in reason for reason in status["reasons"]), status


def test_only_the_first_reading_waits_and_only_for_the_rest_of_its_window() -> None:
    from telemetry.host.system import MIN_CPU_WINDOW_SECONDS, CpuMeter

    now = [50.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    meter = CpuMeter(clock=lambda: now[0], sleep=sleep)
    now[0] += 0.1  # made a little before the first reading
    meter.read()
    meter.read()
    meter.read()
    assert slept == [pytest.approx(MIN_CPU_WINDOW_SECONDS - 0.1)]
    late = CpuMeter(clock=lambda: now[0], sleep=sleep)
    now[0] += 5.0  # start-up took longer than the window: nothing to wait for
    late.read()
    assert slept[1:] == [0.0]


def test_the_meter_keeps_its_own_baseline_whatever_thread_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from telemetry.host.system import CpuMeter

    monkeypatch.setattr(psutil, "cpu_times", SaturatedKernel(cores=4))
    meter = CpuMeter(min_window=0.05)
    results: list[tuple[list[float], float | None]] = []
    reader = threading.Thread(target=lambda: results.append(meter.read()))  # not the thread that made it
    reader.start()
    reader.join(timeout=60)
    per_core, iowait = results[0]
    assert per_core == [100.0] * 4 and iowait == 0.0
