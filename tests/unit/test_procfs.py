from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakehost import FIXTURES, build_tree
from tuner.model.cpumask import spread_cpus
from tuner.model.snapshot import CpuSoftnet
from tuner.observe import procfs
from tuner.observe.knobs import read_knobs, read_queue_masks
from tuner.observe.paths import HostPaths


@pytest.fixture
def paths(tmp_path: Path) -> HostPaths:
    return HostPaths.under(build_tree(tmp_path))


def test_snmp_tables_parse_by_name() -> None:
    snmp = procfs.parse_header_pairs((FIXTURES / "snmp.txt").read_text())
    assert snmp["Udp"]["RcvbufErrors"] == 15
    assert snmp["Udp"]["SndbufErrors"] == 2
    assert snmp["Ip"]["FragFails"] == 7
    assert snmp["Icmp"]["OutDestUnreachs"] == 4
    assert snmp["Tcp"]["MaxConn"] == -1


def test_netstat_tcpext() -> None:
    netstat = procfs.parse_header_pairs((FIXTURES / "netstat.txt").read_text())
    assert netstat["TcpExt"]["TCPLostRetransmit"] == 9
    assert netstat["TcpExt"]["TCPMTUPFail"] == 1


def test_softnet_hex_and_cpu_column() -> None:
    rows = procfs.parse_softnet((FIXTURES / "softnet_stat.txt").read_text())
    assert rows == (
        CpuSoftnet(cpu=0, processed=0xA1B2, dropped=0, time_squeeze=3),
        CpuSoftnet(cpu=1, processed=0x10, dropped=5, time_squeeze=0),
    )


def test_stat_per_core_softirq() -> None:
    cpus = procfs.parse_stat((FIXTURES / "stat.txt").read_text())
    assert [c.cpu for c in cpus] == [0, 1]
    assert cpus[1].softirq == 100
    assert cpus[1].total == 200 + 150 + 1000 + 5 + 100


def test_interrupts_match_device_queues_only() -> None:
    rows = procfs.parse_interrupts((FIXTURES / "interrupts.txt").read_text(), ["eth0"])
    assert [(irq, name) for irq, name, _ in rows] == [(24, "eth0-TxRx-0"), (25, "eth0-TxRx-1")]
    assert rows[0][2] == (1000, 10)


def test_readers_on_a_temporary_tree(paths: HostPaths) -> None:
    assert procfs.read_snmp(paths)["Udp"]["InErrors"] == 17
    irqs = procfs.read_interrupts(paths, ["eth0"])
    assert [(i.irq, i.affinity_list) for i in irqs] == [(24, "0"), (25, "1")]
    conntrack = procfs.read_conntrack(paths)
    assert conntrack is not None
    assert (conntrack.count, conntrack.max) == (120, 1000)


def test_missing_files_are_empty_not_errors(tmp_path: Path) -> None:
    empty = HostPaths.under(tmp_path)
    assert procfs.read_snmp(empty) == {}
    assert procfs.read_softnet(empty) == ()
    assert procfs.read_conntrack(empty) is None
    assert procfs.read_sysctl(empty, "net.core.rmem_max") is None


def test_sysctl_whitespace_normalised(paths: HostPaths) -> None:
    assert procfs.read_sysctl(paths, "net.ipv4.tcp_rmem") == "4096 131072 6291456"


def test_queue_masks_normalised(paths: HostPaths) -> None:
    rps, xps = read_queue_masks(paths, ["eth0", "missing0"])
    assert rps == {"eth0/rx-0": "0-1", "eth0/rx-1": ""}
    assert xps == {"eth0/tx-0": "1"}


def test_knobs_report_absent_sysctls_as_none(paths: HostPaths) -> None:
    knobs, notes = read_knobs(paths, ["eth0"], nft=None)
    assert knobs.sysctls["net.core.rmem_max"] == "212992"
    assert knobs.sysctls["net.core.netdev_max_backlog"] is None
    assert knobs.nft_table is None
    assert notes == ()


def test_snmp6_groups_by_protocol_and_keeps_names_whole() -> None:
    # Recorded on this machine; two counters set non-zero so a mix-up shows.
    got = procfs.parse_snmp6((FIXTURES / "snmp6.txt").read_text())
    assert got["Ip6"]["Ip6FragCreates"] == 417
    assert got["Udp6"]["Udp6RcvbufErrors"] == 9
    assert "Icmp6InPktTooBigs" in got["Icmp6"] and "UdpLite6InErrors" in got["UdpLite6"]
    assert set(got) >= {"Ip6", "Icmp6", "Udp6", "UdpLite6"}


