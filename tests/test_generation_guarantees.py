"""What the generation loop guarantees whatever the model answers (issue 13, points 1, 2 and 5), through the MCP
client against a scripted local model: no test, no deploy (tests at exactly ``tests/test_<name>.py`` that import the
code, pass and run its changed lines); no change, no deploy (byte-identical, comment-only and tests-only replies);
files the model was not asked to write are refused; prompts and retry messages stay within the token budget and
every round reports its tokens and seconds."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer
from pydantic import SecretStr

from generators.validation import StageName
from server.app import create_server
from server.settings import Settings
from tests.conftest import call, connect
from tests.fakes import FakeHostSource, NoGpu
from tests.llm_server import ScriptedLLM

pytestmark = pytest.mark.anyio

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo" / "workspace"
# mypy (types) is the slow stage; the rest, sandboxed tests included, run for real.
STAGES: tuple[StageName, ...] = ("syntax", "imports", "security", "quality", "tenancy", "tests")
ARGS = {"component_type": "utility", "name": "duration", "requirements": "Parse '15m' into seconds. Include tests."}

MODULE = '''"""Durations like 15m or 2h, in seconds."""


def parse_duration(text: str) -> int:
    """Seconds in ``text``: a whole number followed by s, m or h."""
    number, unit = text[:-1], text[-1:]
    if not number.isdigit():
        raise ValueError(f"not a duration: {text!r}")
    if unit == "h":
        return int(number) * 3600
    if unit == "m":
        return int(number) * 60
    if unit == "s":
        return int(number)
    raise ValueError(f"unknown unit in {text!r}")
'''
# Runs lines 4, 6, 7, 9, 11 and 12 of MODULE: 6 of its 11 statements (55 %).
FEW_TESTS = '''"""Tests of parse_duration."""

from components.duration import parse_duration


def test_minutes() -> None:
    """Minutes are 60 seconds."""
    assert parse_duration("15m") == 900
'''
MORE_TESTS = '''

def test_hours_seconds_and_bad_input() -> None:
    """Hours and seconds; no number or an unknown unit is an error."""
    assert parse_duration("2h") == 7200
    assert parse_duration("30s") == 30
    for bad in ("xm", "5d"):
        try:
            parse_duration(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
'''
ALL_TESTS = FEW_TESTS + MORE_TESTS


def estimate_tokens(text: str) -> int:
    """Tokens as the budget counts them: 3.5 characters a token (``generators.codegen.prompts.CHARS_PER_TOKEN``)."""
    return math.ceil(len(text) / 3.5)


def block(path: str, text: str) -> str:
    return f"{path}\n```python\n{text}```\n"


def edit(path: str, search: str, replace: str) -> str:
    return f"{path}\n```python\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n```\n"


def build(settings: Settings, llm: ScriptedLLM, **overrides: Any) -> MCPServer:
    merged = settings.model_copy(
        update={
            "llm_model": "m",
            "llm_base_url": llm.base_url,
            "llm_api_key": SecretStr("k"),
            "llm_max_retries": 0,
            "improvement_monitoring_seconds": 0.5,
            "improvement_benchmark_runs": 3,
        }
        | overrides
    )
    return create_server(merged, host_source=FakeHostSource(), gpu_source=NoGpu(), validation_stages=STAGES)


def files(workspace: Path) -> dict[str, bytes]:
    if not workspace.exists():
        return {}
    return {
        p.relative_to(workspace).as_posix(): p.read_bytes()
        for p in workspace.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def retry_message(llm: ScriptedLLM, request: int) -> str:
    """The last user message of a request after the first: the retry message the model got."""
    messages = llm.requests[request]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    text = messages[-1]["content"]
    assert isinstance(text, str)
    return text


def stage_of_tests(out: dict[str, Any]) -> dict[str, Any]:
    stage = next(s for s in out["validation"]["stages"] if s["name"] == "tests")
    assert isinstance(stage, dict)
    return stage


# --- 1. No test, no deploy ---------------------------------------------------------------------------------------


async def test_a_reply_without_tests_is_not_accepted_and_the_model_is_told_the_exact_path(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply("Here it is.\n\n" + block("components/duration.py", MODULE))
    scripted_llm.reply(block("tests/test_duration.py", ALL_TESTS))  # adds the tests to the module of round 1
    async with connect(build(settings, scripted_llm)) as client:
        out = await call(client, "generate_component", {**ARGS, "deploy": True})
    prompt = scripted_llm.requests[0]["messages"][1]["content"]
    assert "its pytest tests in tests/test_duration.py: exactly that path" in prompt
    first, second = out["rounds"]
    assert first["outcome"] == "validation_failed" and second["outcome"] == "accepted", out["rounds"]
    assert "tests/test_duration.py:0: [TST003] test file does not exist" in first["problems"][-1]
    assert "- tests: failed" in first["problems"][-1]  # never "skipped: no test paths given"
    assert "tests/test_duration.py" in retry_message(scripted_llm, 1)
    assert out["files"] == ["components/duration.py", "tests/test_duration.py"]
    assert stage_of_tests(out)["details"]["coverage_percent"] == 100.0
    assert out["deployment"]["status"] == "deployed"


async def test_each_retry_is_asked_warmer_so_that_its_answer_can_differ(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    """A small model near-greedy at a low temperature answers a retry with the very reply it was told was wrong (the
    1.5B model did, token for token, in all three rounds): each retry is sampled warmer, up to 1.0."""
    for _ in range(3):
        scripted_llm.reply(block("components/duration.py", MODULE))  # never with its tests
    async with connect(build(settings, scripted_llm, generation_max_rounds=3)) as client:
        out = await call(client, "generate_component", ARGS)
    assert out["rounds"][0]["outcome"] == "validation_failed" and not out["succeeded"]
    assert [r["temperature"] for r in scripted_llm.requests] == [0.2, 0.5, 0.8]


async def test_a_reply_whose_every_round_lacks_tests_is_never_deployed(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    for attempt in range(3):
        scripted_llm.reply(block("components/duration.py", MODULE.replace("in seconds", f"in seconds ({attempt})")))
    async with connect(build(settings, scripted_llm)) as client:
        out = await call(client, "generate_component", {**ARGS, "deploy": True})
        listed = await call(client, "list_deployments", {})
    assert out["succeeded"] is False and out["deployment"] is None and listed["deployments"] == []
    assert [r["outcome"] for r in out["rounds"]] == ["validation_failed"] * 3
    assert stage_of_tests(out)["status"] == "failed"
    assert "nothing was written" in out["message"]
    assert files(settings.workspace) == {}


async def test_tests_in_the_wrong_place_are_refused_and_failing_tests_rejected(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    """The 1.5B model's second run: its tests in tests/duration.py (never run, and failing), then failing tests."""
    failing = FEW_TESTS.replace("== 900", "== 15")
    scripted_llm.reply(block("components/duration.py", MODULE) + "\n" + block("tests/duration.py", failing))
    scripted_llm.reply(block("components/duration.py", MODULE) + "\n" + block("tests/test_duration.py", failing))
    fixed = '    assert parse_duration("15m") == 900\n' + MORE_TESTS
    scripted_llm.reply(edit("tests/test_duration.py", '    assert parse_duration("15m") == 15\n', fixed))
    async with connect(build(settings, scripted_llm)) as client:
        out = await call(client, "generate_component", {**ARGS, "deploy": True})
    refused, failed, accepted = out["rounds"]
    assert refused["outcome"] == "refused" and refused["files"] == ["components/duration.py", "tests/duration.py"]
    assert "writes tests/duration.py, which you were not asked to write" in refused["problems"][0]
    assert "Tests go in tests/test_duration.py, exactly there" in retry_message(scripted_llm, 1)
    assert failed["outcome"] == "validation_failed" and "1 failed" in failed["problems"][-1]
    assert "test_minutes" in retry_message(scripted_llm, 2)
    assert accepted["outcome"] == "accepted"
    assert out["deployment"]["status"] == "deployed"
    assert sorted(files(settings.workspace)) == ["components/duration.py", "tests/test_duration.py"]


