"""One atomic file writer: temp file in the same directory, fsync, rename, mode kept.

Used for every file wg-tuner rewrites (probe memory, lab records, persisted sysctl.d and
wg-quick files): a reader sees the old file or the new one, never half of either, and a
crash leaves no partial file behind. The temp file is never followed through a symlink.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(
    path: Path, text: str, mode: int = 0o600, *, keep_mode: bool = False, dir_mode: int = 0o700
) -> None:
    """Replace ``path`` with ``text``; ``mode`` for the new file, or the old file's mode
    when ``keep_mode`` and it exists. Missing parent directories get ``dir_mode``."""
    if keep_mode and path.exists():
        mode = path.stat().st_mode & 0o7777
    if not path.parent.is_dir():
        path.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
        os.chmod(path.parent, dir_mode)  # mkdir's mode is masked by the umask
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