def test_snmp6_joins_snmp_and_hostile_lines_are_skipped(tmp_path: Path) -> None:
    net = tmp_path / "proc/net"
    net.mkdir(parents=True)
    (net / "snmp").write_text((FIXTURES / "snmp.txt").read_text())
    (net / "snmp6").write_text("Ip6FragCreates 5\nIp6Bogus x\n\x00\x01 2\nnope\n6 7\n")
    got = procfs.read_snmp(HostPaths.under(tmp_path))
    assert got["Ip6"] == {"Ip6FragCreates": 5}
    assert "Udp" in got and "Ip" in got  # IPv4's tables are still there


def test_task_stat_counts_fields_after_the_last_parenthesis() -> None:
    # A command name with spaces and parentheses must not shift the fields.
    line = "4242 (wireguard-go) x) R 1 1 1 0 -1 4194560 10 0 0 0 731 269 0 0 20 0 9 0 99 0 0"
    assert procfs.parse_task_stat(line) == 731 + 269
    assert procfs.parse_task_stat("4242 (short) R 1") is None
    assert procfs.parse_task_stat("garbage") is None


def test_process_cpu_is_read_per_thread_from_the_live_proc() -> None:
    import os
    import threading

    done = threading.Event()
    spinner = threading.Thread(target=lambda: done.wait(5))
    spinner.start()
    try:
        got = procfs.read_process_cpu(HostPaths(), os.getpid())
    finally:
        done.set()
        spinner.join()
    assert got is not None and got.pid == os.getpid()
    assert len(got.threads) >= 2 and os.getpid() in got.threads  # main thread's tid = pid
    assert got.total >= 0
    assert procfs.read_process_cpu(HostPaths(), 2**22 + 1) is None  # no such pid


@pytest.mark.parametrize(
    ("prefix", "name", "queue"),
    [
        ("eth0", "eth0-TxRx-3", 3),
        ("eth0", "eth0-rx-12", 12),
        ("virtio3", "virtio3-input.1", 1),
        ("virtio3", "virtio3-output.0", 0),
        ("virtio3", "virtio3-config", None),
        ("eth1", "eth1", None),  # one vector for everything: no queue to spread
    ],
)
def test_queue_numbers_end_the_irq_name(prefix: str, name: str, queue: int | None) -> None:
    assert procfs.queue_number(prefix, name) == queue


def test_virtio_net_queue_irqs_are_found_by_their_virtio_device(tmp_path: Path) -> None:
    """virtio-net names its IRQs after the virtio device (virtio3-input.0), not the
    link: /sys/class/net/ens4/device leads to it."""
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "interrupts").write_text(
        "           CPU0       CPU1\n"
        " 30:          0          0   PCI-MSIX-0000:00:04.0   0-edge      virtio3-config\n"
        " 31:        900          0   PCI-MSIX-0000:00:04.0   1-edge      virtio3-input.0\n"
        " 32:         10          0   PCI-MSIX-0000:00:04.0   2-edge      virtio3-output.0\n"
        " 33:        700          0   PCI-MSIX-0000:00:04.0   3-edge      virtio3-input.1\n"
        " 34:          5          5   PCI-MSIX-0000:00:05.0   1-edge      virtio4-input.0\n"
    )
    for irq in range(30, 35):
        (tmp_path / "proc" / "irq" / str(irq)).mkdir(parents=True)
        (tmp_path / "proc" / "irq" / str(irq) / "smp_affinity_list").write_text("0\n")
    bus = tmp_path / "sys" / "devices" / "pci0000:00" / "0000:00:04.0" / "virtio3"
    bus.mkdir(parents=True)
    (tmp_path / "sys" / "class" / "net" / "ens4").mkdir(parents=True)
    (tmp_path / "sys" / "class" / "net" / "ens4" / "device").symlink_to(bus)
    irqs = procfs.read_interrupts(HostPaths.under(tmp_path), ["ens4"])
    assert [(i.irq, i.device, i.queue, i.affinity_list) for i in irqs] == [
        (30, "ens4", None, "0"),
        (31, "ens4", 0, "0"),
        (32, "ens4", 0, "0"),
        (33, "ens4", 1, "0"),
    ]  # virtio4 is another device's


def test_the_cpus_irqs_may_go_to_come_from_default_smp_affinity(tmp_path: Path) -> None:
    assert procfs.read_irq_cpus(HostPaths.under(tmp_path)) is None  # unreadable: unknown
    (tmp_path / "proc" / "irq").mkdir(parents=True)
    (tmp_path / "proc" / "irq" / "default_smp_affinity").write_text("00000000,00000033\n")
    assert procfs.read_irq_cpus(HostPaths.under(tmp_path)) == "0-1,4-5"


@pytest.mark.parametrize(
    ("allowed", "cpus"),
    [(None, [0, 1, 2, 3]), ("0-1", [0, 1]), ("1,3", [1, 3]), ("8-9", [0, 1, 2, 3])],
)
def test_queue_irqs_spread_only_over_cpus_irqs_may_go_to(
    allowed: str | None, cpus: list[int]
) -> None:
    assert spread_cpus([3, 1, 0, 2], allowed) == cpus
