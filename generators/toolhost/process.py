"""One generated tool's long-lived worker process, in the jail: started once, then one call at a time.

A call that outlives its time, a worker that dies, or an answer longer than allowed ends the process; the call gets a
:class:`~generators.errors.ToolWorkerError` and the next call starts a new one. The worker cannot write anywhere but
its private ``/tmp``, reach no network and see no other process (:mod:`generators.validation.jail`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generators.errors import GeneratedToolError, ToolArgumentsError, ToolCrashedError, ToolWorkerError
from generators.toolhost.worker import WORKER
from generators.validation.jail import Jail
from generators.validation.lifeline import Lifeline
from generators.validation.sandbox import sandbox_env

logger = logging.getLogger(__name__)
READ_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class WorkerLimits:
    """What one worker may use."""

    call_seconds: float = 10.0  # wall clock of one call (the worker is replaced after)
    start_seconds: float = 30.0  # to import the tool and describe it
    memory_bytes: int = 512 << 20
    cpu_seconds: int = 300  # CPU time of one worker in all (then it is killed, and the next call starts a new one)
    max_answer_bytes: int = 64 * 1024
    file_size_bytes: int = 16 << 20


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What a generated tool says of itself (from its signature, in the jail)."""

    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]


class ToolWorker:
    """A generated tool's worker: ``code_root`` is a read-only copy holding its module ``module`` (dotted), whose
    ``function`` is the tool. Thread-safe: calls queue on a lock."""

    def __init__(self, jail: Jail, code_root: Path, module: str, function: str, limits: WorkerLimits) -> None:
        self.jail, self.code_root, self.module, self.function, self.limits = jail, code_root, module, function, limits
        self._process: subprocess.Popen[bytes] | None = None
        self._lifeline: Lifeline | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._buffer = b""
        self.spec: ToolSpec | None = None
        self.starts = 0  # processes started (the first, and each replacement)
        self.closed = False  # once closed, no call starts it again (a removed or replaced tool)

    def describe(self) -> ToolSpec:
        """Start the worker (if it is not running) and return what the tool says of itself.

        Raises:
            ToolWorkerError: the tool cannot be imported or described, or the worker did not answer in time.
        """
        with self._lock:
            return self._ensure()

    def call(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The tool's structured result for ``arguments`` (blocking).

        Raises:
            ToolArgumentsError: the arguments do not fit the tool's signature.
            GeneratedToolError: the tool refused the input (it raised ValueError: its answer to input it cannot
                handle).
            ToolCrashedError: the tool's code failed: it raised anything else, its worker died, hung past
                ``call_seconds`` or answered too much (the worker is replaced).
            ToolWorkerError: the worker cannot start, or the tool is gone.
        """
        with self._lock:
            self._ensure()
            request_id = next(self._ids)
            try:
                answer = self._ask({"id": request_id, "arguments": arguments}, self.limits.call_seconds, "the call")
            except ToolWorkerError as exc:
                raise ToolCrashedError(str(exc)) from None
            if answer.get("id") != request_id:  # something else wrote to its answers: it cannot be trusted now
                self._stop()
                raise ToolCrashedError(f"the worker of tool {self.function} answered out of turn; stopped")
        if answer.get("ok"):
            result = answer.get("result")
            if not isinstance(result, dict):
                raise ToolCrashedError(f"tool {self.function} answered something that is not an object")
            return result
        kind, error = answer.get("kind"), str(answer.get("error", ""))
        if kind == "invalid":
            raise ToolArgumentsError(f"the arguments do not fit tool {self.function}: {error}")
        if kind == "refused":
            raise GeneratedToolError(f"tool {self.function} failed: {error}")
        raise ToolCrashedError(
            f"tool {self.function}: {error}" if kind == "too_large" else f"tool {self.function} failed: {error}"
        )

    def close(self) -> None:
        """Stop the worker (EOF on its stdin, then kill); calls waiting for it are refused."""
        self.closed = True
        with self._lock:
            self._stop()

    def _ensure(self) -> ToolSpec:
        if self.closed:
            raise ToolWorkerError(f"tool {self.function} was replaced or removed meanwhile; list the tools again")
        if self._process is not None and self._process.poll() is None and self.spec is not None:
            return self.spec
        self._stop()
        limits = [str(self.limits.memory_bytes), str(self.limits.cpu_seconds), str(self.limits.file_size_bytes)]
        args = [str(self.code_root), self.module, self.function, str(self.limits.max_answer_bytes)]
        # Not killed with the thread that starts it: it ends at EOF on stdin, or with its lifeline (the server gone).
        try:
            lifeline = self._lifeline = self.jail.lifeline()
        except OSError as exc:
            raise ToolWorkerError(f"the worker of tool {self.function} cannot start: {exc}") from None
        inner = self.jail.launch(WORKER, limits, self.code_root, args, die_with_server=False, lifeline=lifeline)
        try:
            self._process = subprocess.Popen(
                self.jail.command(inner, None, [self.code_root], die_with_parent=False, lifeline=lifeline),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=sandbox_env(self.code_root, Path("/tmp")),
                start_new_session=True,
                pass_fds=lifeline.fds,
            )
        except OSError as exc:
            lifeline.close()
            raise ToolWorkerError(f"the worker of tool {self.function} cannot start: {exc}") from None
        lifeline.started()
        self.starts += 1
        self._buffer = b""
        hello = self._read(self.limits.start_seconds, "start-up")
        try:
            if not hello.get("ready"):
                raise ToolWorkerError(f"tool {self.function} cannot be loaded: {hello.get('error', 'no description')}")
            spec = ToolSpec(str(hello["description"]), dict(hello["input_schema"]), dict(hello["output_schema"]))
        except (KeyError, TypeError, ValueError):
            self._stop()
            raise ToolWorkerError(f"the worker of tool {self.function} described it in a way it cannot be") from None
        except ToolWorkerError:
            self._stop()
            raise
        self.spec = spec
        return spec

    def _ask(self, request: dict[str, Any], timeout: float, what: str) -> dict[str, Any]:
        """Send ``request`` and read its answer, both within ``timeout`` (a worker that reads nothing cannot hold
        the call past it: the write waits only while the pipe is full, and as long as the time left)."""
        assert self._process is not None and self._process.stdin is not None
        deadline = time.monotonic() + timeout
        data = memoryview(json.dumps(request).encode() + b"\n")
        stdin = self._process.stdin.fileno()
        os.set_blocking(stdin, False)
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(stdin, selectors.EVENT_WRITE)
                while data:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self._stop()
                        raise ToolWorkerError(f"tool {self.function} did not take {what} within {timeout:g} s; stopped")
                    if selector.select(left):
                        with contextlib.suppress(BlockingIOError):
                            data = data[os.write(stdin, data) :]
        except OSError:
            self._stop()
            raise ToolWorkerError(f"the worker of tool {self.function} died; the next call starts a new one") from None
        return self._read(timeout, what, deadline)

    def _read(self, timeout: float, what: str, deadline: float | None = None) -> dict[str, Any]:
        """One answer line, within ``timeout`` seconds (by ``deadline``, when given) and ``max_answer_bytes`` (else
        the worker is stopped)."""
        assert self._process is not None and self._process.stdout is not None
        out = self._process.stdout
        deadline = time.monotonic() + timeout if deadline is None else deadline
        limit = self.limits.max_answer_bytes + 4096  # the worker checks results itself; this bounds anything else
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self._stop()
                raise ToolWorkerError(f"tool {self.function} did not answer {what} within {timeout:g} s; stopped")
            with selectors.DefaultSelector() as selector:  # not select(): the server may hold descriptors past 1023
                selector.register(out, selectors.EVENT_READ)
                if not selector.select(left):
                    continue
            chunk = os.read(out.fileno(), READ_CHUNK)
            if not chunk:
                code = self._process.poll()
                self._stop()
                raise ToolWorkerError(f"the worker of tool {self.function} died during {what} (exit {code})")
            self._buffer += chunk
            if len(self._buffer) > limit:
                self._stop()
                raise ToolWorkerError(f"tool {self.function} answered more than {limit} bytes; stopped")
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            answer = json.loads(line)
        except ValueError:
            self._stop()
            raise ToolWorkerError(f"the worker of tool {self.function} answered garbage; stopped") from None
        if not isinstance(answer, dict):
            self._stop()
            raise ToolWorkerError(f"the worker of tool {self.function} answered garbage; stopped")
        return answer

    def _stop(self) -> None:
        process, self._process = self._process, None
        if self._lifeline is not None:
            self._lifeline.close()
            self._lifeline = None
        if process is None:
            return
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()
        # The jail's first process (bubblewrap's init in the jail's pid namespace: killing it ends everything in the
        # jail) is in a session of its own and does not die with bubblewrap (no --die-with-parent for workers).
        for pid in [*descendants(process.pid), process.pid]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)  # unjailed: the worker's own session
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def descendants(pid: int) -> list[int]:
    """The processes below ``pid``, children first (Linux: /proc/<pid>/task/<tid>/children)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", encoding="ascii") as handle:
                    children = [int(child) for child in handle.read().split()]
            except (OSError, ValueError):
                continue
            found += children
            todo += children
    return found
