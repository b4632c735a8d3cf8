"""The improvement suite with the scripted model (issue 13): every task's reference answer is kept and passes its
hidden check, and the imperfect replies a small local model gives (a byte-identical file, tests in the wrong place,
no tests, the reply-format example echoed, a change that breaks the tests, a timeout mid-answer) never end kept and
leave nothing deployed that fails the hidden check.

Each case is one improvement cycle through the MCP client (``tests/benchmarks/improvement_suite/runner.py``), each
with its own server, data folder, workspace copy and scripted model, so this file is slow by nature: it keeps the
benchmark runs, rounds and monitoring period small and runs the cycles two at a time (module-scoped fixtures), then
asserts per task and per case.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from generators.validation.models import STAGES
from tests.benchmarks.improvement_suite.__main__ import main as suite_main
from tests.benchmarks.improvement_suite.catalog import Task, load_task, task_names
from tests.benchmarks.improvement_suite.report import table, totals, write_json
from tests.benchmarks.improvement_suite.runner import (
    Endpoint,
    SuiteOptions,
    TaskResult,
    outcome_of,
    run_hidden_check,
    run_task,
)
from tests.llm_server import ScriptedLLM

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROUNDS = 2
AT_ONCE = 2  # cycles run together (each mostly waits on its subprocesses: tests, benchmarks, hidden check)
CI = SuiteOptions(
    stages=tuple(s for s in STAGES if s != "types"),  # mypy is the slowest stage; the tasks are typed anyway
    benchmark_runs=3,
    benchmark_max_runs=6,
    monitoring_seconds=0.2,
    max_rounds=ROUNDS,
    task_timeout=300,
    hidden_timeout=60,
    settings={"llm_max_retries": 0},
)
DEFECT_KINDS = {
    "quadratic loop",
    "repeated I/O",
    "missing cache",
    "edge case that crashes",
    "exception swallowed",
    "slow regex",
    "needless copy",
}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module scope: the fixtures below run their cycles once for the whole module


def endpoint(llm: ScriptedLLM) -> Endpoint:
    return Endpoint(llm.base_url, "scripted", "scripted")


def retries(llm: ScriptedLLM) -> list[str]:
    """What the loop told the model after each of its replies (the last message of every later request)."""
    return [str(request["messages"][-1]["content"]) for request in llm.requests[1:]]


@dataclass
class Run:
    """One scripted cycle: its result (or why it could not run) and what the loop told the model."""

    result: TaskResult | None = None
    error: BaseException | None = None
    retries: list[str] = field(default_factory=list)

    def get(self) -> TaskResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


async def run_scripted(cases: Sequence[tuple[str, Task, list[str]]]) -> dict[str, Run]:
    """Each ``(key, task, replies)`` as a cycle against its own scripted model, :data:`AT_ONCE` at a time."""
    limiter = anyio.CapacityLimiter(AT_ONCE)
    runs: dict[str, Run] = {}

    async def one(key: str, task: Task, replies: list[str]) -> None:
        run = runs[key] = Run()
        async with limiter:
            llm = ScriptedLLM()
            llm.start()
            try:
                for reply in replies:
                    llm.reply(reply)
                run.result = await run_task(task, endpoint(llm), CI)
            except Exception as exc:  # reported by the test of this case, not by its siblings
                run.error = exc
            finally:
                run.retries = retries(llm)
                llm.stop()

    async with anyio.create_task_group() as group:
        for key, task, replies in cases:
            group.start_soon(one, key, task, replies)
    return runs


# -- the suite itself


def test_the_suite_has_a_task_for_every_kind_of_defect() -> None:
    tasks = [load_task(name) for name in task_names()]
    assert len(tasks) >= 8
    assert {t.defect for t in tasks} >= DEFECT_KINDS
    for task in tasks:
        assert (task.workspace / task.module).is_file() and (task.workspace / task.tests).is_file(), task.name
        assert task.hidden_check.is_file() and not (task.workspace / task.hidden_check.name).exists()
        assert task.module in task.reference_sections(), "the reference answer changes the component"
        if task.telemetry == "latency":  # performance is the point: a benchmark proves it
            assert (task.workspace / f"benchmarks/bench_{task.component}.py").is_file(), task.name
            assert task.recent_ms >= 3 * task.baseline_ms > 0
        else:  # an error pattern: the reference proves the fix with a test in the component's test file
            assert task.tests in task.reference_sections(), task.name


def test_hidden_checks_fail_on_the_defective_code() -> None:
    """A hidden check that passed on the task as given would prove nothing."""
    tasks = [load_task(name) for name in task_names()]
    with ThreadPoolExecutor(max_workers=2) as pool:
        verdicts = list(pool.map(lambda t: run_hidden_check(t, t.workspace, 120), tasks))
    passed = [t.name for t, (ok, _) in zip(tasks, verdicts, strict=True) if ok]
    assert passed == [], "these hidden checks pass on the defective workspace"
    for task, (_, output) in zip(tasks, verdicts, strict=True):
        assert output.startswith("FAIL "), (task.name, output)  # an expectation failed, not the check itself


@pytest.fixture(scope="module")
async def references() -> dict[str, Run]:
    """Every task's cycle with its reference answer as the model's reply."""
    tasks = [load_task(name) for name in task_names()]
    return await run_scripted([(t.name, t, [t.reference()] * ROUNDS) for t in tasks])


@pytest.mark.parametrize("name", task_names())
async def test_reference_answer_is_kept_and_passes_the_hidden_check(name: str, references: dict[str, Run]) -> None:
    task, result = load_task(name), references[name].get()
    assert result.outcome == "kept", result.describe()
    assert result.hidden_passed, result.describe()
    assert result.changed_files == sorted(task.reference_sections()), result.describe()
    assert result.rounds == 1 and result.prompt_tokens > 0 and result.completion_tokens > 0, result.describe()
    assert result.cycle_status == "completed", result.describe()
    if task.telemetry == "latency":
        bench = result.figures["benchmark"]
        assert bench["script"] == f"benchmarks/bench_{task.component}.py"
        assert bench["after_median"] * 3 <= bench["before_median"], bench  # the defect is large: a fix shows


# -- imperfect replies


def whole_file(path: str, content: str) -> str:
    fence = "````" if "```" in content else "```"
    return f"{path}\n{fence}python\n{content}{fence}\n"


def edit(path: str, search: str, replace: str) -> str:
    return f"{path}\n```python\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n```\n"


def reply_byte_identical(task: Task) -> list[str]:
    """The module sent back as it is, then a 'change' of its comments only."""
    source = (task.workspace / task.module).read_text(encoding="utf-8")
    loop = "    for event_id in event_ids:\n"
    return [
        "Here is the improved module.\n\n" + whole_file(task.module, source),
        edit(task.module, loop, "    # Keep the first delivery of each id.\n" + loop.rstrip("\n") + "  # in order\n"),
    ]


def reply_tests_in_the_wrong_place(task: Task) -> list[str]:
    """The right fix, with its test written to tests/config_parser.py, where no test run looks."""
    test = (
        '"""Tests of flag lines."""\n\nfrom components.config_parser import parse_config\n\n\n'
        "def test_flag() -> None:\n"
        '    """A name alone is a flag."""\n'
        '    assert parse_config("verbose\\n") == {"verbose": "true"}\n'
    )
    reply = task.reference_sections()[task.module] + "\n" + whole_file("tests/config_parser.py", test)
    return [reply] * ROUNDS


def reply_no_tests(task: Task) -> list[str]:
    """The right fix of the crash the logs show, without a test that reproduces it."""
    return [task.reference_sections()[task.module]] * ROUNDS


def reply_format_example_echoed(task: Task) -> list[str]:
    """The right fix, plus the reply format's example file written out as a module."""
    example = '"""Example."""\n\n\ndef example() -> int:\n    """An example."""\n    return 1\n'
    reply = task.reference_sections()[task.module] + "\n" + whole_file("components/example.py", example)
    return [reply] * ROUNDS


