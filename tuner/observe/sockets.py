"""Which UDP sockets are WireGuard's: those on each interface's listen port, summed.

sock_diag on the live host (buffer sizes and drops); a fake tree's, or a host without
inet_diag's, /proc/net/udp and udp6 (drops and queue only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from pyroute2.netlink.exceptions import NetlinkError

from tuner.adapters.sockdiag import UdpSocket, diag_sockets, parse_proc_udp, summed
from tuner.model.snapshot import SocketStats
from tuner.observe.paths import HostPaths


class UdpSockets:
    """Reads this namespace's UDP sockets and sums those on each listen port."""

    def __init__(
        self, paths: HostPaths | None = None, diag: Callable[[], list[UdpSocket]] | None = None
    ) -> None:
        self.paths = paths or HostPaths()
        # A fake tree has no kernel behind it: read its /proc files, never the live host.
        self.diag = (
            diag if diag is not None else (diag_sockets if self.paths.root == Path("/") else None)
        )

    def _all(self) -> list[UdpSocket]:
        if self.diag is not None:
            try:
                return self.diag()
            except (OSError, NetlinkError):
                pass
        found: list[UdpSocket] = []
        for name in ("udp", "udp6"):
            try:
                text = self.paths.proc("net", name).read_text(encoding="ascii", errors="replace")
            except OSError:
                continue
            found += parse_proc_udp(text)
        return found

    def by_port(self, ports: Iterable[int]) -> Mapping[int, SocketStats]:
        wanted = {p for p in ports if p > 0}
        if not wanted:
            return {}
        groups: dict[int, list[UdpSocket]] = {}
        for sock in self._all():
            if sock.port in wanted:
                groups.setdefault(sock.port, []).append(sock)
        return {port: summed(socks) for port, socks in groups.items()}
