"""An append-only, checksummed, fsynced journal of every change (JSON lines).

Write-ahead: ``intended`` (with the prior value) is durable before anything is touched;
then ``applied`` (with its verification deadline), then ``verified``, ``reverted`` or
``revert_failed``. A torn or corrupt line is skipped and reported, never acted on.
The file is 0600 in a 0700 directory and is never opened through a symlink.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from tuner.errors import JournalError
from tuner.model.target import Target

JOURNAL_FILE = "journal.jsonl"


class State(StrEnum):
    """Where a change is. Only ``verified`` keeps it; ``intended``/``applied`` are open."""

    INTENDED = "intended"
    APPLIED = "applied"
    VERIFIED = "verified"
    REVERTED = "reverted"
    REVERT_FAILED = "revert_failed"
    NOT_REVERTIBLE = "not_revertible"
    FREEZE_CLEARED = "freeze_cleared"
    DRIFTED = "drifted"
    """Someone else changed a value wg-tuner had set and verified: it is theirs now."""


class Cause(StrEnum):
    """Why a record was written, as a code: guards read this, never the reason's words."""

    NONE = ""
    VERIFICATION_FAILED = "verification_failed"
    """A gate check failed for its whole grace: the value itself is to blame."""
    WITH_BATCH = "with_batch"
    """Undone because another change of its batch failed."""
    RECOVERED = "recovered"
    """Found unverified at start (wg-tuner had stopped)."""
    STALLED = "stalled"
    """Its window ran while wg-tuner was not watching."""
    APPLY_FAILED = "apply_failed"
    ROLLBACK = "rollback"
    """An operator's ``rollback``."""
    SHUTDOWN = "shutdown"
    """Not verified before the daemon stopped."""
    DEADLINE = "deadline"
    """Reverted by the revert guard: not verified by its deadline (the applier died)."""
    INTERRUPTED = "interrupted"
    """Reverted because the applying process was asked to stop (SIGTERM, SIGINT)."""
    DRIFT = "drift"
    KERNEL_REFUSED = "kernel_refused"
    REVERT_ERROR = "revert_error"
    OPERATOR = "operator"


INTENDED = State.INTENDED
APPLIED = State.APPLIED
VERIFIED = State.VERIFIED
REVERTED = State.REVERTED
REVERT_FAILED = State.REVERT_FAILED
NOT_REVERTIBLE = State.NOT_REVERTIBLE
FREEZE_CLEARED = State.FREEZE_CLEARED
DRIFTED = State.DRIFTED
OPEN_STATES = (INTENDED, APPLIED)

_LEGACY_CAUSES = (
    ("verification failed", Cause.VERIFICATION_FAILED),
    ("recovered:", Cause.RECOVERED),
    ("not verified: wg-tuner was stalled", Cause.STALLED),
    ("rolled back with its batch", Cause.WITH_BATCH),
    ("apply failed", Cause.APPLY_FAILED),
    ("rollback", Cause.ROLLBACK),
    ("reverted at shutdown", Cause.SHUTDOWN),
    ("changed outside wg-tuner", Cause.DRIFT),
)
"""Journals written before records carried a code: the one place their words are read."""


def _legacy_cause(reason: str) -> Cause:
    for prefix, cause in _LEGACY_CAUSES:
        if reason.startswith(prefix):
            return cause
    return Cause.NONE


