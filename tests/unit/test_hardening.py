"""The daemon's process cannot dump core or be ptraced by its own uid."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import resource
from tuner.hardening import dumpable, no_core_dumps
before = dumpable()
no_core_dumps()
print(before, dumpable(), resource.getrlimit(resource.RLIMIT_CORE))
"""


def test_no_core_dumps_clears_dumpable_and_the_core_limit() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout
    assert out.split(None, 2) == ["True", "False", "(0, 0)\n"]
