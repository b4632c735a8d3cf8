"""A full improvement cycle against a scripted local LLM: generate, validate, deploy, measure, keep or roll back.

    .venv/bin/python examples/demo/run_demo.py

It copies ``examples/demo/workspace`` (two components with tests and benchmarks) into a temporary folder, starts the
scripted OpenAI-compatible server (``scripted_llm.py``), and runs the real server over stdio as an MCP host would.
It pushes a day of latency telemetry in which both components got slower, then calls ``trigger_improvement_cycle``:
the learning engine ranks the two opportunities, the model proposes an edit for each, the edits are validated and
deployed, and after a short monitoring period each component's benchmark runs on the old and the new code
(interleaved). The faster ``slow_stats`` change is kept; the slower ``word_index`` change is rolled back to the exact
previous bytes. Add ``--keep`` to keep the temporary folder for a look.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scripted_llm  # the demo's sibling module

HERE = Path(__file__).resolve().parent


def latency(component: str, recent: float, now: float) -> list[dict[str, Any]]:
    """24 h of p95 latency every 20 minutes: 100 ms, then ``recent`` ms over the last 6 hours."""
    return [
        {"name": "latency_ms", "unit": "Milliseconds", "timestamp": now - 86_340 + i * 1200,
         "value": (recent if now - 86_340 + i * 1200 >= now - 21_540 else 100.0) + i % 5,
         "dimensions": {"Component": component}}
        for i in range(72)
    ]  # fmt: skip


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def demo(root: Path, llm_url: str) -> int:
    workspace, data = root / "workspace", root / "data"
    shutil.copytree(HERE / "workspace", workspace)
    env = {
        **os.environ,
        "SELF_BUILDING_WORKSPACE": str(workspace),
        "SELF_BUILDING_DATA_DIR": str(data),
        "SELF_BUILDING_LLM_BASE_URL": llm_url,
        "SELF_BUILDING_LLM_MODEL": "demo",
        "SELF_BUILDING_LLM_API_KEY": "demo-key",
        "SELF_BUILDING_IMPROVEMENT_MONITORING_SECONDS": "2",
        "SELF_BUILDING_IMPROVEMENT_MAX_CONCURRENCY": "2",
        "SELF_BUILDING_LOG_LEVEL": "WARNING",
    }
    command = shutil.which("self-building-mcp", path=str(Path(sys.executable).parent)) or "self-building-mcp"
    params = StdioServerParameters(command=command, args=["serve"], env=env)
    started = time.perf_counter()

    async def progress(current: float, total: float | None, message: str | None) -> None:
        say(f"  [{time.perf_counter() - started:5.1f} s] {message}")

    with (root / "server.log").open("w") as log:
        async with Client(stdio_client(params, errlog=log)) as client:
            now = time.time()
            for component, recent in (("slow_stats", 180.0), ("word_index", 130.0)):
                await client.call_tool(
                    "ingest_telemetry", {"tenant_id": "default", "metrics": latency(component, recent, now)}
                )
            say("pushed 24 h of latency telemetry for slow_stats and word_index; triggering a cycle ...")
            result = await client.call_tool(
                "trigger_improvement_cycle", {"max_improvements": 2}, progress_callback=progress
            )
    cycle = result.structured_content or {}
    if result.is_error or not cycle:
        say(f"the cycle failed: {result.content}")
        return 1
    say(f"\ncycle {cycle['cycle_id']}: {cycle['message']} ({time.perf_counter() - started:.1f} s)\n")
    for c in cycle["candidates"]:
        bench = c["figures"].get("benchmark", {})
        figures = (
            f"benchmark median {bench['before_median']:.2f} -> {bench['after_median']:.2f} ms "
            f"({bench['change_percent']:+.1f}%)"
            if "before_median" in bench
            else "no benchmark figures"
        )
        say(f"- {c['component']}: {c['status'].upper()}  {figures}")
        say(f"    goal: {c['goal']}")
        say(f"    {c['message']}")
        for line in c["diff"].splitlines():
            say(f"    | {line}")
    statuses = {c["component"]: c["status"] for c in cycle["candidates"]}
    restored = (workspace / "components/word_index.py").read_bytes() == (
        HERE / "workspace/components/word_index.py"
    ).read_bytes()
    faster = "sorted(values)" in (workspace / "components/slow_stats.py").read_text()
    ok = statuses == {"slow_stats": "kept", "word_index": "rolled_back"} and restored and faster
    say(f"slow_stats.py holds the kept change: {faster}; word_index.py is byte-identical to before: {restored}")
    say("demo passed" if ok else "unexpected outcome: see server.log (run with --keep)")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    server, url = scripted_llm.start()
    root = Path(tempfile.mkdtemp(prefix="self-building-demo-"))
    try:
        return asyncio.run(demo(root, url))
    finally:
        server.shutdown()
        if args.keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
