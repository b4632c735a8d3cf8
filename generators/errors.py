"""Every error the generators raise, as one tree. Messages are written for the agent that called the tool: what was
wrong, what to do. Each class says what *kind* of failure it is, so that a front end answers it alike (a tool, a
resource, the dashboard) without reading its text:

``not_found`` no such thing · ``refused`` not allowed · ``conflict`` the state does not allow it now · ``invalid`` the
request cannot be served as given · ``unavailable`` a dependency (the model, the disk) cannot serve it now ·
``internal`` the server's own fault.

``GeneratorError``                      invalid
 ├── ``EditError``                       invalid      a model's reply cannot become a change
 │    ├── ``ReplyFormatError``           invalid      an unclosed fence, a block without a path, missing markers
 │    ├── ``UnsafeReplyPathError``       refused      a path outside the allowed roots
 │    └── ``EditConflictError``          conflict     SEARCH texts that match 0 or 2+ times
 ├── ``StorageFullError``                unavailable  the disk, the quota or a database is full
 ├── ``DeployError``                     conflict     a deployment or rollback cannot be carried out
 │    ├── ``UnsafePathError``            refused      a path that is absolute, escapes, or names a link/folder/.git
 │    ├── ``DeploymentNotFoundError``    not_found
 │    ├── ``EmptyChangeError``           invalid      a deployment with no file
 │    ├── ``GitError``                   unavailable  git could not run, or timed out
 │    ├── ``GitCommandError``            conflict     a git command failed in the repository
 │    ├── ``InvalidStateError``          conflict     the deployment's status does not allow the operation
 │    ├── ``WorkspaceChangedError``      conflict     a file no longer has the hash the operation expects
 │    ├── ``DirtyWorkspaceError``        conflict     git reports uncommitted changes to the files
 │    ├── ``IntegrityError``             internal     stored content does not match its recorded sha256
 │    └── ``RecoveryError``              internal     an interrupted transaction cannot be rolled forward or back
 ├── ``LLMError``                        unavailable  the model could not be asked, or did not answer usefully
 │    ├── ``LLMNotConfigured``           unavailable
 │    ├── ``LLMUnavailable``             unavailable  the endpoint failed, or its circuit breaker is open
 │    └── ``SpendCapReached``            refused      a token or money cap is reached
 ├── ``CycleNotFoundError``              not_found    no improvement cycle has that id (for this caller)
 ├── ``IllegalTransitionError``          internal     a candidate's status cannot follow its current one
 ├── ``ValidationInputError``            invalid      a workspace, path, test path or stage the pipeline cannot use
 ├── ``GenerationInputError``            invalid      a name or tenant that cannot become a module path
 ├── ``PromptBudgetError``               invalid      the fixed parts of a prompt do not fit its budget
 ├── ``BenchmarkError``                  invalid      a benchmark failed, timed out or printed no figure
 ├── ``GeneratedToolError``              refused      a generated tool refused the input (it raised ValueError)
 │    ├── ``ToolArgumentsError``         invalid      the arguments do not fit the tool's signature
 │    └── ``ToolWorkerError``            unavailable  its worker cannot start, or the tool is busy or gone
 │         └── ``ToolCrashedError``      internal     its code failed: raised, crashed, hung or answered too much
 ├── ``UnknownTemplateError``            not_found    no remediation template for that issue or platform
 ├── ``ParameterError``                  invalid      a script parameter is unknown, missing or out of range
 └── ``SaveError``                       invalid      a script cannot be saved as asked
"""

from __future__ import annotations

import errno
import logging
import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

ErrorKind = Literal["not_found", "refused", "conflict", "invalid", "unavailable", "internal"]
Folder = Literal["data directory", "workspace"]
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
QUOTED_CHARS = 80  # of a caller's value quoted back in a message

# The one description of how to configure the model, for every message that says none is configured.
SETTINGS_HINT = (
    "set SELF_BUILDING_LLM_MODEL (required); SELF_BUILDING_LLM_BASE_URL for any OpenAI-compatible endpoint (e.g. "
    "http://127.0.0.1:8080/v1; leave it unset for OpenAI itself, or set OPENAI_BASE_URL); and "
    "SELF_BUILDING_LLM_API_KEY or OPENAI_API_KEY (local servers accept any value)"
)
NOT_CONFIGURED = f"code generation needs an LLM and none is configured: {SETTINGS_HINT}"


