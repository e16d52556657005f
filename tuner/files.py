"""One atomic file writer: temp file in the same directory, fsync, rename, mode kept.

Used for every file wg-tuner rewrites (probe memory, lab records, persisted sysctl.d and
wg-quick files): a reader sees the old file or the new one, never half of either, and a
crash leaves no partial file behind. The temp file is never followed through a symlink.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_writer(
    path: Path, mode: int = 0o600, *, keep_mode: bool = False, dir_mode: int = 0o700
) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` when the block ends (fsynced, renamed; mode
    ``mode``, or the old file's when ``keep_mode``), and is removed if it raises.
    Missing parent directories get ``dir_mode``."""
    if keep_mode and path.exists():
        mode = path.stat().st_mode & 0o7777
    if not path.parent.is_dir():
        path.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
        os.chmod(path.parent, dir_mode)  # mkdir's mode is masked by the umask
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(
    path: Path, text: str, mode: int = 0o600, *, keep_mode: bool = False, dir_mode: int = 0o700
) -> None:
    """Replace ``path`` with ``text`` (see ``atomic_writer``)."""
    with atomic_writer(path, mode, keep_mode=keep_mode, dir_mode=dir_mode) as fh:
        fh.write(text.encode("utf-8"))
