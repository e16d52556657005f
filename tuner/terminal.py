"""Text that reaches an operator's terminal carries no control characters.

Values wg-tuner shows come partly from elsewhere: peer endpoints and names, interface
names, file contents quoted in errors. A hostile one could carry escape sequences that
rewrite the screen, retitle the terminal or hide a line. Every character below space
(but newline and tab), DEL and the C1 range is shown as ``\\xNN`` instead. JSON output
is unchanged by this: ``json.dumps`` already writes those characters escaped.
"""

from __future__ import annotations

from typing import TextIO

_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c not in (9, 10)}


def escape_controls(text: str) -> str:
    return text.translate(_CONTROLS)


class EscapingStream:
    """A text stream that escapes control characters on their way to ``inner``."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        return self._inner.write(text.translate(_CONTROLS))

    def flush(self) -> None:
        self._inner.flush()

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)
