"""Messages for the model: generate a new component, improve an existing one, and retry after errors.

A prompt carries the quality standards and the reply format (system message), then the task (with the exact paths
the model may write, its tests' among them), the optimisation goals, an overview of the workspace, the files to edit
(improvements, always in full) and the closest existing modules as patterns. Prompts are budgeted in tokens,
estimated from characters by :func:`estimate_tokens`; the builders work in characters (``budget_chars``, from
:func:`chars_for_tokens`). What matters is kept first: the standards, the reply format, the files to edit (never
clipped, because SEARCH texts must be copied from them: a prompt they do not fit in is refused) and the task; the
goals, the workspace overview and the pattern modules get what is left, and are shrunk or dropped. Goals are plain
``Goal`` values: the caller turns telemetry insights into them (this package never imports telemetry).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from generators.codegen.edits import REPLY_FORMAT
from generators.codegen.overview import WorkspaceOverview
from generators.codegen.tool_rules import TOOL_TYPE
from generators.errors import PromptBudgetError

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_BUDGET_CHARS",
    "DEFAULT_PROMPT_TOKENS",
    "Goal",
    "Prompt",
    "PromptBudgetError",
    "build_generation_prompt",
    "build_improvement_prompt",
    "build_retry_message",
    "chars_for_tokens",
    "estimate_tokens",
    "quality_standards",
]

# Characters per token assumed when a budget in tokens is turned into characters. Tokenizers of code models (BPE:
# Qwen, Llama, GPT) average about 3.5-4 characters per token on Python and English; the low end keeps the estimate
# conservative (it overestimates the tokens). Text far from English or code (CJK, long digit runs) packs fewer
# characters per token and can exceed the estimate.
CHARS_PER_TOKEN = 3.5
DEFAULT_PROMPT_TOKENS = 3000
_SECTION_OVERHEAD = 600  # headers, separators and the closing instruction


def estimate_tokens(text: str) -> int:
    """The tokens ``text`` is assumed to take (``len(text) / CHARS_PER_TOKEN``, rounded up)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def chars_for_tokens(tokens: int) -> int:
    """The characters a budget of ``tokens`` allows: the inverse of :func:`estimate_tokens`."""
    return int(tokens * CHARS_PER_TOKEN)


DEFAULT_BUDGET_CHARS = chars_for_tokens(DEFAULT_PROMPT_TOKENS)


@dataclass(frozen=True)
class Goal:
    """An optimisation goal: move ``metric`` in ``direction`` from ``baseline`` (``summary`` says why)."""

    metric: str
    direction: Literal["lower", "higher"]
    baseline: float | None = None
    summary: str = ""
    unit: str = ""

    def render(self) -> str:
        """One line for the prompt."""
        now = f" (now {self.baseline:g}{' ' + self.unit if self.unit else ''})" if self.baseline is not None else ""
        why = f": {self.summary}" if self.summary else ""
        return f"- {self.direction.capitalize()} {self.metric}{now}{why}"


@dataclass(frozen=True)
class Prompt:
    """A system and a user message; ``messages()`` is the list a chat-completions call takes."""

    system: str
    user: str

    @property
    def chars(self) -> int:
        """Characters in both messages."""
        return len(self.system) + len(self.user)

    def messages(self) -> list[dict[str, str]]:
        """``[{"role": "system", ...}, {"role": "user", ...}]``."""
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]


def quality_standards(*, tenant_id: str | None = None, allow_network: bool = False) -> str:
    """The rules generated code is validated against, written for the model."""
    rules = [
        "Python 3.11. Every function and method fully type-annotated (mypy --strict clean).",
        "A docstring on every module, public class and public function. Small functions, low branching.",
        "pytest tests for the behaviour you add or change, under tests/, fast and deterministic.",
        "Only the standard library, installed packages and modules of this workspace may be imported.",
        "Forbidden: eval, exec, compile of strings, dynamic __import__, os.system, subprocess with shell=True, "
        "pickle or marshal loads, print (use logging), module-level mutable state.",
        "Write files only inside the workspace.",
    ]
    if not allow_network:
        rules.append("No network access (sockets, HTTP clients) in this component type.")
    if tenant_id:
        rules.append(
            f"This code belongs to tenant {tenant_id!r}: it may not import or name another tenant's package under "
            "components/."
        )
    return "Quality standards (changes that break them are rejected):\n" + "".join(f"- {rule}\n" for rule in rules)


# What a generated tool must be (generators.codegen.tool_rules checks it; the server serves it through MCP).
TOOL_CONTRACT = (
    "This component is a tool that AI agents call. Define in it one public function named {name}: every parameter "
    "annotated (str, int, float, bool, lists or dicts of them, or pydantic models whose fields have Field(description="
    "...)), a return annotation (a pydantic model or one of those types), and a docstring that tells the agent what "
    "it does and what it returns. It must be deterministic: no clock, randomness, environment, files or network; "
    "keep its result small. Raise ValueError with a clear message for input it cannot handle.\n"
)

