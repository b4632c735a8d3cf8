"""Every error telemetry raises, as one tree. Messages are written for the agent that called the tool: what was wrong,
what to do. Each class says what *kind* of failure it is (the same kinds as ``generators.errors``), so that a front end
answers it alike without reading its text.

``TelemetryError``          invalid      a telemetry request that cannot be served as asked
 ├── ``StorageFullError``   unavailable  the data directory's disk, quota or database is full
 └── ``SetupError``         unavailable  the CloudWatch pipeline cannot be set up (credentials, permissions, endpoint)
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import ClassVar, Literal

ErrorKind = Literal["not_found", "refused", "conflict", "invalid", "unavailable", "internal"]


class TelemetryError(Exception):
    """Base class: a telemetry request that cannot be served as asked."""

    kind: ClassVar[ErrorKind] = "invalid"


class StorageFullError(TelemetryError):
    """A write failed because the data directory is full: the disk (ENOSPC), the quota (EDQUOT), or a database at its
    size limit (SQLITE_FULL). Nothing was half-written; reads keep working and the same write succeeds once there is
    space again. The tool edge adds what to do (it knows the setting that moves the folder)."""

    kind: ClassVar[ErrorKind] = "unavailable"
    folder: ClassVar[Literal["data directory"]] = "data directory"

    def __init__(self, directory: Path, reason: str) -> None:
        super().__init__(f"the {self.folder} {directory} is full ({reason})")
        self.directory = directory
        self.reason = reason


class SetupError(TelemetryError):
    """The pipeline could not be set up; the message says what to fix (credentials, permissions, endpoint)."""

    kind: ClassVar[ErrorKind] = "unavailable"

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code  # the AWS error code, when AWS answered


def failure_text(exc: BaseException, log: logging.Logger, doing: str) -> str:
    """What a caller reads of a failure while ``doing``: the message of an error that says its kind (a domain error of
    either package); anything else (a bug, a raw OS or SQLite error with paths in it, a domain error of kind
    ``internal``) reads "internal error (id …)", and the log has its traceback under that id."""
    kind = getattr(type(exc), "kind", None)
    if isinstance(kind, str) and kind != "internal":
        log.warning("%s failed: %s", doing, exc)
        return str(exc)
    error_id = secrets.token_hex(6)
    log.error("%s failed: internal error %s", doing, error_id, exc_info=exc)
    return f"internal error (id {error_id}); the server's log has the details under this id"
