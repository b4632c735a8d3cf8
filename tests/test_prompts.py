"""The diagnose_system prompt and argument completion, through the MCP client."""

from __future__ import annotations

import pytest
from mcp.types import PromptReference

from tests.conftest import ServerFactory, connect

pytestmark = pytest.mark.anyio


async def test_diagnose_system_walks_status_analysis_script(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        listed = await client.list_prompts()
        prompt = next(p for p in listed.prompts if p.name == "diagnose_system")
        assert {a.name for a in prompt.arguments or []} == {"symptom", "platform"}
        result = await client.get_prompt("diagnose_system", {"symptom": "the box is slow", "platform": "bash"})
    text = result.messages[0].content.text  # type: ignore[union-attr]
    assert text.startswith('The user reports: "the box is slow".')
    steps = ["get_system_status", "analyze_system_performance", "get_top_processes", "generate_script"]
    positions = [text.index(step) for step in steps]
    assert positions == sorted(positions)  # status → analysis → processes → script, in that order
    assert 'platform="bash"' in text and "--apply" in text


async def test_prompt_without_arguments_and_unknown_platform(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        plain = await client.get_prompt("diagnose_system", {})
        odd = await client.get_prompt("diagnose_system", {"platform": "fish; rm -rf /"})
    assert plain.messages[0].content.text.startswith("Diagnose this host")  # type: ignore[union-attr]
    assert 'platform="auto"' in odd.messages[0].content.text  # type: ignore[union-attr]


async def test_completion_of_prompt_arguments(make_server: ServerFactory) -> None:
    ref = PromptReference(type="ref/prompt", name="diagnose_system")
    async with connect(make_server()) as client:
        caps = client.server_capabilities
        assert caps is not None and caps.completions is not None
        platform = await client.complete(ref, {"name": "platform", "value": "p"})
        symptom = await client.complete(ref, {"name": "symptom", "value": "gpu"})
        unknown = await client.complete(PromptReference(type="ref/prompt", name="nope"), {"name": "x", "value": ""})
    assert platform.completion.values == ["powershell"]
    assert symptom.completion.values == ["GPU overheating", "GPU out of memory"]
    assert unknown.completion.values == []
