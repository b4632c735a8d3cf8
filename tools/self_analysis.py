"""``analyze_self``: the server's analysis of its own tool calls.

Each ``tools/call`` is recorded (by :mod:`.call_observer`) with its tool (``(unknown tool)`` for a name the server has
no tool for), tenant (the ``tenant_id`` argument when the tool takes one, else the server's default tenant;
``(invalid tenant)`` when it is no tenant id or one the caller may not use), caller (the API key's name, ``local``
without a key), duration, outcome and error kind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Final, Protocol

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

from telemetry.selfcheck.models import SelfReport
from tools.access import Caller, authorize
from tools.errors import ToolFailure
from tools.services import Services, ServicesOf

if TYPE_CHECKING:  # what the services are, for the type checker
    from telemetry.selfcheck.insights import SelfAnalyst


OTHER_KEYS: Final = "(other keys)"


class Needs(Protocol):
    """What the self analysis tools use of the server's services (:class:`tools.services.Services` has them all)."""

    @property
    def self_analyst(self) -> SelfAnalyst | None: ...

    @property
    def analyses(self) -> anyio.CapacityLimiter | None: ...


def tool_components(server: MCPServer) -> dict[str, str]:
    """Tool name -> ``module.function`` of its handler: the server component behind each tool.

    The SDK keeps the handlers in its tool manager, which has no public accessor; without it the map is empty and
    findings carry no component.
    """
    manager = getattr(server, "_tool_manager", None)
    tools = manager.list_tools() if manager is not None else []
    return {tool.name: f"{tool.fn.__module__}.{tool.fn.__name__}" for tool in tools}


def _caller_label(caller: Caller) -> Callable[[str], str] | None:
    """A key limited to some tenants sees its own name and ``(other keys)`` for the rest."""
    if caller.all_tenants:
        return None
    return lambda name: name if name == caller.name else OTHER_KEYS


def register(server: MCPServer, deps: ServicesOf[Needs]) -> None:
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
        """How this server's own tools are used and behave: calls per tool and caller, timings, failures, bias,
        anomalies and prioritised optimisation suggestions. A key limited to some tenants sees only their
        calls (tools without a tenant count for the default tenant). Needs `read`.
        """
        caller = authorize("read")
        svc = deps(ctx)
        analyst = svc.self_analyst
        if analyst is None:
            raise ToolFailure(
                "self-analysis is not running on this server (its lifespan has not started)", "unavailable"
            )
        kept = analyst.recorder.retention_seconds / 3600
        if lookback_hours > kept:
            raise ToolFailure(
                f"lookback_hours={lookback_hours:g} reaches beyond the {kept:g} hours that tool calls are kept "
                f"(tool_calls_retention_days); use a value from above 0 up to {kept:g}"
            )
        tenants = None if caller.all_tenants else sorted(caller.tenants)
        label = _caller_label(caller)
        return await anyio.to_thread.run_sync(
            lambda: analyst.analyse(lookback_hours, tenants=tenants, caller_label=label), limiter=svc.analyses
        )
