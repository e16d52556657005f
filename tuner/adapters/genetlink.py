"""Kernel WireGuard through generic netlink (pyroute2's WireGuard family).

Only used for links of kind ``wireguard``. pyroute2's ``WireGuard()`` raises in its
constructor when the module is absent, so it is opened lazily, per read. The private
and preshared keys in the reply are never copied out of ``device_from_messages``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from tuner.adapters.uapi import UapiDevice
from tuner.errors import ObserveError
from tuner.model.snapshot import Peer


class _Attrs(Protocol):
    def get_attr(self, name: str) -> Any: ...


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("ascii")
    return str(value)


def _endpoint(value: Any) -> str | None:
    if not value:
        return None
    addr, port = value.get("addr"), value.get("port")
    if not addr or addr in ("0.0.0.0", "::"):  # noqa: S104 - the kernel's "no endpoint"
        return None
    return f"[{addr}]:{port}" if ":" in str(addr) else f"{addr}:{port}"


def device_from_messages(messages: Iterable[_Attrs]) -> UapiDevice:
    """Fold the (possibly multi-part) dump into one device; keys stay behind."""
    public_key: str | None = None
    listen_port = fwmark = 0
    peers: dict[str, Peer] = {}
    for msg in messages:
        public_key = _text(msg.get_attr("WGDEVICE_A_PUBLIC_KEY")) or public_key
        listen_port = msg.get_attr("WGDEVICE_A_LISTEN_PORT") or listen_port
        fwmark = msg.get_attr("WGDEVICE_A_FWMARK") or fwmark
        for raw in msg.get_attr("WGDEVICE_A_PEERS") or ():
            key = _text(raw.get_attr("WGPEER_A_PUBLIC_KEY"))
            if key is None:
                continue
            handshake = raw.get_attr("WGPEER_A_LAST_HANDSHAKE_TIME") or {}
            allowed = tuple(
                str(ip["addr"])
                for ip in raw.get_attr("WGPEER_A_ALLOWEDIPS") or ()
                if ip.get("addr")
            )
            prev = peers.get(key)
            peers[key] = Peer(
                public_key=key,
                endpoint=_endpoint(raw.get_attr("WGPEER_A_ENDPOINT")),
                # A large peer's allowed IPs can span several messages.
                allowed_ips=(prev.allowed_ips if prev else ()) + allowed,
                latest_handshake=float(handshake.get("tv_sec", 0))
                + float(handshake.get("tv_nsec", 0)) / 1e9,
                rx_bytes=int(raw.get_attr("WGPEER_A_RX_BYTES") or 0),
                tx_bytes=int(raw.get_attr("WGPEER_A_TX_BYTES") or 0),
                persistent_keepalive=int(
                    raw.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") or 0
                ),
            )
    return UapiDevice(public_key, int(listen_port), int(fwmark), tuple(peers.values()))


def read_kernel_device(ifname: str) -> UapiDevice:
    """Read a kernel WireGuard interface; ObserveError when the family is unavailable."""
    try:
        from pyroute2 import WireGuard
    except ImportError as exc:  # pragma: no cover - pyroute2 is a dependency
        raise ObserveError("pyroute2 has no WireGuard support") from exc
    try:
        wg = WireGuard()
    except OSError as exc:
        raise ObserveError(f"{ifname}: kernel WireGuard netlink unavailable") from exc
    try:
        return device_from_messages(wg.info(ifname))
    except OSError as exc:
        raise ObserveError(f"{ifname}: kernel WireGuard read failed (errno {exc.errno})") from exc
    finally:
        wg.close()
