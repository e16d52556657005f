"""Health checks by name: what each one checks, and the value each kind reads back (pure).

A policy's ``verify.health`` may name any check in ``POLICY_CHECKS``; the loader refuses
every other name with file:line:col (a renamed check says what it is called now). The
``*_is`` checks read the changed value back and are declared by the kinds themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


def _frozen() -> Mapping[str, object]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """A named condition the verifier evaluates after a change (values are plain data)."""

    name: str
    params: Mapping[str, object] = field(default_factory=_frozen)


POLICY_CHECKS: Mapping[str, str] = MappingProxyType(
    {
        "handshakes_fresh": "every peer of the interface has a handshake younger than 180 s, "
        "or its tunnel address answers a small echo",
        "peer_handshake_fresh": "the changed peer's handshake is younger than 180 s, or its "
        "tunnel address answers a small echo",
        "peer_endpoint_stable": "the changed peer's endpoint (address and port) stays the one "
        "it had at the change: its NAT no longer forgets the mapping between packets",
        "tunnel_reachable": "a small DF echo through the tunnel is answered",
        "tunnel_probe_passes": "a DF echo of the new MTU's size, down to WireGuard's 16-byte "
        "padding grid, is answered through the tunnel",
        "udp_errors_not_worse": "Udp and Udp6 InErrors + RcvbufErrors + SndbufErrors grow no "
        "faster than before the change",
        "softnet_drops_not_worse": "softnet drops (all CPUs) grow no faster than before",
        "softnet_drops_stop": "softnet drops (all CPUs) grow at most a tenth as fast as "
        "before the change (plus 0.5/s of noise): the backlog remedy's own counter",
        "link_errors_not_worse": "rx/tx errors and drops of the underlay links grow no faster "
        "than before the change",
        "fragmentation_stops": "Ip FragCreates + Ip6FragCreates grow at most a tenth as fast "
        "as before the change (plus 0.5/s of noise)",
        "softirq_spreads": "the cores other than the one with the most softirq time do at "
        "least a tenth of it, and a tenth more than before the change (or the softirq load "
        "is gone): the spreading remedy's own counter, /proc/stat",
        "rx_errors_not_worse": "checksum errors (IpExt, Tcp, Udp, Icmp and IPv6's) plus the "
        "underlays' rx errors grow no faster than before the change",
        "rx_errors_stop": "checksum errors (IpExt, Tcp, Udp, Icmp and IPv6's) plus the "
        "underlays' rx errors grow at most a tenth as fast as before the change (plus "
        "0.5/s of noise): the offload remedy's own counters",
        "socket_drops_stop": "drops on the interface's own WireGuard UDP sockets (sock_diag) "
        "grow at most a tenth as fast as before the change (plus 0.5/s of noise)",
    }
)
"""Checks a policy may name in ``verify.health``, with what each checks."""

RENAMED: Mapping[str, str] = MappingProxyType(
    {
        "tunnel_passes_tcp": "tunnel_reachable",
        "symptom_not_worse": "udp_errors_not_worse",
    }
)
"""Old names that said something else than what they check."""

NOT_WORSE: Mapping[str, tuple[tuple[str, str], ...]] = MappingProxyType(
    {
        "udp_errors_not_worse": (
            ("Udp", "RcvbufErrors"),
            ("Udp", "SndbufErrors"),
            ("Udp", "InErrors"),
            ("Udp6", "Udp6RcvbufErrors"),
            ("Udp6", "Udp6SndbufErrors"),
            ("Udp6", "Udp6InErrors"),
        ),
    }
)
"""Rate checks on /proc/net/snmp counters: check -> (protocol, counter) summed."""

STOPS: Mapping[str, tuple[tuple[str, str], ...]] = MappingProxyType(
    {"fragmentation_stops": (("Ip", "FragCreates"), ("Ip6", "Ip6FragCreates"))}
)
"""Like NOT_WORSE, but the remedy must make the counter all but stop: the symptom's own
counter moving is the proof, not merely "not worse"."""
