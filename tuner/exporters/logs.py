"""structlog setup: JSON lines on stderr (journald-friendly) or a console renderer.

Event names are stable identifiers (``observe.interface_failed``, ``lab.up``); tests
assert on them, never on message text.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["json", "console"]


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
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
