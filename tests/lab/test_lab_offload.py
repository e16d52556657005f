"""NIC offloads on a forwarding host, on real veths: wg-tuner turns GRO and then UDP GRO
forwarding on for host a's underlay, verifies both, and rolls them back exactly.

Host a is made a forwarding host for the test (net.ipv4.ip_forward in its namespace) and
put back after; the features are checked with the ethtool binary, not wg-tuner's own
netlink path.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import cli
from tests.lab.test_lab_apply import FAST
from tests.reliability import FigureFn
from tuner.lab.lab import Lab


def ethtool_k(lab: Lab) -> dict[str, str]:
    a = lab.topo.a
    out = subprocess.run(
        ["ip", "netns", "exec", a.netns, "ethtool", "-k", a.veth],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pairs = (line.split(":", 1) for line in out.splitlines()[1:] if ":" in line)
    return {k.strip(): v.split()[0] for k, v in pairs}


@contextmanager
def forwarding(lab: Lab) -> Iterator[None]:
    a = lab.topo.a
    key = "net.ipv4.ip_forward"
    argv = ["ip", "netns", "exec", a.netns, "sysctl", "-q", "-w"]
    subprocess.run([*argv, f"{key}=1"], check=True)
    try:
        yield
    finally:
        subprocess.run([*argv, f"{key}=0"], check=True)
        feats = ["ip", "netns", "exec", a.netns, "ethtool", "-K", a.veth]
        subprocess.run([*feats, "rx-udp-gro-forwarding", "off", "gro", "off"], check=False)


def offload_changes(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [c for c in json.loads(proc.stdout)["changes"] if c["kind"] == "offload"]


def test_a_forwarding_hosts_underlay_gets_gro_then_udp_gro_forwarding(
    lab: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    a = lab.topo.a
    before = ethtool_k(lab)
    assert (before["generic-receive-offload"], before["rx-udp-gro-forwarding"]) == ("off", "off")
    run = ["apply", "--format", "json", "--state-dir", str(tmp_path), *FAST, "--probe-max", "0"]
    with forwarding(lab):
        # One apply, two rounds: GRO first (UDP GRO forwarding needs it), then the other.
        gro, udp = offload_changes(cli(run, netns=a.netns, timeout=120))
        after = ethtool_k(lab)
        assert offload_changes(cli(run, netns=a.netns, timeout=120)) == []  # nothing left
        moved = lab.traffic(2.0)
        for _ in range(2):
            back = cli(
                ["rollback", "--last", "--format", "json", "--state-dir", str(tmp_path)],
                netns=a.netns,
                timeout=120,
            )
            assert back.returncode == 0, back.stderr[-2000:]
        restored = ethtool_k(lab)
    assert (gro["policy"], gro["target"], gro["status"]) == (
        "gro-forwarding-host",
        f"{a.veth}/rx-gro",
        "verified",
    )
    assert (udp["policy"], udp["target"], udp["status"]) == (
        "udp-gro-forwarding",
        f"{a.veth}/rx-udp-gro-forwarding",
        "verified",
    )
    assert (after["generic-receive-offload"], after["rx-udp-gro-forwarding"]) == ("on", "on")
    assert moved["ok"] and moved["bytes"] > 1_000_000, moved
    assert (restored["generic-receive-offload"], restored["rx-udp-gro-forwarding"]) == (
        "off",
        "off",
    )  # exact revert
    figure(
        "Remediation",
        "forwarding host, veth underlay with GRO off -> one apply: gro-forwarding-host, "
        "then udp-gro-forwarding, each verified; bulk TCP after; two rollbacks",
        f"GRO off -> on, UDP GRO forwarding off -> on; "
        f"{moved['bytes'] * 8 / 2.0 / 1e6:.0f} Mbit/s; back to off/off",
    )
