"""Learning from attempts (issue 13, guarantee 7), through the MCP tools against a scripted model: every attempt is
archived per component, the next attempt on that component is shown why the earlier ones failed, and an answer that
was already rolled back is refused before any test runs; with several candidates per opportunity each one is
validated and the one that measures best is deployed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import MCPError

from server.settings import Settings
from tests.conftest import as_key, call, connect
from tests.llm_server import ScriptedLLM
from tests.test_improvement_verdict import COUNTING_BENCH, FASTER, RENAME, build, finished, push_degradations

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ATTEMPTS = "improvements://attempts/default/slow_stats"


def user_text(request: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content", "")) for m in request["messages"] if m.get("role") == "user")


async def test_a_rolled_back_answer_is_shown_to_the_next_attempt_and_refused_when_repeated(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(RENAME)  # cycle 1: same speed, rolled back as no measurable improvement
    scripted_llm.reply(RENAME)  # cycle 2, round 1: the same answer again
    scripted_llm.reply(FASTER)  # cycle 2, round 2: a real improvement
    server = build(settings, scripted_llm)
    (settings.workspace / "benchmarks" / "bench_slow_stats.py").write_text(COUNTING_BENCH, encoding="utf-8")
    async with connect(server) as client:
        await push_degradations(client, ("slow_stats", 180))
        first = await call(client, "trigger_improvement_cycle", {"max_improvements": 1})
        (one,) = (await finished(client, first["cycle_id"]))["candidates"]
        assert one["status"] == "rolled_back" and one["message"].startswith("rolled back: no measurable improvement")
        second = await call(client, "trigger_improvement_cycle", {"max_improvements": 1})
        (two,) = (await finished(client, second["cycle_id"]))["candidates"]
        archived = json.loads((await client.read_resource(ATTEMPTS)).contents[0].text)  # type: ignore[union-attr]
        with as_key("other", ["read"], ["acme"]), pytest.raises(MCPError, match="no attempts"):
            await client.read_resource(ATTEMPTS)
    assert [(a["cycle_id"], a["outcome"]) for a in archived["attempts"]] == [
        (second["cycle_id"], "kept"),
        (first["cycle_id"], "rolled_back"),
    ], archived
    assert archived["attempts"][-1]["reason"].startswith("rolled back: no measurable improvement")
    assert "+    ranked: list[float] = []" in archived["attempts"][-1]["diff"]
    assert len(scripted_llm.requests) == 3
    shown = user_text(scripted_llm.requests[1])
    assert "Earlier attempts on this component" in shown
    assert "- rolled back, effect +0.0 %: rolled back: no measurable improvement" in shown
    assert "+    ranked: list[float] = []" in shown
    first_prompt = user_text(scripted_llm.requests[0])
    assert "Earlier attempts" not in first_prompt
    # What judges the change is said, with the benchmark itself: a model that sees what is measured aims at it.
    assert "The change is judged by the benchmark benchmarks/bench_slow_stats.py" in first_prompt
    assert "falls by more than 5 % with 95% confidence" in first_prompt and "Counted.calls" in first_prompt
    retry = user_text(scripted_llm.requests[2])
    assert "the same code as an earlier attempt on this component" in retry and "different approach" in retry
    outcomes = [r["outcome"] for r in two["rounds"]]
    assert outcomes == ["refused", "accepted"], two["rounds"]
    assert two["status"] == "kept", two
    assert "+    ordered = sorted(values)" in two["diff"] and "ranked" not in two["diff"]


async def test_several_candidates_are_validated_and_the_best_measured_one_is_deployed(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(RENAME)  # candidate 1: valid, no faster
    scripted_llm.reply(FASTER)  # candidate 2: valid, ten times fewer comparisons
    server = build(settings, scripted_llm, improvement_candidates_per_opportunity=2)
    (settings.workspace / "benchmarks" / "bench_slow_stats.py").write_text(COUNTING_BENCH, encoding="utf-8")
    async with connect(server) as client:
        await push_degradations(client, ("slow_stats", 180))
        started = await call(client, "trigger_improvement_cycle", {"max_improvements": 1})
        (only,) = (await finished(client, started["cycle_id"]))["candidates"]
        audit = await call(client, "query_audit_log", {"kind": "generation_result", "limit": 10})
    assert len(scripted_llm.requests) == 2, "one generation per candidate"
    assert only["status"] == "kept", only
    assert "+    ordered = sorted(values)" in only["diff"] and "ranked" not in only["diff"]
    assert [e["detail"]["succeeded"] for e in audit["entries"]] == [True, True], "both candidates were validated"
    assert settings.workspace.joinpath("components", "slow_stats.py").read_text().count("sorted(values)") == 1
