"""Sampler overhead: CPU time of the server process with monitoring at a 1 s interval, over 60 s (target <= 1 %).

The server runs as a real stdio process with monitoring auto-started on the real host (psutil, NVML if present);
an idle server without monitoring is measured the same way, so the difference is the sampler's own cost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import psutil

from tests.benchmarks.bench_cold_start import INIT


def cpu_percent_of_one_core(monitoring: bool, seconds: float) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "SELF_BUILDING_DATA_DIR": tmp,
            "SELF_BUILDING_WORKSPACE": tmp,
            "SELF_BUILDING_MONITORING_AUTOSTART": "true" if monitoring else "false",
            "SELF_BUILDING_MONITORING_INTERVAL_SECONDS": "1",
            "SELF_BUILDING_LOG_LEVEL": "WARNING",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(INIT) + "\n")
        proc.stdin.flush()
        proc.stdout.readline()
        time.sleep(2)  # start-up work is not the sampler's
        handle = psutil.Process(proc.pid)
        before = handle.cpu_times()
        time.sleep(seconds)
        after = handle.cpu_times()
        proc.stdin.close()
        proc.wait(timeout=30)
        db = os.path.join(tmp, "monitoring.sqlite3")
        used = (after.user - before.user) + (after.system - before.system)
        return 100.0 * used / seconds, os.path.getsize(db) if os.path.exists(db) else 0


def main(seconds: float = 60.0) -> dict[str, float]:
    with_monitoring, _ = cpu_percent_of_one_core(True, seconds)
    idle, _ = cpu_percent_of_one_core(False, seconds)
    overhead = with_monitoring - idle
    sys.stdout.write(
        f"sampler overhead at 1 s interval over {seconds:.0f} s: {with_monitoring:.2f} % of one core with monitoring, "
        f"{idle:.2f} % idle, sampler {overhead:.2f} %  [target <= 1 %: {'met' if with_monitoring <= 1 else 'MISSED'}]\n"
    )
    return {"with_monitoring_percent": with_monitoring, "idle_percent": idle, "sampler_percent": overhead}


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0)
