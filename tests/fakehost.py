"""A temporary /proc and /sys tree built from recorded files, for unit tests."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


def build_tree(root: Path) -> Path:
    net = root / "proc" / "net"
    net.mkdir(parents=True)
    for name in ("snmp", "netstat", "softnet_stat"):
        (net / name).write_text((FIXTURES / f"{name}.txt").read_text())
    (root / "proc" / "stat").write_text((FIXTURES / "stat.txt").read_text())
    (root / "proc" / "interrupts").write_text((FIXTURES / "interrupts.txt").read_text())
    for irq, mask in ((24, "0\n"), (25, "1\n"), (26, "0-1\n")):
        d = root / "proc" / "irq" / str(irq)
        d.mkdir(parents=True)
        (d / "smp_affinity_list").write_text(mask)
    sysctls = {
        "net/core/rmem_max": "212992\n",
        "net/core/wmem_max": "212992\n",
        "net/ipv4/tcp_mtu_probing": "0\n",
        "net/netfilter/nf_conntrack_count": "120\n",
        "net/netfilter/nf_conntrack_max": "1000\n",
        "net/ipv4/tcp_rmem": "4096\t131072\t6291456\n",
    }
    for rel, value in sysctls.items():
        path = root / "proc" / "sys" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value)
    for queue, name, mask in (
        ("rx-0", "rps_cpus", "00000000,00000003\n"),
        ("rx-1", "rps_cpus", "0\n"),
        ("tx-0", "xps_cpus", "2\n"),
    ):
        d = root / "sys" / "class" / "net" / "eth0" / "queues" / queue
        d.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(mask)
    (root / "var" / "run" / "wireguard").mkdir(parents=True)
    return root
