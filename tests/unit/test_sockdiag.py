"""WireGuard's socket counters: sock_diag against a real overflowing socket on loopback,
/proc/net/udp as the fallback, and hostile input to both parsers."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tuner.adapters.sockdiag import UdpSocket, diag_sockets, parse_proc_udp, parse_skmeminfo, summed
from tuner.observe.paths import HostPaths
from tuner.observe.sockets import UdpSockets

FIXTURES = Path(__file__).parent / "proc_udp"
"""/proc/net/udp and udp6 as this kernel writes them (port 0xCA6C is 51820)."""
PROC_UDP = (FIXTURES / "udp").read_text()
PROC_UDP6 = (FIXTURES / "udp6").read_text()


@pytest.fixture
def overflowing() -> tuple[socket.socket, int]:
    """A loopback socket with the smallest receive buffer, sent far more than it holds."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
    rx.bind(("127.0.0.1", 0))
    port = rx.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for _ in range(200):
            tx.sendto(b"x" * 1000, ("127.0.0.1", port))
    time.sleep(0.05)
    yield rx, port
    rx.close()


def test_sock_diag_sees_the_drops_and_the_buffer_of_a_real_socket(
    overflowing: tuple[socket.socket, int],
) -> None:
    rx, port = overflowing
    stats = UdpSockets().by_port([port])[port]
    assert stats.sockets == 1
    assert stats.drops > 100, stats  # 200 sent, a few fit
    assert stats.rcvbuf == rx.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    assert stats.rx_queue > 0
    # The same count as /proc/net/udp's drops column, the fallback.
    proc = parse_proc_udp(Path("/proc/net/udp").read_text())
    assert [s.drops for s in proc if s.port == port] == [stats.drops]


def test_only_the_listen_ports_asked_for_are_returned(
    overflowing: tuple[socket.socket, int],
) -> None:
    _rx, port = overflowing
    assert UdpSockets().by_port([]) == {}
    assert UdpSockets().by_port([0]) == {}
    assert port not in UdpSockets().by_port([port + 1 if port < 65535 else port - 1])
    assert all(s.port >= 0 for s in diag_sockets())


def test_a_fake_tree_is_read_from_its_proc_files(tmp_path: Path) -> None:
    net = tmp_path / "proc/net"
    net.mkdir(parents=True)
    (net / "udp").write_text(PROC_UDP)
    (net / "udp6").write_text(PROC_UDP6)
    stats = UdpSockets(HostPaths.under(tmp_path)).by_port([0xCA6C, 53, 9])
    # Both families of port 51820 summed; no buffer sizes from /proc.
    assert stats[0xCA6C].sockets == 2 and stats[0xCA6C].drops == 20
    assert stats[0xCA6C].rx_queue == 0xA00 and stats[0xCA6C].rcvbuf is None
    assert stats[53].drops == 0 and 9 not in stats


def test_a_failing_sock_diag_falls_back_to_proc(tmp_path: Path) -> None:
    (tmp_path / "proc/net").mkdir(parents=True)
    (tmp_path / "proc/net/udp").write_text(PROC_UDP)

    def broken() -> list[UdpSocket]:
        raise OSError("inet_diag not loaded")

    assert UdpSockets(HostPaths.under(tmp_path), diag=broken).by_port([0xCA6C])[0xCA6C].drops == 17


@pytest.mark.parametrize(
    "value",
    [None, "", "zz:zz", "00:01", b"\x00" * 8, 12345, "00:" * 35 + "00:"],
)
def test_hostile_skmeminfo_is_ignored_not_raised(value: object) -> None:
    assert parse_skmeminfo(value) is None or len(parse_skmeminfo(value) or ()) == 9


def test_hostile_proc_lines_are_skipped() -> None:
    text = "header\n" + "\n".join(
        ["1: x:y 0 07 a:b", "2: 0:ZZZZ 0 07 0:0 00 0:0 0 0 0 0 2 0 notanumber", "\x00" * 500]
    )
    assert parse_proc_udp(text) == []


def test_sums_add_drops_and_keep_the_largest_buffer() -> None:
    socks = [UdpSocket(1, 2, 3, 100, 50), UdpSocket(1, 5, 0, 300, None)]
    got = summed(socks)
    assert (got.sockets, got.drops, got.rx_queue, got.rcvbuf, got.sndbuf) == (2, 7, 3, 300, 50)
