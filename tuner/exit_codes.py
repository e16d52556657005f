"""Every exit code of every command, in one table (the CLI's --help and the README show it).

Codes follow sysexits(3) where one fits: 64 (EX_USAGE), 69 (EX_UNAVAILABLE), 75 (EX_TEMPFAIL), 77
(EX_NOPERM). ``2`` means "changes proposed" and only with ``plan --detailed-exitcode``,
as Terraform uses it; argparse's own usage errors are moved from 2 to 64.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExitCode:
    code: int
    name: str
    commands: str
    meaning: str


OK = 0
ERROR = 1
CHANGES = 2
ROLLED_BACK = 3
REVERT_FAILED = 4
USAGE = 64
PORT_BUSY = 69
LOCK_BUSY = 75
NOT_ROOT = 77
INTERRUPTED = 130
TERMINATED = 143

TABLE: tuple[ExitCode, ...] = (
    ExitCode(OK, "ok", "all", "success; plan: nothing would change (or no --detailed-exitcode)"),
    ExitCode(
        ERROR,
        "error",
        "all",
        "an error: invalid policies, the host could not be read, the journal refused; "
        "status: an interface could not be read",
    ),
    ExitCode(CHANGES, "changes", "plan", "--detailed-exitcode: changes would be applied"),
    ExitCode(ROLLED_BACK, "rolled-back", "apply", "a change failed verification and was undone"),
    ExitCode(
        REVERT_FAILED,
        "revert-failed",
        "apply, rollback",
        "a revert failed: changes are frozen until 'rollback --clear-freeze'",
    ),
    ExitCode(USAGE, "usage", "all", "bad command line: unknown option, bad option value"),
    ExitCode(
        PORT_BUSY,
        "port-busy",
        "run",
        "the metrics address is in use or refused (EX_UNAVAILABLE): pick another "
        "--metrics-listen; the unit does not restart on it",
    ),
    ExitCode(
        LOCK_BUSY, "lock-busy", "apply, rollback, run", "another wg-tuner holds the state dir"
    ),
    ExitCode(NOT_ROOT, "not-root", "all that read the host", "needs root (CAP_NET_ADMIN)"),
    ExitCode(
        INTERRUPTED,
        "interrupted",
        "all",
        "SIGINT; apply first reverts what it left unverified",
    ),
    ExitCode(
        TERMINATED, "terminated", "apply", "SIGTERM: what it left unverified was reverted first"
    ),
)


def help_text() -> str:
    """The table for ``--help`` (plain text, one code a line)."""
    lines = ["exit codes:"]
    for e in TABLE:
        lines.append(f"  {e.code:<4} {e.name:<14} {e.commands}: {e.meaning}")
    return "\n".join(lines)


def markdown() -> str:
    """The same table for the README (a test keeps the two equal)."""
    rows = ["| code | name | commands | meaning |", "|---|---|---|---|"]
    rows += [f"| {e.code} | {e.name} | {e.commands} | {e.meaning} |" for e in TABLE]
    return "\n".join(rows)
