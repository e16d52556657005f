"""In-memory ports that behave like the real adapters (for the actuator contract suite)."""

from __future__ import annotations

import copy
from typing import Any


class FakeLinks:
    def __init__(self, mtus: dict[str, int], underlay: int | None = 1500) -> None:
        self.mtus = dict(mtus)
        self.underlay = underlay
        self.writes = 0

    def get_mtu(self, ifname: str) -> int | None:
        return self.mtus.get(ifname)

    def set_mtu(self, ifname: str, mtu: int) -> None:
        self.writes += 1
        self.mtus[ifname] = mtu

    def underlay_mtu(self, ifname: str) -> int | None:
        return self.underlay


class FakeWg:
    def __init__(self, peers: dict[tuple[str, str], int]) -> None:
        self.peers = dict(peers)
        self.writes = 0

    def peer_keepalive(self, ifname: str, public_key: str) -> int | None:
        return self.peers.get((ifname, public_key))

    def set_peer_keepalive(self, ifname: str, public_key: str, seconds: int) -> None:
        if (ifname, public_key) not in self.peers:  # update_only: never creates a peer
            return
        self.writes += 1
        self.peers[(ifname, public_key)] = seconds


class FakeNft:
    """Applies batches the way nft does for the commands the MSS actuator sends."""

    def __init__(self) -> None:
        self.table: list[dict[str, Any]] | None = None
        self.writes = 0

    def objects(self) -> list[dict[str, Any]] | None:
        return copy.deepcopy(self.table)

    def batch(self, commands: list[dict[str, Any]]) -> None:
        self.writes += 1
        table = copy.deepcopy(self.table)
        for command in commands:
            ((verb, obj),) = command.items()
            if verb == "delete" and "table" in obj:
                table = None
            elif verb == "add" and "table" in obj:
                table = table if table is not None else [copy.deepcopy(obj)]
            elif verb == "add":
                assert table is not None, "nft: no such table"
                table.append(copy.deepcopy(obj))
        self.table = table


class FakeFeatures:
    """The ethtool feature port in memory: ``features`` as the kernel reports them
    (name -> (enabled, changeable)), ``set`` refusing fixed and unknown ones as the
    kernel does, and counting writes."""

    def __init__(self, devices: dict[str, dict[str, tuple[bool, bool]]] | None = None) -> None:
        self.devices = devices or {
            "eth0": {
                "rx-gro": (False, True),
                "rx-udp-gro-forwarding": (False, True),
                "rx-checksum": (True, False),
            }
        }
        self.writes = 0

    def features(self, dev: str) -> dict[str, tuple[bool, bool]]:
        from tuner.errors import ObserveError

        if dev not in self.devices:
            raise ObserveError(f"{dev}: no such device")
        return dict(self.devices[dev])

    def set(self, dev: str, name: str, on: bool) -> None:
        from tuner.errors import ObserveError

        _, changeable = self.devices[dev].get(name, (False, False))
        if not changeable:
            raise ObserveError(f"{dev}: {name} is fixed")
        self.devices[dev][name] = (on, changeable)
        self.writes += 1
