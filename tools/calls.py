"""The one middleware that observes every ``tools/call``: the services' counters (``get_system_status``), the call
record for self-analysis (:mod:`telemetry.calls`) and the server's Prometheus metrics.

The error kind is read from how the SDK reports the failure: ``Unknown tool: …``, argument validation (``N validation
error(s) for …``), an :class:`tools.access.AccessDenied` message, the bare ``Error executing tool NAME`` of a crash,
any other ``ToolError``; a cancelled call and a JSON-RPC error are seen as exceptions.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import anyio
from mcp import MCPError
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext

from telemetry.calls import MAX_NAME, ToolCall
from tools.access import current_caller

_VALIDATION = re.compile(r"\d+ validation errors? for ")
ToolCallSink = Callable[[str, bool, float], None]
"""Told of every tool call: the tool's name, whether it failed, and its duration in seconds."""


def classify_error(tool: str, text: str, caller: str) -> str:
    """The error kind of a failed call from the text the SDK made of the failure (see the module docstring)."""
    if text.startswith("Unknown tool:"):
        return "unknown_tool"
    prefix = f"Error executing tool {tool}"
    if text == prefix:
        return "internal"
    if not text.startswith(prefix + ": "):
        return "tool_error"
    rest = text.removeprefix(prefix + ": ")
    if _VALIDATION.match(rest):
        return "invalid_arguments"
    if rest.startswith((f"key {caller!r} needs role ", f"key {caller!r} may not use tenant ")):
        return "access_denied"
    if rest.startswith("Error executing tool"):  # a nested call crashed
        return "internal"
    return "tool_error"


def _result_failure(result: object) -> tuple[bool, str]:
    """Whether a ``tools/call`` result is an error, and its first text (as an object or as its wire dict)."""
    if isinstance(result, dict):
        content = result.get("content") or [{}]
        first = content[0] if isinstance(content, list) and content and isinstance(content[0], dict) else {}
        return bool(result.get("isError")), str(first.get("text", ""))
    content = getattr(result, "content", None) or [None]
    return bool(getattr(result, "is_error", False)), str(getattr(content[0], "text", ""))


def tool_call_observer(*sinks: ToolCallSink) -> ServerMiddleware[Any]:
    """Middleware observing every tool call once (cheap: counters and one buffered append per call)."""

    async def observe_tool_calls(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        svc = ctx.lifespan_context
        params = ctx.params or {}
        tool = str(params.get("name", "?"))[:MAX_NAME]
        analyst = getattr(svc, "self_analyst", None)
        started_at, started = (analyst.clock() if analyst is not None else 0.0), time.perf_counter()
        kind: str | None = "internal"
        caller = current_caller().name
        try:
            result = await call_next(ctx)
            failed, text = _result_failure(result)
            kind = classify_error(tool, text, caller) if failed else None
            return result
        except anyio.get_cancelled_exc_class():
            kind = "cancelled"
            raise
        except MCPError:
            kind = "protocol_error"
            raise
        finally:
            seconds = time.perf_counter() - started
            for sink in sinks:
                sink(tool, kind is not None, seconds)
            stats = getattr(svc, "stats", None)
            if stats is not None:
                stats.record(tool, failed=kind is not None)
            if analyst is not None:
                analyst.recorder.record(_record(svc, started_at, tool, caller, params.get("arguments"), seconds, kind))

    return observe_tool_calls


def _record(svc: Any, at: float, tool: str, caller: str, arguments: Any, seconds: float, kind: str | None) -> ToolCall:
    """The call's record; its tenant is the ``tenant_id`` argument when the tool has one, else the default tenant."""
    tenant = arguments.get("tenant_id") if isinstance(arguments, dict) else None
    if not isinstance(tenant, str):
        tenant = svc.default_tenant
    return ToolCall(at, tool, tenant[:MAX_NAME], caller[:MAX_NAME], seconds, "ok" if kind is None else "error", kind)
