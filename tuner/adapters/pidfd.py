"""Another process's UDP sockets, borrowed through pidfd_getfd(2) (Linux 5.6 and later).

A socket's receive buffer is fixed when it opens, and a userspace WireGuard never sizes
it again (docs/adr/0009). The kernel lets a process that may ptrace another duplicate
one of its file descriptors: the duplicate is the same socket, so ``SO_RCVBUFFORCE`` on
it resizes WireGuard's own socket in place, without reopening it and without touching a
host-wide default. The duplicate is closed at once; the owner never notices.

Sockets are found by port in the owner's own network namespace (/proc/PID/net/udp and
udp6, whose inode column names the socket) and matched to its descriptors
(/proc/PID/fd/N -> ``socket:[inode]``). Nothing here is interpolated into a command.
"""

from __future__ import annotations

import ctypes
import errno as errnos
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tuner.adapters.sockowner import holds

SYS_PIDFD_GETFD = 438
"""The same number on every architecture (the syscalls added after 5.1 share one table)."""
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
"""``SO_RCVBUF`` without net.core.rmem_max's cap (CAP_NET_ADMIN); the kernel doubles it."""


class BorrowError(OSError):
    """A socket that cannot be borrowed; ``errno`` is the kernel's."""


def udp_inodes(proc: Path, pid: int, port: int) -> set[int]:
    """Inodes of the UDP sockets bound to ``port`` in ``pid``'s network namespace."""
    found: set[int] = set()
    for name in ("udp", "udp6"):
        try:
            lines = (proc / str(pid) / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(int(fields[9]))
    return found


def socket_fds(proc: Path, pid: int, inodes: set[int]) -> list[int]:
    """``pid``'s descriptors that are one of ``inodes``, in descriptor order."""
    fds = []
    base = proc / str(pid) / "fd"
    try:
        names = sorted(os.listdir(base), key=int)
    except OSError as exc:
        code = exc.errno or errnos.EPERM
        raise BorrowError(code, f"cannot list pid {pid}'s descriptors") from exc
    for name in names:
        try:
            link = os.readlink(base / name)
        except PermissionError as exc:  # the same right pidfd_getfd needs (ptrace)
            raise BorrowError(errnos.EPERM, f"may not inspect pid {pid}'s descriptors") from exc
        except OSError:
            continue  # closed while we looked
        if link.startswith("socket:[") and int(link[8:-1]) in inodes:
            fds.append(int(name))
    return fds


_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True, slots=True)
class Proof:
    """What the process must hold for a borrow to go ahead: the config socket's
    listening inode (only the WireGuard process has it) and, for the borrowed
    descriptor, one of the UDP socket inodes found for it."""

    proc: Path
    uapi_inode: int
    udp_inodes: frozenset[int]


def _holds(proc: Path, pid: int, inode: int) -> bool:
    return holds(proc, pid, {inode}) is not None


def _alive(pidfd: int) -> bool:
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def borrowed(pid: int, fd: int, proof: Proof | None = None) -> Iterator[socket.socket]:
    """``pid``'s descriptor ``fd`` as a socket of ours, closed on leaving; BorrowError
    (EPERM without the right to ptrace ``pid``, ESRCH when it is gone or is not the
    process ``proof`` names, ENOSYS before Linux 5.6).

    With ``proof``, the identity is checked through the pidfd before and after the
    borrow: once the pidfd is open it names one process whatever happens to the pid,
    so a pid recycled by anyone else fails the first check (it holds no config socket)
    and a process that ends meanwhile fails the borrow itself or the second check."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as exc:
        raise BorrowError(exc.errno or errnos.ESRCH, f"pidfd_open({pid})") from exc
    dup = -1
    try:
        if proof is not None and not _holds(proof.proc, pid, proof.uapi_inode):
            raise BorrowError(errnos.ESRCH, f"pid {pid} is not the WireGuard process")
        dup = _libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if dup < 0:
            code = ctypes.get_errno()
            raise BorrowError(code, f"pidfd_getfd(pid {pid}, fd {fd}): {os.strerror(code)}")
        if proof is not None and (
            os.fstat(dup).st_ino not in proof.udp_inodes
            or not _alive(pidfd)
            or not _holds(proof.proc, pid, proof.uapi_inode)
        ):
            os.close(dup)
            raise BorrowError(errnos.ESRCH, f"pid {pid} changed while its socket was borrowed")
    finally:
        os.close(pidfd)
    sock = socket.socket(fileno=dup)
    try:
        yield sock
    finally:
        sock.close()  # ours only: the owner's descriptor stays open
