"""Run the lab's external commands (ip, nft, tc, sysctl) with argument lists only."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from tuner.errors import LabError

TIMEOUT = 30.0

REQUIRED = {
    "ip": "iproute2",
    "nft": "nftables",
    "wg": "wireguard-tools",
    "iperf3": "iperf3",
    "sysctl": "procps",
}
REQUIRED_BY_IMPL = {"userspace": {"wireguard-go": "wireguard-go"}, "kernel": {"modprobe": "kmod"}}


def missing_tools(impl: str = "userspace") -> list[str]:
    tools = {**REQUIRED, **REQUIRED_BY_IMPL.get(impl, {})}
    return [f"{tool} (apt package {pkg})" for tool, pkg in tools.items() if not shutil.which(tool)]


def run(argv: Sequence[str], *, input_text: str | None = None, check: bool = True) -> str:
    try:
        proc = subprocess.run(
            list(argv),
            input=input_text,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(argv[:4])} timed out") from exc
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv]


def nft_apply(netns: str, commands: list[dict[str, Any]]) -> None:
    """One atomic nft batch in ``netns``, as JSON on stdin."""
    run(in_netns(netns, ["nft", "-j", "-f", "-"]), input_text=json.dumps({"nftables": commands}))


def sysctl_write(netns: str, key: str, value: str) -> None:
    run(in_netns(netns, ["sysctl", "-q", "-w", f"{key}={value}"]))


def sysctl_read(netns: str, key: str) -> str:
    return run(in_netns(netns, ["sysctl", "-n", key])).strip()
