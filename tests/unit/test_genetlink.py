"""Kernel WireGuard messages (pyroute2 shapes) folded into a device, keys left behind."""

from __future__ import annotations

from typing import Any

from tuner.adapters.genetlink import device_from_messages


class Msg:
    def __init__(self, attrs: dict[str, Any]) -> None:
        self.attrs = attrs

    def get_attr(self, name: str) -> Any:
        return self.attrs.get(name)


PRIVATE = b"cHJpdmF0ZXByaXZhdGVwcml2YXRlcHJpdmF0ZXByaXY="
PSK = b"cHNrcHNrcHNrcHNrcHNrcHNrcHNrcHNrcHNrcHNrcHM="


def peer(key: bytes, ips: list[str], **extra: Any) -> Msg:
    return Msg(
        {
            "WGPEER_A_PUBLIC_KEY": key,
            "WGPEER_A_PRESHARED_KEY": PSK,
            "WGPEER_A_ENDPOINT": {"addr": "203.0.113.2", "port": 51820},
            "WGPEER_A_LAST_HANDSHAKE_TIME": {"tv_sec": 100, "tv_nsec": 250_000_000},
            "WGPEER_A_RX_BYTES": 10,
            "WGPEER_A_TX_BYTES": 20,
            "WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL": 25,
            "WGPEER_A_ALLOWEDIPS": [{"addr": ip} for ip in ips],
            **extra,
        }
    )


def test_multipart_dump_merges_allowed_ips_and_drops_keys() -> None:
    first = Msg(
        {
            "WGDEVICE_A_PRIVATE_KEY": PRIVATE,
            "WGDEVICE_A_PUBLIC_KEY": b"PUBKEY=",
            "WGDEVICE_A_LISTEN_PORT": 51820,
            "WGDEVICE_A_FWMARK": 0x51,
            "WGDEVICE_A_PEERS": [peer(b"PEER1=", ["10.0.0.1/32"])],
        }
    )
    second = Msg({"WGDEVICE_A_PEERS": [peer(b"PEER1=", ["10.0.0.2/32"])]})
    device = device_from_messages([first, second])
    assert device.public_key == "PUBKEY="
    assert (device.listen_port, device.fwmark) == (51820, 0x51)
    (p,) = device.peers
    assert p.allowed_ips == ("10.0.0.1/32", "10.0.0.2/32")
    assert p.endpoint == "203.0.113.2:51820"
    assert p.latest_handshake == 100.25
    text = repr(device)
    assert PRIVATE.decode() not in text and PSK.decode() not in text


def test_ipv6_and_missing_endpoint() -> None:
    msg = Msg(
        {
            "WGDEVICE_A_PEERS": [
                peer(b"A=", [], WGPEER_A_ENDPOINT={"addr": "2001:db8::1", "port": 1}),
                peer(b"B=", [], WGPEER_A_ENDPOINT={"addr": "0.0.0.0", "port": 0}),  # noqa: S104
            ]
        }
    )
    a, b = device_from_messages([msg]).peers
    assert a.endpoint == "[2001:db8::1]:1"
    assert b.endpoint is None
