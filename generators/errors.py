"""Errors the generators raise. Messages are written for the agent that called the tool: what was wrong, what to do."""


class GeneratorError(Exception):
    """Base class: a request the generators cannot fulfil as asked."""
