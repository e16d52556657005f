"""structlog setup: JSON lines on stderr (journald-friendly) or a console renderer.

Event names are stable identifiers (``observe.interface_failed``, ``lab.up``); tests
assert on them, never on message text.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog

LogFormat = Literal["json", "console"]


class SafeStream:
    """stderr that never kills the process: once a write fails (a closed pipe, a dropped
    SSH session), logging goes quiet and the work — a verification, a revert — goes on."""

    def __init__(self, stream: TextIO) -> None:
        self.stream: TextIO | None = stream

    def write(self, text: str) -> int:
        if self.stream is None:
            return len(text)
        try:
            return self.stream.write(text)
        except (OSError, ValueError):
            self.stream = None
            return len(text)

    def flush(self) -> None:
        if self.stream is None:
            return
        try:
            self.stream.flush()
        except (OSError, ValueError):
            self.stream = None


def default_format() -> LogFormat:
    return "console" if sys.stderr.isatty() else "json"


def configure(fmt: LogFormat | None = None, level: int = logging.INFO) -> None:
    fmt = fmt or default_format()
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=SafeStream(sys.stderr)),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
