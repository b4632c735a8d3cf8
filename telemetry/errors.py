"""Errors telemetry raises. Messages are written for the agent that called the tool: what was wrong, what to do."""

from __future__ import annotations

from pathlib import Path


class TelemetryError(Exception):
    """Base class: a telemetry request that cannot be served as asked."""


class StorageFullError(TelemetryError):
    """A write failed because the data directory is full: the disk (ENOSPC), the quota (EDQUOT), or a database at its
    size limit (SQLITE_FULL). Nothing was half-written; reads keep working and the same write succeeds once there is
    space again. The tool edge adds what to do (it knows the setting that moves the folder)."""

    kind = "data directory"

    def __init__(self, directory: Path, reason: str) -> None:
        super().__init__(f"the {self.kind} {directory} is full ({reason})")
        self.directory = directory
        self.reason = reason
