"""A Snapshot as plain JSON-ready data (``status --format json``)."""

from __future__ import annotations

from typing import Any

from tuner.model.rates import Rates
from tuner.model.serde import to_data
from tuner.model.snapshot import Snapshot


def snapshot_to_data(snapshot: Snapshot, rates: Rates | None = None) -> dict[str, Any]:
    data: dict[str, Any] = to_data(snapshot)
    for iface_data, iface in zip(data["interfaces"], snapshot.interfaces, strict=True):
        for peer_data, peer in zip(iface_data["peers"], iface.peers, strict=True):
            peer_data["handshake_age"] = snapshot.handshake_age(peer)
            peer_data["friendly_name"] = iface.peer_names.get(peer.public_key)
            rate = rates.peers.get((iface.name, peer.public_key)) if rates else None
            peer_data["rx_bps"] = rate.rx_bps if rate else None
            peer_data["tx_bps"] = rate.tx_bps if rate else None
    data["schema"] = "wg-tuner/snapshot/v1"
    return data
