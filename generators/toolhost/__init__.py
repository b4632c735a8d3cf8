"""Generated tools at run time: each runs in a long-lived worker process in the jail, never in the server."""

from generators.toolhost.process import ToolSpec, ToolWorker, WorkerLimits

__all__ = ["ToolSpec", "ToolWorker", "WorkerLimits"]
