"""The VM harness waits for a run that progresses and ends one that stalls, with the
guest's console in the error; its limits scale with how busy the machine is."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuner.errors import LabError
from tuner.lab.vm import Vm, load_factor

pytestmark = pytest.mark.timing


_STARTED: list[tuple[subprocess.Popen[str], threading.Thread]] = []


def _start(script: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        ["sh", "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout or ()), daemon=True)
    reader.start()
    _STARTED.append((proc, reader))
    return proc, output


@pytest.fixture(autouse=True)
def _reaped() -> Iterator[None]:
    yield
    while _STARTED:
        proc, reader = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_slow_run_that_keeps_progressing_is_waited_for(tmp_path: Path) -> None:
    # Seven seconds, far past the 3 s stall, but a line every half second.
    proc, output = _start(
        f"for i in $(seq 14); do echo check $i >> {tmp_path}/stderr; sleep 0.5; done"
    )
    vm = Vm(timeout=60, stall=3)
    vm._wait(proc, tmp_path, output, 1.0, time.monotonic())
    assert proc.returncode == 0


def test_a_hung_run_is_killed_with_its_console_in_the_error(tmp_path: Path) -> None:
    proc, output = _start("echo 'Booting the kernel'; echo '[    0.1] init: waiting'; sleep 600")
    (tmp_path / "stderr").write_text("check lab_up: started\n")
    vm = Vm(timeout=600, stall=2)
    began = time.monotonic()
    with pytest.raises(LabError, match="made no progress for 2 s") as failed:
        vm._wait(proc, tmp_path, output, 1.0, began)
    assert proc.poll() is not None  # killed, with its whole group
    assert "init: waiting" in str(failed.value) and "check lab_up: started" in str(failed.value)
    assert time.monotonic() - began < 60


def test_the_cap_scales_with_the_load_factor(tmp_path: Path) -> None:
    proc, output = _start(f"while true; do echo x >> {tmp_path}/stderr; sleep 0.2; done")
    vm = Vm(timeout=1, stall=60)
    with pytest.raises(LabError, match=r"did not finish in 2 s \(load factor 2.0\)"):
        vm._wait(proc, tmp_path, output, 2.0, time.monotonic())


def test_the_load_factor_is_at_least_one_and_at_most_four() -> None:
    assert 1.0 <= load_factor(2, sample=0.2) <= 4.0
