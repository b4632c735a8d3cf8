"""Generated tools at run time: each runs in a long-lived worker process in the jail, never in the server."""

from generators.toolhost.process import ToolSpec, ToolWorker, WorkerLimits
from generators.toolhost.registry import GeneratedTools, LiveTool
from generators.toolhost.store import SqliteToolStore, ToolRecord

__all__ = [
    "GeneratedTools",
    "LiveTool",
    "SqliteToolStore",
    "ToolRecord",
    "ToolSpec",
    "ToolWorker",
    "WorkerLimits",
]
