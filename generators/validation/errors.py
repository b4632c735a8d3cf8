"""The validation pipeline's errors: a change or a request it cannot validate as given.

Problems *in* the code (a syntax error, an ``eval``) are findings in the report, never exceptions.
"""

from __future__ import annotations

from generators.errors import GeneratorError


class ValidationInputError(GeneratorError):
    """The workspace, a path in the change, a test path or a stage name is unusable; the message says which."""
