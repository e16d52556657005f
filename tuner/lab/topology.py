"""Names and addresses of one lab (pure).

::

    [P-a] P-a0 198.51.100.2 ── 198.51.100.1 P-ra [P-r] P-rb 203.0.113.1 ── 203.0.113.2 P-b0 [P-b]
      P-wga 192.0.2.1/24  ═══════════════ WireGuard (wireguard-go) ═══════════  P-wgb 192.0.2.2/24

Underlay addresses are documentation ranges (RFC 5737) that exist only inside the
lab's namespaces. Every name carries the prefix, so two labs never collide, and the
WireGuard interface names are unique host-wide because their config sockets share one
directory across namespaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX_RE = re.compile(r"[a-z][a-z0-9]{0,7}")
DEFAULT_PREFIX = "wgt"


@dataclass(frozen=True, slots=True)
class Host:
    role: str
    netns: str
    veth: str
    underlay_addr: str
    gateway: str
    wg: str
    tunnel_addr: str
    listen_port: int


@dataclass(frozen=True, slots=True)
class Topology:
    prefix: str

    def __post_init__(self) -> None:
        if not PREFIX_RE.fullmatch(self.prefix):
            raise ValueError(
                f"lab prefix {self.prefix!r} must be 1-8 lowercase letters or digits, "
                "starting with a letter"
            )

    @property
    def router(self) -> str:
        return f"{self.prefix}-r"

    @property
    def router_a(self) -> str:
        return f"{self.prefix}-ra"

    @property
    def router_b(self) -> str:
        return f"{self.prefix}-rb"

    @property
    def a(self) -> Host:
        return Host(
            role="a",
            netns=f"{self.prefix}-a",
            veth=f"{self.prefix}-a0",
            underlay_addr="198.51.100.2",
            gateway="198.51.100.1",
            wg=f"{self.prefix}-wga",
            tunnel_addr="192.0.2.1",
            listen_port=51821,
        )

    @property
    def b(self) -> Host:
        return Host(
            role="b",
            netns=f"{self.prefix}-b",
            veth=f"{self.prefix}-b0",
            underlay_addr="203.0.113.2",
            gateway="203.0.113.1",
            wg=f"{self.prefix}-wgb",
            tunnel_addr="192.0.2.2",
            listen_port=51820,
        )

    @property
    def namespaces(self) -> tuple[str, str, str]:
        return (self.a.netns, self.router, self.b.netns)

    def host(self, role: str) -> Host:
        if role == "a":
            return self.a
        if role == "b":
            return self.b
        raise ValueError(f"lab host must be 'a' or 'b', not {role!r}")


TUNNEL_PREFIXLEN = 24
UNDERLAY_PREFIXLEN = 24
UNDERLAY_MTU = 1500
