"""Saving a generated script: only into the workspace's scripts folder, under a plain file name, atomically."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shlex
import tempfile
from contextlib import suppress
from pathlib import Path

from generators.errors import SaveError, storage_full
from generators.remediation.models import EXTENSIONS, GeneratedScript, Platform, SavedScript

logger = logging.getLogger(__name__)

MODES: dict[Platform, int] = {"bash": 0o755, "powershell": 0o644}
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_./:\\-]+")
# Names Windows reserves for devices, whatever the extension.
_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL"} | {f"{p}{n}" for p in ("COM", "LPT") for n in range(1, 10)})


def check_file_name(name: object, platform: Platform) -> str:
    """Return ``name`` if it is a plain file name with the platform's extension; raise ``SaveError`` otherwise."""
    extension = EXTENSIONS[platform]
    example = f"fix_disk_full{extension}"
    if not isinstance(name, str) or not name.strip():
        raise SaveError(f"filename must be a non-empty file name like {example!r}")
    shown = repr(name) if len(name) <= 80 else repr(name[:77] + "...")
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        raise SaveError(f"filename {shown} must not be an absolute path; give a bare name like {example!r}")
    if "/" in name or "\\" in name:
        raise SaveError(f"filename {shown} must not contain '/' or '\\'; scripts are always saved in scripts/")
    if ".." in name:
        raise SaveError(f"filename {shown} must not contain '..'; give a bare name like {example!r}")
    if name.startswith("."):
        raise SaveError(f"filename {shown} must not be hidden (start with '.'); give a name like {example!r}")
    if not _FILE_NAME.fullmatch(name):
        raise SaveError(
            f"filename {shown} may only use letters, digits, '.', '_' and '-', must start with a letter or digit "
            "and be at most 128 characters"
        )
    if not name.endswith(extension):
        raise SaveError(f"filename {shown} must end with {extension} for a {platform} script, e.g. {example!r}")
    if name.split(".")[0].upper() in _RESERVED:
        raise SaveError(f"filename {shown} is a reserved device name on Windows; choose another name")
    return name


def _prepare_dir(scripts_dir: Path) -> Path:
    """Create the scripts folder if needed; return its real path, which must lie inside the workspace."""
    scripts_dir = Path(os.path.abspath(scripts_dir))
    workspace = scripts_dir.parent.resolve()
    if scripts_dir.is_symlink():
        real = scripts_dir.resolve()
        if not real.is_relative_to(workspace):
            raise SaveError(
                f"the scripts folder {scripts_dir} is a symlink to {real}, outside the workspace {workspace}; "
                "refusing to write there. Replace the link with a real folder."
            )
    try:
        with storage_full(workspace, "workspace"):
            scripts_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise SaveError(f"{scripts_dir} exists but is not a folder; move it away so scripts can be saved") from exc
    except OSError as exc:
        raise SaveError(f"could not create the scripts folder {scripts_dir}: {exc.strerror}") from exc
    real = scripts_dir.resolve()
    if not real.is_relative_to(workspace) or not real.is_dir():
        raise SaveError(f"the scripts folder {scripts_dir} resolves to {real}, outside the workspace {workspace}")
    return real


def _write_atomically(directory: Path, name: str, data: bytes, mode: int) -> None:
    """Temp file in the same folder, fsync, then rename over the target: readers see the old or the new file."""
    fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, directory / name)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    if os.name == "posix":  # the rename itself is durable only once the folder is synced
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _command_path(path: Path, platform: Platform) -> str:
    text = str(path)
    if platform == "bash":
        return shlex.quote(text)
    return text if _PLAIN_PATH.fullmatch(text) else "'" + text.replace("'", "''") + "'"


def save_script(script: GeneratedScript, scripts_dir: Path, filename: str | None = None) -> SavedScript:
    """Write ``script`` as ``filename`` (default: the template's file name) into ``scripts_dir``.

    Only ``scripts_dir`` is ever written to; it is created if missing and must resolve inside its parent (the
    workspace). An existing regular file of that name is replaced; a symlink or folder of that name is refused.
    """
    name = check_file_name(script.file_name if filename is None else filename, script.platform)
    data = script.content.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    if digest != script.sha256:
        raise SaveError("the script's content does not match its sha256; generate it again and save that")
    directory = _prepare_dir(scripts_dir)
    target = directory / name
    if target.is_symlink():
        raise SaveError(f"{target} is a symlink; refusing to write through it. Remove it or choose another filename.")
    if target.exists() and not target.is_file():
        raise SaveError(f"{target} exists and is not a regular file; choose another filename")
    overwritten = target.exists()
    mode = MODES[script.platform]
    try:
        with storage_full(directory.parent, "workspace"):
            _write_atomically(directory, name, data, mode)
    except OSError as exc:
        raise SaveError(f"could not write {target}: {exc.strerror or exc}; check the workspace is writable") from exc
    logger.info("saved %s script %s (%d bytes, sha256 %s)", script.issue_type, target, len(data), digest)
    command = _command_path(target, script.platform)
    if script.platform == "bash":
        run_command, dry_run_command = f"bash {command} --apply", f"bash {command}"
    else:
        run_command, dry_run_command = f"pwsh -File {command} -Apply", f"pwsh -File {command}"
    return SavedScript(
        path=str(target),
        file_name=name,
        sha256=digest,
        size_bytes=len(data),
        mode=oct(mode),
        overwritten=overwritten,
        issue_type=script.issue_type,
        platform=script.platform,
        description=script.description,
        run_command=run_command,
        dry_run_command=dry_run_command,
        requires_admin=script.requires_admin,
        parameters=script.parameters,
    )