class GeneratorError(Exception):
    """Base class: a request the generators cannot fulfil as asked."""

    kind: ClassVar[ErrorKind] = "invalid"


# --- replies of the model -------------------------------------------------------------------------------------------


class EditError(GeneratorError):
    """A model's reply cannot become a change: malformed, a refused path, or a SEARCH that matches 0 or 2+ times. The
    message is the report to send back to the model."""


class ReplyFormatError(EditError):
    """The reply does not follow the reply format: an unclosed fence, a block without a path, missing markers."""


class UnsafeReplyPathError(EditError):
    """A path in the reply is absolute, climbs out with ``..``, leaves the workspace through a symlink, or lies
    outside the allowed roots."""

    kind: ClassVar[ErrorKind] = "refused"


@dataclass(frozen=True)
class EditFailure:
    """Why one edit did not apply; ``report`` is written for the model."""

    path: str
    number: int
    report: str


class EditConflictError(EditError):
    """One or more SEARCH texts matched nowhere or more than once; none of the reply's edits were applied."""

    kind: ClassVar[ErrorKind] = "conflict"

    def __init__(self, failures: Sequence[EditFailure], applied: int) -> None:
        self.failures = tuple(failures)
        header = (
            f"{len(self.failures)} of {len(self.failures) + applied} edits in your reply could not be applied, so "
            "none were applied. Send the complete reply again with these edits corrected:"
        )
        super().__init__("\n\n".join([header, *(failure.report for failure in self.failures)]))


# --- storage --------------------------------------------------------------------------------------------------------


class StorageFullError(GeneratorError):
    """A write failed because its folder is full: the disk (ENOSPC), the quota (EDQUOT), or a database at its size
    limit (SQLITE_FULL). Nothing was half-written; reads keep working and the same write succeeds once there is space
    again. ``folder`` says which (the tool edge names the setting that moves it)."""

    kind: ClassVar[ErrorKind] = "unavailable"

    def __init__(self, directory: Path, reason: str, folder: Folder) -> None:
        super().__init__(f"the {folder} {directory} is full ({reason})")
        self.directory = directory
        self.reason = reason
        self.folder = folder


# --- deployment -----------------------------------------------------------------------------------------------------


class DeployError(GeneratorError):
    """A deployment or rollback cannot be carried out as asked."""

    kind: ClassVar[ErrorKind] = "conflict"


class UnsafePathError(DeployError):
    """A file path of a change is not a plain relative path to a regular file inside the workspace."""

    kind: ClassVar[ErrorKind] = "refused"


class DeploymentNotFoundError(DeployError):
    """No deployment has the given id."""

    kind: ClassVar[ErrorKind] = "not_found"


class EmptyChangeError(DeployError):
    """A deployment was asked for with no file."""

    kind: ClassVar[ErrorKind] = "invalid"


class GitError(DeployError):
    """git could not be run, or timed out: the workspace's repository cannot be used now."""

    kind: ClassVar[ErrorKind] = "unavailable"


class GitCommandError(DeployError):
    """A git command failed in the workspace's repository (its state must be fixed first)."""


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

    kind: ClassVar[ErrorKind] = "internal"


class RecoveryError(DeployError):
    """An interrupted transaction's files are in a state neither its old nor its new hashes explain."""

    kind: ClassVar[ErrorKind] = "internal"


# --- the model ------------------------------------------------------------------------------------------------------


class LLMError(GeneratorError):
    """The model could not be asked, or did not answer usefully."""

    kind: ClassVar[ErrorKind] = "unavailable"


class LLMNotConfigured(LLMError):
    """No model is configured: the generation tools cannot work, everything else does."""

    def __init__(self) -> None:
        super().__init__(NOT_CONFIGURED)


class LLMUnavailable(LLMError):
    """The endpoint failed (after the client's retries), or its circuit breaker is open."""


