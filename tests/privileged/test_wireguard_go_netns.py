"""A single wireguard-go in a throwaway namespace: endpoints routed and unroutable."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import cli, unique
from tuner.adapters.uapi import UapiClient, hex_to_b64

SOCKETS = Path("/var/run/wireguard")


@pytest.fixture
def wg_netns(netns: str) -> Iterator[tuple[str, str]]:
    ifname = unique("wgtt")
    env = dict(os.environ, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD="1")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, "wireguard-go", "-f", ifname],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = UapiClient(SOCKETS)
        deadline = time.monotonic() + 10
        while not client.has_socket(ifname):
            assert time.monotonic() < deadline, "wireguard-go did not start"
            time.sleep(0.05)
        yield netns, ifname
    finally:
        proc.terminate()
        proc.wait(timeout=10)


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
