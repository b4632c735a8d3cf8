"""Git for deployments: refuse uncommitted changes to the touched files, commit exactly those files.

Every command runs with captured output, a timeout, literal pathspecs and no hooks or signing (a deployment must not
wait on a prompt). No git on the machine, or a workspace outside any repository, means a plain folder.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from generators.errors import DeployError, DirtyWorkspaceError, GitCommandError, GitError

logger = logging.getLogger(__name__)

GIT_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class GitIdentity:
    """Who deployment commits are made as."""

    name: str = "self-building-mcp"
    email: str = "self-building-mcp@localhost"


class GitWorkspace:
    """Git operations on a workspace folder that lies in a repository."""

    def __init__(self, workspace: Path, git: str, identity: GitIdentity, timeout_s: float = GIT_TIMEOUT_S) -> None:
        self.workspace = workspace
        self._git = git
        self._identity = identity
        self._timeout_s = timeout_s

    @classmethod
    def detect(
        cls, workspace: Path, identity: GitIdentity | None = None, timeout_s: float = GIT_TIMEOUT_S
    ) -> GitWorkspace | None:
        """A :class:`GitWorkspace` when git is installed and ``workspace`` is inside a work tree, else ``None``."""
        git = shutil.which("git")
        if git is None:
            logger.info("git is not installed; deployments to %s are not committed", workspace)
            return None
        found = cls(workspace, git, identity or GitIdentity(), timeout_s)
        try:
            inside = found._run("rev-parse", "--is-inside-work-tree", check=False)
        except DeployError:
            logger.warning("git did not answer in %s; treating the workspace as a plain folder", workspace)
            return None
        if inside.returncode != 0 or inside.stdout.strip() != "true":
            logger.info("%s is not in a git work tree; deployments are not committed", workspace)
            return None
        return found

    def dirty(self, paths: Sequence[str]) -> list[str]:
        """The paths among ``paths`` with uncommitted changes (modified, staged, untracked, deleted)."""
        if not paths:
            return []
        out = self._run("status", "--porcelain=v1", "-z", "--untracked-files=all", "--", *paths).stdout
        entries = [entry for entry in out.split("\0") if entry]
        return sorted({entry[3:] for entry in entries if len(entry) > 3 and entry[2] == " "})

    def check_clean(self, paths: Sequence[str], action: str) -> None:
        """Raise :class:`DirtyWorkspaceError` if any of ``paths`` has uncommitted changes."""
        dirty = self.dirty(paths)
        if dirty:
            raise DirtyWorkspaceError(
                f"refusing to {action}: git reports uncommitted changes to {dirty} in {self.workspace}. "
                "Commit or discard those changes first.",
                dirty,
            )

    def commit(self, paths: Sequence[str], message: str, marker: str) -> str | None:
        """Commit exactly ``paths`` (additions, changes, deletions); return the commit sha.

        When they hold no change against HEAD (already committed, e.g. before a crash), return the newest commit
        whose message contains ``marker``, or ``None``.
        """
        tracked = set(self._run("ls-files", "-z", "--", *paths).stdout.split("\0")) - {""}
        present = [p for p in paths if (self.workspace / p).exists() or p in tracked]
        if present:
            self._run("add", "-A", "--", *present)
        staged = self._run("diff", "--cached", "--name-only", "-z", "--", *paths).stdout
        if not staged.strip("\0"):
            found = self._run("log", "-1", "--format=%H", "-F", f"--grep={marker}", check=False).stdout.strip()
            return found or None
        ident = self._identity
        self._run(
            "-c", f"user.name={ident.name}", "-c", f"user.email={ident.email}", "-c", "commit.gpgsign=false",
            "commit", "--no-verify", "--quiet", "-m", message, "--", *present,
        )  # fmt: skip
        return self._run("rev-parse", "HEAD").stdout.strip()

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        sub = next((a for a in args if not a.startswith("-") and "=" not in a), "")
        command = [self._git, "--literal-pathspecs", "-c", "core.quotepath=off", *args]
        try:
            proc = subprocess.run(
                command,
                cwd=self.workspace,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="surrogateescape",
                timeout=self._timeout_s,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise GitError(f"git {sub} did not finish within {self._timeout_s:g} s in {self.workspace}") from exc
        except OSError as exc:
            raise GitError(f"could not run git in {self.workspace}: {exc}") from exc
        if check and proc.returncode != 0:
            raise GitCommandError(
                f"git {sub} failed in {self.workspace} (exit {proc.returncode}): "
                f"{proc.stderr.strip()[:500]}. Fix the repository state, then retry."
            )
        return proc
