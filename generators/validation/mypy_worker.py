"""A long-lived mypy process for the type stage: importing mypy and reading its cache costs ~250 ms a run when
mypy starts afresh, and a few tens of milliseconds in a process that stays up.

The worker runs ``mypy.api.run`` for each request (JSON lines on stdin/stdout; mypy never executes the code it
checks). A request that outlives its timeout kills the worker, which the next request starts again; so does EOF on
its stdin, so it never outlives the server. It is replaced after ``max_checks`` checks to bound its memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import subprocess
import sys
import threading
from dataclasses import dataclass

logger = logging.getLogger(__name__)

_WORKER = r"""
import json, os, sys
from mypy import api
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # anything else printed goes to stderr, never into the replies
for line in sys.stdin:
    request = json.loads(line)
    try:
        os.chdir(request["cwd"])
        os.environ["MYPYPATH"] = request["mypypath"]
        stdout, stderr, code = api.run(request["args"])
    except BaseException as exc:
        stdout, stderr, code = "", f"{type(exc).__name__}: {exc}", 2
    out.write(json.dumps({"stdout": stdout, "stderr": stderr, "code": code}) + "\n")
    out.flush()
"""


class _WorkerLost(Exception):
    """The worker died or its reply was unreadable."""


class MypyTimeout(Exception):
    """The check did not finish in time; the worker was killed."""


@dataclass(frozen=True, slots=True)
class MypyResult:
    code: int
    stdout: str
    stderr: str


class MypyWorker:
    """One worker process, one check at a time (thread-safe)."""

    def __init__(self, max_checks: int = 500) -> None:
        self.max_checks = max_checks
        self._process: subprocess.Popen[bytes] | None = None
        self._checks = 0
        self._lock = threading.Lock()

    def run(self, args: list[str], cwd: str, mypypath: str, timeout: float) -> MypyResult:
        """mypy's exit code and output for ``args`` (mypy's command-line arguments) run in ``cwd``.

        Raises:
            MypyTimeout: no answer within ``timeout`` seconds.
            OSError: the worker could not be started or died mid-check.
        """
        request = (json.dumps({"args": args, "cwd": cwd, "mypypath": mypypath}) + "\n").encode()
        with self._lock:
            try:
                return self._ask(request, timeout)
            except _WorkerLost:
                # The worker died between checks (killed, out of memory): one more try on a fresh one, so a crash
                # of the tool is not reported as a problem of the code.
                logger.warning("the mypy worker was lost; starting a new one")
                try:
                    return self._ask(request, timeout)
                except _WorkerLost as exc:
                    raise OSError(f"the mypy worker failed twice: {exc}") from exc

    def _ask(self, request: bytes, timeout: float) -> MypyResult:
        process = self._ensure()
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(request)
            process.stdin.flush()
        except OSError as exc:
            self._stop()
            raise _WorkerLost(str(exc)) from exc
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        if not ready:
            self._stop()
            raise MypyTimeout(f"mypy did not answer within {timeout:g} s")
        line = process.stdout.readline()
        try:
            reply = json.loads(line)
            result = MypyResult(int(reply["code"]), str(reply["stdout"]), str(reply["stderr"]))
        except (ValueError, KeyError, TypeError) as exc:
            self._stop()
            raise _WorkerLost("the mypy worker exited or answered garbage mid-check") from exc
        self._checks += 1
        if self._checks >= self.max_checks:
            self._stop()
        return result

    def close(self) -> None:
        """Stop the worker (a later check starts a new one)."""
        with self._lock:
            self._stop()

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is not None:
            self._stop()  # died since the last check: release its pipes
        if self._process is None:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-c", _WORKER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self._checks = 0
        return self._process

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):  # a dead worker's pipe
                process.stdin.close()
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
