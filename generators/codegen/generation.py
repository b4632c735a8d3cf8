"""``CodeGenerator``: ask the model for a change, apply it, check it, validate it, and feed every problem back.

One round is: ask → parse and apply the reply (``edit_apply``) → the change rules
(``change_rules``: only the files the task names, and a real change) → validate the change (in a worker
thread, because the pipeline blocks), its tests required: they must be where the project keeps them, import the
changed code, pass, and run ``min_coverage_percent`` of its changed statements. A reply that cannot be applied
(``edit_error``), writes a file it was not asked to (``refused``), changes nothing (``no_change``) or fails
validation (``validation_failed``) is answered with a retry message naming the problems, for up to ``max_rounds``
rounds; then the attempt fails with the report of every round. A validated change is kept as the base of the next
round (the retry message shows the files as they now are), so later rounds may fix it with small edits, e.g. add the
tests that run its uncovered lines; a refused or unchanged reply is dropped. Each request holds the prompt and the
latest exchange only (the model's last reply and the retry message, which carries all that is still wrong), so
requests do not grow round by round. Nothing is ever written to the workspace: deploying is the caller's step.
LLM errors (``LLMNotConfigured``, ``LLMUnavailable``, ``LLMError``) propagate unchanged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import anyio.to_thread

from generators.codegen.change_rules import TESTS_ROOT, existing_tests, is_test_path, tests_home
from generators.codegen.checks import Task, Verdict, missing_target, screen, validation_inputs
from generators.codegen.edit_apply import DEFAULT_ROOTS, Change, check_path
from generators.codegen.models import RoundOutcome
from generators.codegen.overview import WorkspaceOverview, scan_workspace
from generators.codegen.prompts import (
    Goal,
    PromptBudgetError,
    build_generation_prompt,
    build_improvement_prompt,
    build_retry_message,
    chars_for_tokens,
)
from generators.codegen.repairs import repair
from generators.codegen.rounds import (
    AcceptCheck,
    GenerationResult,
    ProgressCallback,
    RoundRecord,
    component_path,
    reply_excerpt,
)
from generators.jobs.benchmark import Benchmarks, LocalBenchmarks
from generators.jobs.validation import LocalValidation, Validation, ValidationJob
from generators.llm import LLMClient, Message
from generators.validation import StageName, ValidationPipeline, ValidationReport

__all__ = ["CodeGenerator", "GenerationResult", "RoundRecord"]

logger = logging.getLogger(__name__)
RETRY_WARMING = 0.3  # added to the sampling temperature per retry round

# What the progress callback is told when a round ends before validation.
_SCREENED: dict[RoundOutcome, str] = {
    "edit_error": "the reply could not be applied",
    "refused": "refused: the reply writes files the task does not name",
    "no_change": "no change: the reply leaves the code as it was",
}


class CodeGenerator:
    """Generates and improves components of one workspace; one instance per server, built by the lifespan."""

    def __init__(
        self,
        llm: LLMClient,
        pipeline: ValidationPipeline,
        workspace: Path,
        allowed_roots: Sequence[str] = DEFAULT_ROOTS,
        *,
        max_rounds: int = 3,
        stages: Collection[StageName] | None = None,
        test_timeout: float | None = None,
        prompt_tokens: int = 3000,
        validation: Validation | None = None,
        benchmarks: Benchmarks | None = None,
    ) -> None:
        """``stages`` limits validation (all by default; the tests stage always runs: no test, no change);
        ``test_timeout`` bounds the sandboxed test run; ``prompt_tokens`` is the token budget of a prompt and of
        each retry message."""
        if max_rounds < 1:
            raise ValueError("max_rounds must be at least 1")
        self.llm = llm
        self.pipeline = pipeline
        self.workspace = workspace
        self.allowed_roots = tuple(allowed_roots)
        self.max_rounds = max_rounds
        self.stages: Collection[StageName] | None = None if stages is None else {*stages, "tests"}
        self.test_timeout = test_timeout
        self.prompt_tokens = prompt_tokens
        self.validation = validation or LocalValidation(pipeline, workspace)  # here, or on workers (a queue)
        # where the improvement cycle's benchmarks of this generator's changes run (here, or on workers)
        self.benchmarks = benchmarks or LocalBenchmarks(workspace, pipeline.config)

    async def generate_component(
        self,
        component_type: str,
        requirements: str,
        *,
        name: str | None = None,
        context: str | None = None,
        tenant_id: str | None = None,
        goals: Sequence[Goal] = (),
        test_paths: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> GenerationResult:
        """A new component at ``components/[<tenant>/]<name>.py`` with its tests at
        ``tests/[<tenant>/]test_<name>.py``, validated.

        ``test_paths`` default to that test file.

        Raises:
            GenerationInputError: ``name`` or ``tenant_id`` cannot be a module path, or ``name`` exists already.
            PromptBudgetError: the prompt's fixed parts exceed the budget.
            LLMNotConfigured, LLMUnavailable, LLMError: the model could not be asked.
        """
        roots = self.pipeline.config.component_roots
        target, _ = component_path(self.workspace, roots[0], name, requirements, tenant_id)
        tests = tests_home(target, roots)
        overview = await self._overview(tenant_id)
        allow_network = component_type in self.pipeline.config.network_component_types
        prompt = build_generation_prompt(
            overview,
            requirements,
            component_type=component_type,
            target_path=target,
            test_path=tests,
            context=context,
            goals=goals,
            tenant_id=tenant_id,
            allow_network=allow_network,
            budget_chars=chars_for_tokens(self.prompt_tokens),
        )
        allowed = frozenset({target, tests})
        task = Task(
            prompt, {}, target, component_type, tenant_id, test_paths, progress, self.allowed_roots, allowed, (tests,)
        )
        return await self._attempt(task)

    async def improve(
        self,
        files: Mapping[str, str],
        requirements: str,
        *,
        goals: Sequence[Goal] = (),
        tenant_id: str | None = None,
        component_type: str | None = None,
        test_paths: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
        extra_roots: Sequence[str] = (),
        accept: AcceptCheck | None = None,
    ) -> GenerationResult:
        """SEARCH/REPLACE edits of the existing ``files`` (path → current content), validated.

        The modules' tests are the workspace's ``test_<module>.py`` files that import them (shown with the files when
        they fit in the prompt), else the model must write them at ``tests/[<sub-folders>/]test_<module>.py``; the
        change may write only ``files`` and those test files, must change the code of ``files`` (not only whitespace,
        comments or docstrings), and its tests must pass and run its changed lines. ``test_paths`` (the tests to run)
        default to those test files. ``extra_roots`` are folders the model may also write to in this attempt (the
        improvement cycle passes a module's own folder outside the usual roots). ``accept`` has the last word on a
        change that passed validation: the problems it returns are fed back to the model like a validation failure.

        Raises:
            UnsafeReplyPathError: a path of ``files`` is outside the allowed roots.
            PromptBudgetError: the files to edit do not fit in the prompt.
            LLMNotConfigured, LLMUnavailable, LLMError: the model could not be asked.
        """
        roots = (*self.allowed_roots, *extra_roots)
        shown = {check_path(path, self.workspace, roots): text for path, text in files.items()}
        targets = tuple(path for path in shown if not is_test_path(path)) or tuple(shown)
        find = functools.partial(existing_tests, self.workspace, roots, targets, self.pipeline.config)
        found = await anyio.to_thread.run_sync(find)
        tests = tuple(found) or tuple(sorted({tests_home(p, self.pipeline.config.component_roots) for p in targets}))
        overview = await self._overview(tenant_id)
        allow_network = component_type in self.pipeline.config.network_component_types
        build = functools.partial(
            build_improvement_prompt,
            overview,
            requirements=requirements,
            test_paths=tests,
            goals=goals,
            tenant_id=tenant_id,
            allow_network=allow_network,
            budget_chars=chars_for_tokens(self.prompt_tokens),
        )
        with_tests = {**shown, **found}
        try:
            prompt = build(with_tests)
        except PromptBudgetError:
            # The tests do not fit next to the files to improve: those matter more (the tests still run).
            prompt, with_tests = build(shown, new_tests=() if found else None), shown
        allowed = frozenset({*shown, *tests})
        task = Task(
            prompt,
            with_tests,
            None,
            component_type,
            tenant_id,
            test_paths,
            progress,
            roots,
            allowed,
            tests,
            targets,
            accept,
        )
        return await self._attempt(task)

    async def _attempt(self, task: Task) -> GenerationResult:
        start = [Message("system", task.prompt.system), Message("user", task.prompt.user)]
        latest: list[Message] = []  # the model's last reply and the retry message
        rounds: list[RoundRecord] = []
        base: Change | None = None
        report: ValidationReport | None = None
        failed: list[str] = []  # the problems of the last change that applied and failed validation
        tried: Change | None = None  # that change (the base may be dropped to have it written anew)
        for number in range(1, self.max_rounds + 1):
            await _notify(task.progress, "llm", number, f"asking the model (round {number} of {self.max_rounds})")
            completion = await self.llm.complete([*start, *latest], temperature=self._temperature(number))
            cost = (completion.prompt_tokens, completion.completion_tokens, completion.latency_ms)
            verdict, change = await self._check(task, number, completion.text, base)
            told = verdict.problems
            if verdict.outcome == "no_change" and failed:  # it resent what failed: say again what was wrong with it
                told = [*verdict.problems, *failed]
                if task.target is not None and not task.files:  # a new component: written anew, whole, not patched
                    again = f"Write {task.target} and its tests again, each as a whole file, with every problem fixed."
                    told, base = (
                        ["Your reply sent the same files again; they still fail as follows.", *failed, again],
                        None,
                    )
            report = verdict.report or report
            validation = verdict.report.to_dict() if verdict.report else None
            excerpt = "" if verdict.outcome == "accepted" else reply_excerpt(completion.text)
            rounds.append(
                RoundRecord(
                    number,
                    verdict.outcome,
                    told,
                    validation,
                    *cost,
                    files=verdict.files,
                    reply_excerpt=excerpt,
                    repairs=verdict.repairs,
                )
            )
            if verdict.outcome == "accepted":
                await _notify(task.progress, "accepted", number, "validation passed")
                return _result(True, change, rounds, report, task.target)
            if verdict.outcome == "validation_failed":
                base = tried = change  # a change that applied is the base of the next round
                failed = verdict.problems
            latest = self._retry(completion.text, told, number, task, base)
        logger.info("generation failed after %d rounds", self.max_rounds)
        await _notify(task.progress, "failed", self.max_rounds, f"no valid change after {self.max_rounds} rounds")
        return _result(False, None, rounds, report, task.target, tried=tried or base)

    async def _check(self, task: Task, number: int, reply: str, base: Change | None) -> tuple[Verdict, Change | None]:
        """Apply the reply, apply the change rules, validate: the round's verdict and the change (if it applied)."""
        verdict, change = screen(task, self.workspace, reply, base)
        if verdict is not None:
            await _notify(task.progress, "apply", number, _SCREENED[verdict.outcome])
            return verdict, None
        assert change is not None  # screen gives one or the other
        change, repairs = repair(change)
        verdict, change = await self._judge(task, number, change)
        if repairs:
            await _notify(task.progress, "validate", number, "; ".join(repairs))
        if repairs and verdict.outcome != "accepted":  # the model sees the repaired files: say what was added
            verdict = replace(verdict, problems=[*verdict.problems, *(f"Note: {r}." for r in repairs)])
        return replace(verdict, repairs=repairs), change

    async def _judge(self, task: Task, number: int, change: Change) -> tuple[Verdict, Change | None]:
        """The change rules of the task, the validation and the caller's last word on an applied change."""
        problems = missing_target(task, change)
        await _notify(task.progress, "validate", number, f"validating {', '.join(sorted(change.files))}")
        report = await self._validate(task, change)
        files = sorted(change.files)
        if report.passed and not problems and task.accept is not None:
            await _notify(task.progress, "validate", number, "checking the change against the task")
            objection = await task.accept(change)
            if objection is not None:
                outcome: RoundOutcome = "refused" if objection.restart else "validation_failed"
                return Verdict(outcome, objection.problems, files, report), change
        if report.passed and not problems:
            return Verdict("accepted", [], files, report), change
        await _notify(task.progress, "validate", number, "validation failed")
        problems = [*problems, report.render()] if not report.passed else problems
        return Verdict("validation_failed", problems, files, report), change

    def _temperature(self, number: int) -> float:
        """The first round at the configured temperature; each retry warmer by ``RETRY_WARMING`` (at most 1.0): a
        small model near-greedy at a low temperature answers a retry with the very reply it was told was wrong (seen
        with Qwen2.5-Coder 1.5B: the same answer, token for token, in all three rounds), and a retry that cannot
        differ is wasted."""
        base = self.llm.config.temperature
        return base if number == 1 else round(min(max(base, 1.0), base + RETRY_WARMING * (number - 1)), 2)

    def _retry(self, reply: str, problems: list[str], number: int, task: Task, base: Change | None) -> list[Message]:
        """The model's reply and the retry message; no message after the last round."""
        if number == self.max_rounds:
            return []
        current = {**task.files, **(base.files if base else {})}
        budget = chars_for_tokens(self.prompt_tokens)
        retry = functools.partial(
            build_retry_message, problems, round_number=number, max_rounds=self.max_rounds, budget_chars=budget
        )
        try:
            text = retry(current_files=current)
        except PromptBudgetError:
            # The files no longer fit next to the report: the report matters more, the model has seen them.
            text = retry()
        return [Message("assistant", reply), Message("user", text)]

    async def _validate(self, task: Task, change: Change) -> ValidationReport:
        subjects, tests = await anyio.to_thread.run_sync(validation_inputs, task, change, self.workspace)
        job = ValidationJob(
            dict(change.files),
            stages=None if self.stages is None else sorted(self.stages),
            component_type=task.component_type,
            tenant=task.tenant_id,
            test_paths=list(tests),
            timeout=self.test_timeout,
            subjects={path: sorted(lines) for path, lines in subjects.items()},
        )
        return await self.validation.validate(job)

    async def _overview(self, tenant_id: str | None) -> WorkspaceOverview:
        """The workspace overview; a tenant sees only its own and the shared component folders, and their tests."""
        exclude: list[str] = []
        if tenant_id is not None:
            visible = {tenant_id, *self.pipeline.config.shared_component_packages}
            for root in self.pipeline.config.component_roots:
                folder = self.workspace / root
                if folder.is_dir():
                    hidden = [d.name for d in folder.iterdir() if d.is_dir() and d.name not in visible]
                    exclude += [f"{where}/{name}" for name in hidden for where in (root, TESTS_ROOT)]
        scan = functools.partial(scan_workspace, self.workspace, self.allowed_roots, exclude=exclude)
        return await anyio.to_thread.run_sync(scan)


def _result(
    succeeded: bool,
    change: Change | None,
    rounds: list[RoundRecord],
    report: ValidationReport | None,
    target: str | None,
    *,
    tried: Change | None = None,
) -> GenerationResult:
    return GenerationResult(
        succeeded=succeeded,
        change=change,
        diff=change.diff() if change else "",
        rounds=rounds,
        report=report,
        prompt_tokens=sum(r.prompt_tokens for r in rounds),
        completion_tokens=sum(r.completion_tokens for r in rounds),
        target_path=target,
        tried=tried,
    )


async def _notify(progress: ProgressCallback | None, stage: str, number: int, message: str) -> None:
    if progress is not None:
        await progress(stage, number, message)