def reply_breaks_the_tests(task: Task) -> list[str]:
    """A faster holidays() that forgets the last Monday of May."""
    search = (
        "    day = date(year, 1, 1)\n"
        "    while day.year == year:\n"
        "        if day.month == 5 and day.weekday() == 0 and (day.day <= 7 or day.day > 24):\n"
        "            found.add(day)\n"
        "        day += timedelta(days=1)\n"
    )
    first = "    may = date(year, 5, 1)\n    found.add(may + timedelta(days=(7 - may.weekday()) % 7))\n"
    return [edit(task.module, search, first)] * ROUNDS


@dataclass(frozen=True)
class Case:
    name: str
    task: str
    replies: Callable[[Task], list[str]]
    outcome: str  # the outcome once the guarantees hold
    feedback: str  # a pattern the loop's message to the model after its first reply must match


CASES = [
    Case("byte_identical_then_comments_only", "event_dedupe", reply_byte_identical, "no change",
         r"(?i)no change|unchanged|identical"),
    Case("tests_in_the_wrong_place", "config_parser", reply_tests_in_the_wrong_place, "rejected",
         r"tests/test_config_parser\.py"),
    Case("no_tests", "order_totals", reply_no_tests, "rejected", r"tests/test_order_totals\.py"),
    Case("format_example_echoed", "latency_window", reply_format_example_echoed, "rejected", r"components/example\.py"),
    Case("breaks_the_tests", "holiday_calendar", reply_breaks_the_tests, "rejected", r"test_holidays_of_2024"),
]  # fmt: skip


