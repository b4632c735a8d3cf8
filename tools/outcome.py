"""How a tool call failed, by the type of what was raised (never by its text): told by the tool surface
(:mod:`tools.surface`), read by the call observer (:mod:`tools.call_observer`).

The observer opens a :class:`CallOutcome` for each call; the surface notes the first failure kind into it. The kinds
are those of the domain errors (``not_found``, ``refused``, ``conflict``, ``invalid``, ``unavailable``, ``internal``)
and the surface's own: ``unknown_tool``, ``invalid_arguments``, ``access_denied``; ``tool_error`` is a ``ToolError``
that says no kind.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from mcp.server.mcpserver.exceptions import ToolError

from tools.access import AccessDenied
from tools.errors import ToolFailure


@dataclass
class CallOutcome:
    kind: str | None = None  # None: no failure noted


# The outcome of the tool call being served (a holder: noted into even where the context was copied).
CURRENT: ContextVar[CallOutcome | None] = ContextVar("tool_call_outcome", default=None)


def note(kind: str) -> None:
    """Note how the current call failed (the first note counts)."""
    outcome = CURRENT.get()
    if outcome is not None and outcome.kind is None:
        outcome.kind = kind


def kind_of(error: BaseException | None) -> str:
    """The failure kind of what a tool raised."""
    if isinstance(error, AccessDenied):
        return "access_denied"
    if isinstance(error, ToolFailure):
        return error.kind
    kind = getattr(type(error), "kind", None)  # a domain error (generators.errors, telemetry.errors)
    if isinstance(kind, str):
        return kind
    return "tool_error" if isinstance(error, ToolError) else "internal"
