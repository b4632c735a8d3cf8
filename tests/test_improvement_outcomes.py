"""Honest cycle outcomes and risk as blast radius (issue 13, guarantees 4 and 8), through the MCP tools against the
scripted model and the demo workspace: a cycle whose candidates all errored is ``failed`` with counts and an audit
entry per candidate; one whose candidates all failed validation is ``no_improvement``; a quadrupled latency of a
leaf module with tests is worked on at the default tolerance; a module many others import, or a shared one, is left
out at tolerance ``low`` and listed with its risk factors; the opportunity beyond ``max_improvements`` (and a second
one of a component already picked) is listed; a held change rejected later turns the cycle's status honest."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from server.settings import Settings
from tests.conftest import call, connect
from tests.llm_server import ScriptedLLM
from tests.test_improvement_cycle import FAST_STATS, build, latency_points, push_degradations
from tests.waiting import cycle_when

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

RATIO = '''"""A ratio helper every tenant shares."""


def ratio(a: float, b: float) -> float:
    """a / b, 0 when b is 0."""
    return a / b if b else 0.0
'''
RATIO_TESTS = """from components.shared.ratio import ratio


def test_ratio() -> None:
    assert ratio(1.0, 2.0) == 0.5 and ratio(1.0, 0.0) == 0.0
