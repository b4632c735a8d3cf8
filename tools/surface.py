"""The server's tool surface, the same for every tool (also ones added while it runs).

* ``tools/list`` gives compact definitions (:mod:`tools.definitions`), built once per set of tools;
* a call whose arguments hold NaN or ±Infinity is refused before the tool runs (JSON has no such numbers; Python's
  parser accepts them, and a tool would take NaN for "no filter" or compute nonsense from it);
* so is a call with an argument the tool does not take (the SDK would drop it: a call that looks right and changes
  nothing), with the arguments the tool does take;
* arguments the tool's signature rejects are explained in the tool's words (:mod:`tools.arguments`), not in
  pydantic's. The SDK then logs that short text, not the rejected values;
* a domain error that a tool let escape (a full disk under a write deep inside) reaches the caller in the domain's
  words (:func:`tools.errors.domain_message`), not as a bare "Error executing tool";
* a crash reaches the caller as "internal error (id …)", and the log has the traceback under that id;
* how a call failed is noted by the type of what was raised (:mod:`tools.outcome`), for the call record.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, InputRequiredResult
from mcp.types import Tool as MCPTool
from pydantic import ValidationError

from tools import outcome
from tools.access import current_caller
from tools.arguments import explain, non_finite, non_finite_message, unknown_arguments
from tools.definitions import compact_tools
from tools.errors import domain_message
from tools.generated_tools import GeneratedSurface, is_generated

logger = logging.getLogger(__name__)


class ToolSurface(MCPServer):
    """``MCPServer`` with the tool surface described in the module docstring."""

    _listed: list[MCPTool] | None = None  # the compact tool list; rebuilt when a tool is added or removed
    generated: GeneratedSurface | None = None  # the tools the server generated for itself (set while it runs)

    def has_tool(self, name: str) -> bool:
        """Whether the caller has a tool of that name now (a generated one only for callers who may use it)."""
        if self.generated is not None and is_generated(name):
            return self.generated.visible(name, current_caller()) is not None
        return self._tool_manager.get_tool(name) is not None

    def generated_tenant(self, name: str) -> str | None:
        """The tenant of the generated tool of that name, or None (not one)."""
        found = self.generated.find(name) if self.generated is not None else None
        return found.record.tenant if found is not None else None

    def add_tool(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().add_tool(fn, *args, **kwargs)
        self._listed = None

    def remove_tool(self, name: str) -> None:
        super().remove_tool(name)
        self._listed = None

    async def list_tools(self) -> list[MCPTool]:
        if self._listed is None:
            self._listed = compact_tools(await super().list_tools())
        generated = self.generated.listed(current_caller()) if self.generated is not None else []
        return [*self._listed, *generated]

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        where = non_finite(arguments)
        if where is not None:
            outcome.note("invalid_arguments")
            raise ToolError(f"Error executing tool {name}: {non_finite_message(where)}")
        if self.generated is not None and is_generated(name):
            return await self.generated.call(name, arguments, current_caller())
        tool = self._tool_manager.get_tool(name)
        if tool is None:
            outcome.note("unknown_tool")
        unknown = unknown_arguments(arguments, tool.parameters) if tool is not None else None
        if unknown is not None:
            outcome.note("invalid_arguments")
            raise ToolError(f"Error executing tool {name}: {unknown}")
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError as exc:
            cause = exc.__cause__
            message = domain_message(cause)  # a domain error a tool let escape (a full disk under a write)
            if message is None:
                raise _internal(name, cause) from None
            outcome.note(outcome.kind_of(cause))
            raise ToolError(f"Error executing tool {name}: {message}") from cause
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):
                outcome.note("invalid_arguments")
                raise ToolError(f"Error executing tool {name}: {explain(cause)}") from None
            outcome.note(outcome.kind_of(cause if cause is not None else exc))
            raise


def _internal(name: str, cause: BaseException | None) -> ToolError:
    """A crash: its detail goes to the log under a fresh id, and the caller reads the id (nothing of the crash)."""
    error_id = secrets.token_hex(6)
    outcome.note("internal")
    logger.error("tool %s failed: internal error %s", name, error_id, exc_info=cause)
    return ToolError(
        f"Error executing tool {name}: internal error (id {error_id}); the server's log has the details under this id"
    )
