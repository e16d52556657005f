"""The kernel log: /dev/kmsg records parsed and classified, read once from a cursor,
bounded, and hostile lines never breaking parsing or reaching output."""

from __future__ import annotations

import itertools

import pytest

from tuner.adapters.kmsg import TEXT_MAX, Kmsg, KmsgRecord, parse_record
from tuner.observe.logs import RECENT, RECENT_MAX, LogWatch, classify

LINES = {
    "nf_conntrack: nf_conntrack: table full, dropping packet": ("conntrack_full", ""),
    "e1000e 0000:00:19.0 eth0: NIC Link is Down": ("link_down", "eth0"),
    "igb 0000:01:00.0 enp1s0: igb: enp1s0 NIC Link is Up 1000 Mbps Full Duplex": (
        "link_up",
        "enp1s0",
    ),
    "IPv6: ADDRCONF(NETDEV_CHANGE): veth0: link becomes ready": ("link_up", "veth0"),
    "virtio_net virtio0 ens3: carrier lost": ("link_down", "ens3"),
    "wgt-drop: IN=eth0 OUT= MAC=52:54:00 SRC=192.0.2.9 DST=192.0.2.1 LEN=60 PROTO=UDP": (
        "netfilter_log",
        "",
    ),
    "wireguard: wg0: Handshake for peer 3 (192.0.2.2:51820) did not complete": (
        "wireguard",
        "wg0",
    ),
}


@pytest.mark.parametrize(("text", "expected"), LINES.items())
def test_lines_are_classified_with_their_device(text: str, expected: tuple[str, str]) -> None:
    assert classify(text) == expected


def test_unrelated_lines_are_not_kept() -> None:
    for text in ("EXT4-fs (vda): mounted filesystem", "random: crng reseeded", ""):
        assert classify(text) is None


def test_a_record_parses_with_its_sequence_and_monotonic_time() -> None:
    rec = parse_record(b"4,1234,5678901,-;eth0: NIC Link is Down\n SUBSYSTEM=net\n")
    assert rec == KmsgRecord(1234, 5.678901, 4, "eth0: NIC Link is Down")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"no semicolon",
        b"a,b,c;text",
        b"6,1;short head",
        b"\xff\xfe\x00;\x00\x01",
        b"6,2,3,-;" + b"\x00\x1b[31m\xff" * 3000,
    ],
)
def test_hostile_records_never_raise(raw: bytes) -> None:
    rec = parse_record(raw)
    assert rec is None or (len(rec.text) <= TEXT_MAX and rec.text.isprintable())


def test_a_hostile_line_leaves_only_its_kind() -> None:
    key = "CZZ9R+7zfotIs5Bje0Xl7cqdsJb9IDO6OgKiGoXCTD8="
    watch = LogWatch(Kmsg("/nonexistent"))
    hostile = f"eth0: NIC Link is Down \x1b[2J private_key={key} " + "A" * 10_000
    watch.feed([parse_record(f"3,9,1000000,-;{hostile}".encode()) or KmsgRecord(0, 0, 0, "")])
    (event,) = watch.recent
    assert (event.kind, event.device) == ("link_down", "eth0")
    assert key not in repr(event) and "\x1b" not in repr(event)


def test_events_are_bounded_and_age_out() -> None:
    watch = LogWatch(Kmsg("/nonexistent"))
    line = "nf_conntrack: table full, dropping packet"
    watch.feed(KmsgRecord(n, float(n) / 1000, 4, line) for n in range(RECENT_MAX * 3))
    assert len(watch.recent) == RECENT_MAX and watch.counts["conntrack_full"] == RECENT_MAX * 3
    events, counts = watch.poll(now=RECENT + 1000.0)
    assert events == () and counts["conntrack_full"] == RECENT_MAX * 3
    assert not watch.available  # /nonexistent: no kernel log, and it says so


def test_the_live_kernel_log_is_read_once_from_its_cursor() -> None:
    everything = Kmsg(lookback=1e12)
    first = everything.read()
    assert first and all(a.seq < b.seq for a, b in itertools.pairwise(first))
    again = everything.read()
    assert all(rec.seq > first[-1].seq for rec in again)  # nothing read twice
    everything.close()
    # A fresh start skips what is older than its lookback: nothing from a minute ago.
    recent = Kmsg(lookback=0.0).read()
    assert all(rec.seq > first[-1].seq or rec.monotonic > first[-1].monotonic for rec in recent)
