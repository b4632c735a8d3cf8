"""Maps domain errors to ``ToolError``: only a ``ToolError`` message reaches the model (mcp 2.x)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError

from generators.errors import GeneratorError
from telemetry.errors import TelemetryError


@contextmanager
def domain_errors() -> Iterator[None]:
    """Turn the domain's own errors into ``ToolError`` with the same message; anything else stays masked."""
    try:
        yield
    except (GeneratorError, TelemetryError) as exc:
        raise ToolError(str(exc)) from exc
