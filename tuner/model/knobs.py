"""The knobs wg-tuner is allowed to read and change (pure constants)."""

from __future__ import annotations

SYSCTL_ALLOWLIST: tuple[str, ...] = (
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.rmem_default",
    "net.core.wmem_default",
    "net.core.netdev_max_backlog",
    "net.core.netdev_budget",
    "net.ipv4.tcp_mtu_probing",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_udp_timeout",
    "net.netfilter.nf_conntrack_udp_timeout_stream",
)
"""A policy can never write a sysctl outside this list."""

INITIAL_NETNS_ONLY: frozenset[str] = frozenset(
    {
        "net.core.rmem_max",
        "net.core.wmem_max",
        "net.core.rmem_default",
        "net.core.wmem_default",
        "net.core.netdev_max_backlog",
        "net.core.netdev_budget",
    }
)
"""Keys that exist or are writable only in the initial network namespace."""

NFT_FAMILY = "inet"
NFT_TABLE = "wg_tuner"
"""The one nftables table wg-tuner owns; nothing outside it is ever touched."""

READ_ONLY_SYSCTLS: tuple[str, ...] = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")
"""Observed for policy conditions, never written."""

OFFLOAD_FEATURES: tuple[str, ...] = (
    "rx-gro",
    "rx-udp-gro-forwarding",
    "rx-gro-list",
    "tx-generic-segmentation",
    "tx-tcp-segmentation",
    "tx-tcp6-segmentation",
    "tx-udp-segmentation",
    "rx-checksum",
)
"""NIC features (the kernel's names, as ``ethtool -k`` lists them) a policy may turn on
or off on an underlay link: GRO, UDP GRO forwarding, GRO lists, GSO, TSO, UDP GSO and
receive checksumming. Nothing else is read or written."""
