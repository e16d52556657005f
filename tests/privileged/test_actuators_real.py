"""Each actuator against the real thing, inside namespaces the test made."""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tuner.actuators.base import Target
from tuner.actuators.sysctl import SysctlActuator
from tuner.adapters.uapi import UapiClient
from tuner.errors import InvalidValue
from tuner.observe.paths import HostPaths

SOCKETS = Path("/var/run/wireguard")


def actuate(netns: str, *args: str, via: tuple[str, ...] = ()) -> dict[str, object]:
    """One actuator operation in ``netns``; ``via`` wraps the interpreter (setpriv)."""
    out = subprocess.run(
        ["ip", "netns", "exec", netns, *via, sys.executable, "-m", "tests.helpers.actuate", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=60,
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def ruleset(netns: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "list", "ruleset"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_mtu_on_wireguard_go(wg_netns: tuple[str, str]) -> None:
    netns, ifname = wg_netns
    assert actuate(netns, "mtu", ifname, "read")["value"] == "1420"
    assert actuate(netns, "mtu", ifname, "apply", "1340") == {"changed": True, "value": "1340"}
    assert actuate(netns, "mtu", ifname, "apply", "1340")["changed"] is False
    assert "error" in actuate(netns, "mtu", ifname, "apply", "1279")  # below IPv6's minimum
    assert actuate(netns, "mtu", ifname, "revert", "1420")["value"] == "1420"
    link = subprocess.run(
        ["ip", "-n", netns, "-j", "link", "show", ifname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(link)[0]["mtu"] == 1420


def test_keepalive_on_wireguard_go(wg_netns: tuple[str, str]) -> None:
    netns, ifname = wg_netns
    key = secrets.token_bytes(32)
    peer = base64.b64encode(key).decode()
    client = UapiClient(SOCKETS)
    client.set(ifname, [("public_key", key.hex()), ("allowed_ip", "10.9.9.9/32")])
    args = ("keepalive", ifname)
    assert actuate(netns, *args, "read", "--peer", peer)["value"] == "0"
    assert actuate(netns, *args, "apply", "25", "--peer", peer)["value"] == "25"
    assert client.get(ifname).peers[0].persistent_keepalive == 25
    assert actuate(netns, *args, "revert", "0", "--peer", peer)["value"] == "0"
    # an unknown key is refused and never becomes a peer
    stranger = base64.b64encode(secrets.token_bytes(32)).decode()
    assert "error" in actuate(netns, *args, "apply", "25", "--peer", stranger)
    peers = client.get(ifname).peers
    assert [p.public_key for p in peers] == [peer]
    assert peers[0].allowed_ips == ("10.9.9.9/32",)


def test_mss_clamp_leaves_foreign_tables_untouched(netns: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-f", "-"],
        input="table ip foreign {\n chain c {\n type filter hook forward priority 0;\n"
        " tcp dport 22 accept\n }\n}\n",
        text=True,
        check=True,
    )
    before = ruleset(netns)
    assert actuate(netns, "mss_clamp", "wg0", "read")["value"] is None
    assert actuate(netns, "mss_clamp", "wg0", "apply", "pmtu")["value"] == "pmtu"
    assert actuate(netns, "mss_clamp", "wg1", "apply", "1300")["value"] == "1300"
    during = ruleset(netns)
    assert "maxseg size set rt mtu" in during and "maxseg size set 1300" in during
    assert during.startswith(before)  # the foreign table is byte-identical, ours follows
    assert actuate(netns, "mss_clamp", "wg0", "apply", "pmtu")["changed"] is False
    actuate(netns, "mss_clamp", "wg1", "revert", "--absent")
    actuate(netns, "mss_clamp", "wg0", "revert", "--absent")
    assert ruleset(netns) == before


def test_rps_mask_on_a_veth_queue(netns: str) -> None:
    args = ("irq_affinity", "v0/rx-0")
    prior = actuate(netns, *args, "read")["value"]
    assert actuate(netns, *args, "check")["check"] is None
    assert actuate(netns, *args, "apply", "0")["value"] == "0"
    path = ["ip", "netns", "exec", netns, "cat", "/sys/class/net/v0/queues/rx-0/rps_cpus"]
    assert (
        subprocess.run(path, capture_output=True, text=True, check=True).stdout.strip("0,\n") == "1"
    )
    assert actuate(netns, *args, "revert", str(prior))["value"] == prior


def test_per_namespace_sysctl_for_real(netns: str) -> None:
    args = ("sysctl", "net.ipv4.tcp_mtu_probing")
    prior = actuate(netns, *args, "read")["value"]
    assert actuate(netns, *args, "apply", "1")["value"] == "1"
    host = Path("/proc/sys/net/ipv4/tcp_mtu_probing").read_text().strip()
    assert actuate(netns, *args, "revert", str(prior))["value"] == prior
    assert Path("/proc/sys/net/ipv4/tcp_mtu_probing").read_text().strip() == host
    # net.core.rmem_max does not exist in a child namespace: held, not attempted
    check = actuate(netns, "sysctl", "net.core.rmem_max", "check")["check"]
    assert check and "namespace" in str(check)


def test_rmem_max_in_the_initial_namespace_restored() -> None:
    act = SysctlActuator(HostPaths())
    target = Target("sysctl", "net.core.rmem_max")
    prior = act.read(target)
    assert prior is not None
    try:
        assert act.check(target) is None
        raised = str(int(prior) + 4096)
        assert act.apply(target, raised) is True
        assert act.read(target) == raised
    finally:
        act.revert(target, prior)
    assert act.read(target) == prior
    try:
        act.apply(Target("sysctl", "kernel.hostname"), "1")
    except InvalidValue:
        pass
    else:
        raise AssertionError("a sysctl outside the allowlist was written")


def iptables_mangle(netns: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "iptables-save", "-t", "mangle"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def strip_comments(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_mss_iptables_fallback(netns: str) -> None:
    before = strip_comments(iptables_mangle(netns))
    opts = ("--iptables",)
    assert actuate(netns, "mss_clamp", "wg0", "apply", "pmtu", *opts)["value"] == "pmtu"
    assert actuate(netns, "mss_clamp", "wg1", "apply", "1300", *opts)["value"] == "1300"
    assert actuate(netns, "mss_clamp", "wg1", "apply", "1300", *opts)["changed"] is False
    saved = iptables_mangle(netns)
    assert "--clamp-mss-to-pmtu" in saved and "--set-mss 1300" in saved
    assert saved.count("-A FORWARD -j WG_TUNER_MSS") == 1
    actuate(netns, "mss_clamp", "wg0", "revert", "--absent", *opts)
    actuate(netns, "mss_clamp", "wg1", "revert", "--absent", *opts)
    assert strip_comments(iptables_mangle(netns)) == before


def ethtool_k(netns: str, dev: str) -> dict[str, str]:
    """`ethtool -k DEV` (the binary, independent of wg-tuner's netlink path)."""
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "ethtool", "-k", dev],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {
        k.strip(): v.split()[0]
        for k, v in (x.split(":", 1) for x in out.splitlines()[1:] if ":" in x)
    }


def test_offload_feature_on_a_veth_exact_revert(netns: str) -> None:
    args = ("offload", "v0/rx-udp-gro-forwarding")
    assert ethtool_k(netns, "v0")["rx-udp-gro-forwarding"] == "off"  # the kernel's default
    assert actuate(netns, *args, "check")["check"] is None
    assert actuate(netns, *args, "read")["value"] == "off"
    applied = actuate(netns, *args, "apply", "on")
    assert applied == {"changed": True, "value": "on"}, applied
    assert ethtool_k(netns, "v0")["rx-udp-gro-forwarding"] == "on"
    assert actuate(netns, *args, "apply", "on")["changed"] is False  # idempotent
    assert actuate(netns, *args, "revert", "off")["value"] == "off"
    assert ethtool_k(netns, "v0")["rx-udp-gro-forwarding"] == "off"


def test_a_fixed_or_unknown_offload_feature_is_refused(netns: str) -> None:
    # lo's receive checksumming is fixed by its driver (`ethtool -k lo`: "on [fixed]").
    assert ethtool_k(netns, "lo")["rx-checksumming"] == "on"
    reason = actuate(netns, "offload", "lo/rx-checksum", "check")["check"]
    assert "fixed" in str(reason), reason
    refused = actuate(netns, "offload", "lo/rx-checksum", "apply", "off")
    assert refused.get("error") == "NotApplicable", refused
    assert ethtool_k(netns, "lo")["rx-checksumming"] == "on"  # nothing changed
    unknown = actuate(netns, "offload", "v0/rx-no-such-feature", "read")
    assert unknown.get("error") == "InvalidValue", unknown


def receive_buffers(netns: str, port: int) -> list[int]:
    """``rb`` of every UDP socket on ``port``, as ``ss -uam`` (iproute2) reports it."""
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "ss", "-uamnH", "sport", "=", f":{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [int(m) for m in re.findall(r"\brb(\d+)", out)]


def test_socket_buffer_of_wireguard_go_resized_in_place_and_restored(
    wg_netns: tuple[str, str],
) -> None:
    netns, ifname = wg_netns
    port = 51000 + secrets.randbelow(1000)
    wg_set = ["ip", "netns", "exec", netns, "wg", "set", ifname]
    subprocess.run([*wg_set, "listen-port", str(port)], check=True)
    subprocess.run(["ip", "-n", netns, "link", "set", ifname, "up"], check=True)
    opened = receive_buffers(netns, port)
    assert len(opened) == 2 and len(set(opened)) == 1, opened  # udp4 and udp6, one size
    prior = actuate(netns, "socket_buffer", ifname, "read")["value"]
    assert prior == str(opened[0])
    assert actuate(netns, "socket_buffer", ifname, "check") == {"check": None}
    done = actuate(netns, "socket_buffer", ifname, "apply", "7340032")
    assert done == {"changed": True, "value": "7340032"}
    assert receive_buffers(netns, port) == [7340032, 7340032]  # both, seen by ss
    assert actuate(netns, "socket_buffer", ifname, "apply", "7340032")["changed"] is False
    assert actuate(netns, "socket_buffer", ifname, "apply", "4096")["error"] == "InvalidValue"
    assert actuate(netns, "socket_buffer", ifname, "revert", str(prior))["value"] == prior
    assert receive_buffers(netns, port) == opened
    # The same process, the same sockets: wireguard-go never noticed.
    assert subprocess.run(
        ["ip", "netns", "exec", netns, "wg", "show", ifname, "listen-port"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip() == str(port)


def test_socket_buffer_without_the_right_to_ptrace_is_refused_and_says_why(
    wg_netns: tuple[str, str],
) -> None:
    netns, ifname = wg_netns
    wg_set = ["ip", "netns", "exec", netns, "wg", "set", ifname]
    subprocess.run([*wg_set, "listen-port", "51820"], check=True)
    subprocess.run(["ip", "-n", netns, "link", "set", ifname, "up"], check=True)
    # As the shipped unit runs it without CAP_SYS_PTRACE in its bounding set.
    no_ptrace = ("setpriv", "--bounding-set=-sys_ptrace", "--inh-caps=-sys_ptrace")
    reason = actuate(netns, "socket_buffer", ifname, "check", via=no_ptrace)["check"]
    assert isinstance(reason, str)
    assert "CAP_SYS_PTRACE" in reason and ifname in reason, reason
    assert "no socket" not in reason  # not mistaken for a missing socket


def test_socket_buffer_is_not_applicable_to_an_interface_without_a_config_socket(
    netns: str,
) -> None:
    got = actuate(netns, "socket_buffer", "lo", "check")["check"]
    assert isinstance(got, str) and "not a userspace WireGuard" in got
    assert actuate(netns, "socket_buffer", "lo", "read")["error"] == "NotApplicable"
