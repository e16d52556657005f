"""sd_notify over a real datagram socket, and the systemd unit's hardening score."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tuner.engine import sdnotify


def test_sd_notify_sends_datagrams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert sdnotify.notify("READY=1")
        assert sdnotify.notify("WATCHDOG=1")
        assert server.recv(100) == b"READY=1"
        assert server.recv(100) == b"WATCHDOG=1"


def test_sd_notify_is_silent_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False


def test_unit_file_scores_3_or_better_and_keeps_what_the_daemon_needs() -> None:
    unit = REPO / "systemd" / "wg-tuner.service"
    text = unit.read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text and "Restart=on-failure" in text
    assert "ProtectKernelTunables=no" in text  # sysctl writes need /proc/sys writable
    assert re.search(r"CapabilityBoundingSet=.*CAP_NET_ADMIN.*CAP_NET_RAW", text)
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze (package systemd) is required; make test installs it"
    out = subprocess.run(
        [tool, "security", "--offline=true", str(unit)], capture_output=True, text=True, check=False
    ).stdout
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    assert score <= 2.8, out[-500:]
    documented = (REPO / "docs" / "operations.md").read_text()
    claimed = re.search(r"scores it \*\*([0-9.]+) \(OK\)\*\*", documented)
    assert claimed and float(claimed.group(1)) == score, "docs/operations.md must say the score"
    # What a local user or a crash could use: no core file, bounded memory and files,
    # the config sockets read-only, only the metrics port bindable.
    for line in ("LimitCORE=0", "LimitNOFILE=", "MemoryMax=", "SocketBindDeny=any"):
        assert line in text
    assert "/run/wireguard" not in text.split("ReadWritePaths=")[1].splitlines()[0]
