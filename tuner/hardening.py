"""The daemon keeps what it reads to itself: no core dump, no ptrace by its own uid.

wg-tuner reads each userspace interface's private key on every ``get=1`` (to derive
the public key) and drops it at once, but the bytes may linger in the heap until
reused. A core dump (a watchdog SIGABRT writes one) would put them on disk.
``PR_SET_DUMPABLE`` 0 stops core dumps and ptrace attachment by anyone without
CAP_SYS_PTRACE; ``RLIMIT_CORE`` 0 says the same to anything that reads the limits (the
unit also sets ``LimitCORE=0``).
"""

from __future__ import annotations

import ctypes
import resource

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def _prctl(option: int, arg: int = 0) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    result: int = libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0)
    return result


def no_core_dumps() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if _prctl(PR_SET_DUMPABLE, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def dumpable() -> bool:
    return _prctl(PR_GET_DUMPABLE) == 1
