"""The atomic writer against a local user who can write the directory it writes into.

An unprivileged process (uid nobody) owns the textfile directory, as the exporter's user
does on many installs, and swaps every temp file it sees for a symlink to a root-only
file, in a loop. A writer that sets the mode or writes by path follows the symlink and
changes the root-only file; the fd-based writer never does.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_privileges
from tests.reliability import FigureFn
from tuner.files import Strict, UnsafeDirectory, write_atomic

NOBODY = 65534

RACER = r"""
import os, sys
directory, victim = sys.argv[1], sys.argv[2]
print("ready", flush=True)
while True:
    try:
        names = os.listdir(directory)
    except OSError:
        continue
    for name in names:
        if name.endswith(".tmp"):
            path = os.path.join(directory, name)
            try:
                os.unlink(path)
                os.symlink(victim, path)
            except OSError:
                pass
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A world-traversable base holding a root-only victim and a directory nobody owns."""
    require_privileges()
    base = Path(tempfile.mkdtemp(prefix="wgt-race-"))
    try:
        os.chmod(base, 0o755)  # noqa: S103 - nobody must reach its own directory
        yield base
    finally:
        shutil.rmtree(base)


def test_a_racer_swapping_temp_files_for_symlinks_never_changes_a_file_outside(
    shared_dir: Path, figure: FigureFn
) -> None:
    victim = shared_dir / "victim"
    victim.write_text("root only\n")
    os.chmod(victim, 0o600)
    textdir = shared_dir / "textfile"
    textdir.mkdir(mode=0o755)
    os.chown(textdir, NOBODY, NOBODY)
    racer = subprocess.Popen(
        [
            *("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"),
            *("/usr/bin/python3", "-c", RACER, str(textdir), str(victim)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    writes = refused = 0
    try:
        assert racer.stdout is not None and racer.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            try:
                write_atomic(
                    textdir / "wg_tuner.prom", "wg_tuner_up 1\n" * 64, 0o644, strict=Strict.WARN
                )
            except OSError:
                refused += 1  # the racer removed our temp name before the rename: fine
            writes += 1
            info = os.stat(victim)
            assert stat.S_IMODE(info.st_mode) == 0o600, f"victim chmodded after {writes} writes"
            assert info.st_uid == 0
    finally:
        racer.kill()
        racer.wait()
        if racer.stdout is not None:
            racer.stdout.close()
    assert victim.read_text() == "root only\n"
    assert writes > 100, "the writer must have raced the swapper many times"
    figure(
        "Security", "atomic writes raced by a symlink-swapping user, outside file unchanged", writes
    )
    served = textdir / "wg_tuner.prom"
    if served.exists() and not served.is_symlink():
        assert stat.S_IMODE(os.stat(served).st_mode) == 0o644


def test_wg_tuners_own_files_refuse_a_directory_another_user_can_write(shared_dir: Path) -> None:
    theirs = shared_dir / "state"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(UnsafeDirectory, match=r"owned by uid 65534.*chown root"):
        write_atomic(theirs / "probes.json", "{}")
    open_to_group = shared_dir / "group"
    open_to_group.mkdir()
    os.chmod(open_to_group, 0o775)  # noqa: S103 - the unsafe case itself
    with pytest.raises(UnsafeDirectory, match="writable by group"):
        write_atomic(open_to_group / "probes.json", "{}")
    assert list(theirs.iterdir()) == [] and list(open_to_group.iterdir()) == []


def test_a_missing_directory_is_made_with_its_mode_whatever_the_umask(shared_dir: Path) -> None:
    old = os.umask(0o077)
    try:
        write_atomic(shared_dir / "a" / "b" / "wg_tuner.prom", "x", 0o644, dir_mode=0o755)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(shared_dir / "a").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(shared_dir / "a" / "b").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(shared_dir / "a" / "b" / "wg_tuner.prom").st_mode) == 0o644


def test_a_symlinked_directory_is_not_followed(shared_dir: Path) -> None:
    real = shared_dir / "real"
    real.mkdir(mode=0o700)
    (shared_dir / "link").symlink_to(real)
    with pytest.raises(OSError):
        write_atomic(shared_dir / "link" / "probes.json", "{}")
    assert list(real.iterdir()) == []
