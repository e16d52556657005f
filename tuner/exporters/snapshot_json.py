"""A Snapshot as plain JSON-ready data (``status --format json``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import Enum
from typing import Any

from tuner.model.rates import Rates
from tuner.model.snapshot import Snapshot


def to_data(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [to_data(v) for v in value]
    return value


def snapshot_to_data(snapshot: Snapshot, rates: Rates | None = None) -> dict[str, Any]:
    data: dict[str, Any] = to_data(snapshot)
    for iface_data, iface in zip(data["interfaces"], snapshot.interfaces, strict=True):
        for peer_data, peer in zip(iface_data["peers"], iface.peers, strict=True):
            peer_data["handshake_age"] = snapshot.handshake_age(peer)
            rate = rates.peers.get((iface.name, peer.public_key)) if rates else None
            peer_data["rx_bps"] = rate.rx_bps if rate else None
            peer_data["tx_bps"] = rate.tx_bps if rate else None
    data["schema"] = "wg-tuner/snapshot/v1"
    return data
