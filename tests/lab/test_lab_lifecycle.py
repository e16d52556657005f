"""`lab up` / `lab down` through the CLI: exactly what was made is removed, twice is safe."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import cli, unique


def netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def test_up_down_removes_exactly_what_it_made(tmp_path: Path) -> None:
    prefix = unique("u")
    state = ["--state-dir", str(tmp_path), "--prefix", prefix]
    bystander = f"{prefix}-x"  # same prefix, not made by the lab: must survive
    subprocess.run(["ip", "netns", "add", bystander], check=True)
    try:
        before = netns_list()
        up = cli(["lab", "up", *state], timeout=120)
        assert up.returncode == 0, up.stderr
        try:
            record = json.loads((tmp_path / "lab" / f"{prefix}.json").read_text())
            assert oct((tmp_path / "lab" / f"{prefix}.json").stat().st_mode & 0o777) == "0o600"
            made = set(record["namespaces"])
            assert made == {f"{prefix}-a", f"{prefix}-r", f"{prefix}-b"}
            assert netns_list() - before == made
            pids = [p["pid"] for p in record["processes"]]
            assert all(Path(f"/proc/{pid}").exists() for pid in pids)
            status = cli(["lab", "status", "--format", "json", *state], check=True)
            data = json.loads(status.stdout)
            assert all(p["alive"] for p in data["processes"])
            again = cli(["lab", "up", *state])
            assert again.returncode == 1 and "already up" in again.stderr
        finally:
            down = cli(["lab", "down", *state], check=True)
        assert "removed" in down.stdout
        assert netns_list() == before
        for pid in pids:
            stat = Path(f"/proc/{pid}/stat")
            assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
        assert not Path(f"/var/run/wireguard/{prefix}-wga.sock").exists()
        second = cli(["lab", "down", *state], check=True)
        assert "not up" in second.stdout
        assert bystander in netns_list()
    finally:
        subprocess.run(["ip", "netns", "del", bystander], check=False)


def test_up_refuses_names_it_does_not_own(tmp_path: Path) -> None:
    prefix = unique("c")
    subprocess.run(["ip", "netns", "add", f"{prefix}-r"], check=True)
    try:
        proc = cli(["lab", "up", "--prefix", prefix, "--state-dir", str(tmp_path)])
        assert proc.returncode == 1
        assert "not ours" in proc.stderr
        assert f"{prefix}-a" not in netns_list()
    finally:
        subprocess.run(["ip", "netns", "del", f"{prefix}-r"], check=False)
    assert os.listdir(tmp_path) in ([], ["lab"])
