"""The one middleware that observes every ``tools/call``: the services' counters (``get_system_status``), the call
record for self-analysis (:mod:`telemetry.selfcheck.calls`) and the server's Prometheus metrics.

The error kind is noted by the tool surface from the type of what was raised (:mod:`tools.outcome`), never read
from the message; a cancelled call and a JSON-RPC error are seen here as exceptions.

Every name recorded here ends up in text other callers read (status, ``/metrics``, ``analyze_self``), so only
names the server knows are recorded: a tool the server does not have counts under ``(unknown tool)``, and a
``tenant_id`` the caller may not use, or that is no tenant id at all, under ``(invalid tenant)``. The SDK answers an
unknown name with ``Unknown tool: NAME`` and logs it, so a long one is cut first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

import anyio
from mcp import MCPError
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext

from telemetry.ingest import TENANT_PATTERN
from telemetry.selfcheck.calls import MAX_NAME, ToolCall
from tools import outcome
from tools.access import Caller, current_caller
from tools.generated_tools import GENERATED_LABEL

UNKNOWN_TOOL: Final = "(unknown tool)"
INVALID_TENANT: Final = "(invalid tenant)"
UNKNOWN_NAME_CHARS: Final = 64  # of a name the server has no tool for, as the SDK repeats it in its answer and log
ToolCallSink = Callable[[str, bool, float], None]
"""Told of every tool call: the tool's name, whether it failed, and its duration in seconds."""


def _failed(result: object) -> bool:
    """Whether a ``tools/call`` result is an error (as an object or as its wire dict)."""
    if isinstance(result, dict):
        return bool(result.get("isError"))
    return bool(getattr(result, "is_error", False))


def tool_call_observer(
    registered: Callable[[str], bool],
    *sinks: ToolCallSink,
    generated_tenant: Callable[[str], str | None] = lambda name: None,
) -> ServerMiddleware[Any]:
    """Middleware observing every tool call once (cheap: counters and one buffered append per call);
    ``registered`` tells whether the caller has a tool of a given name, ``generated_tenant`` the tenant of a
    generated tool. A generated tool's call is counted under one label by the server-wide counters (every reader
    sees them) and recorded under its own name only for its tenant's self-analysis."""

    async def observe_tool_calls(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        svc = ctx.lifespan_context
        params = ctx.params or {}
        name = params.get("name")
        tool = name if isinstance(name, str) and registered(name) else UNKNOWN_TOOL
        owner = generated_tenant(tool) if tool != UNKNOWN_TOOL else None
        counted = GENERATED_LABEL if owner is not None else tool
        if isinstance(name, str) and tool == UNKNOWN_TOOL and len(name) > UNKNOWN_NAME_CHARS:
            ctx = replace(ctx, params={**params, "name": name[:UNKNOWN_NAME_CHARS] + "…"})  # "…": no tool's name
        analyst = getattr(svc, "self_analyst", None)
        started_at, started = (analyst.clock() if analyst is not None else 0.0), time.perf_counter()
        kind: str | None = "internal"
        caller = current_caller()
        noted = outcome.CallOutcome()
        reset = outcome.CURRENT.set(noted)
        try:
            result = await call_next(ctx)
            kind = (noted.kind or "tool_error") if _failed(result) else None
            return result
        except anyio.get_cancelled_exc_class():
            kind = "cancelled"
            raise
        except MCPError:
            kind = "protocol_error"
            raise
        finally:
            outcome.CURRENT.reset(reset)
            seconds = time.perf_counter() - started
            for sink in sinks:
                sink(counted, kind is not None, seconds)
            stats = getattr(svc, "stats", None)
            if stats is not None:
                stats.record(counted, failed=kind is not None)
            if analyst is not None:
                arguments = params.get("arguments")
                claimed = arguments.get("tenant_id") if isinstance(arguments, dict) else None
                analyst.recorder.record(_record(svc, started_at, tool, caller, owner or claimed, seconds, kind))

    return observe_tool_calls


def _record(
    svc: Any, at: float, tool: str, caller: Caller, tenant: object, seconds: float, kind: str | None
) -> ToolCall:
    """The call's record. Its tenant is the one it claims (a generated tool's, else the ``tenant_id`` argument), or
    the default tenant; a claimed tenant that is no tenant id, or one the caller may not use, is recorded as
    ``(invalid tenant)``: no key can be limited to that, so the call never shows in another tenant's
    self-analysis."""
    if tenant is None:
        recorded = str(svc.default_tenant)
    elif isinstance(tenant, str) and TENANT_PATTERN.match(tenant) and caller.may_use(tenant):
        recorded = tenant
    else:
        recorded = INVALID_TENANT
    return ToolCall(at, tool, recorded, caller.name[:MAX_NAME], seconds, "ok" if kind is None else "error", kind)