"""


async def push_metric(client: Client, component: str, name: str, recent: float) -> None:
    points = [dict(p, name=name) for p in latency_points(component, 100, recent, time.time())]
    pushed = await call(client, "ingest_telemetry", {"tenant_id": "default", "metrics": points})
    assert pushed["accepted"]["metrics"] == 72


async def audited(client: Client, kind: str) -> list[dict[str, Any]]:
    found = await call(client, "query_audit_log", {"kind": kind, "limit": 100})
    entries: list[dict[str, Any]] = found["entries"]
    return entries


async def test_a_cycle_whose_candidates_all_errored_is_failed_with_counts_and_audited(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.fail(500, times=10)
    server = build(settings, scripted_llm)
    async with connect(server) as client:
        await push_degradations(client, ("slow_stats", 180), ("word_index", 130))
        cycle = await call(client, "trigger_improvement_cycle", {"max_improvements": 2})
        again = await call(client, "get_improvement_cycle", {"cycle_id": cycle["cycle_id"]})
        results = await audited(client, "generation_result")
        finished = await audited(client, "improvement_cycle_finished")
    assert cycle["status"] == "failed", cycle["message"]
    assert cycle["outcomes"] == {"error": 2} and again["outcomes"] == {"error": 2} and again["status"] == "failed"
    assert "cycle failed: 2 error" in cycle["message"]
    assert sorted(e["detail"]["component"] for e in results) == ["slow_stats", "word_index"]
    for entry in results:
        detail = entry["detail"]
        assert detail["succeeded"] is False and detail["cycle_id"] == cycle["cycle_id"], detail
        assert "the LLM could not be asked" in detail["error"], detail
    (end,) = finished
    assert end["detail"]["status"] == "failed" and end["detail"]["outcomes"] == {"error": 2}


async def test_a_cycle_whose_candidates_all_failed_validation_is_no_improvement(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply("I would rather not change anything.", times=10)
    server = build(settings, scripted_llm)
    async with connect(server) as client:
        await push_degradations(client, ("slow_stats", 180))
        cycle = await call(client, "trigger_improvement_cycle", {"max_improvements": 1, "dry_run": True})
        results = await audited(client, "generation_result")
    assert cycle["status"] == "no_improvement", cycle["message"]
    assert cycle["outcomes"] == {"validation_failed": 1}
    assert [e["detail"]["succeeded"] for e in results] == [False]


async def test_a_quadrupled_latency_of_a_leaf_with_tests_is_worked_on_at_the_default_tolerance(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    """How bad the problem is does not make a change risky: slow_stats is imported by nothing and has tests."""
    scripted_llm.reply(FAST_STATS)
    server = build(settings, scripted_llm)
    async with connect(server) as client:
        await push_degradations(client, ("slow_stats", 400))
        insights = await call(client, "query_telemetry_insights", {"tenant_id": "default"})
        cycle = await call(client, "trigger_improvement_cycle", {"max_improvements": 1, "dry_run": True})
    assert [o["risk"] for o in insights["opportunities"] if o["component"] == "slow_stats"] == ["high"]  # severity
    (only,) = cycle["candidates"]
    assert (only["component"], only["status"], only["risk"]) == ("slow_stats", "dry_run", "low"), only
    factors = only["risk_factors"]
    assert factors["importers"] == 0 and factors["tests"] == ["tests/test_slow_stats.py"], factors
    assert factors["shared"] is False and factors["own_code"] is False and factors["rollbacks_30d"] == 0
    assert cycle["status"] == "completed" and cycle["left_out"] == []


async def test_a_widely_imported_or_shared_module_is_left_out_at_low_tolerance_and_listed(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    server = build(settings, scripted_llm)
    components = settings.workspace / "components"
    for name in ("report", "alerts", "dashboard"):
        (components / f"{name}.py").write_text(
            f'"""Uses percentile."""\n\nfrom components.slow_stats import percentile\n\n\ndef {name}() -> float:\n'
            "    return percentile([1.0, 2.0], 50)\n",
            encoding="utf-8",
        )
    (components / "shared").mkdir()
    (components / "shared" / "ratio.py").write_text(RATIO, encoding="utf-8")
    (settings.workspace / "tests" / "test_ratio.py").write_text(RATIO_TESTS, encoding="utf-8")
    async with connect(server) as client:
        await push_degradations(client, ("slow_stats", 180), ("ratio", 150))
        cycle = await call(client, "trigger_improvement_cycle", {"risk_tolerance": "low"})
        again = await call(client, "get_improvement_cycle", {"cycle_id": cycle["cycle_id"]})
    assert scripted_llm.requests == [] and cycle["candidates"] == []
    assert cycle["status"] == "nothing_to_do" and cycle["left_out_total"] == 2, cycle["message"]
    assert again["left_out"] == cycle["left_out"]
    stats, ratio = cycle["left_out"]
    assert (stats["component"], stats["reason"], stats["risk"]) == ("slow_stats", "risk_above_tolerance", "medium")
    assert stats["risk_factors"]["importers"] == 3
    assert stats["risk_factors"]["importer_examples"] == ["components.alerts", "components.dashboard",
                                                          "components.report"]  # fmt: skip
    assert "3 workspace modules import it" in stats["message"] and "above the tolerance low" in stats["message"]
    assert (ratio["component"], ratio["reason"], ratio["risk"]) == ("ratio", "risk_above_tolerance", "medium")
    assert ratio["risk_factors"]["shared"] is True and "shared package" in ratio["message"]
    assert "2 left out (2 risk_above_tolerance)" in cycle["message"]


async def test_opportunities_beyond_max_improvements_and_of_a_picked_component_are_listed(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(FAST_STATS)
    server = build(settings, scripted_llm)
    async with connect(server) as client:
        await push_degradations(client, ("slow_stats", 180), ("word_index", 130))
        await push_metric(client, "slow_stats", "duration_ms", 115)
        cycle = await call(client, "trigger_improvement_cycle", {"max_improvements": 1, "dry_run": True})
    (only,) = cycle["candidates"]
    assert (only["component"], only["metric"], only["status"]) == ("slow_stats", "latency_ms", "dry_run")
    left = {(e["component"], e["metric"]): e for e in cycle["left_out"]}
    assert set(left) == {("word_index", "latency_ms"), ("slow_stats", "duration_ms")}, cycle["left_out"]
    beyond = left[("word_index", "latency_ms")]
    assert beyond["reason"] == "beyond_max_improvements" and "max_improvements is 1" in beyond["message"]
    assert beyond["risk"] == "low" and beyond["risk_factors"]["tests"] == ["tests/test_word_index.py"]
    second = left[("slow_stats", "duration_ms")]
    assert second["reason"] == "same_component" and "latency_ms opportunity ranks higher" in second["message"]
    assert cycle["left_out_total"] == 2 and cycle["status"] == "completed"


async def test_a_held_change_rejected_later_makes_the_cycle_no_improvement(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(FAST_STATS)
    server = build(settings, scripted_llm, improvement_review_components=["slow_stats"])
    async with connect(server) as client:
        await push_degradations(client, ("slow_stats", 180))
        cycle = await call(client, "trigger_improvement_cycle", {"max_improvements": 1})
        assert cycle["status"] == "completed" and cycle["outcomes"] == {"pending_approval": 1}, cycle["message"]
        (held,) = cycle["candidates"]
        await call(client, "approve_change", {"change_id": held["deployment_id"], "approve": False, "reason": "no"})
        found = await cycle_when(client, cycle["cycle_id"], lambda found: found["status"] != "completed", timeout=30)
        settled = await audited(client, "improvement_cycle_settled")
    assert found["status"] == "no_improvement" and found["outcomes"] == {"rejected": 1}
    assert found["finished_at"] == cycle["finished_at"]
    (entry,) = settled
    assert entry["detail"]["was"] == "completed" and entry["detail"]["status"] == "no_improvement"


def test_the_risk_scan_resolves_relative_imports(tmp_path: Path) -> None:
    from generators.improvement.risk import assess, scan

    (tmp_path / "components" / "shop").mkdir(parents=True)
    (tmp_path / "components" / "__init__.py").write_text("")
    (tmp_path / "components" / "shop" / "__init__.py").write_text("from . import cart\n")
    (tmp_path / "components" / "shop" / "cart.py").write_text("from .prices import total\n")
    (tmp_path / "components" / "shop" / "prices.py").write_text("def total() -> int:\n    return 1\n")
    (tmp_path / "components" / "shop" / "views.py").write_text("from ..shop.prices import total\nimport os\n")
    (tmp_path / "components" / "broken.py").write_text("def (:\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_prices.py").write_text("from components.shop.prices import total\n")
    facts = scan(tmp_path)
    assert facts.importers["components.shop.prices"] == {"components.shop.cart", "components.shop.views"}
    assert facts.importers["components.shop.cart"] == {"components.shop"}
    risk = assess("components/shop/prices.py", facts, own_code=False, shared_packages=frozenset(), rollbacks=0)
    assert risk.level == "low" and risk.factors["importers"] == 2 and risk.factors["tests"] == ["tests/test_prices.py"]
    cart = assess("components/shop/cart.py", facts, own_code=False, shared_packages=frozenset(), rollbacks=1)
    assert cart.level == "medium" and any("no tests" in r for r in cart.reasons)
    assert any("rolled back" in r for r in cart.reasons)


async def test_a_spend_cap_stops_the_cycle_and_the_candidates_not_started_say_why(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    """The first candidate's first answer spends the cycle's tokens: its second round is refused (a spend cap), and
    the next candidate is not started; every candidate is in the audit log."""
    scripted_llm.reply("I would rather not change anything.", times=10)
    server = build(settings, scripted_llm, llm_max_tokens_per_cycle=1)
    async with connect(server) as client:
        await push_degradations(client, ("slow_stats", 180), ("word_index", 130))
        cycle = await call(client, "trigger_improvement_cycle", {"max_improvements": 2})
        results = await audited(client, "generation_result")
    first, second = cycle["candidates"]
    assert cycle["status"] == "failed" and cycle["outcomes"] == {"error": 1, "skipped": 1}, cycle["message"]
    assert first["status"] == "error" and "llm_max_tokens_per_cycle" in first["message"], first["message"]
    assert second["status"] == "skipped" and second["message"].startswith("not started: the LLM could not be asked")
    assert "llm_max_tokens_per_cycle" in second["message"] and len(scripted_llm.requests) == 1
    assert sorted(e["detail"]["component"] for e in results) == ["slow_stats", "word_index"]
    assert all(e["detail"]["succeeded"] is False and e["detail"]["error"] for e in results)
