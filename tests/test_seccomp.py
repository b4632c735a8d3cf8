"""The seccomp filter of a jail set up by root, run instruction by instruction on the system calls it judges (the
hostile-code test in ``test_jail`` shows it loaded by bubblewrap on this machine's architecture only)."""

from __future__ import annotations

import errno
import struct

import pytest

from generators.validation.lifeline import CLONE_NEWUSER, no_user_namespaces

ALLOW, ERRNO = 0x7FFF0000, 0x00050000
EPERM, ENOSYS = ERRNO | errno.EPERM, ERRNO | errno.ENOSYS
# (audit arch, read, unshare, clone, clone3)
ARCHES = {"x86_64": (0xC000003E, 0, 272, 56, 435), "aarch64": (0xC00000B7, 63, 97, 220, 435)}
I386 = 0x40000003
CLONE_NEWNS = 0x00020000


def verdict(program: bytes, nr: int, arch: int, arg0: int = 0) -> int:
    """What the classic BPF ``program`` returns for a call (as the kernel runs it on ``struct seccomp_data``)."""
    code = [struct.unpack_from("=HBBI", program, at) for at in range(0, len(program), 8)]
    data = struct.pack("=iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    pc, acc = 0, 0
    for _ in range(len(code)):  # no loops in classic BPF: each instruction at most once
        op, jt, jf, k = code[pc]
        if op == 0x06:  # ret
            return k
        if op == 0x20:  # ld [k]
            acc, pc = struct.unpack_from("=I", data, k)[0], pc + 1
            continue
        taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[op]
        pc += 1 + (jt if taken else jf)
    raise AssertionError("the program ran off its end")


@pytest.mark.parametrize("machine", sorted(ARCHES))
def test_the_filter_refuses_user_namespaces_and_nothing_else(machine: str) -> None:
    program = no_user_namespaces(machine)
    assert program is not None
    arch, read, unshare, clone, clone3 = ARCHES[machine]
    assert verdict(program, unshare, arch, CLONE_NEWUSER) == EPERM
    assert verdict(program, unshare, arch, CLONE_NEWUSER | CLONE_NEWNS) == EPERM
    assert verdict(program, clone, arch, CLONE_NEWUSER | 17) == EPERM
    assert verdict(program, clone3, arch) == ENOSYS  # its flags are out of reach: the C library falls back to clone
    assert verdict(program, unshare, arch, CLONE_NEWNS) == ALLOW
    assert verdict(program, clone, arch, 17) == ALLOW  # a fork
    assert verdict(program, read, arch) == ALLOW
    assert verdict(program, unshare, I386, CLONE_NEWUSER) == EPERM  # another ABI: refused outright
    if machine == "x86_64":
        assert verdict(program, 0x40000000 | unshare, arch, CLONE_NEWUSER) == EPERM  # x32


def test_an_unknown_architecture_gets_no_filter() -> None:
    assert no_user_namespaces("riscv64") is None
