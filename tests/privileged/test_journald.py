"""wireguard-go's lines in a real systemd journal file, read by the real journalctl from
a cursor: classified, counted once, never re-read, nothing but kind and device kept.

The journal file is written by Debian's systemd-journal-remote from journald's export
format (this machine runs no journald); the entries carry the fields journald gives a
unit's stdout line (``_COMM``, ``_SYSTEMD_UNIT``, this boot's ``_BOOT_ID``)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tuner.adapters.journald import Journald
from tuner.observe.logs import LogWatch

REMOTE = Path("/lib/systemd/systemd-journal-remote")
PREFIX = "DEBUG: (wgj0) 2026/12/02 15:00:00 peer(AbCd…WxYz) - "
SEND_FAILED = (
    "ERROR: (wgj0) 2026/12/02 15:00:01 peer(AbCd…WxYz) - Failed to send handshake "
    "initiation: write udp [::]:51820->192.0.2.9:51820: sendto: network is unreachable"
)
KEYISH = "cGVlci1wcml2YXRlLWtleS1sb29raW5nLXN0cmluZz0="


Entry = tuple[str, str | bytes] | tuple[str, str | bytes, int]


def export(*entries: Entry) -> bytes:
    """journald's export format: one entry per (comm, message[, uid: root's unless
    given]); a bytes message is sent as a binary field, as journald stores a line that
    is not text."""
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
    out = b""
    for comm, message, *rest in entries:
        uid = rest[0] if rest else 0
        mono = int(time.monotonic() * 1e6)
        real = int(time.time() * 1e6)
        out += (
            f"__REALTIME_TIMESTAMP={real}\n__MONOTONIC_TIMESTAMP={mono}\n_BOOT_ID={boot}\n"
            f"_COMM={comm}\n_UID={uid}\n_SYSTEMD_UNIT=wg-quick@wgj0.service\nPRIORITY=6\n"
            "_HOSTNAME=h\n"
        ).encode()
        if isinstance(message, bytes):
            out += b"MESSAGE\n" + len(message).to_bytes(8, "little") + message + b"\n"
        else:
            out += f"MESSAGE={message}\n".encode()
        out += b"\n"
    return out


def append(journal: Path, *entries: Entry) -> None:
    subprocess.run(
        [str(REMOTE), f"--output={journal}", "-"], input=export(*entries), check=True,
        capture_output=True,
    )  # fmt: skip


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    assert REMOTE.exists(), "systemd-journal-remote (Debian) is required; make test installs it"
    assert shutil.which("journalctl"), "journalctl (systemd) is required"
    return tmp_path / "remote.journal"


def test_wireguard_go_lines_are_counted_once_from_a_cursor(journal: Path) -> None:
    append(
        journal,
        ("wireguard-go", PREFIX + "Handshake did not complete after 5 seconds, retrying (try 2)"),
        ("wireguard-go", PREFIX + "Handshake did not complete after 5 seconds, retrying (try 3)"),
        ("wireguard-go", SEND_FAILED),
        ("wireguard-go", "ERROR: (wgj0) 2026/12/02 15:00:02 UAPI listen error: " + KEYISH),
        ("sshd", PREFIX + "Handshake did not complete after 5 seconds"),  # not wireguard-go
        ("wireguard-go", b"ERROR: (wgj0) \xff\xfe\x00 binary " + b"A" * 500),
        ("wireguard-go", b"ERROR: (wgj0) long " + b"A" * 5000),  # null in journalctl's JSON
    )
    reader = Journald(files=[journal], min_interval=0)
    watch = LogWatch(reader)
    events, counts = watch.poll(time.monotonic())
    assert counts == {"handshake_retry": 2, "send_error": 1, "userspace_error": 2}, counts
    assert len(events) == 5
    assert {e.device for e in events} == {"wgj0"}
    assert KEYISH not in repr(events) and "binary" not in repr(events)
    assert reader.cursor is not None
    # Nothing new: nothing counted again.
    assert watch.poll(time.monotonic())[1] == counts
    append(journal, ("wireguard-go", PREFIX + "Handshake did not complete after 5 seconds"))
    _, later = watch.poll(time.monotonic())
    assert later["handshake_retry"] == 3 and sum(later.values()) == 6, later  # the new one


def test_the_first_read_looks_back_only_so_far(journal: Path) -> None:
    append(journal, ("wireguard-go", PREFIX + "Handshake did not complete after 5 seconds"))
    time.sleep(2.2)
    assert Journald(files=[journal], lookback=1, min_interval=0).read() == []
    assert len(Journald(files=[journal], lookback=60, min_interval=0).read()) == 1


def test_no_journal_spawns_nothing_and_a_missing_journalctl_is_unavailable(
    tmp_path: Path,
) -> None:
    reader = Journald(journal_dirs=[tmp_path / "none"], binary="/nonexistent/journalctl")
    assert reader.read() == [] and reader.available  # no journal here: nothing to read
    missing = Journald(files=[tmp_path / "x.journal"], binary="/nonexistent/journalctl")
    assert missing.read() == [] and not missing.available


def test_journalctl_runs_at_most_once_per_interval(journal: Path) -> None:
    append(journal, ("wireguard-go", PREFIX + "Handshake did not complete after 5 seconds"))
    clock = [100.0]
    reader = Journald(files=[journal], min_interval=5, monotonic=lambda: clock[0])
    assert len(reader.read()) == 1
    append(journal, ("wireguard-go", PREFIX + "Handshake did not complete after 5 seconds"))
    clock[0] += 2
    assert reader.read() == []  # too soon: nothing spawned, nothing lost
    clock[0] += 4
    assert len(reader.read()) == 1


def test_a_journalctl_that_hangs_or_fails_is_stopped_and_said(tmp_path: Path) -> None:
    hangs, fails = tmp_path / "hangs", tmp_path / "fails"
    hangs.write_text("#!/bin/sh\nexec sleep 30\n")
    fails.write_text("#!/bin/sh\necho 'Failed to open journal' >&2\nexit 3\n")
    for script in (hangs, fails):
        script.chmod(0o755)
    journal = [tmp_path / "x.journal"]
    slow = Journald(files=journal, binary=str(hangs), timeout=1, min_interval=0)
    began = time.monotonic()
    assert slow.read() == []
    assert time.monotonic() - began < 10 and slow.failure == "no answer in 1 s"
    broken = Journald(files=journal, binary=str(fails), min_interval=0)
    assert broken.read() == [] and broken.failure == "exit status 3" and broken.available


def test_forged_wireguard_go_lines_of_another_user_and_kernel_text_count_for_nothing(
    journal: Path,
) -> None:
    """Any user may name a process wireguard-go; its lines (uid nobody) are not read,
    and root's wireguard-go is never taken for the kernel, whatever its text says."""
    append(
        journal,
        ("wireguard-go", PREFIX + "Handshake did not complete after 5 seconds", 65534),
        ("wireguard-go", "nf_conntrack: table full, dropping packet", 65534),
        ("wireguard-go", "e1000e 0000:00:19.0 eth0: NIC Link is Down", 65534),
        ("wireguard-go", "nf_conntrack: table full, dropping packet"),  # root's, kernel text
        ("wireguard-go", "eth0: carrier lost"),
    )
    watch = LogWatch(Journald(files=[journal], min_interval=0))
    events, counts = watch.poll(time.monotonic())
    assert counts == {} and events == ()
