"""The jail every piece of generated code runs in: bubblewrap (``bwrap``, Debian's ``bubblewrap``).

Inside: its own network namespace (no network, not even the host's loopback), its own pid namespace (no view of the
server or any other process), its own IPC and UTS namespaces; a root file system that holds only the system's
programs and libraries, the Python installation and its packages, all read-only, plus the one folder the run may
write (the candidate's copy of the workspace and its home), a private ``/tmp``, a minimal ``/dev`` and its own
``/proc``. The data directory, the server's source tree, ``$HOME`` and every other file are not there; nor are API
keys (the environment is built from an allow-list, see :func:`generators.validation.sandbox.sandbox_env`). No
new privileges (``NoNewPrivs``); it dies with the server.

Who runs inside: a server started as root runs generated code as an unprivileged user (``nobody`` by default):
bubblewrap sets up the jail with root's rights and the launcher drops to that user before anything generated runs.
A server started as any other user runs it as itself inside a user namespace. Either way the number of processes
that user may have is capped (RLIMIT_NPROC), so a fork without end fails instead of filling the machine.

Where the jail cannot start (no bubblewrap, no user namespaces, a container without the rights), generated code is
not run at all: the validation says why and how to fix it. Only the operator's ``SELF_BUILDING_SANDBOX=none``
runs it without a jail.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from generators.validation.lifeline import Lifeline, no_user_namespaces

logger = logging.getLogger(__name__)

JailMode = Literal["bwrap", "none"]
NOBODY = 65534
# System folders bound read-only where they are folders (on a merged-/usr system most are symlinks into /usr).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What of /etc a Python program may need: the dynamic loader's cache, names of users and hosts, the time zone.
ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/localtime",
)
FIX = (
    "install bubblewrap (Debian/Ubuntu: apt install bubblewrap) and let it create namespaces (unprivileged user "
    "namespaces, kernel.unprivileged_userns_clone=1; in a container: run the server as a non-root user, or give the "
    "container the rights to create namespaces); or, accepting that generated code then runs with the server's own "
    "user, files and network, set SELF_BUILDING_SANDBOX=none"
)


# Sets the limits given as argv[1:4] (memory, CPU seconds, file size; 0 = none), no core dumps, at most argv[4]
# processes of the user (0 = no cap), becomes the user argv[5] (-1: stays who it is) and goes to the folder argv[6];
# the code after it finds its own arguments in ``args``. Limits are set here, not by ``preexec_fn``, which is unsafe in
# a process with threads (the server starts this from a worker thread).
_LAUNCH = """
import os, resource, sys
memory, cpu, fsize, nproc, uid = (int(value) for value in sys.argv[1:6])
cwd, args = sys.argv[6], sys.argv[7:]
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
if nproc > 0:
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
if uid >= 0:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
os.chdir(cwd)
if memory > 0:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
if cpu > 0:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
if fsize > 0:
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
"""
# In the jail, with a lifeline (fd {fd}, see :class:`Lifeline`), the launcher is the jail's pid 1 (bubblewrap's
# --as-pid-1) and its watcher: it forks, the child runs the code, and it stays. Nothing in the jail can stop it: a
# pid namespace's init gets from inside only the signals it has a handler for, and it has none but SIGCHLD's (SIGINT
# goes back to the default). When its run ends it exits as the run did (128 + the signal that killed it, as bubblewrap
# reports one); when the server's end of the lifeline closes (the server is gone, however it died) it exits at once.
# Either way the kernel then kills whatever is left in the jail: nothing outlives its run or its server. It reaps the
# orphans meanwhile (they count against the jail's processes). It relies on no parent-death signal (bubblewrap's
# --die-with-parent once left a jail running after its server's SIGKILL).
_WATCH = """
_run = os.fork()
if _run:
    import select, signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _wake, _woken = os.pipe()
    os.set_blocking(_woken, False)
    signal.set_wakeup_fd(_woken)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    _poll = select.poll()
    _poll.register({fd}, select.POLLIN)
    _poll.register(_wake, select.POLLIN)
    while True:
        while True:
            _pid, _status = os.waitpid(-1, os.WNOHANG)
            if _pid == _run:
                _code = os.waitstatus_to_exitcode(_status)
                os._exit(_code if _code >= 0 else 128 - _code)
            if _pid == 0:
                break
        _ready = [ready for ready, _ in _poll.poll()]
        if {fd} in _ready:
            os._exit(137)
        if _wake in _ready:
            os.read(_wake, 4096)
os.close({fd})
"""
# Without a jail, the run is killed with the server (PR_SET_PDEATHSIG): a server killed by SIGKILL must not leave
# tests running in a folder that the next start removes. Exits at once if the server died before the prctl. (In the
# jail, its lifeline does this.)
_DIE_WITH_SERVER = """
if sys.platform == "linux":
    import ctypes, signal
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)
    if os.getppid() != {server}:
        os._exit(70)
