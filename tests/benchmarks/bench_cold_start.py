"""Cold start: spawn to `initialize` reply for `self-building-mcp serve` (stdio) vs a bare MCPServer with one tool.

Both are spawned the same way, interleaved, in the same run; the ratio of medians is the figure (target <= 1.5).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE = """
from mcp.server import MCPServer
server = MCPServer("bare")
@server.tool()
def ping() -> str:
    return "pong"
server.run()
"""
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
}


def time_to_initialize(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(INIT) + "\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    assert json.loads(line)["id"] == 1, line
    proc.stdin.close()
    proc.wait(timeout=30)
    return elapsed * 1000


def measure(rounds: int = 10) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare_server.py"
        bare.write_text(BARE, encoding="utf-8")
        env = {**os.environ, "SELF_BUILDING_DATA_DIR": str(Path(tmp) / "data"), "SELF_BUILDING_WORKSPACE": tmp}
        ours_cmd = [sys.executable, "-m", "server", "serve"]
        bare_cmd = [sys.executable, str(bare)]
        time_to_initialize(ours_cmd, env)  # warm the OS file cache for both
        time_to_initialize(bare_cmd, env)
        ours: list[float] = []
        base: list[float] = []
        for _ in range(rounds):
            ours.append(time_to_initialize(ours_cmd, env))
            base.append(time_to_initialize(bare_cmd, env))
    return {
        "rounds": rounds,
        "ours_ms": statistics.median(ours),
        "bare_ms": statistics.median(base),
        "ratio": statistics.median(ours) / statistics.median(base),
    }


def main() -> dict[str, float]:
    f = measure()
    sys.stdout.write(
        f"cold start to initialize (stdio, median of {f['rounds']:.0f}): self-building-mcp {f['ours_ms']:.0f} ms, "
        f"bare MCPServer {f['bare_ms']:.0f} ms, ratio {f['ratio']:.2f}  [target <= 1.5: "
        f"{'met' if f['ratio'] <= 1.5 else 'MISSED'}]\n"
    )
    return f


if __name__ == "__main__":
    main()
