"""Every private and preshared key of the lab, for "no secret in any output" checks."""

from __future__ import annotations

import base64

from tuner.lab.lab import Lab


def lab_secrets(lab: Lab) -> list[str]:
    """Private and preshared keys of both lab hosts, hex and base64, read from the daemons."""
    found: list[str] = []
    for host in (lab.topo.a, lab.topo.b):
        raw = lab.uapi._request(host.wg, b"get=1\n\n").decode()
        for line in raw.splitlines():
            key, _, value = line.partition("=")
            if key in ("private_key", "preshared_key") and value.strip("0"):
                found += [value, base64.b64encode(bytes.fromhex(value)).decode()]
    assert len(found) >= 6  # 2 private + 2 preshared (same psk twice), both encodings
    return found
