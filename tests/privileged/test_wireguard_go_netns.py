"""A single wireguard-go in a throwaway namespace: endpoints routed and unroutable."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

from tests.conftest import cli
from tuner.adapters.uapi import UapiClient, hex_to_b64

SOCKETS = Path("/var/run/wireguard")


def test_unroutable_endpoints_have_no_underlay_and_do_not_fail(wg_netns: tuple[str, str]) -> None:
    netns, ifname = wg_netns
    subprocess.run(["ip", "-n", netns, "addr", "add", "198.51.100.1/24", "dev", "v0"], check=True)
    routed, unroutable = secrets.token_bytes(32).hex(), secrets.token_bytes(32).hex()
    UapiClient(SOCKETS).set(
        ifname,
        [
            ("private_key", secrets.token_bytes(32).hex()),
            ("public_key", routed),
            ("endpoint", "198.51.100.7:51820"),
            ("allowed_ip", "10.1.0.1/32"),
            ("public_key", unroutable),
            ("endpoint", "203.0.113.7:51820"),  # no default route in this namespace
            ("allowed_ip", "10.1.0.2/32"),
        ],
    )
    proc = cli(["status", "--format", "json", "--sample", "0"], netns=netns, check=True)
    (iface,) = json.loads(proc.stdout)["interfaces"]
    assert iface["name"] == ifname
    assert iface["underlays"] == ["v0"]
    keys = {p["public_key"] for p in iface["peers"]}
    assert keys == {hex_to_b64(routed), hex_to_b64(unroutable)}
