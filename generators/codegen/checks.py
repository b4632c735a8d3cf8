"""One round's checks of a reply before the model's change is validated, and what validation is then asked.

``screen`` applies the reply and the change rules (``change_rules``): a reply that cannot be applied, that
writes files the task does not name, or that changes nothing ends the round there, with the problem for the model.
``validation_inputs`` says which modules the tests must import and cover (with their changed lines) and which test
files run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from generators.codegen.change_rules import is_test_path, refusal_message, refused_paths, unchanged, untouched
from generators.codegen.edit_apply import Change, apply_reply
from generators.codegen.edits import Writable
from generators.codegen.models import RoundOutcome
from generators.codegen.prompts import Prompt
from generators.codegen.rounds import AcceptCheck, ProgressCallback
from generators.codegen.tool_rules import TOOL_TYPE, tool_problems
from generators.errors import EditError
from generators.validation import ValidationReport
from generators.validation.coverage import changed_lines

__all__ = ["Task", "Verdict", "missing_target", "screen", "validation_inputs"]


@dataclass(frozen=True)
class Task:
    """What every round of one attempt shares."""

    prompt: Prompt
    files: Mapping[str, str]  # the files the model was shown to edit (empty for a new component)
    target: str | None  # the module a new component must create
    component_type: str | None
    tenant_id: str | None
    test_paths: Sequence[str] | None  # the caller's choice of tests to run, else ``tests``
    progress: ProgressCallback | None
    roots: Sequence[str]  # folders the model may write to in this attempt
    allowed: frozenset[str]  # the files the model may write
    tests: tuple[str, ...]  # where the tests of the change are, or must go
    targets: tuple[str, ...] = ()  # the modules an improvement must change
    accept: AcceptCheck | None = None  # the caller's check of a validated change


@dataclass(frozen=True)
class Verdict:
    """One round's outcome as recorded, with what the model is told."""

    outcome: RoundOutcome
    problems: list[str]
    files: list[str]
    report: ValidationReport | None = None
    repairs: list[str] = field(default_factory=list)  # what the server added before validating


def screen(task: Task, workspace: Path, reply: str, base: Change | None) -> tuple[Verdict | None, Change | None]:
    """Apply ``reply`` on top of ``base`` and the change rules: ``(verdict, None)`` when the round ends here
    (``edit_error``, ``refused``, ``no_change``), else ``(None, change)`` to validate."""
    shown = {**task.files, **(base.files if base else {})}
    try:
        step = apply_reply(reply, shown, workspace, task.roots, Writable(sorted(task.allowed), shown))
    except EditError as exc:
        return Verdict("edit_error", [str(exc)], []), None
    refused = refused_paths(step, task.allowed)
    if refused:
        return Verdict("refused", [refusal_message(refused, task.allowed, task.tests)], sorted(step.files)), None
    change = base.then(step) if base else step
    nothing = unchanged(step, shown) or untouched(change, task.files, task.targets)
    if nothing is not None:
        return Verdict("no_change", [nothing], sorted(step.files)), None
    return None, change


def missing_target(task: Task, change: Change) -> list[str]:
    """The problem of a new component's change that does not create its module, or of a tool's module (new or
    improved) that breaks the rules of a tool (:mod:`generators.codegen.tool_rules`)."""
    if task.target is None:  # an improvement: a tool's modules must stay tools
        if task.component_type != TOOL_TYPE:
            return []
        return [problem for path in task.targets if path in change.files
                for problem in tool_problems(path, change.files[path])]  # fmt: skip
    if task.target in change.files:
        return tool_problems(task.target, change.files[task.target]) if task.component_type == TOOL_TYPE else []
    return [
        f"Your reply did not create {task.target}. Send that module as a whole file (path line, then the complete "
        f"content), together with its tests in {', '.join(task.tests)}."
    ]


def validation_inputs(task: Task, change: Change, workspace: Path) -> tuple[dict[str, frozenset[int]], list[str]]:
    """The change's non-test modules with their changed lines (the tests must import and run them), and the test
    files to run: the caller's, else the task's test files that exist (or all of them, so that a missing one is
    reported as where the tests must go)."""
    subjects = {
        path: changed_lines(change.original.get(path), text)
        for path, text in change.files.items()
        if path.endswith(".py") and not is_test_path(path)
    }
    if task.test_paths is not None:
        return subjects, list(task.test_paths)
    present = [path for path in task.tests if path in change.files or (workspace / path).is_file()]
    return subjects, present or list(task.tests)
