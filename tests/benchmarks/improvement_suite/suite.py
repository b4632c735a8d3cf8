"""Run tasks one after another: against an endpoint, or scripted (each task's reference answer from a local
OpenAI-compatible server, ``tests/llm_server.py``). A task that fails to run is an error row; the others go on."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from tests.benchmarks.improvement_suite.catalog import Task
from tests.benchmarks.improvement_suite.runner import Endpoint, SuiteOptions, TaskResult, run_task
from tests.llm_server import ScriptedLLM

logger = logging.getLogger(__name__)
SCRIPTED_REPLIES = 10  # the reference answer for every round the loop may ask (unused ones are harmless)


async def run_scripted(task: Task, options: SuiteOptions) -> TaskResult:
    """``task`` against a scripted model that answers every request with the task's reference answer."""
    llm = ScriptedLLM()
    llm.start()
    try:
        llm.reply(task.reference(), times=SCRIPTED_REPLIES)
        return await run_task(task, Endpoint(llm.base_url, "scripted", "scripted"), options)
    finally:
        llm.stop()


async def run_suite(tasks: Sequence[Task], options: SuiteOptions, endpoint: Endpoint | None) -> list[TaskResult]:
    """Every task in turn; ``endpoint`` ``None``: scripted."""
    results = []
    for task in tasks:
        logger.info("task %s (%s): starting", task.name, task.defect)
        started = time.perf_counter()
        try:
            if endpoint is None:
                result = await run_scripted(task, options)
            else:
                result = await run_task(task, endpoint, options)
        except Exception as exc:
            logger.exception("task %s could not be run", task.name)
            result = TaskResult(
                task.name, task.defect, "error", False, 0, 0, 0, round(time.perf_counter() - started, 2),
                message=f"the suite could not run it: {type(exc).__name__}: {exc}",
            )  # fmt: skip
        logger.info("task %s: %s, hidden check %s", task.name, result.outcome,
                    "pass" if result.hidden_passed else "fail")  # fmt: skip
        results.append(result)
    return results
