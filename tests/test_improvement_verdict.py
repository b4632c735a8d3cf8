"""Kept means measurably better (issue 13, guarantee 3), through the MCP tools against a scripted model: a change that
runs exactly as fast as the old code (a renamed local variable) is rolled back as "no measurable improvement" with
its figures; a faster one is kept with its effect size and confidence in get_deployment and the audit log; a slower
one is rolled back as worse. An opportunity born of an error pattern in a component's logs needs a fix with a test
that reproduces the logged failure: a change whose test passes on the old code too is refused before any deployment,
a real fix with a reproducing test is deployed and kept on its errors."""

from __future__ import annotations

import shutil
import time
from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from pydantic import SecretStr

from server.app import create_server
from server.settings import Settings
from tests.conftest import call, connect
from tests.fakes import FakeHostSource, NoGpu
from tests.llm_server import ScriptedLLM
from tests.test_improvement_cycle import DEMO, STAGES, push_degradations
from tests.test_improvement_cycle import FAST_STATS as FASTER
from tests.test_improvement_cycle import SLOW_WORDS as SLOWER
from tests.waiting import cycle_when

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


RENAME = """Clearer name for the sorted list.

components/slow_stats.py
```python
<<<<<<< SEARCH
    ordered: list[float] = []
    for value in values:
        index = 0
        while index < len(ordered) and ordered[index] < value:
            index += 1
        ordered.insert(index, value)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
=======
    ranked: list[float] = []
    for value in values:
        index = 0
        while index < len(ranked) and ranked[index] < value:
            index += 1
        ranked.insert(index, value)
    rank = max(1, math.ceil(q / 100 * len(ranked)))
    return ranked[rank - 1]
>>>>>>> REPLACE
```
"""
# The benchmark counts comparisons instead of timing: the rename's figures equal the old code's whatever the load.
COUNTING_BENCH = '''"""Comparisons made by percentile on 300 values (lower is better)."""

import random

from components.slow_stats import percentile


class Counted(float):
    calls = 0

    def __lt__(self, other: object) -> bool:
        Counted.calls += 1
        return float.__lt__(self, other)  # type: ignore[operator]


rng = random.Random(7)
percentile([Counted(rng.random() * 1000) for _ in range(300)], 95)
print(Counted.calls)
'''

KV = '''"""Settings lines of the form key=value."""


def parse_pair(text: str) -> tuple[str, str]:
    """The key and the value of ``key=value``."""
    key, value = text.split("=")
    return key.strip(), value.strip()
'''
KV_TESTS = '''"""Tests of parse_pair."""

from components.kv import parse_pair


def test_pair() -> None:
    assert parse_pair("a = b") == ("a", "b")
'''
# The 1.5B model's answer to "ValueError: not enough values to unpack": annotations rewritten, a test that passes on
# the old code as well, and the crash left in place.
ANNOTATIONS_ONLY = '''Use explicit annotations.

components/kv.py
```python
<<<<<<< SEARCH
def parse_pair(text: str) -> tuple[str, str]:
=======
def parse_pair(text: "str") -> "tuple[str, str]":
>>>>>>> REPLACE
```

tests/test_kv.py
```python
"""Tests of parse_pair."""

from components.kv import parse_pair


def test_pair() -> None:
    assert parse_pair("a = b") == ("a", "b")


def test_spaces() -> None:
    assert parse_pair(" a=b ") == ("a", "b")
```
'''
REAL_FIX = '''A line without "=" is a key with an empty value instead of a crash.

components/kv.py
```python
<<<<<<< SEARCH
    key, value = text.split("=")
=======
    key, _, value = text.partition("=")
>>>>>>> REPLACE
```

tests/test_kv.py
```python
"""Tests of parse_pair."""

from components.kv import parse_pair


def test_pair() -> None:
    assert parse_pair("a = b") == ("a", "b")


def test_a_key_without_a_value_is_not_an_error() -> None:
    """The logged failure: ValueError: not enough values to unpack (expected 2, got 1)."""
    assert parse_pair("verbose") == ("verbose", "")
```
'''


