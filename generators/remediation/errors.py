"""The remediation generator's errors. Each message says what was wrong and what to do instead."""

from __future__ import annotations

from generators.errors import GeneratorError


class UnknownTemplateError(GeneratorError):
    """The issue type or platform names no template."""


class ParameterError(GeneratorError):
    """A script parameter is unknown, missing, or fails its kind's pattern or range."""


class SaveError(GeneratorError):
    """A script cannot be saved as asked: bad file name, a folder outside the workspace, or an I/O failure."""
