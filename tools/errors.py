"""Maps domain errors to ``ToolError``: only a ``ToolError`` message reaches the model (mcp 2.x).

A tool refuses a call with :class:`ToolFailure`, which carries the failure's kind as the domain errors do (their
class-level ``kind``): the call record and the other front ends read the kind, never the text. Messages quote what
the caller sent through :func:`shown`, and a domain message is :func:`bounded`: a caller value of a megabyte is never
echoed back, nor written to a log line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from mcp.server.mcpserver.exceptions import ToolError

from generators.errors import GeneratorError
from generators.errors import StorageFullError as GeneratorStorageFull
from telemetry.errors import StorageFullError as TelemetryStorageFull
from telemetry.errors import TelemetryError

ErrorKind = Literal["not_found", "refused", "conflict", "invalid", "unavailable", "internal"]
SHOWN_CHARS = 80  # of one quoted caller value
MESSAGE_CHARS = 1000  # of a whole error message

# The setting that moves each folder a "disk full" can be about.
_FOLDER_SETTINGS = {"data directory": "SELF_BUILDING_DATA_DIR", "workspace": "SELF_BUILDING_WORKSPACE"}


class ToolFailure(ToolError):
    """A tool's refusal of a call, with its kind (``not_found``: no such thing; ``refused``: not allowed; ``conflict``:
    the state does not allow it now; ``invalid``: not as given; ``unavailable``: a dependency cannot serve it now)."""

    def __init__(self, message: str, kind: ErrorKind = "invalid") -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``value`` quoted for a message (``repr``: control characters escaped), cut to ``limit`` characters."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(value)
    cut = repr(text[:limit]) if isinstance(value, str) else text[:limit]
    return f"{cut}... ({len(text):,} characters)"


def bounded(message: str, limit: int = MESSAGE_CHARS) -> str:
    """``message`` cut in the middle to ``limit`` characters: the start says what was wrong, the end what to do."""
    if len(message) <= limit:
        return message
    kept = max(0, limit - 48)  # room for the marker
    head, tail = kept * 2 // 3, kept - kept * 2 // 3
    left_out = f" [... {len(message) - head - tail:,} characters left out ...] "
    return f"{message[:head]}{left_out}{message[len(message) - tail :]}"


def domain_message(exc: BaseException | None) -> str | None:
    """What the caller reads for a domain error; ``None`` for anything else (it stays masked)."""
    if isinstance(exc, GeneratorStorageFull | TelemetryStorageFull):
        return (
            f"{exc}: free space there or move {_FOLDER_SETTINGS[exc.folder]}; reads still work and writes resume by "
            "themselves once there is space"
        )
    if isinstance(exc, GeneratorError | TelemetryError):
        return bounded(str(exc))
    return None


@contextmanager
def domain_errors() -> Iterator[None]:
    """Turn the domain's own errors into ``ToolError`` (see :func:`domain_message`); anything else stays masked."""
    try:
        yield
    except (GeneratorError, TelemetryError) as exc:
        raise ToolFailure(domain_message(exc) or str(exc), exc.kind) from exc
