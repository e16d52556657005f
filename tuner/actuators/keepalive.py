"""A peer's persistent keepalive, through the backend that owns the interface.

Userspace: ``public_key=HEX``, ``update_only=true``, ``persistent_keepalive_interval=N``
on the config socket (never ``replace_peers``; ``update_only`` means an unknown key can
never create a peer, and we check the peer exists first anyway). Kernel: the same
through generic netlink with WGPEER_F_UPDATE_ONLY.
"""

from __future__ import annotations

import base64
from typing import ClassVar, Protocol

from tuner.actuators import validate
from tuner.actuators.base import Target, Value
from tuner.adapters.uapi import UapiClient, UapiDevice, UapiErrno, b64_to_hex
from tuner.adapters.wgdump import dump_device
from tuner.errors import InvalidValue, ObserveError, PermanentActuatorError
from tuner.model.kinds import KEEPALIVE

MIN_KEEPALIVE, MAX_KEEPALIVE = KEEPALIVE.bounds or (0, 65535)


class WgPort(Protocol):
    def peer_keepalive(self, ifname: str, public_key: str) -> int | None:
        """The peer's interval, or None when the interface has no such peer."""
        ...

    def set_peer_keepalive(self, ifname: str, public_key: str, seconds: int) -> None: ...


def keepalive_of(device: UapiDevice, public_key: str) -> int | None:
    """The peer's keepalive interval, or None when the device has no such peer."""
    for peer in device.peers:
        if peer.public_key == public_key:
            return peer.persistent_keepalive
    return None


class UapiWg:
    """WgPort over the userspace config socket."""

    def __init__(self, client: UapiClient) -> None:
        self.client = client

    def peer_keepalive(self, ifname: str, public_key: str) -> int | None:
        try:
            return keepalive_of(self.client.get(ifname), public_key)
        except ObserveError as exc:
            raise PermanentActuatorError(str(exc)) from exc

    def set_peer_keepalive(self, ifname: str, public_key: str, seconds: int) -> None:
        try:
            self.client.set(
                ifname,
                [
                    ("public_key", b64_to_hex(public_key)),
                    ("update_only", "true"),
                    ("persistent_keepalive_interval", str(seconds)),
                ],
            )
        except (ObserveError, UapiErrno) as exc:
            raise PermanentActuatorError(str(exc)) from exc


class GenetlinkWg:
    """WgPort over kernel WireGuard's generic netlink family."""

    def peer_keepalive(self, ifname: str, public_key: str) -> int | None:
        try:
            return keepalive_of(dump_device(ifname), public_key)
        except ObserveError as exc:
            raise PermanentActuatorError(str(exc)) from exc

    def set_peer_keepalive(self, ifname: str, public_key: str, seconds: int) -> None:
        from pyroute2 import WireGuard

        try:
            with WireGuard() as wg:
                wg.set(
                    ifname,
                    peer={
                        "public_key": public_key,
                        "persistent_keepalive": seconds,
                        "update_only": True,
                    },
                )
        except Exception as exc:  # pyroute2 raises NetlinkError or OSError here
            raise PermanentActuatorError(f"{ifname}: setting keepalive failed") from exc


def _public_key(value: str) -> str:
    try:
        b64_to_hex(value)
    except ValueError:
        raise InvalidValue("peer must be a base64 WireGuard public key") from None
    return base64.b64encode(base64.b64decode(value)).decode("ascii")


class KeepaliveActuator:
    kind: ClassVar[str] = "keepalive"

    def __init__(self, port_for: WgPortSelector) -> None:
        self.port_for = port_for

    def _port(self, target: Target) -> tuple[WgPort, str, str]:
        ifname = validate.ifname(target.name)
        return self.port_for(ifname), ifname, _public_key(target.peer)

    def _current(self, target: Target) -> int:
        port, ifname, key = self._port(target)
        current = port.peer_keepalive(ifname, key)
        if current is None:
            raise PermanentActuatorError(f"{ifname}: no peer {key[:8]}... on this interface")
        return current

    def read(self, target: Target) -> Value:
        return str(self._current(target))

    def apply(self, target: Target, desired: Value) -> bool:
        seconds = validate.integer(desired, MIN_KEEPALIVE, MAX_KEEPALIVE, "persistent keepalive")
        if self._current(target) == seconds:
            return False
        port, ifname, key = self._port(target)
        port.set_peer_keepalive(ifname, key, seconds)
        return True

    def revert(self, target: Target, prior: Value) -> None:
        self.apply(target, prior)

    def check(self, target: Target) -> str | None:
        try:
            self._current(target)
        except (PermanentActuatorError, InvalidValue) as exc:
            return str(exc)
        return None


class WgPortSelector(Protocol):
    def __call__(self, ifname: str) -> WgPort: ...
