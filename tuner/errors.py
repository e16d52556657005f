"""The error hierarchy: every expected failure is a TunerError that says what to do next.

The CLI maps these to exit codes and one-line messages; nothing here carries a secret,
because exception text reaches logs and terminals.
"""

from __future__ import annotations


class TunerError(Exception):
    """Base of every expected wg-tuner failure."""

    exit_code = 1


class UsageError(TunerError):
    """The command line cannot work (a bad option value): EX_USAGE."""

    exit_code = 64


class NotRoot(TunerError):
    """The command needs root (CAP_NET_ADMIN): EX_NOPERM."""

    exit_code = 77


class ObserveError(TunerError):
    """Reading the host failed in a way a retry will not fix."""


class TransientObserveError(ObserveError):
    """A read failed for a reason that may pass (EAGAIN, EBUSY, ENOBUFS, a slow socket)."""


class InterfaceVanished(ObserveError):
    """The interface disappeared while it was being read."""

    def __init__(self, ifname: str) -> None:
        super().__init__(f"interface {ifname} vanished while being read")
        self.ifname = ifname


class ProtocolError(ObserveError):
    """A WireGuard configuration socket answered something that is not the protocol."""

    def __init__(self, ifname: str, detail: str) -> None:
        super().__init__(f"{ifname}: bad answer from the WireGuard config socket: {detail}")
        self.ifname = ifname


class LabError(TunerError):
    """The lab could not be built, changed or removed."""


class ActuatorError(TunerError):
    """A change could not be read, applied or reverted."""


class TransientActuatorError(ActuatorError):
    """A write failed for a reason that may pass; safe to retry."""


class PermanentActuatorError(ActuatorError):
    """A write failed and will fail again (bad value, missing object, permission)."""


class InvalidValue(PermanentActuatorError):
    """A target or value was rejected before any file, socket or command saw it."""


class NotApplicable(ActuatorError):
    """The knob cannot be changed here (e.g. a sysctl only the initial namespace has)."""


class NotRevertible(ActuatorError):
    """The knob rejects writes, so a change could not be undone (kernel-managed IRQ)."""


class PolicyError(TunerError):
    """One or more policy files are invalid; nothing is changed. Each issue has a location."""

    def __init__(self, issues: list[PolicyIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class PolicyIssue:
    """``file:line:col: message (hint)``, lines and columns counted from 1."""

    __slots__ = ("col", "file", "hint", "line", "message")

    def __init__(self, file: str, line: int, col: int, message: str, hint: str = "") -> None:
        self.file, self.line, self.col = file, line, col
        self.message, self.hint = message, hint

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}" + (
            f" (hint: {self.hint})" if self.hint else ""
        )


class JournalError(TunerError):
    """The journal cannot be written or trusted: nothing is changed, observing still works."""


class LockBusy(TunerError):
    """Another wg-tuner holds the state directory."""

    exit_code = 75


class PortBusy(TunerError):
    """The metrics address cannot be bound (in use, or refused): a configuration error
    that a restart cannot fix, so the unit does not restart on it."""

    exit_code = 69
