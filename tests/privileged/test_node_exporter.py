"""Debian's prometheus-node-exporter as the real consumer of wg-tuner's textfile.

``wg-tuner metrics --textfile`` writes under the unit's UMask=0077 in a namespace with a
real wireguard-go interface; node_exporter, run as ``nobody`` with only its textfile
collector, serves it over loopback in that namespace. Every wg-tuner series is there
and ``node_textfile_scrape_error`` is 0 (a file node_exporter cannot read or parse
makes it 1).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import cli
from tests.unit.test_monitoring import dashboard_exprs, rule_exprs

NODE = re.compile(r"\bnode_[A-Za-z0-9_]+\b")

PORT = 19100


def node_exporter() -> str:
    found = shutil.which("prometheus-node-exporter")
    assert found, "prometheus-node-exporter (Debian) is required; make test installs it"
    return found


def scrape(netns: str, port: int) -> str:
    """GET /metrics from inside ``netns`` (a short retry while node_exporter starts)."""
    code = (
        "import sys,time,urllib.request\n"
        "for _ in range(100):\n"
        "    try:\n"
        f"        sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:{port}/metrics',"
        " timeout=5).read().decode()); break\n"
        "    except OSError: time.sleep(0.1)\n"
        "else: sys.exit('node_exporter did not answer')\n"
    )
    out = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def textfile_dir() -> Iterator[Path]:
    """A directory node_exporter's user can reach (pytest's tmp_path is 0700)."""
    base = Path(tempfile.mkdtemp(prefix="wg-tuner-textfile-", dir="/var/tmp"))
    base.chmod(0o755)
    try:
        yield base / "node-exporter"
    finally:
        shutil.rmtree(base)


def test_node_exporter_serves_the_textfile_as_nobody(
    wg_netns: tuple[str, str], textfile_dir: Path
) -> None:
    netns, ifname = wg_netns
    target = textfile_dir / "wg_tuner.prom"
    old = os.umask(0o077)  # the shipped unit's UMask, inherited by wg-tuner
    try:
        written = cli(["metrics", "--textfile", str(target)], netns=netns)
    finally:
        os.umask(old)
    assert written.returncode == 0, written.stderr
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, "setpriv", "--reuid=nobody", "--regid=nogroup",
         "--clear-groups", node_exporter(), f"--web.listen-address=127.0.0.1:{PORT}",
         "--collector.disable-defaults", "--collector.textfile",
         f"--collector.textfile.directory={textfile_dir}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        text = scrape(netns, PORT)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (error,) = families["node_textfile_scrape_error"].samples
    assert error.value == 0, err[-2000:]
    ours = {name for name in families if name.startswith(("wg_tuner_", "wireguard_"))}
    served = {f.name for f in text_string_to_metric_families(target.read_text()) if f.samples}
    assert served and served <= ours, served - ours
    mtu = {s.labels["interface"]: s.value for s in families["wg_tuner_interface_mtu"].samples}
    assert mtu == {ifname: 1420}
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def _netstat_twin(counter: str, protocol: str) -> str:
    """node_exporter's name for a /proc/net/snmp{,6} or netstat counter."""
    return f"node_netstat_{protocol}_{counter.removeprefix(protocol)}"


def test_no_series_duplicates_what_node_exporter_exports_by_default(
    wg_netns: tuple[str, str], textfile_dir: Path
) -> None:
    """node_exporter with its default collectors in the same namespace: every counter
    wg-tuner exports without ``--host-series`` is one node_exporter does not have, and
    with ``--host-series`` the host counters come back for hosts without it."""
    netns, _ = wg_netns
    # A conntrack rule in the namespace, so node_exporter's conntrack collector has a table.
    subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-f", "-"],
        input="table inet wgt_ct {\n chain c {\n type filter hook input priority 0\n"
        " ct state new accept\n }\n}\n",
        text=True,
        check=True,
    )
    plain = cli(["metrics"], netns=netns, check=True).stdout
    full = cli(["metrics", "--host-series"], netns=netns, check=True).stdout
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, "setpriv", "--reuid=nobody", "--regid=nogroup",
         "--clear-groups", node_exporter(), f"--web.listen-address=127.0.0.1:{PORT + 1}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        node = {f.name: f for f in text_string_to_metric_families(scrape(netns, PORT + 1))}
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    ours = {f.name: f for f in text_string_to_metric_families(plain)}
    snmp = {
        (s.labels["protocol"], s.labels["counter"]) for s in ours["wg_tuner_snmp_counter"].samples
    }
    twins = {_netstat_twin(c, p) for p, c in snmp} & set(node)
    assert snmp and not twins, twins
    assert ("Ip", "FragCreates") in snmp  # what node_exporter leaves out stays ours
    # The counters node_exporter has under its own names are left to it.
    for name, twin in [
        ("wg_tuner_cpu_seconds", "node_cpu_seconds"),
        ("wg_tuner_softnet_dropped", "node_softnet_dropped"),
        ("wg_tuner_link_rx_bytes", "node_network_receive_bytes"),
        ("wg_tuner_conntrack_entries", "node_nf_conntrack_entries"),
    ]:
        assert name not in ours and twin in node, (name, twin)
    # The link roles join node_exporter's devices.
    devices = {s.labels["device"] for s in node["node_network_receive_bytes"].samples}
    roles = {s.labels["device"]: s.labels["role"] for s in ours["wg_tuner_link_info"].samples}
    assert roles and set(roles) <= devices, (roles, devices)
    both = {f.name: f for f in text_string_to_metric_families(full)}
    assert {"wg_tuner_cpu_seconds", "wg_tuner_softnet_dropped", "wg_tuner_link_rx_bytes"} <= set(
        both
    )
    counters = {s.labels["counter"] for s in both["wg_tuner_snmp_counter"].samples}
    assert {"RcvbufErrors", "FragCreates"} <= counters
    # Every node_exporter series the shipped rules and dashboard query is one it serves.
    served = {s.name for family in node.values() for s in family.samples}
    used = {m for e in rule_exprs() + dashboard_exprs() for m in NODE.findall(e)}
    assert len(used) >= 8 and used <= served, used - served
