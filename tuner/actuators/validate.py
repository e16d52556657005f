"""Validation of targets and values before any file, socket or command sees them."""

from __future__ import annotations

import re

from tuner.errors import InvalidValue

_IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,14}")
_SYSCTL_VALUE = re.compile(r"[0-9]{1,20}(?:[ \t][0-9]{1,20}){0,7}")


def ifname(name: str) -> str:
    """A Linux interface name: 1-15 safe characters, no leading '-', not '.' or '..'."""
    if not _IFNAME.fullmatch(name) or name in (".", ".."):
        raise InvalidValue(f"invalid interface name {name!r}")
    return name


def integer(value: str | None, low: int, high: int, what: str) -> int:
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 10:
        raise InvalidValue(f"{what} must be an integer in {low}..{high}")
    number = int(value)
    if not low <= number <= high:
        raise InvalidValue(f"{what} {number} is outside {low}..{high}")
    return number


def sysctl_value(value: str | None) -> str:
    """Digits, separated by single spaces or tabs (covers every allowlisted key)."""
    if value is None or not _SYSCTL_VALUE.fullmatch(value):
        raise InvalidValue("sysctl value must be 1-8 whitespace-separated integers")
    return value


_SYSCTL_PRIOR = re.compile(r"[0-9 \t-]{1,256}")


def sysctl_prior(value: str | None) -> str:
    """A value recorded by ``read``: the file's text, whitespace kept, never a line break."""
    if value is None or not _SYSCTL_PRIOR.fullmatch(value):
        raise InvalidValue("recorded sysctl value is not plain numbers and whitespace")
    return value
