"""One atomic file writer, safe in a directory that someone else can write.

Used for every file wg-tuner rewrites (probe memory, offload memory, lab records, the
metrics textfile, persisted sysctl.d and wg-quick files and their backups): a reader
sees the old file or the new one, never half of either, and a crash leaves no partial
file behind.

Every step after opening the directory goes through file descriptors, never a path
that could be swapped underneath: the directory is opened ``O_DIRECTORY|O_NOFOLLOW``,
the temp file is created in it ``O_EXCL|O_NOFOLLOW``, its mode is set with ``fchmod``
on that descriptor and the rename names both ends relative to the directory's
descriptor. So a user who can write the directory (a textfile directory owned by the
exporter's user) can at most rename or replace names in their own directory; they can
never make root chmod, truncate or write a file elsewhere (the class of systemd-tmpfiles'
CVE-2018-6954).

A directory that another user could write is refused for wg-tuner's own state
(``Strict.REFUSE``) and warned about once for the textfile (``Strict.WARN``), as sshd's
StrictModes does: the write itself is safe either way, but that user could replace
what node_exporter reads.
"""

from __future__ import annotations

import contextlib
import enum
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import structlog

log = structlog.get_logger("tuner.files")

_warned: set[str] = set()


class UnsafeDirectory(PermissionError):
    """A directory that a user other than root (or wg-tuner's own user) could write."""


class Strict(enum.Enum):
    """What a directory writable by another user means for a write into it."""

    REFUSE = "refuse"
    WARN = "warn"
    ALLOW = "allow"


def directory_problem(info: os.stat_result) -> str | None:
    """Why a directory with this ``fstat`` is not trusted, or None: owned by root or by
    us, and not writable by group or others (a sticky world-writable /tmp is not enough:
    its other users can still pre-create names)."""
    if info.st_uid not in (0, os.geteuid()):
        return f"owned by uid {info.st_uid}"
    if info.st_mode & 0o022:
        who = "group" if info.st_mode & 0o020 else "others"
        return f"writable by {who} (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def _mkdirs(path: Path, dir_mode: int) -> None:
    """Create missing directories of ``path`` with ``dir_mode`` (set through the new
    directory's descriptor: mkdir's mode is masked by the umask)."""
    missing: list[Path] = []
    at = path
    while not at.exists() and at != at.parent:
        missing.append(at)
        at = at.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, dir_mode)
        except FileExistsError:
            continue
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchmod(fd, dir_mode)
        finally:
            os.close(fd)


def open_directory(path: Path, *, dir_mode: int = 0o700, strict: Strict = Strict.REFUSE) -> int:
    """A descriptor of directory ``path`` (created with ``dir_mode`` when missing), never
    through a symlink at its last component; refused or warned about per ``strict``."""
    if not path.is_dir():
        _mkdirs(path, dir_mode)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    if strict is Strict.ALLOW:
        return fd
    problem = directory_problem(os.fstat(fd))
    if problem is None:
        return fd
    if strict is Strict.REFUSE:
        os.close(fd)
        raise UnsafeDirectory(
            f"{path}: {problem}; refusing to write there "
            f"(fix: chown root {path} && chmod go-w {path})"
        )
    if str(path) not in _warned:
        _warned.add(str(path))
        log.warning(
            "directory_writable_by_others",
            path=str(path),
            problem=problem,
            fix=f"chown root {path} && chmod go-w {path}, or point the textfile elsewhere",
        )
    return fd


@contextlib.contextmanager
def atomic_writer(
    path: Path,
    mode: int = 0o600,
    *,
    keep_mode: bool = False,
    dir_mode: int = 0o700,
    strict: Strict = Strict.REFUSE,
) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` when the block ends (fsynced, renamed; mode
    ``mode``, or the old file's when ``keep_mode``), and is removed if it raises.
    Missing parent directories get ``dir_mode``; see the module for ``strict``."""
    dirfd = open_directory(path.parent, dir_mode=dir_mode, strict=strict)
    try:
        if keep_mode:
            with contextlib.suppress(FileNotFoundError):
                old = os.stat(path.name, dir_fd=dirfd, follow_symlinks=False)
                if stat.S_ISREG(old.st_mode):
                    mode = stat.S_IMODE(old.st_mode)
        tmp = f".{path.name}.{secrets.token_hex(4)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600, dir_fd=dirfd)
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh
                fh.flush()
                os.fchmod(fh.fileno(), mode)
                os.fsync(fh.fileno())
            os.replace(tmp, path.name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dirfd)
            raise
        with contextlib.suppress(OSError):
            os.fsync(dirfd)  # the rename itself survives a crash
    finally:
        os.close(dirfd)


def write_atomic(
    path: Path,
    text: str | bytes,
    mode: int = 0o600,
    *,
    keep_mode: bool = False,
    dir_mode: int = 0o700,
    strict: Strict = Strict.REFUSE,
) -> None:
    """Replace ``path`` with ``text`` (see ``atomic_writer``)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    with atomic_writer(path, mode, keep_mode=keep_mode, dir_mode=dir_mode, strict=strict) as fh:
        fh.write(data)
