"""A generated tool's call overhead: the same trivial function as a built-in tool and as a generated tool (served from
its warm worker in the jail), called through the in-memory MCP client, interleaved in one run; p50 of each and the
difference (target: the generated tool <= 5 ms per call). Also a worker's cold start: the jail, Python, pydantic and
the tool imported and described (what a new or changed tool, or one whose worker died, costs once)."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client
from pydantic import SecretStr

from generators.toolhost import ToolWorker, WorkerLimits
from generators.validation.jail import Jail
from server.app import create_server
from server.settings import Settings
from tests.fakes import FakeHostSource, NoGpu
from tests.llm_server import ScriptedLLM
from tests.polling import eventually
from tools.generated_tools import tool_name

TARGET_MS = 5.0
GENERATED = tool_name("default", "echo_text")
REPLY = '''components/echo_text.py
```python
"""Echo."""


def echo_text(text: str) -> str:
    """The text, as given."""
    return text
```

tests/test_echo_text.py
```python
"""Tests of echo_text."""

from components.echo_text import echo_text


def test_echo() -> None:
    """It gives the text back."""
    assert echo_text("a") == "a"
```
'''


def echo_text(text: str) -> str:
    """The text, as given (the built-in twin)."""
    return text


def cold_start(snapshot: Path, runs: int = 5) -> float:
    """Median ms from nothing to a described tool, on the registry's snapshot of its code."""
    times = []
    for _ in range(runs):
        worker = ToolWorker(Jail(), snapshot, "components.echo_text", "echo_text", WorkerLimits())
        start = time.perf_counter()
        worker.describe()
        times.append((time.perf_counter() - start) * 1000)
        worker.close()
    return statistics.median(times)


async def measure(calls: int = 300) -> dict[str, float]:
    llm = ScriptedLLM()
    llm.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                data_dir=Path(tmp) / "data", workspace=Path(tmp) / "ws", llm_model="m", llm_base_url=llm.base_url,
                llm_api_key=SecretStr("k"), status_max_age_seconds=3600,
            )  # fmt: skip
            server = create_server(settings, host_source=FakeHostSource(), gpu_source=NoGpu(),
                                   validation_stages=("syntax", "tests"))  # fmt: skip
            server.add_tool(echo_text, name="builtin_echo_text")
            llm.reply(REPLY)
            async with Client(server) as client:
                args = {"component_type": "tool", "name": "echo_text", "requirements": "echo", "deploy": True}
                out = await client.call_tool("generate_component", args)
                assert out.structured_content and out.structured_content["succeeded"], out.content

                async def served() -> bool:  # the registry loads it right after the deployment
                    return GENERATED in {t.name for t in (await client.list_tools()).tools}

                await eventually(served, "the generated tool is served")
                served_ms = cold_start(Path(tmp) / "data" / "generated-tools" / "default" / "echo_text" / "v1")
                samples: dict[str, list[float]] = {"builtin_echo_text": [], GENERATED: []}
                for name in samples:  # warm both
                    await client.call_tool(name, {"text": "warm"})
                for _ in range(calls):
                    for name, seen in samples.items():
                        start = time.perf_counter()
                        result = await client.call_tool(name, {"text": "hello"})
                        seen.append((time.perf_counter() - start) * 1000)
                        assert not result.is_error, result.content
    finally:
        llm.stop()
    builtin, generated = (statistics.median(v) for v in samples.values())
    return {"calls": calls, "builtin_ms": builtin, "generated_ms": generated, "served_ms": served_ms}


def main() -> dict[str, float]:
    f = anyio.run(measure)
    sys.stdout.write(
        f"generated tool call (in-memory client, p50 of {f['calls']:.0f}): built-in {f['builtin_ms']:.2f} ms, "
        f"generated in its jailed worker {f['generated_ms']:.2f} ms (+{f['generated_ms'] - f['builtin_ms']:.2f} ms)  "
        f"[target <= {TARGET_MS:g} ms: {'met' if f['generated_ms'] <= TARGET_MS else 'MISSED'}]; a worker's cold "
        f"start {f['served_ms']:.0f} ms\n"
    )
    return f


if __name__ == "__main__":
    main()