# What a change of a served tool must keep (an improvement cycle's change of it).
TOOL_KEPT = (
    " This module is a tool that AI agents call: keep its public function {name} with the same parameters, their "
    "annotations, its return annotation and its docstring; it must stay deterministic (no clock, randomness, "
    "environment, files or network)."
)


def build_generation_prompt(
    overview: WorkspaceOverview,
    requirements: str,
    *,
    component_type: str,
    target_path: str,
    test_path: str | None = None,
    context: str | None = None,
    goals: Sequence[Goal] = (),
    tenant_id: str | None = None,
    allow_network: bool = False,
    examples: int = 2,
    budget_chars: int = DEFAULT_BUDGET_CHARS,
) -> Prompt:
    """The prompt for a new component written to ``target_path`` and its tests to ``test_path`` (default
    ``tests/test_<name>.py``).

    Raises:
        PromptBudgetError: the standards and reply format alone exceed ``budget_chars``.
    """
    tests = test_path or f"tests/test_{PurePosixPath(target_path).stem}.py"
    task = (
        f"Write a new {component_type} component at {target_path}, and its pytest tests in {tests}: exactly that "
        f"path, tests anywhere else are refused. The tests must import {_dotted(target_path)} and run every line of "
        f"it. Send exactly these two files, each whole ({target_path} and {tests}); any other file is refused.\n"
        f"Requirements:\n{requirements.strip()}\n"
    )
    if component_type == TOOL_TYPE:
        task += TOOL_CONTRACT.format(name=PurePosixPath(target_path).stem)
    if context:
        task += f"Context from the caller:\n{context.strip()}\n"
    system = _system("You write new components for this workspace.", tenant_id, allow_network)
    query = f"{component_type} {target_path} {requirements} {context or ''}"
    return _assemble(system, task, goals, overview, {}, query, examples, budget_chars)


def build_improvement_prompt(
    overview: WorkspaceOverview,
    files: Mapping[str, str],
    requirements: str,
    *,
    test_paths: Sequence[str] = (),
    new_tests: Sequence[str] | None = None,
    goals: Sequence[Goal] = (),
    tenant_id: str | None = None,
    allow_network: bool = False,
    examples: int = 2,
    budget_chars: int = DEFAULT_BUDGET_CHARS,
) -> Prompt:
    """The prompt for improving the existing ``files`` (path → current content), answered with SEARCH/REPLACE edits.

    ``test_paths`` are where the tests of the modules are (or go): those in ``files`` are shown with them; the model
    is asked to create ``new_tests`` (by default those not in ``files``); the others exist but are not shown.

    Raises:
        PromptBudgetError: the standards, reply format and the files to edit exceed ``budget_chars``.
    """
    modules = [path for path in files if path not in test_paths] or list(files)
    names = ", ".join(modules)
    task = (
        f"Improve {names} by SEARCH/REPLACE edits, keeping its public names and behaviour unless the requirements "
        "say otherwise. A change of only whitespace, comments or docstrings is refused as no change.\n"
    )
    shown = [path for path in test_paths if path in files]
    missing = [path for path in test_paths if path not in files] if new_tests is None else list(new_tests)
    hidden = [path for path in test_paths if path not in files and path not in missing]
    notes = [
        (
            shown,
            "(shown below): they must pass and run every line you change; add tests there for lines they do not run",
        ),
        (hidden, "(not shown: too large for this prompt): they must pass and run every line you change"),
    ]
    task += "".join(f"Its tests are in {', '.join(paths)} {note}.\n" for paths, note in notes if paths)
    if missing:
        task += (
            f"It has no tests yet: write them in {', '.join(missing)} (a new file, sent whole), importing the module "
            "and running every line you change.\n"
        )
    allowed = [*files, *missing]
    task += (
        f"You may write only {', '.join(allowed)}; any other file is refused.\nRequirements:\n{requirements.strip()}\n"
    )
    system = _system("You improve existing components of this workspace.", tenant_id, allow_network)
    query = requirements + " " + " ".join(f"{path} {text}" for path, text in files.items())
    return _assemble(system, task, goals, overview, files, query, examples, budget_chars)