def build(settings: Settings, llm: ScriptedLLM, **overrides: Any) -> MCPServer:
    shutil.copytree(DEMO, settings.workspace, dirs_exist_ok=True)
    merged = settings.model_copy(
        update={
            "llm_model": "m",
            "llm_base_url": llm.base_url,
            "llm_api_key": SecretStr("k"),
            "llm_max_retries": 0,
            "improvement_monitoring_seconds": 0.5,
            "improvement_max_concurrency": 1,
            "improvement_benchmark_runs": 5,
            "improvement_benchmark_max_runs": 10,
            "improvement_wait_seconds": 0,
        }
        | overrides
    )
    return create_server(merged, host_source=FakeHostSource(), gpu_source=NoGpu(), validation_stages=STAGES)


async def finished(client: Client, cycle_id: str) -> dict[str, Any]:
    """The cycle once every candidate has left the states of work in progress."""
    busy = {"queued", "generating", "deploying", "monitoring"}
    return await cycle_when(
        client,
        cycle_id,
        lambda cycle: cycle["status"] != "running" and not busy & {c["status"] for c in cycle["candidates"]},
        timeout=120,
    )


async def verdicts(client: Client) -> dict[str, dict[str, Any]]:
    """The improvement_verdict audit entries' details, by deployment id."""
    found = await call(client, "query_audit_log", {"kind": "improvement_verdict", "limit": 50})
    return {e["subject"]: e["detail"] for e in found["entries"]}


