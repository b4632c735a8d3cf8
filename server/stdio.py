"""MCP over stdin/stdout: every line checked before the SDK sees it, and SIGINT/SIGTERM as clean as end of input.

Why not the SDK's ``stdio_server``: it drops lines it cannot parse or validate (logged at DEBUG, never answered, so
the client waits forever), reads lines of any length, and reads stdin in an AnyIO worker thread that a cancellation
has to wait for (Ctrl-C did nothing until the host closed stdin). Here:

* a daemon thread reads stdin in bounded lines (:data:`MAX_MESSAGE_BYTES`); a stop abandons it, and a daemon thread
  blocked on a read never holds up the interpreter's exit;
* each line passes :func:`server.jsonrpc_guard.check_message`; a refused one is answered through the one writer the
  SDK's own messages go through, so lines never interleave;
* a daemon thread writes stdout, so a host that stops reading cannot keep the process alive either;
* SIGINT and SIGTERM end the input as end of input would: the SDK winds down, the lifespan closes the databases and
  writes the buffered tool calls; whatever is still running after :data:`STOP_SECONDS` is cancelled.

While serving, fd 0 reads the null device and fd 1 writes to stderr (as in the SDK), so neither a child process nor a
stray print can take or corrupt protocol bytes.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.abc import TaskStatus
from anyio.lowlevel import EventLoopToken, current_token
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.mcpserver import MCPServer
from mcp.shared.message import SessionMessage
from mcp.types import JSONRPCMessage

from server.jsonrpc_guard import MAX_MESSAGE_BYTES, Rejection, check_message, log_rejection, too_large

logger = logging.getLogger(__name__)
STOP_SECONDS = 1.5  # after a signal, the clean wind-down's budget before the rest is cancelled
DRAIN_SECONDS = 5.0  # after the server ends, how long its last answers may take to reach a slow host
_CHUNK = 64 * 1024
_PEEK_BYTES = 64 * 1024  # of an oversized line, kept to read its id
_INLINE_CHECK_BYTES = 64 * 1024  # longer lines are checked in a worker thread, off the event loop
TERMINAL_NOTICE = (
    "self-building-mcp serves MCP over stdio: it waits for an MCP host (an agent, an IDE, Claude Desktop) to talk "
    "JSON-RPC on stdin and stdout, and is not interactive. Ctrl-C or Ctrl-D stops it; "
    "'self-building-mcp status' shows the system status.\n"
)


@dataclass(frozen=True, slots=True)
class Oversized:
    """A line over the size limit: only its start was kept."""

    prefix: bytes


def read_lines(fd: int, limit: int = MAX_MESSAGE_BYTES) -> Iterator[bytes | Oversized]:
    """The lines of ``fd`` without their newline, until end of input; a line over ``limit`` bytes is never held
    whole: it comes as :class:`Oversized`."""
    pending = bytearray()
    oversized: bytes | None = None
    while chunk := _read(fd):
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            if oversized is None:
                pending += chunk[start:end]
                yield Oversized(bytes(pending[:_PEEK_BYTES])) if len(pending) > limit else bytes(pending)
            else:
                yield Oversized(oversized)
                oversized = None
            pending.clear()
            start = end + 1
        if oversized is None:
            pending += chunk[start:]
            if len(pending) > limit:
                oversized = bytes(pending[:_PEEK_BYTES])
                pending.clear()
    if oversized is not None:
        yield Oversized(oversized)
    elif pending:
        yield bytes(pending)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, _CHUNK)
    except OSError as exc:  # a terminal that hung up, a descriptor closed under us: the input has ended
        logger.warning("reading stdin failed (%s): treating it as end of input", exc.strerror)
        return b""


def _pump(fd: int, lines: MemoryObjectSendStream[bytes | Oversized], token: EventLoopToken) -> None:
    """Reader thread: hand each line to the event loop (waiting while it is busy), then end the stream."""
    try:
        for line in read_lines(fd):
            anyio.from_thread.run(lines.send, line, token=token)
    except Exception:  # the server stopped taking lines, or its event loop ended: nothing left to do
        return
    try:
        anyio.from_thread.run_sync(lines.close, token=token)
    except Exception:
        return


class _Writer:
    """Writes whole messages to ``fd``, in order, from one daemon thread."""

    def __init__(self, fd: int, token: EventLoopToken) -> None:
        self._fd = fd
        self._token = token
        self._jobs: queue.SimpleQueue[tuple[bytes, anyio.Event, list[OSError]] | None] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="mcp-stdout", daemon=True).start()

    async def write(self, data: bytes) -> None:
        done = anyio.Event()
        failed: list[OSError] = []
        self._jobs.put((data, done, failed))
        await done.wait()
        if failed:
            raise failed[0]

    def close(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            data, done, failed = job
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError as exc:
                failed.append(exc)
            try:
                anyio.from_thread.run_sync(done.set, token=self._token)
            except Exception:  # the event loop ended
                return


class _StdioSession:
    """One run of the server over a pair of descriptors, until end of input, a signal, or a closed stdout."""

    def __init__(self, server: MCPServer, wire_in: int, wire_out: int) -> None:
        self._server = server
        self._wire_in = wire_in
        self._wire_out = wire_out
        self._reading = anyio.CancelScope()
        self._serving = anyio.CancelScope()
        self._stdout_gone = False
        self.reason = "end of input"

    async def run(self) -> None:
        token = current_token()
        line_sink, lines = anyio.create_memory_object_stream[bytes | Oversized](0)
        inbound_sink, inbound = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        outbound, outbound_source = anyio.create_memory_object_stream[SessionMessage](0)
        threading.Thread(target=_pump, args=(self._wire_in, line_sink, token), name="mcp-stdin", daemon=True).start()
        writer = _Writer(self._wire_out, token)
        drained = anyio.Event()
        lowlevel = self._server._lowlevel_server  # what MCPServer.run_stdio_async runs, here over our streams
        try:
            with self._serving:
                async with anyio.create_task_group() as tg:
                    await tg.start(self._watch_signals)
                    tg.start_soon(self._read, lines, inbound_sink, outbound.clone())
                    tg.start_soon(self._write, outbound_source, writer, drained)
                    await lowlevel.run(inbound, outbound, lowlevel.create_initialization_options())
                    self._reading.cancel()  # the server has ended (its lifespan too): take no more input
                    with anyio.move_on_after(DRAIN_SECONDS):
                        await drained.wait()  # its last answers go out
                    tg.cancel_scope.cancel()  # the signal watcher
        finally:
            writer.close()
        forced = f" (what was left after {STOP_SECONDS:g} s was cancelled)" if self._serving.cancelled_caught else ""
        logger.info("stdio server stopped: %s%s", self.reason, forced)

    def stop(self, reason: str) -> None:
        """End the input as end of input would, and bound how long the rest may take."""
        if self._reading.cancel_called:  # a second signal: stop now
            self._serving.cancel()
            return
        self.reason = reason
        self._reading.cancel()
        self._serving.deadline = anyio.current_time() + STOP_SECONDS

    async def _watch_signals(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        if sys.platform == "win32":  # no signal receiver there; Ctrl-C raises KeyboardInterrupt as before
            task_status.started()
            return
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                logger.info("%s received: stopping", name)
                self.stop(name)

    async def _read(
        self,
        lines: MemoryObjectReceiveStream[bytes | Oversized],
        inbound: MemoryObjectSendStream[SessionMessage | Exception],
        replies: MemoryObjectSendStream[SessionMessage],
    ) -> None:
        async with lines, inbound, replies:  # closing ``inbound`` is the SDK's end of input
            with self._reading:
                async for line in lines:
                    outcome = await _check(line)
                    try:
                        if isinstance(outcome, Rejection):
                            log_rejection("stdio", outcome)
                            await replies.send(SessionMessage(outcome.response()))
                        elif outcome is not None:
                            await inbound.send(SessionMessage(outcome))
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        return  # the server has stopped reading

    async def _write(
        self, source: MemoryObjectReceiveStream[SessionMessage], writer: _Writer, drained: anyio.Event
    ) -> None:
        try:
            async with source:
                async for item in source:
                    if self._stdout_gone:
                        continue  # keep draining: the SDK must never block on a host that left
                    data = item.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
                    try:
                        await writer.write(data)
                    except OSError as exc:
                        self._stdout_gone = True
                        logger.info("stdout closed (%s): stopping", exc.strerror)
                        self.stop("stdout closed")
        finally:
            drained.set()


async def _check(line: bytes | Oversized) -> JSONRPCMessage | Rejection | None:
    """The message in a line, the answer that refuses it, or None for a blank line."""
    if isinstance(line, Oversized):
        return too_large(line.prefix)
    if not line.strip():
        return None
    if len(line) > _INLINE_CHECK_BYTES:
        return await anyio.to_thread.run_sync(check_message, line)
    return check_message(line)


@contextmanager
def _claimed_stdio() -> Iterator[tuple[int, int]]:
    """Private descriptors for the protocol's stdin and stdout; fd 0 reads the null device and fd 1 writes to stderr
    meanwhile. Both are restored afterwards. The private ones stay open: a reader or writer thread a stop abandoned
    may still block on them, and a closed number could be handed to another file under it."""
    sys.stdout.flush()
    wire_in, wire_out = _private_copy(0), _private_copy(1)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, 0)
        os.dup2(2, 1)
    finally:
        os.close(null)
    try:
        yield wire_in, wire_out
    finally:
        sys.stdout.flush()
        os.dup2(wire_out, 1)
        os.dup2(wire_in, 0)


def _private_copy(fd: int) -> int:
    if sys.platform == "win32":
        return os.dup(fd)  # non-inheritable; 0-2 are taken, so it lands above them
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)


async def serve_stdio(server: MCPServer) -> None:
    """Serve ``server`` over this process's stdin and stdout until end of input, SIGINT or SIGTERM."""
    if os.isatty(0):
        sys.stderr.write(TERMINAL_NOTICE)
        sys.stderr.flush()
    with _claimed_stdio() as (wire_in, wire_out):
        await _StdioSession(server, wire_in, wire_out).run()
