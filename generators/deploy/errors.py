"""Errors of the deploy package. Each message says what was wrong and what to do.

``DeployError`` (a :class:`generators.errors.GeneratorError`)
 ├── ``UnsafePathError``        a path is absolute, escapes the workspace, or names a link/folder/``.git``
 ├── ``DeploymentNotFoundError`` no deployment has that id
 ├── ``InvalidStateError``       the deployment's status does not allow the operation
 ├── ``WorkspaceChangedError``   a workspace file no longer has the hash the operation expects
 ├── ``DirtyWorkspaceError``     git reports uncommitted changes to the files a deployment touches
 ├── ``IntegrityError``          stored content does not match its recorded sha256
 └── ``RecoveryError``           an interrupted transaction cannot be rolled forward or back safely
"""

from __future__ import annotations

from generators.errors import GeneratorError


class DeployError(GeneratorError):
    """A deployment or rollback cannot be carried out as asked."""


class UnsafePathError(DeployError):
    """A file path of a change is not a plain relative path to a regular file inside the workspace."""


class DeploymentNotFoundError(DeployError):
    """No deployment has the given id."""


class InvalidStateError(DeployError):
    """The deployment's status does not allow the requested operation."""


class WorkspaceChangedError(DeployError):
    """A workspace file changed since the deployment was made (or proposed)."""

    def __init__(self, message: str, paths: list[str]) -> None:
        super().__init__(message)
        self.paths = paths


class DirtyWorkspaceError(DeployError):
    """Git reports uncommitted changes to files the deployment would write."""

    def __init__(self, message: str, paths: list[str]) -> None:
        super().__init__(message)
        self.paths = paths


class IntegrityError(DeployError):
    """Stored or written content does not match its recorded sha256."""


class RecoveryError(DeployError):
    """An interrupted transaction's files are in a state neither its old nor its new hashes explain."""