async def test_an_equivalent_change_is_rolled_back_as_no_measurable_improvement(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(RENAME)
    server = build(settings, scripted_llm)
    (settings.workspace / "benchmarks" / "bench_slow_stats.py").write_text(COUNTING_BENCH, encoding="utf-8")
    module = settings.workspace / "components" / "slow_stats.py"
    before = module.read_bytes()
    async with connect(server) as client:
        await push_degradations(client, ("slow_stats", 180))
        started = await call(client, "trigger_improvement_cycle", {"max_improvements": 1})
        cycle = await finished(client, started["cycle_id"])
        (only,) = cycle["candidates"]
        assert only["status"] == "rolled_back", only
        assert "+    ranked: list[float] = []" in only["diff"]
        bench = only["figures"]["benchmark"]
        assert bench["decision"] == "no_improvement" and bench["effect_percent"] == 0.0
        assert bench["interval_percent"] == [0.0, 0.0] and bench["runs"] == 5 and bench["confidence"] == 0.95
        assert bench["before_median"] == bench["after_median"] > 1000
        (reason,) = only["reasons"]
        assert reason.startswith("no measurable improvement: neither the benchmark nor latency_ms shows"), reason
        assert "bench_slow_stats.py: no change" in reason and "5 before and 5 after" in reason
        assert only["message"] == f"rolled back: {reason}"
        deployment = await call(client, "get_deployment", {"deployment_id": only["deployment_id"]})
        audit = await verdicts(client)
    assert deployment["status"] == "rolled_back"
    assert deployment["rollback_reason"].startswith("no measurable improvement:")
    assert deployment["detail"]["decision"] == "no_improvement"
    assert deployment["detail"]["figures"]["benchmark"]["interval_percent"] == [0.0, 0.0]
    assert audit[only["deployment_id"]]["decision"] == "no_improvement"
    assert audit[only["deployment_id"]]["regressed"] is False
    assert module.read_bytes() == before, "the exact previous bytes are back"


async def test_a_faster_change_is_kept_with_its_effect_and_confidence_a_slower_one_rolled_back_as_worse(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(FASTER)
    scripted_llm.reply(SLOWER)
    server = build(settings, scripted_llm)
    words_module = settings.workspace / "components" / "word_index.py"
    words_before = words_module.read_bytes()
    async with connect(server) as client:
        await push_degradations(client, ("slow_stats", 180), ("word_index", 130))
        started = await call(client, "trigger_improvement_cycle", {"max_improvements": 2})
        cycle = await finished(client, started["cycle_id"])
        stats, words = cycle["candidates"]
        kept = await call(client, "get_deployment", {"deployment_id": stats["deployment_id"]})
        undone = await call(client, "get_deployment", {"deployment_id": words["deployment_id"]})
        audit = await verdicts(client)

    assert stats["status"] == "kept", stats
    bench = kept["detail"]["figures"]["benchmark"]
    assert kept["status"] == "deployed" and kept["detail"]["decision"] == "keep" and kept["detail"]["reasons"] == []
    assert bench["decision"] == "better" and bench["confidence"] == 0.95 and bench["runs"] >= 5
    assert bench["effect_percent"] < -50 and bench["interval_percent"][1] < -5, bench
    assert bench["interval_level"] >= 0.9 and bench["method"].startswith("Hodges-Lehmann")
    assert stats["message"].startswith("kept: benchmarks/bench_slow_stats.py: ") and "faster" in stats["message"]
    assert audit[stats["deployment_id"]]["decision"] == "keep"
    assert audit[stats["deployment_id"]]["figures"]["benchmark"]["effect_percent"] == bench["effect_percent"]

    assert words["status"] == "rolled_back", words
    slower = undone["detail"]["figures"]["benchmark"]
    assert slower["decision"] == "worse" and slower["effect_percent"] > 10 and slower["interval_percent"][0] > 5
    assert undone["rollback_reason"].startswith("regression: benchmarks/bench_word_index.py is")
    assert audit[words["deployment_id"]]["decision"] == "worse" and audit[words["deployment_id"]]["regressed"]
    assert words_module.read_bytes() == words_before


def error_lines(now: float) -> list[dict[str, Any]]:
    return [
        {
            "message": "ValueError: not enough values to unpack (expected 2, got 1)",
            "level": "ERROR",
            "component": "kv",
            "timestamp": now - 900 + 60 * i,
        }
        for i in range(6)
    ]


async def test_an_error_fix_must_prove_itself_with_a_test_that_fails_on_the_old_code(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(ANNOTATIONS_ONLY)  # cycle 1, its only round: unproven
    scripted_llm.reply(ANNOTATIONS_ONLY)  # cycle 2, round 1: unproven again, sent back with what is missing
    scripted_llm.reply(REAL_FIX)  # cycle 2, round 2: the fix with a reproducing test
    server = build(settings, scripted_llm, generation_max_rounds=1)
    (settings.workspace / "components" / "kv.py").write_text(KV, encoding="utf-8")
    (settings.workspace / "tests" / "test_kv.py").write_text(KV_TESTS, encoding="utf-8")
    module = settings.workspace / "components" / "kv.py"
    async with connect(server) as client:
        await call(client, "ingest_telemetry", {"tenant_id": "default", "logs": error_lines(time.time())})
        first = await call(client, "trigger_improvement_cycle", {"max_improvements": 1, "risk_tolerance": "high"})
        refused = await finished(client, first["cycle_id"])
        listed = await call(client, "list_deployments", {})
        assert module.read_text(encoding="utf-8") == KV, "nothing was deployed"

    server = build(settings, scripted_llm, generation_max_rounds=2)
    async with connect(server) as client:
        second = await call(client, "trigger_improvement_cycle", {"max_improvements": 1, "risk_tolerance": "high"})
        fixed = await finished(client, second["cycle_id"])
        (candidate,) = fixed["candidates"]
        deployment = await call(client, "get_deployment", {"deployment_id": candidate["deployment_id"]})
        audit = await verdicts(client)

    (attempt,) = refused["candidates"]
    assert (attempt["component"], attempt["metric"]) == ("kv", "log.errors")
    assert attempt["status"] == "validation_failed" and attempt["deployment_id"] is None, attempt
    assert "the change does not prove its fix: no test fails on the old code" in attempt["message"], attempt
    assert listed["deployments"] == []
    prompt = scripted_llm.requests[0]["messages"][1]["content"]
    assert "reproduces the logged failure" in prompt and "tests/test_kv.py" in prompt
    assert "ValueError: not enough values to unpack" in prompt

    # The same unproven answer again is sent back at once, with why it failed before; it never reaches the workspace.
    retry = scripted_llm.requests[2]["messages"][-1]["content"]
    assert "the same code as an earlier attempt" in retry
    assert "the change does not prove its fix: no test fails on the old code" in retry
    assert [r["outcome"] for r in candidate["rounds"]] == ["refused", "accepted"]
    assert candidate["status"] == "kept", candidate
    assert candidate["message"].startswith("kept: the error fix is proved"), candidate
    assert deployment["status"] == "deployed" and deployment["detail"]["decision"] == "keep"
    assert deployment["detail"]["figures"]["tests"]["status"] == "passed"
    assert audit[candidate["deployment_id"]]["kind"] == "errors"
    assert 'key, _, value = text.partition("=")' in module.read_text(encoding="utf-8")
