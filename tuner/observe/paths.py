"""HostPaths: the one place that spells /proc, /sys and the WireGuard socket directory.

Every reader and writer takes a HostPaths, so tests run against a temporary tree by
passing another root.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class HostPaths:
    root: Path = Path("/")
    wg_socket_dir: Path = Path("/var/run/wireguard")

    @classmethod
    def under(cls, root: Path) -> HostPaths:
        """A tree rooted at ``root``, socket directory included (for tests)."""
        return cls(root=root, wg_socket_dir=root / "var/run/wireguard")

    def proc(self, *parts: str) -> Path:
        return self.root.joinpath("proc", *parts)

    def sys(self, *parts: str) -> Path:
        return self.root.joinpath("sys", *parts)

    def sysctl(self, key: str) -> Path:
        """``net.core.rmem_max`` -> ``/proc/sys/net/core/rmem_max``."""
        return self.proc("sys", *key.split("."))

    def etc(self, *parts: str) -> Path:
        return self.root.joinpath("etc", *parts)

    def wg_socket(self, ifname: str) -> Path:
        return self.wg_socket_dir / f"{ifname}.sock"
