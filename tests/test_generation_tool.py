"""``generate_component`` through the MCP client against a scripted local OpenAI-compatible server: accepted code
(with and without deploy), system-wide changes held for approval, failed generations reported, the switches, and LLM
errors turned into ToolErrors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer
from pydantic import SecretStr

from generators.validation import StageName
from server.app import create_server
from server.settings import Settings
from tests.conftest import call, call_error, connect
from tests.fake_clock import FakeClock
from tests.fakes import FakeHostSource, NoGpu
from tests.llm_server import ScriptedLLM

pytestmark = pytest.mark.anyio

# mypy (types) is the slow stage; the rest, sandboxed tests included, run for real.
STAGES: tuple[StageName, ...] = ("syntax", "imports", "security", "quality", "tenancy", "tests")
BROKEN = 'components/slugify.py\n```python\n"""Broken."""\n\n\ndef slugify(title: str) -> str:\n    return (\n```\n'


def slugify_reply(folder: str = "components") -> str:
    module = folder.replace("/", ".")
    tests = "tests" + folder.removeprefix("components")  # a tenant's tests go in its own folder under tests/
    return f'''Here is the component.

{folder}/slugify.py
```python
"""Turn titles into URL slugs."""

import re


def slugify(title: str) -> str:
    """Lower-case words of ``title`` joined by hyphens."""
    return "-".join(re.findall(r"[a-z0-9]+", title.lower()))
```

{tests}/test_slugify.py
```python
"""Tests of slugify."""

from {module}.slugify import slugify


def test_slugify_joins_words() -> None:
    """Words are joined by hyphens."""
    assert slugify("Hello, World") == "hello-world"
```
'''


def build(
    settings: Settings,
    host: FakeHostSource,
    llm: ScriptedLLM | None,
    stages: tuple[StageName, ...] = STAGES,
    clock: FakeClock | None = None,
    **overrides: Any,
) -> MCPServer:
    if llm is not None:
        overrides = {
            "llm_model": "m",
            "llm_base_url": llm.base_url,
            "llm_api_key": SecretStr("k"),
            "llm_max_retries": 0,
        } | overrides
    merged = settings.model_copy(update=overrides)
    return create_server(merged, host_source=host, gpu_source=NoGpu(), clock=clock, validation_stages=stages)


def files(workspace: Path) -> dict[str, bytes]:
    if not workspace.exists():
        return {}
    return {p.relative_to(workspace).as_posix(): p.read_bytes() for p in workspace.rglob("*") if p.is_file()}


ARGS = {"component_type": "utility", "requirements": "Turn titles into URL slugs.", "name": "slugify"}


async def test_good_component_is_returned_with_its_diff_and_nothing_is_written(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(slugify_reply())
    async with connect(build(settings, host, scripted_llm)) as client:
        before = files(settings.workspace)
        out = await call(client, "generate_component", ARGS)
        assert out["succeeded"] is True
        assert out["target_path"] == "components/slugify.py"
        assert out["files"] == ["components/slugify.py", "tests/test_slugify.py"]
        assert "+def slugify(title: str) -> str:" in out["diff"]
        assert out["diff_truncated"] is False
        assert [(r["number"], r["outcome"]) for r in out["rounds"]] == [(1, "accepted")]
        assert out["validation"]["passed"] is True
        assert [s["name"] for s in out["validation"]["stages"]] == list(STAGES)
        assert out["validation"]["stages"][-1]["status"] == "passed"  # the generated test ran in the sandbox
        assert "validation PASSED" in out["validation_text"]
        assert out["prompt_tokens"] > 0 and out["completion_tokens"] > 0
        assert out["deployment"] is None
        assert files(settings.workspace) == before
        audit = await call(client, "query_audit_log", {})
        kinds = [(e["kind"], e["tenant_id"]) for e in audit["entries"]]
        assert kinds == [("generation_result", "default"), ("generation_request", "default")]
        result, request = audit["entries"]
        assert request["detail"]["requirements"] == ARGS["requirements"]
        assert request["actor"] == "local"
        assert result["detail"]["succeeded"] is True and result["detail"]["rounds"] == 1
        assert result["detail"]["prompt_tokens"] == out["prompt_tokens"]


async def test_deploy_writes_the_files_and_lists_the_deployment(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(slugify_reply())
    async with connect(build(settings, host, scripted_llm)) as client:
        out = await call(client, "generate_component", {**ARGS, "deploy": True})
        assert out["succeeded"] is True
        assert out["deployment"]["status"] == "deployed"
        written = (settings.workspace / "components/slugify.py").read_text(encoding="utf-8")
        assert "def slugify(title: str) -> str:" in written
        assert (settings.workspace / "tests/test_slugify.py").is_file()
        listed = await call(client, "list_deployments", {})
        assert [d["deployment_id"] for d in listed["deployments"]] == [out["deployment"]["deployment_id"]]
        assert listed["deployments"][0]["paths"] == out["files"]


async def test_tenant_scoped_component_goes_under_the_tenant_folder(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(slugify_reply("components/acme"))
    async with connect(build(settings, host, scripted_llm)) as client:
        out = await call(client, "generate_component", {**ARGS, "tenant_id": "acme", "deploy": True})
        assert out["succeeded"] is True, out["validation_text"]
        assert out["target_path"] == "components/acme/slugify.py"
        assert (settings.workspace / "components/acme/slugify.py").is_file()
        listed = await call(client, "list_deployments", {"tenant_id": "acme"})
        assert listed["deployments"][0]["deployment_id"] == out["deployment"]["deployment_id"]


async def test_system_tenant_change_waits_for_approval(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(slugify_reply("components/system"))
    async with connect(build(settings, host, scripted_llm)) as client:
        out = await call(client, "generate_component", {**ARGS, "tenant_id": "system", "deploy": True})
        assert out["succeeded"] is True, out["validation_text"]
        assert out["deployment"]["status"] == "pending_approval"
        assert not (settings.workspace / "components/system/slugify.py").exists()
        pending = await call(client, "list_pending_approvals", {})
        assert [c["deployment_id"] for c in pending["changes"]] == [out["deployment"]["deployment_id"]]


async def test_failed_generation_is_a_result_with_the_report(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    for attempt in range(3):  # each reply differs (the same one again would be "no change")
        scripted_llm.reply(BROKEN.replace('"""Broken."""', f'"""Broken, attempt {attempt}."""'))
    async with connect(build(settings, host, scripted_llm)) as client:
        out = await call(client, "generate_component", {**ARGS, "deploy": True})
        assert out["succeeded"] is False
        assert [r["outcome"] for r in out["rounds"]] == ["validation_failed"] * 3
        assert all("syntax" in r["problems"][-1] for r in out["rounds"])
        assert out["validation"]["passed"] is False
        assert "validation FAILED" in out["validation_text"]
        assert out["diff"] == "" and out["files"] == [] and out["deployment"] is None
        assert len(scripted_llm.requests) == 3
        assert files(settings.workspace) == {}
        audit = await call(client, "query_audit_log", {"kind": "generation_result"})
        assert audit["entries"][0]["detail"]["succeeded"] is False
        assert audit["entries"][0]["detail"]["rounds"] == 3


async def test_no_llm_configured_names_the_settings(settings: Settings, host: FakeHostSource) -> None:
    async with connect(build(settings, host, None)) as client:
        text = await call_error(client, "generate_component", ARGS)
    assert "SELF_BUILDING_LLM_MODEL" in text and "none is configured" in text


@pytest.mark.parametrize(
    ("setting", "env"),
    [("enable_component_generation", "ENABLE_COMPONENT_GENERATION"), ("enable_self_building", "ENABLE_SELF_BUILDING")],
)
async def test_switched_off_names_the_setting(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM, setting: str, env: str
) -> None:
    async with connect(build(settings, host, scripted_llm, **{setting: False})) as client:
        text = await call_error(client, "generate_component", ARGS)
    assert setting in text and env in text
    assert scripted_llm.requests == []


async def test_llm_server_error_is_a_tool_error(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.fail(500)
    async with connect(build(settings, host, scripted_llm)) as client:
        text = await call_error(client, "generate_component", ARGS)
        assert "the LLM at" in text and "failed" in text
        audit = await call(client, "query_audit_log", {"kind": "generation_result"})
    assert audit["entries"][0]["detail"]["succeeded"] is False
    assert "the LLM at" in audit["entries"][0]["detail"]["error"]


async def test_bad_name_is_a_tool_error(settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM) -> None:
    async with connect(build(settings, host, scripted_llm)) as client:
        text = await call_error(client, "generate_component", {**ARGS, "name": "Not A Module"})
    assert "is not a module name" in text
    assert scripted_llm.requests == []


async def test_progress_is_reported_per_stage(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(slugify_reply())
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    async with connect(build(settings, host, scripted_llm)) as client:
        result = await client.call_tool("generate_component", {**ARGS, "deploy": True}, progress_callback=on_progress)
    assert not result.is_error, result.content
    messages = [m or "" for _, m in seen]
    assert messages[0].startswith("round 1 llm:")
    assert any(m.startswith("round 1 validate:") for m in messages)
    assert any(m.startswith("round 1 accepted:") for m in messages)
    assert messages[-1] == "deploying"
    assert [p for p, _ in seen] == sorted(p for p, _ in seen)


@pytest.mark.parametrize("status", [429, 503])
async def test_rate_limit_and_unavailable_are_tool_errors(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM, status: int
) -> None:
    scripted_llm.fail(status)
    async with connect(build(settings, host, scripted_llm)) as client:
        text = await call_error(client, "generate_component", ARGS)
    assert "the LLM at" in text and str(status) in text, text
    assert files(settings.workspace) == {}


async def test_llm_timeout_is_a_tool_error(settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM) -> None:
    scripted_llm.stall(3.0)
    async with connect(build(settings, host, scripted_llm, llm_timeout_seconds=0.5)) as client:
        text = await call_error(client, "generate_component", ARGS)
    assert "the LLM at" in text and "time" in text.lower(), text


async def test_generated_test_that_loops_forever_is_killed_by_the_sandbox_timeout(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    looping = slugify_reply().replace(
        '    assert slugify("Hello, World") == "hello-world"',
        '    while slugify("Hello, World") == "hello-world":\n        pass',
    )
    scripted_llm.reply(looping)
    server = build(settings, host, scripted_llm, generation_max_rounds=1, validation_test_timeout_seconds=2.0)
    async with connect(server) as client:
        out = await call(client, "generate_component", ARGS)
    assert out["succeeded"] is False and out["rounds"][0]["outcome"] == "validation_failed"
    tests = next(s for s in out["validation"]["stages"] if s["name"] == "tests")
    assert tests["status"] == "failed" and tests["details"]["timed_out"] is True
    assert "TST002" in [f["rule"] for f in tests["findings"]] and "killed" in out["validation_text"]


@pytest.mark.parametrize(
    ("stage", "old", "new", "says"),
    [
        ("imports", "import re\n", "import re\nimport no_such_package_xyz\n", "no_such_package_xyz"),
        ("security", 'return "-".join(re.findall(r"[a-z0-9]+", title.lower()))', "return str(eval(title))", "eval"),
        ("tests", '== "hello-world"', '== "hello_world"', "1 failed"),
    ],
)
async def test_rejected_code_is_reported_with_the_failing_stage(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM, stage: str, old: str, new: str, says: str
) -> None:
    reply = slugify_reply()
    assert old in reply
    scripted_llm.reply(reply.replace(old, new))
    async with connect(build(settings, host, scripted_llm, generation_max_rounds=1)) as client:
        out = await call(client, "generate_component", {**ARGS, "deploy": True})
    assert out["succeeded"] is False and out["deployment"] is None and files(settings.workspace) == {}
    failed = [s["name"] for s in out["validation"]["stages"] if s["status"] == "failed"]
    assert failed == [stage], out["validation_text"]
    assert says in out["validation_text"]