async def test_tests_that_run_half_the_lines_are_refused_with_the_lines_named(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(block("components/duration.py", MODULE) + "\n" + block("tests/test_duration.py", FEW_TESTS))
    minutes = '    assert parse_duration("15m") == 900\n'
    scripted_llm.reply(edit("tests/test_duration.py", minutes, minutes + MORE_TESTS))
    async with connect(build(settings, scripted_llm)) as client:
        out = await call(client, "generate_component", {**ARGS, "deploy": True})
    first = out["rounds"][0]
    assert first["outcome"] == "validation_failed"
    assert "[COV001]" in first["problems"][-1] and "6 of 11 changed statements run" in first["problems"][-1]
    wanted = "add tests that execute lines 8, 10, 13-15 of components/duration.py"
    assert wanted in first["problems"][-1] and wanted in retry_message(scripted_llm, 1)
    assert out["rounds"][1]["outcome"] == "accepted", out["rounds"][1]["problems"]
    details = stage_of_tests(out)["details"]
    assert details["coverage_percent"] == 100.0 and details["changed_statements"] == 11
    assert details["coverage_required_percent"] == 80.0
    assert "11 of 11 changed statements run (100 %)" in out["validation_text"]
    assert out["deployment"]["status"] == "deployed"


async def test_tests_that_do_not_import_the_module_are_refused(settings: Settings, scripted_llm: ScriptedLLM) -> None:
    """Tests of a copy of the code (pasted into the test file) test nothing the change writes."""
    pasted = MODULE + "\n\ndef test_minutes() -> None:\n    assert parse_duration('15m') == 900\n"
    scripted_llm.reply(block("components/duration.py", MODULE) + "\n" + block("tests/test_duration.py", pasted))
    async with connect(build(settings, scripted_llm, generation_max_rounds=1)) as client:
        out = await call(client, "generate_component", {**ARGS, "deploy": True})
    assert out["succeeded"] is False and out["deployment"] is None
    assert "[TST005] tests/test_duration.py does not import components.duration" in out["validation_text"]
    assert files(settings.workspace) == {}


# --- 2. No change, no deploy; files not asked for are refused -------------------------------------------------------


async def test_the_format_example_echoed_is_refused_and_fed_back(settings: Settings, scripted_llm: ScriptedLLM) -> None:
    """The 0.5B model echoed the reply format's example and wrote components/example.py next to the component."""
    good = block("components/duration.py", MODULE) + "\n" + block("tests/test_duration.py", ALL_TESTS)
    scripted_llm.reply(good + "\n" + block("components/example.py", "<complete file content>\n"))
    scripted_llm.reply("<path>\n```python\n<complete file content>\n```\n")  # the example as it is now
    scripted_llm.reply(good)
    async with connect(build(settings, scripted_llm)) as client:
        out = await call(client, "generate_component", {**ARGS, "deploy": True})
    assert "example.py" not in scripted_llm.requests[0]["messages"][0]["content"]
    assert [r["outcome"] for r in out["rounds"]] == ["refused", "edit_error", "accepted"]
    allowed = "You may write only components/duration.py, tests/test_duration.py."
    assert "components/example.py" in out["rounds"][0]["problems"][0] and allowed in retry_message(scripted_llm, 1)
    assert "no path line" in retry_message(scripted_llm, 2)
    assert out["files"] == ["components/duration.py", "tests/test_duration.py"]
    assert out["deployment"]["status"] == "deployed"
    assert sorted(files(settings.workspace)) == ["components/duration.py", "tests/test_duration.py"]


async def test_blocks_without_path_lines_are_taken_by_their_content_and_failed_replies_are_kept(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    """20 of 24 rounds of the 0.5B model (9 of the 1.5B's) opened with a bare code block and were lost to "no path
    line" though the code was there: a module and a test file are told apart by what they define. A failed round
    keeps the start of its reply, so that what the model sent can be read afterwards."""
    rambling = "Sure! First, the module.\n```python\n" + MODULE + "```\n" + "This handles minutes. " * 200
    scripted_llm.reply(rambling)  # the module, taken as components/duration.py, still without its tests
    scripted_llm.reply("```python\n" + MODULE + "```\n\nTests:\n```python\n" + ALL_TESTS + "```\n")
    async with connect(build(settings, scripted_llm)) as client:
        out = await call(client, "generate_component", {**ARGS, "deploy": True})
    first, second = out["rounds"]
    assert first["outcome"] == "validation_failed" and first["files"] == ["components/duration.py"]
    assert "[TST003] test file does not exist" in first["problems"][-1]
    excerpt = first["reply_excerpt"]
    assert excerpt.startswith(rambling[:2000]) and f"[... {len(rambling) - 2000} more characters]" in excerpt
    assert second["outcome"] == "accepted" and second["reply_excerpt"] == ""
    assert out["files"] == ["components/duration.py", "tests/test_duration.py"]
    assert out["deployment"]["status"] == "deployed"
    assert files(settings.workspace)["tests/test_duration.py"] == ALL_TESTS.encode()


async def test_a_tenants_component_has_its_tests_in_the_tenants_test_folder(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    tests = ALL_TESTS.replace("components.duration", "components.acme.duration")
    scripted_llm.reply(block("components/acme/duration.py", MODULE) + "\n" + block("tests/test_duration.py", tests))
    scripted_llm.reply(
        block("components/acme/duration.py", MODULE) + "\n" + block("tests/acme/test_duration.py", tests)
    )
    async with connect(build(settings, scripted_llm)) as client:
        out = await call(client, "generate_component", {**ARGS, "tenant_id": "acme", "deploy": True})
    assert "its pytest tests in tests/acme/test_duration.py" in scripted_llm.requests[0]["messages"][1]["content"]
    assert [r["outcome"] for r in out["rounds"]] == ["refused", "accepted"]
    assert "Tests go in tests/acme/test_duration.py" in retry_message(scripted_llm, 1)
    assert out["files"] == ["components/acme/duration.py", "tests/acme/test_duration.py"]


def latency_points(component: str, now: float) -> list[dict[str, Any]]:
    """24 h of a component's latency every 20 minutes, 80 % higher in the newest quarter of the window."""
    points = []
    for i in range(72):
        ts = now - 24 * 3600 + 60 + i * 1200
        value = (180 if ts >= now - 6 * 3600 + 60 else 100) + (i % 5)
        points.append(
            {"name": "latency_ms", "value": value, "timestamp": ts, "unit": "Milliseconds",
             "dimensions": {"Component": component}}
        )  # fmt: skip
    return points


async def improve_slow_stats(
    settings: Settings, llm: ScriptedLLM, *, dry_run: bool, without_tests: bool = False
) -> dict[str, Any]:
    """One improvement cycle of the demo workspace aimed at slow_stats; the cycle's answer, the deployments and the
    generation_result audit entry."""
    shutil.copytree(DEMO, settings.workspace, dirs_exist_ok=True)
    if without_tests:
        (settings.workspace / "tests" / "test_slow_stats.py").unlink()
    async with connect(build(settings, llm)) as client:
        pushed = await call(
            client, "ingest_telemetry", {"tenant_id": "default", "metrics": latency_points("slow_stats", time.time())}
        )
        assert pushed["accepted"]["metrics"] == 72
        cycle = await call(client, "trigger_improvement_cycle", {"dry_run": dry_run, "max_improvements": 1})
        listed = await call(client, "list_deployments", {})
        audit = await call(client, "query_audit_log", {"kind": "generation_result"})
    return {"cycle": cycle, "deployments": listed["deployments"], "generation": audit["entries"][0]["detail"]}


SLOW_STATS = (DEMO / "components" / "slow_stats.py").read_text(encoding="utf-8")
SORT = """    ordered: list[float] = []
    for value in values:
        index = 0
        while index < len(ordered) and ordered[index] < value:
            index += 1
        ordered.insert(index, value)
"""


async def test_a_byte_identical_improvement_is_no_change_and_never_deployed(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    """The 1.5B model returned slow_stats.py unchanged; it was deployed and kept with an empty diff."""
    scripted_llm.reply(edit("components/slow_stats.py", SORT, SORT), times=3)
    before = files(DEMO)
    found = await improve_slow_stats(settings, scripted_llm, dry_run=False)
    assert found["generation"]["outcomes"] == ["no_change"] * 3
    assert found["generation"]["succeeded"] is False
    assert "Your reply changes nothing" in retry_message(scripted_llm, 1)
    (candidate,) = found["cycle"]["candidates"]
    assert candidate["status"] not in ("deploying", "monitoring", "kept", "dry_run") and candidate["diff"] == ""
    assert found["deployments"] == [] and files(settings.workspace) == before


async def test_comment_whitespace_or_tests_only_improvements_are_no_change(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    commented = SORT.replace("        index = 0\n", "        index = 0  # from the smallest\n")
    scripted_llm.reply(edit("components/slow_stats.py", SORT, '    # insertion sort, see "Knuth"\n' + commented))
    rewrapped = "    if not 0 <= q <= 100:\n"
    docstring = '    """The ``q``-th percentile (0-100) of ``values`` by the nearest-rank method."""\n'
    scripted_llm.reply(
        edit(
            "components/slow_stats.py",
            docstring + "    if not values:\n",
            '    """Nearest rank."""\n\n    if not  values :\n',
        )
        + edit("components/slow_stats.py", rewrapped, "    if not (0 <= q <= 100):\n")
    )
    scripted_llm.reply(
        edit("tests/test_slow_stats.py", "    assert percentile([3.0, 1.0, 2.0, 2.0], 50) == 2.0\n",
             "    assert percentile([3.0, 1.0, 2.0, 2.0], 50) == 2.0\n    assert percentile([9.0], 10) == 9.0\n")
    )  # fmt: skip
    before = files(DEMO)
    found = await improve_slow_stats(settings, scripted_llm, dry_run=False)
    assert found["generation"]["outcomes"] == ["no_change"] * 3
    assert "only whitespace, comments or docstrings of components/slow_stats.py" in retry_message(scripted_llm, 1)
    assert "only whitespace, comments or docstrings" in retry_message(scripted_llm, 2)
    prompt = scripted_llm.requests[0]["messages"][1]["content"]
    assert "A change of only whitespace, comments or docstrings is refused as no change." in prompt
    assert found["deployments"] == [] and files(settings.workspace) == before


async def test_an_improvement_whose_new_lines_no_test_runs_must_add_tests(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    shortcut = "    if len(values) == 1:\n        return values[0]\n    ordered = sorted(values)\n"
    scripted_llm.reply(edit("components/slow_stats.py", SORT, shortcut))
    last = "        percentile([1.0], 101)\n"
    scripted_llm.reply(
        edit(
            "tests/test_slow_stats.py",
            last,
            last + "\n\ndef test_one_value() -> None:\n    assert percentile([7.0], 50) == 7.0\n",
        )
    )
    found = await improve_slow_stats(settings, scripted_llm, dry_run=True)
    assert found["generation"]["outcomes"] == ["validation_failed", "accepted"]
    prompt = scripted_llm.requests[0]["messages"][1]["content"]
    assert "Its tests are in tests/test_slow_stats.py (shown below)" in prompt
    assert "tests/test_slow_stats.py\n```python\n" in prompt  # shown, so that the model can edit them
    assert "add tests that execute line 13 of components/slow_stats.py" in retry_message(scripted_llm, 1)
    (candidate,) = found["cycle"]["candidates"]
    assert candidate["status"] == "dry_run" and "+def test_one_value() -> None:" in candidate["diff"]
    assert "3 of 3 changed statements run (100 %)" in candidate["validation_text"]


async def test_an_improvement_of_a_module_without_tests_must_write_them(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(edit("components/slow_stats.py", SORT, "    ordered = sorted(values)\n"))
    tests = "from components.slow_stats import percentile\n\n\ndef test_rank() -> None:\n"
    scripted_llm.reply(block("tests/test_slow_stats.py", tests + "    assert percentile([3.0, 1.0, 2.0], 50) == 2.0\n"))
    found = await improve_slow_stats(settings, scripted_llm, dry_run=True, without_tests=True)
    prompt = scripted_llm.requests[0]["messages"][1]["content"]
    assert "It has no tests yet: write them in tests/test_slow_stats.py" in prompt
    assert found["generation"]["outcomes"] == ["validation_failed", "accepted"]
    assert "tests/test_slow_stats.py:0: [TST003] test file does not exist" in retry_message(scripted_llm, 1)
    (candidate,) = found["cycle"]["candidates"]
    assert candidate["status"] == "dry_run" and "+def test_rank() -> None:" in candidate["diff"]


# --- 5. The prompt's token budget; tokens and seconds per round ------------------------------------------------------


async def test_prompts_and_retry_messages_stay_within_the_token_budget(
    settings: Settings, scripted_llm: ScriptedLLM
) -> None:
    body = "".join(f"def parse_{i}(text: str) -> int:\n    return len(text) + {i}\n\n\n" for i in range(80))
    for n in range(40):
        path = settings.workspace / "components" / f"parser_{n}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'"""Parse durations, part {n}."""\n\n{body}', encoding="utf-8")
    scripted_llm.reply(block("components/duration.py", MODULE))
    scripted_llm.reply(block("tests/test_duration.py", ALL_TESTS))
    budget = 1500
    async with connect(build(settings, scripted_llm, generation_prompt_tokens=budget)) as client:
        out = await call(client, "generate_component", ARGS)
    assert [r["outcome"] for r in out["rounds"]] == ["validation_failed", "accepted"]
    first = scripted_llm.requests[0]["messages"]
    assert estimate_tokens(first[0]["content"] + first[1]["content"]) <= budget
    assert "components/parser_0.py\n```python\n" in first[1]["content"]  # a pattern module, clipped to fit
    assert "more modules" in first[1]["content"]  # the overview, shrunk
    assert estimate_tokens(retry_message(scripted_llm, 1)) <= budget
    for record in out["rounds"]:
        assert record["prompt_tokens"] > 0 and record["completion_tokens"] > 0 and record["seconds"] >= 0


def test_what_counts_as_no_change() -> None:
    """Code is compared as its syntax tree without docstrings: formatting, comments, docstrings and quoting do not
    count; any other edit does, a changed annotation included."""
    from generators.codegen.change_rules import same_code

    before = 'def f(x: int) -> int:\n    """Double."""\n    return x * 2\n'
    assert same_code(before, "def f(x: int) -> int:  # doubles\n    return (x *\n            2)\n", "m.py")
    assert same_code(before, before.replace('"""Double."""', "'''Twice x.'''"), "m.py")
    assert not same_code(before, before.replace("x: int", "x: float"), "m.py")
    assert not same_code(before, before.replace("* 2", "+ x"), "m.py")
    assert not same_code(before, before + "def (\n", "m.py")  # does not parse: compared byte for byte
