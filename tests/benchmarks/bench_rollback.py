"""Rollback of a 10-file deployment (plain workspace, journaled, fsynced): p50 over 20 runs (target <= 100 ms)."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from generators.deploy import Deployer, SqliteAuditLog, SqliteVersionStore

FILES = 10


def measure(runs: int = 20, use_git: bool = False) -> dict[str, float]:
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        workspace, data = Path(tmp) / "ws", Path(tmp) / "data"
        (workspace / "components").mkdir(parents=True)
        if use_git:
            subprocess.run(["git", "init", "-q"], cwd=workspace, check=True, capture_output=True, timeout=30)
        db = data / "deploy.sqlite3"
        deployer = Deployer(workspace, data, SqliteVersionStore(db), SqliteAuditLog(db), use_git=use_git)
        for run in range(runs):
            files = {f"components/m{i}.py": f"VALUE = {run}  # {i}\n".encode() * 200 for i in range(FILES)}
            deployment = deployer.deploy("default", "bench", files, actor="bench", reason="bench")
            start = time.perf_counter()
            deployer.rollback(deployment.id, actor="bench", reason="bench")
            times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"runs": runs, "p50_ms": statistics.median(times), "max_ms": times[-1]}


def main() -> dict[str, float]:
    figures = measure()
    _report("plain workspace", figures)
    if shutil.which("git"):
        _report("git workspace, with its commit", measure(use_git=True))
    return figures


def _report(label: str, figures: dict[str, float]) -> None:
    sys.stdout.write(
        f"rollback of a {FILES}-file deployment ({label}, {figures['runs']:.0f} runs): p50 {figures['p50_ms']:.1f} ms,"
        f" max {figures['max_ms']:.1f} ms  [target p50 <= 100 ms: {'met' if figures['p50_ms'] <= 100 else 'MISSED'}]\n"
    )


if __name__ == "__main__":
    main()
