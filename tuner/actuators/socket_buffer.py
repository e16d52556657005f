"""The receive buffer of a userspace WireGuard's own UDP sockets (target: the interface).

wireguard-go takes net.core.rmem_default when it opens its sockets and keeps it; a
larger default or cap helps only a socket opened later, and reopening drops what is in
flight (docs/adr/0009). This resizes the running sockets in place: each is borrowed from
the WireGuard process (``tuner.adapters.pidfd``) and given ``SO_RCVBUFFORCE``. The value
is the buffer as the kernel reports it (``ss -m``'s ``rb``, sock_diag), which is twice
what was asked for; so is what ``revert`` restores. Kernel WireGuard has no such socket
to resize: its packets are taken before any socket queue (udp-backlog instead).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from tuner.actuators.base import Target, Value
from tuner.adapters.pidfd import (
    SO_RCVBUFFORCE,
    BorrowError,
    Proof,
    borrowed,
    socket_fds,
    udp_inodes,
)
from tuner.adapters.sockowner import SocketOwner
from tuner.errors import InvalidValue, NotApplicable, ObserveError, PermanentActuatorError
from tuner.model.kinds import SOCKET_BUFFER

Owner = Callable[[str], tuple[SocketOwner, int] | None]
"""Interface -> (its userspace WireGuard, listen port); None for kernel WireGuard."""


class SocketBufferActuator:
    kind: ClassVar[str] = "socket_buffer"

    def __init__(self, owner: Owner, proc: Path = Path("/proc")) -> None:
        self.owner = owner
        self.proc = proc

    def _sockets(self, target: Target) -> tuple[int, list[int], Proof]:
        try:
            found = self.owner(target.name)
        except ObserveError as exc:
            raise NotApplicable(str(exc)) from exc
        if found is None:
            raise NotApplicable(
                f"{target.name} is not a userspace WireGuard: no socket of its own to resize"
            )
        owner, port = found
        inodes = udp_inodes(self.proc, owner.pid, port)
        fds = socket_fds(self.proc, owner.pid, inodes)
        if not fds:
            raise NotApplicable(f"{target.name}: no UDP socket on port {port} in pid {owner.pid}")
        return owner.pid, fds, Proof(self.proc, owner.inode, frozenset(inodes))

    def _sizes(self, target: Target) -> list[int]:
        sizes = []
        try:
            pid, fds, proof = self._sockets(target)
            for fd in fds:
                with borrowed(pid, fd, proof) as sock:
                    sizes.append(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
        except BorrowError as exc:
            # EPERM: wg-tuner may not ptrace the WireGuard process (its unit lacks
            # CAP_SYS_PTRACE, or Yama forbids it); ENOSYS: a kernel before 5.6.
            raise NotApplicable(
                f"{target.name}: cannot borrow WireGuard's socket ({exc.strerror}); "
                "resizing it needs pidfd_getfd (Linux 5.6) and CAP_SYS_PTRACE"
            ) from exc
        return sizes

    def read(self, target: Target) -> Value:
        """The largest of the interface's sockets (as the Snapshot's ``socket.rcvbuf``)."""
        return str(max(self._sizes(target)))

    def _write(self, target: Target, size: int) -> None:
        # apply and revert have just read every socket (_sizes): borrowing works here.
        pid, fds, proof = self._sockets(target)
        try:
            for fd in fds:
                with borrowed(pid, fd, proof) as sock:
                    # The kernel doubles the request (bookkeeping overhead): ask for half.
                    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, (size + 1) // 2)
        except OSError as exc:
            raise PermanentActuatorError(f"{target.name}: {exc.strerror or exc}") from exc

    @staticmethod
    def _size(value: Value) -> int:
        try:
            return int(SOCKET_BUFFER.value.parse(int(str(value)), SOCKET_BUFFER.bounds))
        except ValueError as exc:  # BadValue included
            raise InvalidValue(f"socket buffer {str(value)[:20]!r}: {exc}") from None

    def apply(self, target: Target, desired: Value) -> bool:
        size = self._size(desired)
        if set(self._sizes(target)) == {size}:
            return False
        self._write(target, size)
        return True

    def revert(self, target: Target, prior: Value) -> None:
        if prior is None:
            return
        size = self._size(prior)
        if set(self._sizes(target)) != {size}:
            self._write(target, size)

    def check(self, target: Target) -> str | None:
        try:
            self._sizes(target)
        except NotApplicable as exc:
            return str(exc)
        return None
