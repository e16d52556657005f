"""``persist: true`` persists: a verified MTU fix is written into the interface's wg-quick
file, and an interface re-created from that file comes back with it.

The lab's host a gets a wg-quick file of its own interface (its configuration from
``wg showconf``, ``MTU = 1420``) under a root of the test's (``--config-root``), the
shipped policies with ``persist: true`` on mtu-blackhole, and a 1400-byte blackhole.
``apply`` fixes and verifies the MTU and writes it through; the interface is then torn
down and re-created, and configured from the file as wg-quick does (``wg-quick strip``
for the WireGuard part, the ``MTU =`` line for the link): the fix is there. ``rollback``
puts the file's line back.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO, cli
from tests.lab.test_lab_apply import FAST, blackhole, mtu
from tests.reliability import FigureFn
from tuner.lab.lab import Lab

__all__ = ["blackhole"]  # the fixture, shared with test_lab_apply


def _wg_quick_file(lab: Lab, root: Path) -> Path:
    a = lab.topo.a
    conf = subprocess.run(
        ["ip", "netns", "exec", a.netns, "wg", "showconf", a.wg],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    conf = conf.replace("[Interface]\n", "[Interface]\nMTU = 1420\n", 1)
    directory = root / "etc" / "wireguard"
    directory.mkdir(parents=True, mode=0o700)
    path = directory / f"{a.wg}.conf"
    path.touch(mode=0o600)
    path.write_text(conf)
    return path


def _policies(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    shutil.copytree(REPO / "policies", directory)
    target = directory / "mtu-blackhole.yaml"
    text = target.read_text()
    assert "    kind: mtu\n" in text
    target.write_text(text.replace("    kind: mtu\n", "    kind: mtu\n    persist: true\n", 1))
    return directory


def _from_file(lab: Lab, path: Path) -> None:
    """Configure a's interface from its wg-quick file, as ``wg-quick up`` does."""
    a = lab.topo.a
    stripped = subprocess.run(
        ["wg-quick", "strip", str(path)], capture_output=True, text=True, check=True
    ).stdout
    subprocess.run(
        ["ip", "netns", "exec", a.netns, "wg", "syncconf", a.wg, "/dev/stdin"],
        input=stripped,
        text=True,
        check=True,
    )
    (line,) = [x for x in path.read_text().splitlines() if x.replace(" ", "").startswith("MTU=")]
    value = line.split("=", 1)[1].strip()
    subprocess.run(["ip", "-n", a.netns, "link", "set", a.wg, "mtu", value], check=True)


def test_a_persisted_fix_survives_the_interface_being_recreated_from_its_file(
    blackhole: Lab, tmp_path: Path, figure: FigureFn
) -> None:
    lab = blackhole
    root = tmp_path / "root"
    conf = _wg_quick_file(lab, root)
    policies = _policies(tmp_path)
    state = tmp_path / "state"
    common = ["--state-dir", str(state), "--config-root", str(root), "--policies", str(policies)]
    done = cli(["apply", "--format", "json", *common, *FAST], netns=lab.topo.a.netns, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    fixed = mtu(lab)
    assert fixed < 1420
    assert f"MTU = {fixed}\n" in conf.read_text()
    assert (conf.parent / f"{conf.name}.wg-tuner.bak").read_text().count("MTU = 1420") == 1
    assert (conf.stat().st_mode & 0o777) == 0o600  # the file holds the private key

    lab.restart("a")  # the interface gone and made again: the kernel's MTU is lost
    assert mtu(lab) != fixed
    _from_file(lab, conf)
    assert mtu(lab) == fixed, "the persisted MTU came back with the interface"
    figure("Remediation", "persisted MTU after the interface was re-created from its file", fixed)

    undo = cli(["rollback", "--all", *common], netns=lab.topo.a.netns, timeout=120)
    assert undo.returncode == 0, undo.stderr[-2000:]
    assert "MTU = 1420\n" in conf.read_text() and f"MTU = {fixed}" not in conf.read_text()
