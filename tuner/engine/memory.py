"""Giving the heap back to the system between daemon cycles.

A cycle at 50,000 peers reads a 17 MB reply and builds its peers, then drops most of
it. glibc keeps the freed pages in its arenas, so the daemon's resident memory stays at
the cycle's peak (172 MB at 50,000 peers) although it uses far less between cycles.
``malloc_trim(0)`` returns them (116 MB, docs/benchmarks.md). Elsewhere (musl, macOS)
this is a no-op.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
try:
    _trim = ctypes.CDLL(None).malloc_trim
except (AttributeError, OSError):  # not glibc
    _trim = None


def release() -> bool:
    """Return freed heap pages to the system; False where the C library cannot."""
    if _trim is None:
        return False
    _trim(0)
    return True
