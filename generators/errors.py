"""Errors the generators raise. Messages are written for the agent that called the tool: what was wrong, what to do."""


class GeneratorError(Exception):
    """Base class: a request the generators cannot fulfil as asked."""


class EditError(GeneratorError):
    """A model's reply cannot become a change: malformed, a refused path, or a SEARCH that matches 0 or 2+ times.

    The message is the report to send back to the model. Subclasses: ``edits.ReplyFormatError``,
    ``edit_apply.UnsafePathError``, ``edit_apply.EditConflictError``.
    """