class SpendCapReached(LLMError):
    """A spend cap (tokens or money, per cycle or per tenant per UTC day) is reached: nothing more is asked."""

    kind: ClassVar[ErrorKind] = "refused"


# --- requests the parts cannot serve as given -----------------------------------------------------------------------


class CycleNotFoundError(GeneratorError):
    """No improvement cycle has the given id (or it is a tenant's the caller may not use)."""

    kind: ClassVar[ErrorKind] = "not_found"

    def __init__(self, cycle_id: str) -> None:
        super().__init__(f"no improvement cycle has id {quoted(cycle_id)}; trigger_improvement_cycle returns the ids")


class IllegalTransitionError(GeneratorError):
    """An improvement candidate was to move to a status its current one does not lead to: a bug, nothing is saved."""

    kind: ClassVar[ErrorKind] = "internal"


class CycleTakenOverError(IllegalTransitionError):
    """The cycle is no longer running here: another server adopted it (this one's lease ended) and marked it
    interrupted, so no candidate of it starts from here."""

    kind: ClassVar[ErrorKind] = "conflict"

    def __init__(self, cycle_id: str, status: str) -> None:
        super().__init__(
            f"improvement cycle {cycle_id} is {status}, not running: another server took it over (this one's lease "
            "ended), so none of its candidates starts here"
        )


class ValidationInputError(GeneratorError):
    """The workspace, a path in the change, a test path or a stage name is unusable; the message says which. Problems
    *in* the code (a syntax error, an ``eval``) are findings in the validation report, never exceptions."""


class GenerationInputError(GeneratorError):
    """A component name or tenant id that cannot become a module path, or a target that already exists."""


class PromptBudgetError(GeneratorError):
    """The fixed parts of a prompt (standards, format, files to edit) do not fit in the budget."""


class BenchmarkError(GeneratorError):
    """The benchmark failed, timed out or printed no figure; ``side`` says on which code (before or after)."""

    def __init__(self, message: str, side: str) -> None:
        super().__init__(message)
        self.side = side


class GeneratedToolError(GeneratorError):
    """A call of a generated tool failed in the tool's own code (its error, as the tool raised it)."""

    kind: ClassVar[ErrorKind] = "refused"


class ToolArgumentsError(GeneratedToolError):
    """The arguments do not fit the generated tool's signature."""

    kind: ClassVar[ErrorKind] = "invalid"


class ToolWorkerError(GeneratedToolError):
    """The generated tool's worker crashed, hung past its time or answered more than allowed; it is replaced."""

    kind: ClassVar[ErrorKind] = "unavailable"


class ToolCrashedError(ToolWorkerError):
    """The generated tool's code failed in a call: it raised (anything but ValueError, its refusal of the input), or
    its worker died, hung or answered too much. A fault of the code: the self-analysis counts it as a crash."""

    kind: ClassVar[ErrorKind] = "internal"


class UnknownTemplateError(GeneratorError):
    """The issue type or platform names no remediation template."""

    kind: ClassVar[ErrorKind] = "not_found"


class ParameterError(GeneratorError):
    """A script parameter is unknown, missing, or fails its kind's pattern or range."""


class SaveError(GeneratorError):
    """A script cannot be saved as asked: bad file name, a folder outside the workspace, or an I/O failure."""


def quoted(value: str) -> str:
    """A caller's ``value`` quoted for a message (``repr``), cut to :data:`QUOTED_CHARS` characters."""
    if len(value) <= QUOTED_CHARS:
        return repr(value)
    return f"{value[:QUOTED_CHARS]!r}... ({len(value):,} characters)"


def full_reason(exc: BaseException) -> str | None:
    """Why ``exc`` means "no space" (SQLite's SQLITE_FULL, or ENOSPC / EDQUOT from the OS), or ``None``."""
    if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        return exc.strerror or str(exc)
    return None


@contextmanager
def storage_full(directory: Path, folder: Folder = "data directory") -> Iterator[None]:
    """Raise "disk full" from the block as :class:`StorageFullError` about ``directory``; other errors pass."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        reason = full_reason(exc)
        if reason is None:
            raise
        raise StorageFullError(directory, reason, folder) from exc


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
