"""What a generation attempt records and returns, and how a new component's module path is chosen.

``RoundRecord`` is one ask → apply → validate round; ``GenerationResult`` is the whole attempt (the accepted change or
the report of every failed round). ``component_path`` turns a component name (given, or derived from the
requirements) and a tenant into ``components/[<tenant>/]<name>.py`` without ever naming an existing file.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generators.codegen.edit_apply import Change
from generators.codegen.models import RoundOutcome
from generators.codegen.overview import tokens
from generators.errors import GenerationInputError
from generators.validation import ValidationReport

__all__ = [
    "AcceptCheck",
    "GenerationInputError",
    "GenerationResult",
    "Objection",
    "ProgressCallback",
    "RoundOutcome",
    "RoundRecord",
    "component_path",
    "module_name_from",
    "reply_excerpt",
]

# (stage, round, message); a tool turns these into MCP progress notifications.
ProgressCallback = Callable[[str, int, str], Awaitable[None]]


@dataclass(frozen=True)
class Objection:
    """A caller's objection to a change that passed validation: ``problems`` are fed back to the model; with
    ``restart`` the next round starts again from the files as they were (the change is not its base)."""

    problems: list[str]
    restart: bool = False


# A caller's last word on a change that passed validation (``None``: accept). The improvement cycle uses it to refuse
# a repeat of an earlier failed attempt, and to make an error fix prove itself with a test that fails on the old code.
AcceptCheck = Callable[[Change], Awaitable[Objection | None]]

# How much of a failed round's raw reply is kept (its start: where a reply goes wrong is usually where it begins).
REPLY_EXCERPT_CHARS = 2000

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
# A tenant id: the one rule of every part (telemetry.ingest.TENANT_PATTERN is the same; a test holds them equal).
TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_NAME_WORDS = 3
# Words of a request that say nothing about what the component is.
_INSTRUCTION_WORDS = frozenset(
    [
        "write",
        "create",
        "build",
        "make",
        "implement",
        "add",
        "new",
        "component",
        "module",
        "code",
        "python",
        "please",
        "should",
        "must",
        "which",
        "that",
        "returns",
        "given",
        "using",
    ]
)


@dataclass(frozen=True)
class RoundRecord:
    """One round: what the model was told was wrong with its reply (empty when accepted), what it cost, and the start
    of the reply it failed on (``reply_excerpt``, empty when accepted: the diff shows that one), so a reader can see
    what the model actually sent."""

    number: int
    outcome: RoundOutcome
    problems: list[str]
    validation: dict[str, Any] | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    files: list[str] = field(default_factory=list)
    reply_excerpt: str = ""
    repairs: list[str] = field(default_factory=list)  # what the server added to the reply (generators.codegen.repairs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the round."""
        return {
            "round": self.number,
            "outcome": self.outcome,
            "problems": list(self.problems),
            "validation": self.validation,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_ms": round(self.latency_ms, 1),
            "files": list(self.files),
            "reply_excerpt": self.reply_excerpt,
            "repairs": list(self.repairs),
        }


def reply_excerpt(reply: str, limit: int = REPLY_EXCERPT_CHARS) -> str:
    """The first ``limit`` characters of a reply, saying how many more there were."""
    if len(reply) <= limit:
        return reply
    return f"{reply[:limit]}\n[... {len(reply) - limit} more characters]"


@dataclass(frozen=True)
class GenerationResult:
    """The outcome of ``CodeGenerator.generate_component`` or ``improve``.

    ``change`` and ``diff`` are those of the accepted change (``None`` / empty when every round failed);
    ``report`` is the validation report of the last round that was validated.
    """

    succeeded: bool
    change: Change | None
    diff: str
    rounds: list[RoundRecord]
    report: ValidationReport | None
    prompt_tokens: int
    completion_tokens: int
    target_path: str | None = None
    tried: Change | None = None  # a failed attempt's last change that applied (archived so it is not repeated)

    def render(self) -> str:
        """Every round: its outcome and the problems found, for the caller (or the audit log)."""
        verdict = "accepted" if self.succeeded else "failed"
        lines = [f"generation {verdict} after {len(self.rounds)} round(s)"]
        for record in self.rounds:
            lines.append(f"round {record.number}: {record.outcome} ({', '.join(record.files) or 'no files'})")
            lines.extend(f"  {line}" for problem in record.problems for line in problem.splitlines())
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: verdict, diff, the rounds, the final report and the token totals."""
        return {
            "succeeded": self.succeeded,
            "target_path": self.target_path,
            "files": sorted(self.change.files) if self.change else [],
            "diff": self.diff,
            "rounds": [record.to_dict() for record in self.rounds],
            "validation": self.report.to_dict() if self.report else None,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


def module_name_from(requirements: str) -> str:
    """A module name made of the first few meaningful words of ``requirements`` (``component`` when none)."""
    words: list[str] = []
    for word in re.findall(r"[a-z][a-z0-9]*", requirements.lower()):
        if word in tokens(word) and word not in _INSTRUCTION_WORDS and word not in words:
            words.append(word)
        if len(words) == _NAME_WORDS:
            break
    name = "_".join(words) or "component"
    return name + "_component" if keyword.iskeyword(name) else name


def component_path(
    workspace: Path, root: str, name: str | None, requirements: str, tenant_id: str | None
) -> tuple[str, str]:
    """``(module path, module name)`` for a new component under ``root`` (``<root>/<tenant>/`` when tenant-scoped).

    A derived name gets a numeric suffix until it names no existing file.

    Raises:
        GenerationInputError: ``name`` is not a lower-case identifier, ``tenant_id`` is not a plain folder name,
            or a file named ``name`` already exists there.
    """
    folder = root.strip("/")
    if tenant_id is not None:
        if not TENANT_ID.match(tenant_id):
            raise GenerationInputError(
                f"tenant id {tenant_id!r} cannot be a folder name; use 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit."
            )
        folder = f"{folder}/{tenant_id}"
    if name is not None:
        if not _IDENTIFIER.match(name) or keyword.iskeyword(name):
            raise GenerationInputError(
                f"component name {name!r} is not a module name; use lower-case letters, digits and '_' "
                "(e.g. rate_limiter), starting with a letter, at most 64 characters."
            )
        path = f"{folder}/{name}.py"
        if (workspace / path).exists():
            raise GenerationInputError(
                f"{path} already exists; choose another name, or improve the existing component instead."
            )
        return path, name
    base = module_name_from(requirements)
    candidate, suffix = base, 2
    while (workspace / f"{folder}/{candidate}.py").exists() or (workspace / f"{folder}/{candidate}").exists():
        candidate, suffix = f"{base}_{suffix}", suffix + 1
    return f"{folder}/{candidate}.py", candidate