def _checksum(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def ensure_state_dir(path: Path) -> None:
    """Create the state directory 0700 (tightening it if needed); refuse a symlink."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(path)
    except OSError as exc:
        raise JournalError(f"state directory {path}: {exc.strerror}") from exc
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise JournalError(f"state directory {path} is not a plain directory: refused")
    if info.st_uid not in (0, os.geteuid()):
        raise JournalError(
            f"state directory {path} is owned by uid {info.st_uid}: refused "
            f"(fix: chown root {path})"
        )
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    ts: float
    state: State
    change: str
    policy: str = ""
    target: Target | None = None
    prior: str | None = None
    desired: str | None = None
    verify_after: float | None = None
    deadline: float | None = None
    reason: str = ""
    batch: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    code: Cause = Cause.NONE


def _to_line(record: Record) -> str:
    body: dict[str, Any] = {
        "seq": record.seq,
        "ts": record.ts,
        "state": record.state,
        "change": record.change,
        "policy": record.policy,
        "target": None
        if record.target is None
        else {"kind": record.target.kind, "name": record.target.name, "peer": record.target.peer},
        "prior": record.prior,
        "desired": record.desired,
        "verify_after": record.verify_after,
        "deadline": record.deadline,
        "reason": record.reason,
        "batch": record.batch,
        "extra": dict(record.extra),
    }
    if record.code:
        body["code"] = record.code.value
    body["sum"] = _checksum(body)
    return json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n"


def _from_line(line: str) -> Record | None:
    try:
        body = json.loads(line)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    claimed = body.pop("sum", None)
    if claimed != _checksum(body):
        return None
    t = body.get("target")
    try:
        state = State(str(body["state"]))
        reason = str(body.get("reason", ""))
        code = Cause(body["code"]) if "code" in body else _legacy_cause(reason)
        return Record(
            seq=int(body["seq"]),
            ts=float(body["ts"]),
            state=state,
            change=str(body["change"]),
            policy=str(body.get("policy", "")),
            target=None if t is None else Target(str(t["kind"]), str(t["name"]), str(t["peer"])),
            prior=body.get("prior"),
            desired=body.get("desired"),
            verify_after=body.get("verify_after"),
            deadline=body.get("deadline"),
            reason=reason,
            batch=str(body.get("batch", "")),
            extra=body.get("extra") or {},
            code=code,
        )
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class ReadResult:
    records: tuple[Record, ...]
    skipped: tuple[int, ...]
    """Line numbers (from 1) that were torn or corrupt and were ignored."""


COMPACT_AFTER = 2000
"""Appends between compactions (and at most this many records beyond what is kept)."""


class Journal:
    """The journal file, read once and then served from memory while it is unchanged
    (its inode, size and mtime), so a cycle that asks several times reads it once."""

    def __init__(
        self,
        state_dir: Path,
        clock: Callable[[], float] = time.time,
        fsync: Callable[[int], None] = os.fsync,
        compact_after: int = COMPACT_AFTER,
    ) -> None:
        self.state_dir = state_dir
        self.path = state_dir / JOURNAL_FILE
        self.clock = clock
        self.fsync = fsync
        self.compact_after = compact_after
        self._seq: int | None = None
        self._cache: tuple[tuple[int, int, int], ReadResult] | None = None
        self._appended = 0
        self._checked = False
        self.file_reads = 0
        """How many times the file itself was read (the rest came from memory)."""

    def _signature(self, fd: int) -> tuple[int, int, int]:
        info = os.fstat(fd)
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def read(self) -> ReadResult:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            self._seq = 0
            self._cache = None
            return ReadResult((), ())
        except OSError as exc:
            raise JournalError(f"journal {self.path}: {exc.strerror} (a symlink?)") from exc
        with os.fdopen(fd, "rb") as fh:
            signature = self._signature(fh.fileno())
            if self._cache is not None and self._cache[0] == signature:
                return self._cache[1]
            data = fh.read()
        self.file_reads += 1
        records: list[Record] = []
        skipped: list[int] = []
        lines = data.split(b"\n")
        for number, raw in enumerate(lines, 1):
            if not raw:
                continue
            try:
                record = _from_line(raw.decode("utf-8"))
            except UnicodeDecodeError:
                record = None
            if record is None:
                skipped.append(number)
            else:
                records.append(record)
        self._seq = max((r.seq for r in records), default=0)
        result = ReadResult(tuple(records), tuple(skipped))
        self._cache = (signature, result)
        return result

    def append(self, state: State, change: str, **fields: Any) -> Record:
        """Write one record durably (write + fsync) before returning it."""
        if self._seq is None:
            self.read()
        assert self._seq is not None  # noqa: S101 - read() sets it
        record = Record(seq=self._seq + 1, ts=self.clock(), state=state, change=change, **fields)
        line = _to_line(record).encode()
        ensure_state_dir(self.state_dir)
        cached = self._cache
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise JournalError(f"cannot open the journal {self.path}: {exc.strerror}") from exc
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)
            # A torn earlier write may have left no newline: start on a fresh line.
            before = self._signature(fd)
            size = before[1]
            if size:
                with open(self.path, "rb") as peek:
                    peek.seek(size - 1)
                    if peek.read(1) != b"\n":
                        line = b"\n" + line
            written = os.write(fd, line)
            if written != len(line):
                raise JournalError("short write to the journal (disk full?)")
            self.fsync(fd)
            after = self._signature(fd)
        except OSError as exc:
            raise JournalError(f"cannot write the journal: {exc.strerror}") from exc
        finally:
            os.close(fd)
        self._seq = record.seq
        # Our own append extends what we hold, if we held the file as it was.
        if cached is not None and cached[0] == before and not line.startswith(b"\n"):
            old = cached[1]
            self._cache = (after, ReadResult((*old.records, record), old.skipped))
        else:
            self._cache = None
        self._appended += 1
        return record

    def compact_if_due(self) -> bool:
        """Compact after ``compact_after`` appends, or at the first call when the journal
        already holds that many records (a journal written by an older wg-tuner)."""
        first, self._checked = not self._checked, True
        due = self._appended >= self.compact_after or (
            first and len(self.read().records) >= self.compact_after
        )
        if due:
            self.compact()
        return due

    def compact(self) -> int:
        """Rewrite the journal with only what guards and recovery need (``compact.keep``),
        atomically: a crash leaves the old journal or the new one, never a mix. Torn or
        corrupt lines are dropped with the rest. Returns the records kept. The caller
        holds the state lock (no other writer)."""
        from tuner.journal.compact import keep

        current = self.read()
        kept = keep(current.records, self.clock())
        text = "".join(_to_line(r) for r in kept)
        ensure_state_dir(self.state_dir)
        tmp = self.state_dir / f".{JOURNAL_FILE}.compact"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                data = text.encode()
                if os.write(fd, data) != len(data):
                    raise JournalError("short write while compacting the journal (disk full?)")
                self.fsync(fd)
            finally:
                os.close(fd)
            _fault_point_compact()
            os.replace(tmp, self.path)
            dfd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                self.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise JournalError(f"cannot compact the journal: {exc.strerror}") from exc
        self._cache = None
        self._appended = 0
        return len(kept)


def _fault_point_compact() -> None:
    """Crash tests: die after the compacted copy is durable, before it replaces the
    journal (``WG_TUNER_FAULT_KILL_AFTER=compacting``)."""
    if os.environ.get("WG_TUNER_FAULT_KILL_AFTER") == "compacting":
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True, slots=True)
class ChangeState:
    """Everything the journal says about one change id, folded."""

    change: str
    policy: str
    target: Target
    prior: str | None
    desired: str | None
    state: State
    batch: str
    first_ts: float
    last_ts: float
    reason: str = ""
    code: Cause = Cause.NONE


def fold(records: Iterable[Record]) -> dict[str, ChangeState]:
    out: dict[str, ChangeState] = {}
    for r in records:
        if r.target is None:
            continue
        old = out.get(r.change)
        if old is None:
            out[r.change] = ChangeState(
                r.change,
                r.policy,
                r.target,
                r.prior,
                r.desired,
                r.state,
                r.batch,
                r.ts,
                r.ts,
                r.reason,
                r.code,
            )
        else:
            out[r.change] = ChangeState(
                old.change,
                old.policy or r.policy,
                old.target,
                old.prior if old.prior is not None or r.state != INTENDED else r.prior,
                old.desired,
                r.state,
                old.batch or r.batch,
                old.first_ts,
                r.ts,
                r.reason,
                r.code,
            )
    return out
