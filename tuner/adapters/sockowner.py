"""Which process is a userspace WireGuard: the one that holds its config socket.

``SO_PEERCRED`` on the config socket names the process that called ``listen()``, and
wireguard-go started the way wg-quick starts it (no ``-f``) listens, hands the socket to
a child and exits: the pid it names is gone, and an unprivileged user can take it. So
the owner is found from the socket itself instead: the listening socket bound to
``/var/run/wireguard/IF.sock`` in this network namespace (its inode, from
``/proc/net/unix``), and the process whose descriptors hold that inode. Only a process
that WireGuard handed the socket to can hold it; no other user can make one that does.

The last owner found is asked first (one process's descriptors), so a cycle scans every
process only when the WireGuard process changed.

Reading another process's descriptors needs the right to ptrace it, which the shipped
unit does not have (CAP_SYS_PTRACE is an opt-in). Without it the owner is the process
of uid 0 whose command line names the interface (wireguard-go re-executes itself with
its arguments when it daemonizes): its uid is the kernel's word, so no other user's
process can pass, but it proves nothing about the socket (``inode`` 0), and nothing is
ever borrowed from such an owner.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_RUN_ALIASES = ("/var/run/", "/run/")


@dataclass(frozen=True, slots=True)
class SocketOwner:
    pid: int
    inode: int
    """The config socket's listening inode the process holds (its proof of identity);
    0 when the descriptors could not be read (found by uid and command line)."""


def _names(path: Path) -> set[str]:
    """The path as a process may have bound it (/var/run is /run on every modern host)."""
    text = str(path)
    names = {text}
    for alias in _RUN_ALIASES:
        if text.startswith(alias):
            rest = text[len(alias) :]
            names |= {a + rest for a in _RUN_ALIASES}
    return names


def listening_inodes(proc: Path, path: Path) -> set[int]:
    """Inodes of the listening unix sockets bound to ``path`` in this network namespace."""
    names = _names(path)
    found: set[int] = set()
    try:
        lines = (proc / "net" / "unix").read_text().splitlines()[1:]
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        # Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 is __SO_ACCEPTCON.
        if len(fields) == 8 and fields[7] in names and int(fields[3], 16) & 0x10000:
            found.add(int(fields[6]))
    return found


class _Denied(Exception):
    """Another process's descriptors may not be read (no right to ptrace it)."""


def holds(proc: Path, pid: int, inodes: set[int]) -> int | None:
    """The one of ``inodes`` that ``pid`` has a descriptor of, or None."""
    try:
        return _holds(proc, pid, inodes)
    except _Denied:
        return None


def _holds(proc: Path, pid: int, inodes: set[int]) -> int | None:
    base = proc / str(pid) / "fd"
    try:
        names = os.listdir(base)
    except PermissionError as exc:
        raise _Denied from exc
    except OSError:
        return None
    for name in names:
        try:
            link = os.readlink(base / name)
        except PermissionError as exc:  # listing is allowed, reading a link is not
            raise _Denied from exc
        except OSError:
            continue
        if link.startswith("socket:[") and int(link[8:-1]) in inodes:
            return int(link[8:-1])
    return None


def find_owner(proc: Path, path: Path, hint: int | None = None) -> SocketOwner | None:
    """The process holding the config socket at ``path`` (``hint`` asked first)."""
    inodes = listening_inodes(proc, path)
    if not inodes:
        return None
    try:
        pids = [int(n) for n in os.listdir(proc) if n.isdigit()]
    except OSError:
        return None
    order = ([hint] if hint is not None else []) + sorted(pids)
    denied = False
    for pid in order:
        try:
            inode = _holds(proc, pid, inodes)
        except _Denied:
            denied = True
            if pid == hint:
                break  # the unit's case: no descriptor here will be readable either
            continue
        if inode is not None:
            return SocketOwner(pid, inode)
    if denied:
        return _by_command_line(proc, path.name.removesuffix(".sock"), order)
    return None


def _by_command_line(proc: Path, ifname: str, pids: list[int]) -> SocketOwner | None:
    """The uid-0 process whose arguments name ``ifname`` (not proven: inode 0)."""
    wanted = ifname.encode()
    me = os.getpid()
    for pid in pids:
        if pid == me:
            continue
        try:
            argv = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
            status = (proc / str(pid) / "status").read_text()
        except OSError:
            continue
        uid = next((ln.split()[1] for ln in status.splitlines() if ln.startswith("Uid:")), "")
        if uid == "0" and wanted in argv[1:] and b"wg-tuner" not in argv[0]:
            return SocketOwner(pid, 0)
    return None
