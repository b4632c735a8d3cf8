"""The generation loop through the real ``openai`` client against a scripted local server: accepted changes, problems
fed back to the model round by round, the give-up after three rounds, and LLM errors passed through unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from generators.codegen.generation import CodeGenerator
from generators.codegen.rounds import TENANT_ID, component_path, module_name_from
from generators.errors import GenerationInputError
from generators.llm import LLMClient, LLMConfig, LLMNotConfigured, LLMUnavailable
from generators.validation import ValidationConfig, ValidationPipeline
from telemetry.ingest import TENANT_PATTERN
from tests.llm_server import ScriptedLLM

pytestmark = pytest.mark.anyio

FAST = ("syntax", "imports", "security", "quality", "tenancy", "tests")
GREETING = '''"""Greetings."""


def greet(name: str) -> str:
    """Greet ``name``."""
    return "Hello " + name
'''
GREETING_TEST = '''"""Tests of greet."""

from components.greeting import greet


def test_greet() -> None:
    """The name follows the greeting."""
    assert greet("Ann") == "Hello Ann"
'''
LEDGER = '''"""Bank ledger."""

SECRET_LEDGER_TOTAL = 0
'''


def slugify_reply(body: str = 'return "-".join(re.findall(r"[a-z0-9]+", title.lower()))', header: str = "") -> str:
    return f'''Here is the component.

components/slugify.py
```python
"""Turn titles into URL slugs."""

import re
{header}

def slugify(title: str) -> str:
    """Lower-case words of ``title`` joined by hyphens."""
    {body}
```

tests/test_slugify.py
```python
"""Tests of slugify."""

from components.slugify import slugify


def test_slugify_joins_words() -> None:
    """Words are joined by hyphens."""
    assert slugify("Hello, World") == "hello-world"
```
'''


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    for rel, text in {
        "components/greeting.py": GREETING,
        "tests/test_greeting.py": GREETING_TEST,
        "components/bank/ledger.py": LEDGER,
    }.items():
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(text, encoding="utf-8")
    return ws


@pytest.fixture
async def llm(scripted_llm: ScriptedLLM) -> AsyncIterator[LLMClient]:
    client = LLMClient(
        LLMConfig(base_url=scripted_llm.base_url, model="scripted", api_key=SecretStr("test"), max_retries=0)
    )
    try:
        yield client
    finally:
        await client.close()


def generator(llm: LLMClient, workspace: Path, tmp_path: Path, stages: Any = FAST) -> CodeGenerator:
    pipeline = ValidationPipeline(ValidationConfig(mypy_cache_dir=tmp_path / "mypy-cache"))
    return CodeGenerator(
        llm, pipeline, workspace, ("components/", "tests/"), max_rounds=3, stages=stages, test_timeout=30
    )


def snapshot(workspace: Path) -> dict[str, bytes]:
    return {p.relative_to(workspace).as_posix(): p.read_bytes() for p in workspace.rglob("*") if p.is_file()}


def feedback(scripted_llm: ScriptedLLM, index: int) -> str:
    """The retry message of request ``index``, after checking it follows the model's previous reply (a request holds
    the prompt and the latest exchange only)."""
    messages = scripted_llm.requests[index]["messages"]
    assert [m["role"] for m in messages] == ["system", "user"] + ["assistant", "user"] * min(index, 1)
    content = messages[-1]["content"]
    assert isinstance(content, str)
    return content


async def test_good_code_is_accepted_in_round_one_with_every_stage(
    scripted_llm: ScriptedLLM, llm: LLMClient, workspace: Path, tmp_path: Path
) -> None:
    scripted_llm.reply(slugify_reply())
    before = snapshot(workspace)
    events: list[tuple[str, int, str]] = []

    async def progress(stage: str, number: int, message: str) -> None:
        events.append((stage, number, message))

    result = await generator(llm, workspace, tmp_path, stages=None).generate_component(
        "utility", "Slugify titles for URLs", name="slugify", progress=progress
    )

    assert result.succeeded, result.render()
    assert result.target_path == "components/slugify.py"
    assert result.change is not None
    assert result.change.created == ["components/slugify.py", "tests/test_slugify.py"]
    assert "+def slugify(title: str) -> str:" in result.diff
    assert result.report is not None
    assert {stage.name: stage.status for stage in result.report.stages} == {
        "syntax": "passed",
        "imports": "passed",
        "security": "passed",
        "types": "passed",
        "quality": "passed",
        "tenancy": "passed",
        "tests": "passed",
    }
    assert result.report.stage("tests").details["passed"] == 1
    assert [r.outcome for r in result.rounds] == ["accepted"]
    assert result.prompt_tokens > 0 and result.completion_tokens > 0
    assert result.prompt_tokens == result.rounds[0].prompt_tokens
    assert [e[0] for e in events] == ["llm", "validate", "accepted"]
    assert snapshot(workspace) == before, "generation must never write to the workspace"
    assert len(scripted_llm.requests) == 1
    prompt = scripted_llm.requests[0]["messages"][1]["content"]
    assert "components/slugify.py" in prompt and "Slugify titles for URLs" in prompt


async def test_syntax_error_is_fed_back_and_the_fix_accepted_in_round_two(
    scripted_llm: ScriptedLLM, llm: LLMClient, workspace: Path, tmp_path: Path
) -> None:
    broken = slugify_reply().replace("def slugify(title: str) -> str:", "def slugify(title: str) -> str")
    scripted_llm.reply(broken)
    scripted_llm.reply(slugify_reply())

    result = await generator(llm, workspace, tmp_path).generate_component("utility", "Slugify", name="slugify")

    assert result.succeeded, result.render()
    assert [r.outcome for r in result.rounds] == ["validation_failed", "accepted"]
    retry = feedback(scripted_llm, 1)
    assert "components/slugify.py:6: [SYN001]" in retry
    assert "round 1 of 3" in retry
    assert scripted_llm.requests[1]["messages"][2]["content"] == broken
    assert result.rounds[0].validation is not None and result.rounds[0].validation["passed"] is False
    assert result.prompt_tokens == sum(r.prompt_tokens for r in result.rounds)


async def test_unresolvable_import_fails_after_three_rounds_with_every_report(
    scripted_llm: ScriptedLLM, llm: LLMClient, workspace: Path, tmp_path: Path
) -> None:
    for attempt in range(3):  # each reply differs (the same one again would be "no change")
        scripted_llm.reply(slugify_reply(header=f"import no_such_package_xyz\n\nATTEMPT = {attempt}\n"))

    result = await generator(llm, workspace, tmp_path).generate_component("utility", "Slugify", name="slugify")

    assert not result.succeeded
    assert result.change is None and result.diff == ""
    assert [r.outcome for r in result.rounds] == ["validation_failed"] * 3
    assert len(scripted_llm.requests) == 3, "no fourth request after the last round"
    text = result.render()
    assert text.count("no_such_package_xyz") >= 3 and "after 3 round(s)" in text
    assert result.report is not None and result.report.stage("imports").status == "failed"
    assert result.report.stage("tests").status == "skipped", "code with broken imports is never run"
    assert "no_such_package_xyz" in feedback(scripted_llm, 2)


async def test_eval_is_fed_back_and_fixed_by_an_edit_of_the_previous_round(
    scripted_llm: ScriptedLLM, llm: LLMClient, workspace: Path, tmp_path: Path
) -> None:
    scripted_llm.reply(slugify_reply(body="return str(eval(title))"))
    scripted_llm.reply(
        "components/slugify.py\n```python\n<<<<<<< SEARCH\n    return str(eval(title))\n=======\n"
        '    return "-".join(re.findall(r"[a-z0-9]+", title.lower()))\n>>>>>>> REPLACE\n```\n'
    )

    result = await generator(llm, workspace, tmp_path).generate_component("utility", "Slugify", name="slugify")

    assert result.succeeded, result.render()
    retry = feedback(scripted_llm, 1)
    assert "security: failed" in retry and "eval" in retry
    assert "return str(eval(title))" in retry, "the retry shows the files the next SEARCH must match"
    assert result.change is not None
    assert result.change.created == ["components/slugify.py", "tests/test_slugify.py"]
    assert "eval" not in result.change.files["components/slugify.py"]


async def test_failing_tests_are_fed_back(
    scripted_llm: ScriptedLLM, llm: LLMClient, workspace: Path, tmp_path: Path
) -> None:
    scripted_llm.reply(slugify_reply(body='return title.replace(" ", "_")'))
    scripted_llm.reply(slugify_reply())

    result = await generator(llm, workspace, tmp_path).generate_component("utility", "Slugify", name="slugify")

    assert result.succeeded, result.render()
    first = result.rounds[0].validation
    assert first is not None
    assert [s["status"] for s in first["stages"] if s["name"] == "tests"] == ["failed"]
    retry = feedback(scripted_llm, 1)
    assert "tests: failed" in retry and "test_slugify_joins_words" in retry


async def test_unmatched_search_gets_did_you_mean_then_a_correct_edit_is_accepted(
    scripted_llm: ScriptedLLM, llm: LLMClient, workspace: Path, tmp_path: Path
) -> None:
    def edit(search: str) -> str:
        replace = '    return f"Hello {name}"'
        return (
            f"components/greeting.py\n```python\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n"
        )

    scripted_llm.reply(edit('    return "Hello "+name'))
    scripted_llm.reply(edit('    return "Hello " + name'))

    result = await generator(llm, workspace, tmp_path).improve({"components/greeting.py": GREETING}, "Use an f-string.")

    assert result.succeeded, result.render()
    assert [r.outcome for r in result.rounds] == ["edit_error", "accepted"]
    assert result.rounds[0].validation is None
    retry = feedback(scripted_llm, 1)
    assert "Did you mean lines 6-6?" in retry and 'return "Hello " + name' in retry
    assert result.change is not None and result.change.modified == ["components/greeting.py"]
    assert 'return f"Hello {name}"' in result.change.files["components/greeting.py"]
    assert result.report is not None
    tests = result.report.stage("tests")
    assert tests.status == "passed" and tests.details["passed"] == 1, "the module's existing tests ran"
    assert "Improve components/greeting.py" in scripted_llm.requests[0]["messages"][1]["content"]


async def test_an_improved_tool_must_stay_a_tool(
    scripted_llm: ScriptedLLM, llm: LLMClient, workspace: Path, tmp_path: Path
) -> None:
    """A change of a served tool's module that breaks the rules of a tool (here: its return annotation dropped) is
    refused like a validation failure and fed back; one that keeps them is accepted."""
    (workspace / "components/greet.py").write_text(GREETING, encoding="utf-8")
    (workspace / "tests/test_greet.py").write_text(GREETING_TEST.replace(".greeting", ".greet"), encoding="utf-8")

    def edit(search: str, replace: str) -> str:
        return f"components/greet.py\n```python\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n```\n"

    untyped = "def greet(name: str):  # type: ignore[no-untyped-def]"
    scripted_llm.reply(
        edit('def greet(name: str) -> str:\n    """Greet ``name``."""\n    return "Hello " + name',
             f'{untyped}\n    """Greet ``name``."""\n    return f"Hello {{name}}"')
    )  # fmt: skip
    scripted_llm.reply(edit(untyped, "def greet(name: str) -> str:"))  # on top of the first

    result = await generator(llm, workspace, tmp_path).improve(
        {"components/greet.py": GREETING}, "Use an f-string.", component_type="tool"
    )

    assert [r.outcome for r in result.rounds] == ["validation_failed", "accepted"], result.render()
    assert "tool greet: annotate the return type" in feedback(scripted_llm, 1)
    assert result.change is not None and "def greet(name: str) -> str:" in result.change.files["components/greet.py"]


async def test_tenant_component_is_scoped_and_other_tenants_are_hidden(
    scripted_llm: ScriptedLLM, llm: LLMClient, workspace: Path, tmp_path: Path
) -> None:
    reply = slugify_reply().replace("components/slugify.py", "components/shop/slugify_titles.py")
    reply = reply.replace("tests/test_slugify.py", "tests/shop/test_slugify_titles.py")  # a tenant's tests folder
    scripted_llm.reply(reply.replace("from components.slugify", "from components.shop.slugify_titles"))

    result = await generator(llm, workspace, tmp_path).generate_component("utility", "Slugify titles", tenant_id="shop")

    assert result.succeeded, result.render()
    assert result.target_path == "components/shop/slugify_titles.py"
    prompt = scripted_llm.requests[0]["messages"][1]["content"]
    assert "ledger" not in prompt and "greeting" in prompt
    assert "tenant 'shop'" in scripted_llm.requests[0]["messages"][0]["content"]


async def test_reply_without_the_target_module_is_fed_back(
    scripted_llm: ScriptedLLM, llm: LLMClient, workspace: Path, tmp_path: Path
) -> None:
    for attempt in range(3):  # only the tests, each round different (the same reply again would be "no change")
        test = f"def test_slug_{attempt}() -> None:\n    assert slug('A b') == 'a-b'\n"
        scripted_llm.reply(f"tests/test_slug.py\n```python\nfrom components.slug import slug\n\n\n{test}```\n")

    result = await generator(llm, workspace, tmp_path).generate_component("utility", "Slugify", name="slug")

    assert not result.succeeded
    assert [r.outcome for r in result.rounds] == ["validation_failed"] * 3
    assert "did not create components/slug.py" in feedback(scripted_llm, 1)


async def test_llm_server_errors_raise_llm_unavailable(
    scripted_llm: ScriptedLLM, llm: LLMClient, workspace: Path, tmp_path: Path
) -> None:
    scripted_llm.fail(500)
    with pytest.raises(LLMUnavailable, match="HTTP 500"):
        await generator(llm, workspace, tmp_path).generate_component("utility", "Slugify", name="slugify")


async def test_no_llm_configured_raises_llm_not_configured(workspace: Path, tmp_path: Path) -> None:
    with pytest.raises(LLMNotConfigured):
        await generator(LLMClient(LLMConfig()), workspace, tmp_path).improve(
            {"components/greeting.py": GREETING}, "Faster."
        )


def test_module_names_and_paths(workspace: Path) -> None:
    assert module_name_from("Write a rate limiter for the API") == "rate_limiter_api"
    assert module_name_from("!!!") == "component"
    assert component_path(workspace, "components", None, "greeting", None) == ("components/greeting_2.py", "greeting_2")
    assert component_path(workspace, "components", "cache", "", "acme") == ("components/acme/cache.py", "cache")
    assert component_path(workspace, "components", "cache", "", "acme.eu") == ("components/acme.eu/cache.py", "cache")
    for name, tenant in [("greeting", None), ("Bad-Name", None), ("class", None), ("ok", "../etc"), ("ok", "_acme")]:
        with pytest.raises(GenerationInputError):
            component_path(workspace, "components", name, "x", tenant)


def test_one_tenant_id_rule_in_every_part() -> None:
    """What telemetry stores for a tenant, code generation can write for it, and no more: the two packages (which may
    not import each other) hold one rule."""
    assert TENANT_ID.pattern == TENANT_PATTERN.pattern
