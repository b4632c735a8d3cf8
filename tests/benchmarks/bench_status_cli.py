"""``self-building-mcp status``: wall time from spawn to exit, next to a bare interpreter importing the MCP SDK.

The command answers in about a second when the machine is quiet (target: median <= 1.5 s). Most of it is importing
the SDK and building the server (the ratio to the bare import says how much is ours). Its CPU window is the start-up
itself (the first reading is taken before the imports), so measuring CPU adds no wait. Interleaved runs; medians.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE = [sys.executable, "-c", "import mcp.server, mcp.client"]
TARGET_SECONDS = 1.5


def wall_seconds(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, env=env, timeout=120, check=False)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr.decode()
    return elapsed


def measure(rounds: int = 7) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SELF_BUILDING_")}
        env["SELF_BUILDING_DATA_DIR"] = str(Path(tmp) / "data")
        status = [sys.executable, "-m", "server", "status", "--json"]
        wall_seconds(status, env)  # creates the databases and warms the file cache
        wall_seconds(BARE, env)
        ours: list[float] = []
        bare: list[float] = []
        for _ in range(rounds):
            ours.append(wall_seconds(status, env))
            bare.append(wall_seconds(BARE, env))
    return {
        "rounds": rounds,
        "status_s": statistics.median(ours),
        "bare_s": statistics.median(bare),
        "ratio": statistics.median(ours) / statistics.median(bare),
    }


def main() -> dict[str, float]:
    f = measure()
    sys.stdout.write(
        f"status CLI (median of {f['rounds']:.0f}): {f['status_s']:.2f} s; a bare import of the MCP SDK "
        f"{f['bare_s']:.2f} s, ratio {f['ratio']:.2f}  [target <= {TARGET_SECONDS:g} s: "
        f"{'met' if f['status_s'] <= TARGET_SECONDS else 'MISSED'}]\n"
    )
    return f


if __name__ == "__main__":
    main()
