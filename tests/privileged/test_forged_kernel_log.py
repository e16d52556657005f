"""Kernel log lines a local user can shape count for nothing.

A process's name is its own to choose (15 characters), and the kernel quotes it in
lines such as ``COMM[PID]: segfault at ...``. Named ``eth0 link down`` and made to
crash, an unprivileged process put what read as a link flap into the kernel log, and
that false underlay-flapping finding held a real MTU fix. wg-tuner now takes a kernel
line for its kind only where the kernel itself speaks: not a line that starts by naming
a process, not text inside a quoted name, not a record a process wrote to /dev/kmsg.
"""

from __future__ import annotations

import subprocess
import time

from tests.conftest import require_privileges
from tuner.adapters.kmsg import KERNEL_KINDS, Kmsg, parse_record
from tuner.observe.logs import LogWatch

NOBODY = 65534
CRASH = r"""
import ctypes, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)  # PR_SET_NAME
ctypes.string_at(0)
"""
NAMES = ("eth0 link down", "e: Link is Down", "wireguard: wg0:", "nf_conntrack: t")


def test_process_names_in_kernel_lines_are_not_the_kernels_word() -> None:
    require_privileges()
    reader = Kmsg(lookback=0.0)
    reader.read()  # from now on
    for name in NAMES:
        subprocess.run(
            [
                *("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"),
                *("/usr/bin/python3", "-c", CRASH, name),
            ],
            capture_output=True,
            check=False,
            cwd="/",
        )
    deadline = time.monotonic() + 10
    records = []
    while time.monotonic() < deadline:
        records += reader.read()
        if any("eth0 link down[" in r.text for r in records):
            break
        time.sleep(0.2)
    reader.close()
    forged = [r for r in records if any(r.text.startswith(n + "[") for n in NAMES)]
    assert forged, "the kernel printed none of the crashes (debug.exception-trace off?)"
    watch = LogWatch(reader)
    watch.feed(forged, KERNEL_KINDS)
    assert list(watch.recent) == [], watch.recent


def test_a_record_a_process_wrote_to_dev_kmsg_is_not_the_kernels() -> None:
    assert parse_record(b"14,900,1000,-;e1000e 0000:00:19.0 eth0: NIC Link is Down") is None
    kernel = parse_record(b"6,901,1000,-;e1000e 0000:00:19.0 eth0: NIC Link is Down")
    assert kernel is not None and kernel.text.endswith("Link is Down")


def test_a_quoted_process_name_is_not_a_driver_line() -> None:
    watch = LogWatch(Kmsg("/nonexistent"))
    oom = "Out of memory: Killed process 4242 (eth0 link down) total-vm:1000kB"
    record = parse_record(f"3,902,1000,-;{oom}".encode())
    assert record is not None
    watch.feed([record], KERNEL_KINDS)
    assert list(watch.recent) == []
