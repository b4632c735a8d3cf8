"""``CodeGenerator``: ask the model for a change, apply it, validate it, and feed every problem back.

One round is: ask → parse and apply the reply (``generators.edit_apply``) → validate the change (in a worker thread,
because the pipeline blocks). A reply that cannot be applied (format error, refused path, unmatched or ambiguous
SEARCH) or a change that fails validation is answered with a retry message naming the problems, appended after the
model's own reply, for up to ``max_rounds`` rounds; then the attempt fails with the report of every round. A change
that applied is kept as the base of the next round (the retry message shows the files as they now are), so later
rounds may fix it with small edits. Nothing is ever written to the workspace: deploying is the caller's step.
LLM errors (``LLMNotConfigured``, ``LLMUnavailable``, ``LLMError``) propagate unchanged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import anyio.to_thread

from generators.edit_apply import DEFAULT_ROOTS, Change, apply_reply, check_path
from generators.errors import EditError
from generators.generation_rounds import (
    GenerationResult,
    ProgressCallback,
    RoundRecord,
    component_path,
)
from generators.llm import LLMClient, Message
from generators.prompts import (
    Goal,
    Prompt,
    PromptBudgetError,
    build_generation_prompt,
    build_improvement_prompt,
    build_retry_message,
)
from generators.validation import StageName, ValidationPipeline, ValidationReport
from generators.workspace_overview import WorkspaceOverview, scan_workspace

__all__ = ["CodeGenerator", "GenerationResult", "RoundRecord"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Task:
    """What every round of one attempt shares."""

    prompt: Prompt
    files: Mapping[str, str]  # the files the model was shown to edit (empty for a new component)
    target: str | None  # the module a new component must create
    component_type: str | None
    tenant_id: str | None
    test_paths: Sequence[str] | None
    progress: ProgressCallback | None
    roots: Sequence[str]  # folders the model may write to in this attempt


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
    ) -> None:
        """``stages`` limits validation (all by default); ``test_timeout`` bounds the sandboxed test run;
        ``prompt_tokens`` is the token budget of a prompt."""
        if max_rounds < 1:
            raise ValueError("max_rounds must be at least 1")
        self.llm = llm
        self.pipeline = pipeline
        self.workspace = workspace
        self.allowed_roots = tuple(allowed_roots)
        self.max_rounds = max_rounds
        self.stages = stages
        self.test_timeout = test_timeout
        self.prompt_tokens = prompt_tokens

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
        """A new component at ``components/[<tenant>/]<name>.py`` (with its tests), validated.

        ``test_paths`` default to the test files the change writes.

        Raises:
            GenerationInputError: ``name`` or ``tenant_id`` cannot be a module path, or ``name`` exists already.
            PromptBudgetError: the prompt's fixed parts exceed the budget.
            LLMNotConfigured, LLMUnavailable, LLMError: the model could not be asked.
        """
        target, _ = component_path(
            self.workspace, self.pipeline.config.component_roots[0], name, requirements, tenant_id
        )
        overview = await self._overview(tenant_id)
        allow_network = component_type in self.pipeline.config.network_component_types
        prompt = build_generation_prompt(
            overview,
            requirements,
            component_type=component_type,
            target_path=target,
            context=context,
            goals=goals,
            tenant_id=tenant_id,
            allow_network=allow_network,
        )
        task = _Task(prompt, {}, target, component_type, tenant_id, test_paths, progress, self.allowed_roots)
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
    ) -> GenerationResult:
        """SEARCH/REPLACE edits of the existing ``files`` (path → current content), validated.

        ``test_paths`` default to the test files the change writes plus the workspace's existing
        ``test_<module>.py`` files for the edited modules. ``extra_roots`` are folders the model may also write to
        in this attempt (the improvement cycle passes a module's own folder outside the usual roots).

        Raises:
            UnsafePathError: a path of ``files`` is outside the allowed roots.
            PromptBudgetError: the files to edit do not fit in the prompt.
            LLMNotConfigured, LLMUnavailable, LLMError: the model could not be asked.
        """
        roots = (*self.allowed_roots, *extra_roots)
        shown = {check_path(path, self.workspace, roots): text for path, text in files.items()}
        overview = await self._overview(tenant_id)
        allow_network = component_type in self.pipeline.config.network_component_types
        prompt = build_improvement_prompt(
            overview, shown, requirements, goals=goals, tenant_id=tenant_id, allow_network=allow_network
        )
        task = _Task(prompt, shown, None, component_type, tenant_id, test_paths, progress, roots)
        return await self._attempt(task)

    async def _attempt(self, task: _Task) -> GenerationResult:
        messages = [Message("system", task.prompt.system), Message("user", task.prompt.user)]
        rounds: list[RoundRecord] = []
        base: Change | None = None
        report: ValidationReport | None = None
        for number in range(1, self.max_rounds + 1):
            await _notify(task.progress, "llm", number, f"asking the model (round {number} of {self.max_rounds})")
            completion = await self.llm.complete(messages)
            cost = (completion.prompt_tokens, completion.completion_tokens, completion.latency_ms)
            shown = {**task.files, **(base.files if base else {})}
            try:
                step = apply_reply(completion.text, shown, self.workspace, task.roots)
            except EditError as exc:
                await _notify(task.progress, "apply", number, "the reply could not be applied")
                rounds.append(RoundRecord(number, "edit_error", [str(exc)], None, *cost))
                messages += self._retry(completion.text, [str(exc)], number, task, base)
                continue
            change = base.then(step) if base else step
            problems = self._missing_target(task, change)
            await _notify(task.progress, "validate", number, f"validating {', '.join(sorted(change.files))}")
            report = await self._validate(task, change)
            files = sorted(change.files)
            if report.passed and not problems:
                rounds.append(RoundRecord(number, "accepted", [], report.to_dict(), *cost, files=files))
                await _notify(task.progress, "accepted", number, "validation passed")
                return _result(True, change, rounds, report, task.target)
            problems = [*problems, report.render()] if not report.passed else problems
            rounds.append(RoundRecord(number, "validation_failed", problems, report.to_dict(), *cost, files=files))
            await _notify(task.progress, "validate", number, "validation failed")
            base = change
            messages += self._retry(completion.text, problems, number, task, base)
        logger.info("generation failed after %d rounds", self.max_rounds)
        await _notify(task.progress, "failed", self.max_rounds, f"no valid change after {self.max_rounds} rounds")
        return _result(False, None, rounds, report, task.target)

    def _retry(self, reply: str, problems: list[str], number: int, task: _Task, base: Change | None) -> list[Message]:
        """The model's reply and the retry message; no message after the last round."""
        if number == self.max_rounds:
            return []
        current = {**task.files, **(base.files if base else {})}
        try:
            text = build_retry_message(problems, round_number=number, max_rounds=self.max_rounds, current_files=current)
        except PromptBudgetError:
            # The files no longer fit next to the report: the report matters more, the model has seen them.
            text = build_retry_message(problems, round_number=number, max_rounds=self.max_rounds)
        return [Message("assistant", reply), Message("user", text)]

    def _missing_target(self, task: _Task, change: Change) -> list[str]:
        if task.target is None or task.target in change.files:
            return []
        return [
            f"Your reply did not create {task.target}. Send that module as a whole file (path line, then the "
            "complete content), together with its tests under tests/."
        ]

    async def _validate(self, task: _Task, change: Change) -> ValidationReport:
        if task.test_paths is not None:
            tests = list(task.test_paths)
        else:
            tests = await anyio.to_thread.run_sync(self._default_tests, change)
        run = functools.partial(
            self.pipeline.run,
            self.workspace,
            dict(change.files),
            stages=self.stages,
            component_type=task.component_type,
            tenant=task.tenant_id,
            test_paths=tests,
            timeout=self.test_timeout,
        )
        return await anyio.to_thread.run_sync(run)

    def _default_tests(self, change: Change) -> list[str]:
        """Test files the change writes, plus existing ``test_<module>.py`` files under the allowed roots."""
        tests = {path for path in change.files if _is_test(path)}
        for path in change.files:
            stem = PurePosixPath(path).stem
            if _is_test(path) or not path.endswith(".py") or stem == "__init__":
                continue
            for root in self.allowed_roots:
                folder = self.workspace / root
                if folder.is_dir():
                    tests.update(p.relative_to(self.workspace).as_posix() for p in folder.rglob(f"test_{stem}.py"))
        return sorted(tests)

    async def _overview(self, tenant_id: str | None) -> WorkspaceOverview:
        """The workspace overview; a tenant sees only its own and the shared component folders."""
        exclude: list[str] = []
        if tenant_id is not None:
            visible = {tenant_id, *self.pipeline.config.shared_component_packages}
            for root in self.pipeline.config.component_roots:
                folder = self.workspace / root
                if folder.is_dir():
                    exclude += [f"{root}/{d.name}" for d in folder.iterdir() if d.is_dir() and d.name not in visible]
        scan = functools.partial(scan_workspace, self.workspace, self.allowed_roots, exclude=exclude)
        return await anyio.to_thread.run_sync(scan)


def _is_test(path: str) -> bool:
    name = PurePosixPath(path).name
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def _result(
    succeeded: bool,
    change: Change | None,
    rounds: list[RoundRecord],
    report: ValidationReport | None,
    target: str | None,
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
    )


async def _notify(progress: ProgressCallback | None, stage: str, number: int, message: str) -> None:
    if progress is not None:
        await progress(stage, number, message)
