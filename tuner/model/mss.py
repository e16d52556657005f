"""wg-tuner's MSS-clamp settings as read from its nftables table (pure)."""

from __future__ import annotations

import json
from typing import Any

COMMENT = "wg-tuner mss "


def settings_from(objects: list[dict[str, Any]] | None) -> dict[str, str]:
    """Interface -> clamp value ("pmtu" or a size), from our table's rules."""
    out: dict[str, str] = {}
    for item in objects or ():
        rule = item.get("rule")
        if not isinstance(rule, dict) or not str(rule.get("comment", "")).startswith(COMMENT):
            continue
        ifname = str(rule["comment"])[len(COMMENT) :]
        for expr in rule.get("expr", ()):
            mangle = expr.get("mangle") if isinstance(expr, dict) else None
            if mangle is not None:
                value = mangle.get("value")
                out[ifname] = "pmtu" if isinstance(value, dict) else str(value)
    return out


def settings_from_canonical(table: str | None) -> dict[str, str]:
    """Same, from the canonical JSON a Snapshot keeps (``Knobs.nft_table``)."""
    if not table:
        return {}
    try:
        objects = json.loads(table)
    except ValueError:
        return {}
    return settings_from(objects if isinstance(objects, list) else [])
