"""Spend caps through the MCP client: a tenant's token cap per UTC day ends its next generation with the cap's
message and one audit entry, nothing deployed, and still holds after a restart; a cycle's token cap stops the
cycle's next request to the model."""

from __future__ import annotations

import pytest

from server.settings import Settings
from tests.conftest import call, call_error, connect
from tests.fakes import FakeHostSource
from tests.llm_server import ScriptedLLM
from tests.test_generation_tool import ARGS, build, files, slugify_reply
from tests.test_improvement_cycle import FAST_STATS, UNMATCHED, push_degradations, wait_until_finished
from tests.test_improvement_cycle import build as build_cycle

pytestmark = pytest.mark.anyio
CAP = 50  # tokens: the first generation's prompt alone is larger


async def test_a_tenant_day_token_cap_ends_the_next_generation_and_survives_a_restart(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(slugify_reply())
    scripted_llm.reply(slugify_reply().replace("slugify", "slug_of"), times=2)  # never asked for
    async with connect(build(settings, host, scripted_llm, llm_max_tokens_per_tenant_day=CAP)) as client:
        first = await call(client, "generate_component", {**ARGS, "deploy": True})
        assert first["succeeded"] is True and first["deployment"]["status"] == "deployed"
        spent = first["prompt_tokens"] + first["completion_tokens"]
        deployed = files(settings.workspace)
        text = await call_error(client, "generate_component", {**ARGS, "name": "slug_of", "deploy": True})
        audit = await call(client, "query_audit_log", {"kind": "llm_spend_cap_reached"})
    assert "llm_max_tokens_per_tenant_day" in text and "SELF_BUILDING_LLM_MAX_TOKENS_PER_TENANT_DAY" in text, text
    assert "tenant 'default' on " in text and f"has spent {spent:,} tokens of {CAP} tokens" in text, text
    assert len(scripted_llm.requests) == 1 and files(settings.workspace) == deployed  # nothing more was written
    [entry] = audit["entries"]
    assert entry["tenant_id"] == "default" and entry["actor"] == "local"
    assert entry["detail"]["cap"] == "llm_max_tokens_per_tenant_day" and entry["detail"]["spent"] == spent

    async with connect(build(settings, host, scripted_llm, llm_max_tokens_per_tenant_day=CAP)) as client:
        again = await call_error(client, "generate_component", {**ARGS, "name": "slug_of"})
        audit = await call(client, "query_audit_log", {"kind": "llm_spend_cap_reached"})
        results = await call(client, "query_audit_log", {"kind": "generation_result"})
    assert again == text and len(scripted_llm.requests) == 1
    assert len(audit["entries"]) == 1  # one entry per cap hit, not one per refusal
    assert [e["detail"]["succeeded"] for e in results["entries"]] == [False, False, True]


async def test_another_tenant_is_not_held_by_a_tenant_at_its_cap(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(slugify_reply())
    scripted_llm.reply(slugify_reply("components/acme"))  # the refused call uses no reply
    server = build(settings, host, scripted_llm, llm_max_tokens_per_tenant_day=CAP, generation_max_rounds=1)
    async with connect(server) as client:
        await call(client, "generate_component", ARGS)
        await call_error(client, "generate_component", ARGS)
        other = await call(client, "generate_component", {**ARGS, "tenant_id": "acme"})  # asked: a normal answer
    assert len(scripted_llm.requests) == 2 and other["rounds"][0]["prompt_tokens"] > 0


@pytest.mark.slow
async def test_a_cycle_token_cap_stops_the_cycles_next_request(settings: Settings, scripted_llm: ScriptedLLM) -> None:
    scripted_llm.reply(UNMATCHED)  # round 1: an edit that does not apply, so round 2 would ask again
    scripted_llm.reply(FAST_STATS)
    server = build_cycle(settings, scripted_llm, llm_max_tokens_per_cycle=CAP)
    async with connect(server) as client:
        await push_degradations(client, ("slow_stats", 180))
        started = await call(client, "trigger_improvement_cycle", {"dry_run": True, "max_improvements": 1})
        cycle = await wait_until_finished(client, started["cycle_id"])
        audit = await call(client, "query_audit_log", {"kind": "llm_spend_cap_reached"})
    (only,) = cycle["candidates"]
    assert only["status"] != "dry_run" and "llm_max_tokens_per_cycle" in only["message"], only
    assert f"cycle {cycle['cycle_id']} has spent" in only["message"]
    assert len(scripted_llm.requests) == 1
    [entry] = audit["entries"]
    assert entry["detail"]["cycle_id"] == cycle["cycle_id"] and entry["detail"]["cap"] == "llm_max_tokens_per_cycle"
