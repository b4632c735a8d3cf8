"""Errors telemetry raises. Messages are written for the agent that called the tool: what was wrong, what to do."""


class TelemetryError(Exception):
    """Base class: a telemetry request that cannot be served as asked."""
