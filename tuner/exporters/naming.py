"""Whose metric names the per-peer WireGuard series use (a choice the CLI offers)."""

from __future__ import annotations

PWE = "prometheus_wireguard_exporter"
WE = "wireguard_exporter"
PEER_NAMES = (PWE, WE, "both")
"""MindFlavor's prometheus_wireguard_exporter (``wireguard_sent_bytes_total{interface,...}``,
the default, what the shipped rules and dashboard query), mdlayher's wireguard_exporter
(``wireguard_peer_transmit_bytes_total{device,public_key}`` and its ``_info`` series), or
both while dashboards move."""
