"""``analyze_self``: the server's analysis of its own tool calls, and the middleware that records every call.

Each ``tools/call`` is recorded with its tool, tenant (the ``tenant_id`` argument when the tool takes one, else the
server's default tenant), caller (the API key's name, ``local`` without a key), duration, outcome and error kind.
The kind is read from how the SDK reports the failure: ``Unknown tool: …``, argument validation (``N validation
error(s) for …``), an :class:`tools.access.AccessDenied` message, the bare ``Error executing tool NAME`` of a crash,
any other ``ToolError``; a cancelled call and a JSON-RPC error are seen as exceptions.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Annotated, Any, Final

import anyio
import anyio.to_thread
from mcp import MCPError
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from telemetry.calls import MAX_NAME, ToolCall
from telemetry.self_models import SelfReport
from tools.access import Caller, authorize, current_caller
from tools.services import Services, services

OTHER_KEYS: Final = "(other keys)"
_VALIDATION = re.compile(r"\d+ validation errors? for ")


def tool_components(server: MCPServer) -> dict[str, str]:
    """Tool name -> ``module.function`` of its handler: the server component behind each tool.

    The SDK keeps the handlers in its tool manager, which has no public accessor; without it the map is empty and
    findings carry no component.
    """
    manager = getattr(server, "_tool_manager", None)
    tools = manager.list_tools() if manager is not None else []
    return {tool.name: f"{tool.fn.__module__}.{tool.fn.__name__}" for tool in tools}


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


def call_recorder() -> ServerMiddleware[Any]:
    """Middleware recording every tool call into the services' :class:`telemetry.calls.CallRecorder` (cheap: one
    buffered append per call)."""

    async def record_tool_calls(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        analyst = getattr(ctx.lifespan_context, "self_analyst", None) if ctx.method == "tools/call" else None
        if analyst is None:
            return await call_next(ctx)
        params = ctx.params or {}
        tool = str(params.get("name", "?"))[:MAX_NAME]
        arguments = params.get("arguments")
        tenant = arguments.get("tenant_id") if isinstance(arguments, dict) else None
        if not isinstance(tenant, str):
            tenant = ctx.lifespan_context.default_tenant
        caller = current_caller().name
        started_at, started = analyst.clock(), time.perf_counter()
        kind: str | None = "internal"
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
            analyst.recorder.record(
                ToolCall(started_at, tool, tenant[:MAX_NAME], caller[:MAX_NAME], time.perf_counter() - started,
                         "ok" if kind is None else "error", kind)
            )  # fmt: skip

    return record_tool_calls


def _caller_label(caller: Caller) -> Callable[[str], str] | None:
    """A key limited to some tenants sees its own name and ``(other keys)`` for the rest."""
    if caller.all_tenants:
        return None
    return lambda name: name if name == caller.name else OTHER_KEYS


def register(server: MCPServer) -> None:
    """Add the self-analysis tool to ``server``."""

    @server.tool(
        title="Self-analysis",
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
    )
    async def analyze_self(
        ctx: Context[Services, Any],
        lookback_hours: Annotated[
            float,
            Field(gt=0, allow_inf_nan=False, description="Window of recorded tool calls to analyse, in hours."),
        ] = 24,
    ) -> SelfReport:
        """How this server's own tools are being used and how they behave: calls per tool and caller with a
        diversity score, execution times per tool (mean, p50, p95, max), failures by tool and error kind, bias (one
        tool or caller taking most calls), anomalies (slow or failing tools, recent regressions) and optimisation
        suggestions with priority and expected impact. A key limited to some tenants sees only their calls (tools
        without a tenant count for the server's default tenant). Needs the `read` role.
        """
        caller = authorize("read")
        analyst = services(ctx).self_analyst
        if analyst is None:
            raise ToolError("self-analysis is not running on this server (its lifespan has not started)")
        kept = analyst.recorder.retention_seconds / 3600
        if lookback_hours > kept:
            raise ToolError(
                f"lookback_hours={lookback_hours:g} reaches beyond the {kept:g} hours that tool calls are kept "
                f"(tool_calls_retention_days); use a value from above 0 up to {kept:g}"
            )
        tenants = None if caller.all_tenants else sorted(caller.tenants)
        label = _caller_label(caller)
        return await anyio.to_thread.run_sync(
            lambda: analyst.analyse(lookback_hours, tenants=tenants, caller_label=label)
        )
