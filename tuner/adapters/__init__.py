"""Clients for outside protocols: WireGuard (UAPI, genetlink), netlink, nftables."""
