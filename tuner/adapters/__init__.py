"""Clients for the outside protocols: WireGuard (UAPI socket, generic netlink), netlink, nftables."""