def build_retry_message(
    problems: Sequence[str],
    *,
    round_number: int,
    max_rounds: int,
    current_files: Mapping[str, str] | None = None,
    budget_chars: int = DEFAULT_BUDGET_CHARS,
) -> str:
    """The follow-up user message after a reply failed (edit errors, validation reports), within ``budget_chars``.

    ``current_files`` are the files as the next reply's edits must find them; give them when the previous
    round's change is kept as the base, leave them out when the model starts again from the original files.

    Raises:
        PromptBudgetError: ``current_files`` alone exceed ``budget_chars``.
    """
    head = (
        f"Your previous reply was rejected (round {round_number} of {max_rounds}). Fix every problem below and "
        "send a new reply in the same format.\n"
    )
    files_text = _files_section(current_files or {})
    if current_files:
        files_text = "The files as they are now (your SEARCH texts must match these):\n" + files_text
    tail = "\nReply only with file and edit blocks in the reply format; no other code blocks.\n"
    room = budget_chars - len(head) - len(files_text) - len(tail) - 60
    if room < 200:
        raise PromptBudgetError(
            f"The current files ({len(files_text)} characters) leave no room for the error report within "
            f"{budget_chars} characters (about {math.floor(budget_chars / CHARS_PER_TOKEN)} tokens); raise the prompt "
            "budget or change fewer files at once."
        )
    share = room // max(len(problems), 1)
    report = "".join(f"\nProblem {n}:\n{_clip(text.strip(), share - 20)}\n" for n, text in enumerate(problems, 1))
    return head + report + ("\n" + files_text if files_text else "") + tail


def _dotted(path: str) -> str:
    return ".".join(PurePosixPath(path).with_suffix("").parts)


def _system(role: str, tenant_id: str | None, allow_network: bool) -> str:
    return (
        f"{role} Follow the quality standards and answer only in the reply format.\n\n"
        f"{quality_standards(tenant_id=tenant_id, allow_network=allow_network)}\n{REPLY_FORMAT}"
    )


def _assemble(
    system: str,
    task: str,
    goals: Sequence[Goal],
    overview: WorkspaceOverview,
    files: Mapping[str, str],
    query: str,
    examples: int,
    budget_chars: int,
) -> Prompt:
    files_text = _files_section(files)
    room = budget_chars - len(system) - len(files_text) - _SECTION_OVERHEAD
    if room < 1000:
        fixed = len(system) + len(files_text)
        raise PromptBudgetError(
            f"The prompt's fixed parts ({fixed} characters, about {estimate_tokens(system + files_text)} tokens, files "
            f"to edit included) do not fit in the budget of {budget_chars} characters (about "
            f"{math.floor(budget_chars / CHARS_PER_TOKEN)} tokens); raise the prompt budget or improve fewer/smaller "
            "files."
        )
    # The task first (clipped only when it alone would crowd out everything else), then the goals; the overview and
    # the pattern modules share what is left, and are dropped when too little is.
    task_text = _clip(task, room * 2 // 3)
    goals_text = _clip("".join(goal.render() + "\n" for goal in goals) or "- none given\n", room // 10)
    left = room - len(task_text) - len(goals_text)
    overview_text = overview.render(left // 2) if left // 2 >= 200 else ""
    patterns = _patterns(overview, query, examples, set(files), left - len(overview_text))
    sections = [
        ("Task", task_text),
        ("Optimisation goals", goals_text),
        (f"Workspace overview ({', '.join(overview.roots)})", overview_text),
        ("Files to edit (current content)", files_text),
        ("Existing code patterns (closest modules, for style; do not edit them unless asked)", patterns),
    ]
    user = "".join(f"## {title}\n{body}\n" for title, body in sections if body)
    user += "Answer now, in the reply format only.\n"
    return Prompt(system=system, user=user)


def _patterns(overview: WorkspaceOverview, query: str, count: int, exclude: set[str], room: int) -> str:
    modules = overview.closest(query, count, exclude=exclude)
    if not modules or room < 200:
        return ""
    share = room // len(modules)
    parts = []
    for module in modules:
        source = overview.source(module.path)
        fence = "````" if "```" in source else "```"
        head = f"{module.path}\n{fence}python\n"
        parts.append(head + _clip(source.rstrip() + "\n", share - len(head) - len(fence) - 1) + fence + "\n")
    return "".join(parts)


def _files_section(files: Mapping[str, str]) -> str:
    parts = []
    for path, text in files.items():
        fence = "````" if "```" in text else "```"
        parts.append(f"{path}\n{fence}python\n{text}{'' if text.endswith(chr(10)) or not text else chr(10)}{fence}\n")
    return "".join(parts)


def _clip(text: str, limit: int) -> str:
    """``text`` cut at a line end so that it and the cut note fit in ``limit`` characters."""
    if len(text) <= limit:
        return text
    keep = max(limit - 60, 0)
    cut = text.rfind("\n", 0, keep)
    kept = text[: cut + 1] if cut > 0 else text[:keep]
    return kept + f"... ({len(text) - len(kept)} characters left out)\n"
