"""A comparable picture of a namespace's configuration (not its counters), for
"nothing changed" and "rolled back exactly" assertions."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tuner.model.knobs import READ_ONLY_SYSCTLS, SYSCTL_ALLOWLIST


def _run(netns: str, *argv: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, check=False
    ).stdout


def capture(netns: str, wg_ifname: str | None = None) -> dict[str, Any]:
    links = [
        {k: link.get(k) for k in ("ifname", "mtu", "flags", "link_type")}
        for link in json.loads(_run(netns, "ip", "-j", "link", "show") or "[]")
    ]
    state: dict[str, Any] = {"links": links, "nft": _run(netns, "nft", "list", "ruleset")}
    sysctls = {}
    for key in SYSCTL_ALLOWLIST + READ_ONLY_SYSCTLS:
        sysctls[key] = _run(netns, "sysctl", "-n", key).strip() or None
    state["sysctls"] = sysctls
    if wg_ifname:
        rows = [
            line.split("\t") for line in _run(netns, "wg", "show", wg_ifname, "dump").splitlines()
        ]
        # secrets and moving counters aside: keys, port, fwmark, endpoint, allowed IPs, keepalive
        state["wg"] = [rows[0][1:]] + [[r[0], r[2], r[3], r[7]] for r in rows[1:]] if rows else []
    return state


def residual(before: dict[str, Any], after: dict[str, Any]) -> int:
    """How many settings differ: links, nft ruleset, each sysctl, WireGuard rows."""
    count = 0
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            count += sum(old.get(k) != new.get(k) for k in old.keys() | new.keys())
        elif isinstance(old, list) and isinstance(new, list):
            count += sum(a != b for a, b in zip(old, new, strict=False)) + abs(len(old) - len(new))
        else:
            count += old != new
    return count