@pytest.fixture(scope="module")
async def imperfect() -> dict[str, Run]:
    """Every case's cycle with its scripted replies."""
    cases = [(c.name, task, c.replies(task)) for c in CASES for task in [load_task(c.task)]]
    return await run_scripted(cases)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_imperfect_reply_is_not_kept(case: Case, imperfect: dict[str, Run]) -> None:
    run = imperfect[case.name]
    result = run.get()
    assert result.outcome == case.outcome, result.describe()
    assert result.changed_files == [], "nothing of it may remain in the workspace\n" + result.describe()
    assert not result.hidden_passed, "the defect is still there"
    assert result.deployments == [], "refused before deploy: nothing was deployed, not even for a while"
    told = any(re.search(case.feedback, text) for text in run.retries)
    assert told, f"no message to the model after its first reply matches {case.feedback!r}: {run.retries}"
    # Guarantee 4: a cycle whose only candidate was refused did not work; it does not end as if it had.
    assert result.cycle_status != "completed", result.describe()


async def test_timeout_mid_answer_is_not_retried_nor_kept(scripted_llm: ScriptedLLM) -> None:
    if not hasattr(ScriptedLLM, "stall_midway"):
        pytest.skip("ScriptedLLM.stall_midway (tests/llm_server.py, engineer D) does not exist yet")
    task = load_task("label_validator")
    scripted_llm.stall_midway(task.reference(), 5.0)
    options = replace(CI, settings={"llm_max_retries": 2, "llm_timeout_seconds": 1.0})
    result = await run_task(task, endpoint(scripted_llm), options)
    assert result.outcome == "error", result.describe()
    assert len(scripted_llm.requests) == 1, "an answer cut off mid-generation is not asked again from scratch"
    assert result.changed_files == [] and result.deployments == [] and not result.hidden_passed
    assert result.generations, "the candidate's generation result (its error) is in the audit log"
    assert result.cycle_status != "completed", result.describe()


# -- the runner's reporting


def test_outcomes_from_status_and_message() -> None:
    def candidate(status: str, message: str = "") -> dict[str, Any]:
        return {"status": status, "message": message, "reasons": []}

    assert outcome_of(candidate("kept"), []) == "kept"
    assert outcome_of(candidate("rolled_back", "rolled back: no measurable improvement"), []) == "rolled back"
    assert outcome_of(candidate("validation_failed", "no change passed validation in every round"), []) == "rejected"
    assert outcome_of(candidate("validation_failed", "refused: no change to the module"), []) == "no change"
    assert outcome_of(candidate("validation_failed"), [{"outcomes": ["no_change", "no_change"]}]) == "no change"
    assert outcome_of(candidate("pending_approval"), []) == "held"
    assert outcome_of(candidate("monitoring"), []) == "error"
    assert outcome_of(candidate("something_new"), []) == "something_new"
    assert outcome_of(None, []) == "no candidate"


def test_table_totals_and_json(tmp_path: Path) -> None:
    results = [
        TaskResult("a", "quadratic loop", "kept", True, 1, 100, 20, 3.5),
        TaskResult("b", "slow regex", "kept", False, 2, 300, 40, 6.0),
        TaskResult("c", "needless copy", "rejected", False, 3, 500, 60, 9.25),
    ]
    assert totals(results) | {"seconds": 0} == {
        "tasks": 3, "kept": 2, "hidden_passed": 1, "solved": 1, "solve_rate_percent": 33.3, "rounds": 6,
        "tokens": 1020, "seconds": 0,
    }  # fmt: skip
    text = table(results)
    assert re.search(r"^a\s+quadratic loop\s+kept\s+pass\s+1\s+120\s+3\.5$", text, re.MULTILINE), text
    assert re.search(r"^c\s+needless copy\s+rejected\s+FAIL\s+3\s+560\s+9\.2$", text, re.MULTILINE), text
    assert "1 solved (kept and passing): solve rate 33.3%" in text
    write_json(tmp_path / "r.json", results, {"model": "m"})
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["run"] == {"model": "m"} and data["totals"]["solved"] == 1
    assert [t["task"] for t in data["tasks"]] == ["a", "b", "c"] and data["tasks"][0]["solved"] is True


def test_list_prints_every_task(capsys: pytest.CaptureFixture[str]) -> None:
    assert suite_main(["--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == task_names()
