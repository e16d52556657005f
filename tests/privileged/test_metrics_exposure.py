"""What node_exporter and a second exporter meet on day one: a textfile it can read
under the unit's UMask=0077, and a taken metrics port that fails once, clearly."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge

from tests.conftest import cli
from tuner.exit_codes import PORT_BUSY
from tuner.exporters.metrics import write_registry_textfile
from tuner.exporters.serve import Rendered


def _daemon(registry: CollectorRegistry, target: Path) -> None:
    Rendered().update(registry, target)


@pytest.mark.parametrize("write", [write_registry_textfile, _daemon], ids=["metrics", "run"])
def test_the_textfile_is_world_readable_whatever_the_umask(
    tmp_path: Path, write: Callable[[CollectorRegistry, Path], None]
) -> None:
    registry = CollectorRegistry()
    Gauge("wg_tuner_test", "a test gauge", registry=registry).set(1)
    target = tmp_path / "node-exporter" / "wg_tuner.prom"
    old = os.umask(0o077)  # the shipped unit's UMask
    try:
        write(registry, target)
        write(registry, target)  # a second cycle replaces it
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o755
    assert "wg_tuner_test 1.0" in target.read_text()
    assert [p.name for p in target.parent.iterdir()] == ["wg_tuner.prom"]  # no temp left


def test_a_taken_metrics_port_is_one_line_and_its_own_exit_code(netns: str, tmp_path: Path) -> None:
    holder = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c",
         "import socket,time\n"
         "s=socket.socket(); s.bind(('127.0.0.1', 10586)); s.listen(); print('up', flush=True)\n"
         "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "up"
        began = time.monotonic()
        proc = cli(
            ["run", "--mode", "observe", "--state-dir", str(tmp_path), "--interval", "1"],
            netns=netns,
            timeout=60,
        )  # the default address: as a second exporter would find it
    finally:
        holder.kill()
        holder.communicate()
    assert proc.returncode == PORT_BUSY == 69, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("wg-tuner: error:")]
    assert len(lines) == 1 and "127.0.0.1:10586" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - began < 30