"""


# What the probe run says: who it runs as, and whether it could make a user namespace of its own (it should not).
_PROBE = """
import ctypes
uid = os.getuid()
refused = ctypes.CDLL(None, use_errno=True).unshare(0x10000000) != 0
print("jailed as", uid, "refused" if refused else "allowed")
"""


@dataclass(frozen=True, slots=True)
class JailStatus:
    """Whether generated code can run, and how."""

    mode: JailMode
    ready: bool
    detail: str  # how it isolates, or why it cannot start and how to fix it

    def summary(self) -> str:
        """One line: 'jailed: how', 'refused: why and the fix' or 'UNJAILED: the risk'."""
        word = "UNJAILED" if self.mode == "none" else "jailed" if self.ready else "refused"
        return f"{word}: {self.detail}"


def report(status: JailStatus) -> None:
    """Say at start-up how generated code will run: a warning without a jail, an error where it cannot start."""
    if status.mode == "none":
        logger.warning("SELF_BUILDING_SANDBOX=none: %s; it can read and write what the server can", status.detail)
    elif not status.ready:
        logger.error("generated code will not be run: %s", status.detail)
    else:
        logger.info("generated code runs in a jail: %s", status.detail)


class Jail:
    """How generated code is run: :meth:`command` wraps a command line, :meth:`prepare` hands the writable folder to
    the user who runs inside, :meth:`status` says (once probed, then cached) whether the jail can start."""

    DEFAULT_MODE: ClassVar[JailMode] = "bwrap"  # what Jail() is (the tests set "none" where bubblewrap is missing)

    def __init__(
        self,
        mode: JailMode | None = None,
        *,
        bwrap: str = "bwrap",
        sandbox_uid: int = NOBODY,
        max_processes: int = 64,
        tmp_bytes: int = 256 << 20,
    ) -> None:
        self.mode: JailMode = mode or self.DEFAULT_MODE
        self.bwrap = bwrap
        self.sandbox_uid = sandbox_uid
        self.max_processes = max_processes
        self.tmp_bytes = tmp_bytes  # the size of its private /tmp (a tmpfs: memory)
        self._status: JailStatus | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.mode == "bwrap"

    @property
    def runs_as(self) -> int | None:
        """The user generated code runs as, where it differs from the server's (a server started as root)."""
        return self.sandbox_uid if self.enabled and os.geteuid() == 0 else None

    def process_cap(self) -> int:
        """RLIMIT_NPROC for a run (0: no cap). Set up as root, the run's user is ``nobody`` of the host: what it has
        now plus ``max_processes``. In a user namespace the kernel counts the namespace's own processes (Linux 5.14
        and later): ``max_processes``."""
        if not self.enabled:
            return 0
        if self.runs_as is None:
            return self.max_processes
        return tasks_of(self.runs_as) + self.max_processes

    def command(
        self,
        inner: list[str],
        writable: Path | Sequence[Path] | None,
        readonly: Sequence[Path] = (),
        *,
        die_with_parent: bool = True,
        lifeline: Lifeline,
    ) -> list[str]:
        """``inner`` (from :meth:`launch` with the same ``lifeline``) run inside the jail, ``writable`` the folders it
        may write (none: nothing but its ``/tmp``), ``readonly`` folders it may read; each bound at its own path.
        ``lifeline`` ends the jail with the server (pass its ``fds`` to the process) and, set up by root, carries the
        filter against user namespaces. ``die_with_parent``: bubblewrap also dies when the thread that starts it ends
        (PR_SET_PDEATHSIG is per thread: right for a run that thread waits for, wrong for a long-lived worker)."""
        if not self.enabled:
            return inner
        args = [self.bwrap, *(["--die-with-parent"] if die_with_parent else []), "--new-session", "--unshare-pid"]
        args.append("--as-pid-1")  # the launcher is the jail's pid 1, and watches the lifeline (see _WATCH)
        args += ["--unshare-net", "--unshare-ipc"]
        args += ["--unshare-uts", "--unshare-cgroup-try", "--hostname", "jail"]
        if os.geteuid() == 0:  # set up with root's rights; the launcher keeps only the right to become the user
            args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            if lifeline.seccomp_fd is not None:  # and no user namespace of its own inside
                args += ["--seccomp", str(lifeline.seccomp_fd)]
        else:  # and no user namespace of its own inside (most kernel privilege escalations start with one)
            args += ["--unshare-user", "--disable-userns"]
        args += [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--perms",
            "1777",
            "--size",
            str(self.tmp_bytes),
            "--tmpfs",
            "/tmp",
        ]
        for path in SYSTEM_DIRS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        args += [arg for path in ETC_FILES if os.path.exists(path) for arg in ("--ro-bind", path, path)]
        python = [*python_paths(), *(str(path) for path in readonly)]
        written = (
            [] if writable is None else [str(writable)] if isinstance(writable, Path) else [str(w) for w in writable]
        )
        for folder in folders_above([*python, *written]):  # else made as their originals are (/root: 0700)
            args += ["--perms", "0755", "--dir", folder]
        for path in python:
            args += ["--ro-bind", path, path]
        for path in written:
            args += ["--bind", path, path]
        return [*args, "--remount-ro", "/", "--chdir", "/", "--", *inner]  # the jail's own root: read-only too

    def lifeline(self) -> Lifeline:
        """The lifeline of a run (with the filter that forbids user namespaces, in a jail set up by root)."""
        return Lifeline(no_user_namespaces() if self.enabled and os.geteuid() == 0 else None)

    def launch(
        self,
        code: str,
        limits: list[str],
        cwd: Path,
        args: list[str],
        *,
        die_with_server: bool = True,
        lifeline: Lifeline,
    ) -> list[str]:
        """An isolated Python that sets ``limits`` (memory bytes, CPU seconds, file size bytes; "0": none), caps the
        processes, becomes the user who runs inside, changes to ``cwd`` and runs ``code``, which finds ``args`` in
        ``args`` (``os`` and ``sys`` are imported). In the jail it is the jail's pid 1, and the whole jail ends when
        its run does or when this server's end of ``lifeline`` closes; without a jail, ``die_with_server`` kills the
        run with the thread that starts it."""
        who = [str(self.process_cap()), str(-1 if self.runs_as is None else self.runs_as), str(cwd)]
        if not self.enabled:
            head = _LAUNCH + (_DIE_WITH_SERVER.format(server=os.getpid()) if die_with_server else "")
        else:
            head = _LAUNCH + _WATCH.format(fd=lifeline.fd)
        return [sys.executable, "-I", "-c", head + code, *limits, *who, *args]

    def prepare(self, writable: Path) -> None:
        """Make ``writable`` (and all in it) the property of the user who runs inside, where that is another user."""
        uid = self.runs_as
        if uid is None:
            return
        os.chown(writable, uid, uid)
        for folder, dirs, files in os.walk(writable):
            for name in (*dirs, *files):
                os.lchown(os.path.join(folder, name), uid, uid)

    def status(self, scratch: Path | None = None) -> JailStatus:
        """Probed on first use (a real run of Python in the jail), then the same answer (thread-safe)."""
        with self._lock:
            if self._status is None:
                self._status = self._probe(scratch)
            return self._status

    def _probe(self, scratch: Path | None) -> JailStatus:
        if not self.enabled:
            return JailStatus("none", True, "generated code runs WITHOUT a jail (SELF_BUILDING_SANDBOX=none)")
        found = shutil.which(self.bwrap)
        if found is None:
            return JailStatus("bwrap", False, f"bubblewrap ({self.bwrap}) is not installed; {FIX}")
        with tempfile.TemporaryDirectory(prefix="jail-probe-", dir=scratch) as tmp, self.lifeline() as lifeline:
            folder = Path(tmp)
            self.prepare(folder)
            inner = self.launch(_PROBE, ["0", "0", "0"], folder, [], lifeline=lifeline)
            try:
                done = subprocess.run(
                    self.command(inner, folder, lifeline=lifeline), capture_output=True, text=True, timeout=30,
                    check=False, pass_fds=lifeline.fds,
                )  # fmt: skip
            except (OSError, subprocess.TimeoutExpired) as exc:
                return JailStatus("bwrap", False, f"bubblewrap could not run ({exc}); {FIX}")
        if done.returncode != 0 or "jailed as" not in done.stdout:
            why = (done.stderr or done.stdout).strip()[-300:] or f"exit code {done.returncode}"
            return JailStatus("bwrap", False, f"bubblewrap cannot start a jail here ({why}); {FIX}")
        who, userns, *_ = [*done.stdout.split("jailed as", 1)[1].split(), "?", "?"]
        detail = f"bubblewrap {found}: no network, own pids, read-only system, uid {who}"
        return JailStatus("bwrap", True, detail + (", no user namespaces" if userns == "refused" else ""))


def python_paths() -> list[str]:
    """The Python installation and the environment the server runs in (a virtual environment's packages)."""
    paths = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, os.path.dirname(sys.executable))}
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    kept: list[str] = []
    for path in sorted(paths):  # a folder inside one already bound needs no bind of its own
        if not any(path == k or path.startswith(k + os.sep) for k in kept) and os.path.isdir(path):
            kept.append(path)
    return kept


def folders_above(paths: list[str]) -> list[str]:
    """Every folder above ``paths`` but ``/``, outermost first."""
    found = {str(parent) for path in paths for parent in Path(path).parents if str(parent) != "/"}
    return sorted(found, key=lambda folder: (folder.count("/"), folder))


def tasks_of(uid: int) -> int:
    """How many tasks (threads included, as RLIMIT_NPROC counts them) the user ``uid`` has now."""
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", encoding="ascii", errors="replace") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
        except OSError:
            continue  # ended meanwhile
        if int(fields.get("Uid", "-1 0").split()[0]) == uid:
            count += int(fields.get("Threads", "1").strip() or 1)
    return count
