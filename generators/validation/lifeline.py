"""What a jailed run is handed besides its command: its lifeline, and the seccomp filter of a jail set up by root.

The lifeline is a pipe: the run gets the read end, this server keeps the write end until the run is over. When the
server dies, however it dies, the kernel closes its end, and the jail's watcher (see
:mod:`generators.validation.jail`) ends the jail.

The filter (classic BPF, loaded by bubblewrap's ``--seccomp``) refuses to create a user namespace: ``unshare`` and
``clone`` with ``CLONE_NEWUSER`` fail with EPERM, and ``clone3`` (whose flags a filter cannot read) with ENOSYS, so
the C library falls back to ``clone``. Most kernel privilege escalations start in a user namespace of one's own; a
jail set up by root has none to forbid them (one set up by another user forbids them with ``--disable-userns``).
Calls of another architecture's ABI (i386, x32) are refused outright: their numbers differ.
"""

from __future__ import annotations

import errno
import os
import platform
import struct

CLONE_NEWUSER = 0x10000000
X32_SYSCALL_BIT = 0x40000000
# (audit architecture, unshare, clone, clone3) of the architectures the filter knows.
_ARCHES = {"x86_64": (0xC000003E, 272, 56, 435), "aarch64": (0xC00000B7, 97, 220, 435)}
_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _ERRNO = 0x7FFF0000, 0x00050000
# seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6] (the low half of args[0] at 16 here).
_NR, _ARCH, _ARG0 = 0, 4, 16


def no_user_namespaces(machine: str | None = None) -> bytes | None:
    """The filter for this machine's architecture, or ``None`` where it has none (the jail then goes without)."""
    found = _ARCHES.get(machine or platform.machine())
    if found is None or struct.pack("=I", 1) != struct.pack("<I", 1):
        return None  # the offset of args[0]'s low half is that of a little-endian machine
    arch, unshare, clone, clone3 = found
    deny, nosys = _ERRNO | errno.EPERM, _ERRNO | errno.ENOSYS
    program = [
        (_LD_ABS, 0, 0, _ARCH),
        (_JEQ, 1, 0, arch),
        (_RET, 0, 0, deny),  # another architecture's ABI
        (_LD_ABS, 0, 0, _NR),
        (_JGE, 0, 1, X32_SYSCALL_BIT),
        (_RET, 0, 0, deny),  # x32
        (_JEQ, 0, 1, clone3),
        (_RET, 0, 0, nosys),
        (_JEQ, 2, 0, unshare),
        (_JEQ, 1, 0, clone),
        (_RET, 0, 0, _ALLOW),
        (_LD_ABS, 0, 0, _ARG0),
        (_JSET, 0, 1, CLONE_NEWUSER),
        (_RET, 0, 0, deny),
        (_RET, 0, 0, _ALLOW),
    ]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


class Lifeline:
    """A jailed run's lifeline (``fd``), and its seccomp filter's descriptor (``seccomp_fd``, where there is one):
    pass :attr:`fds` to the run (``pass_fds``), call :meth:`started` once it runs and :meth:`close` once it is over.
    Every descriptor is close-on-exec here: no other child of the server holds them."""

    def __init__(self, seccomp: bytes | None = None) -> None:
        """Raises OSError: no descriptors left (nothing is left open then)."""
        self.fd, self._end = os.pipe()
        self._open = [self.fd, self._end]
        self.seccomp_fd: int | None = None
        if seccomp is None:
            return
        try:
            read, write = os.pipe()
            self._open.append(read)
            try:
                os.write(write, seccomp)  # a few hundred bytes: within a pipe's buffer
            finally:
                os.close(write)
        except OSError:
            self.close()
            raise
        self.seccomp_fd = read

    @property
    def fds(self) -> list[int]:
        return [self.fd] if self.seccomp_fd is None else [self.fd, self.seccomp_fd]

    def started(self) -> None:
        """The run has its ends now: this process closes its copies (it keeps the write end of the lifeline)."""
        for fd in self.fds:
            self._close(fd)

    def close(self) -> None:
        """The run is over (or is being stopped): its jail may end now."""
        for fd in list(self._open):
            self._close(fd)

    def _close(self, fd: int) -> None:
        if fd in self._open:
            self._open.remove(fd)
            os.close(fd)

    def __enter__(self) -> Lifeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
