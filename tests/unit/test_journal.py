"""The journal: durable, checksummed, torn tails ignored, symlinks and full disks refused."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from tests.reliability import FigureFn
from tuner.errors import JournalError
from tuner.journal.journal import APPLIED, INTENDED, VERIFIED, Journal, fold
from tuner.model.target import Target

T = Target("mtu", "wg0")


def filled(tmp_path: Path) -> Journal:
    j = Journal(tmp_path / "state")
    j.append(INTENDED, "c1", policy="p", target=T, prior="1420", desired="1340")
    j.append(APPLIED, "c1", policy="p", target=T, prior="1420", desired="1340")
    j.append(VERIFIED, "c1", policy="p", target=T, prior="1420", desired="1340")
    return j


def test_round_trip_and_fold(tmp_path: Path) -> None:
    j = filled(tmp_path)
    result = Journal(tmp_path / "state").read()
    assert [r.state for r in result.records] == [INTENDED, APPLIED, VERIFIED]
    assert [r.seq for r in result.records] == [1, 2, 3]
    (state,) = fold(result.records).values()
    assert (state.state, state.prior, state.desired) == (VERIFIED, "1420", "1340")
    assert stat.S_IMODE(j.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(j.state_dir.stat().st_mode) == 0o700


def test_torn_last_record_at_every_byte_offset_is_ignored(tmp_path: Path, figure: FigureFn) -> None:
    j = filled(tmp_path)
    data = j.path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    figure(
        "Journal and state",
        "journal torn at every byte offset of its last record -> torn records acted on",
        f"0 of {len(data) - 1 - last_start} cuts",
    )
    for cut in range(last_start, len(data) - 1):
        j.path.write_bytes(data[:cut])
        result = Journal(j.state_dir).read()
        assert [r.state for r in result.records] == [INTENDED, APPLIED], cut
        assert result.skipped == (() if cut == last_start else (3,)), cut
        # appending after a torn tail starts a fresh, valid line
        again = Journal(j.state_dir)
        again.append(VERIFIED, "c1", policy="p", target=T, prior="1420", desired="1340")
        states = [r.state for r in Journal(j.state_dir).read().records]
        assert states == [INTENDED, APPLIED, VERIFIED], cut


def test_corrupt_record_is_never_acted_on(tmp_path: Path, figure: FigureFn) -> None:
    j = filled(tmp_path)
    lines = j.path.read_text().splitlines()
    lines[1] = lines[1].replace('"1340"', '"1280"')  # checksum no longer matches
    j.path.write_text("\n".join(lines) + "\n")
    result = Journal(j.state_dir).read()
    assert result.skipped == (2,)
    assert all(r.desired == "1340" for r in result.records)
    figure(
        "Journal and state",
        "a record altered on disk (checksum mismatch) -> records acted on",
        sum(r.desired == "1280" for r in result.records),
    )


def test_symlink_at_the_journal_path_is_refused(tmp_path: Path, figure: FigureFn) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    target.write_text("")
    (state / "journal.jsonl").symlink_to(target)
    j = Journal(state)
    with pytest.raises(JournalError):
        j.read()
    with pytest.raises(JournalError):
        j.append(INTENDED, "c1", target=T)
    assert target.read_text() == ""
    figure("Security", "symlink planted at the journal path -> bytes written through it", 0)


def test_symlinked_state_dir_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "state").symlink_to(real)
    with pytest.raises(JournalError, match="not a plain directory"):
        Journal(tmp_path / "state").append(INTENDED, "c1", target=T)


def test_full_disk_raises_and_leaves_no_record(tmp_path: Path, figure: FigureFn) -> None:
    def enospc(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    j = Journal(tmp_path / "state", fsync=enospc)
    with pytest.raises(JournalError, match="No space"):
        j.append(INTENDED, "c1", target=T)
