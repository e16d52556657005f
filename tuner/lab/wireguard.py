"""The lab's two WireGuard implementations: the kernel module and wireguard-go.

Both give each lab host one interface, configured with fresh keys that pass through
this process's memory only (stdin of ``wg``, or the config socket) and are forgotten
right after. ``Lab`` picks one at ``up`` and records it; every later call uses the same.
Reads made here (handshake, endpoint) carry no keys.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tuner.adapters.uapi import UapiClient
from tuner.adapters.x25519 import public_from_private
from tuner.errors import LabError, TunerError
from tuner.lab.commands import in_netns, run
from tuner.lab.topology import Host, Topology

KERNEL = "kernel"
USERSPACE = "userspace"
IMPLS = (KERNEL, USERSPACE)

WG_SOCKET_DIR = Path("/var/run/wireguard")
SOCKET_WAIT = 10.0


def kernel_module_loadable() -> bool:
    """Whether the running kernel has WireGuard or can load it (what ``--impl`` defaults on)."""
    if Path("/sys/module/wireguard").exists():
        return True
    try:
        run(["modprobe", "--dry-run", "--quiet", "wireguard"])
    except LabError:  # no such module, or no modprobe
        return False
    return True


def default_impl() -> str:
    return KERNEL if kernel_module_loadable() else USERSPACE


class Started(Protocol):
    """What ``Lab`` needs recorded about a started interface (so ``down`` can undo it)."""

    def __call__(self, process: dict[str, Any] | None, socket: str | None) -> None: ...


class Backend(Protocol):
    name: str

    def create(self, host: Host, logdir: Path, started: Started) -> None: ...
    def configure(self, topo: Topology) -> None: ...
    def latest_handshake(self, host: Host) -> float: ...
    def endpoint(self, host: Host) -> str | None: ...
    def restart(
        self, host: Host, stop: Callable[[], None], logdir: Path, started: Started
    ) -> None: ...


def _keys(topo: Topology) -> tuple[dict[str, bytes], bytes]:
    return {h.role: secrets.token_bytes(32) for h in (topo.a, topo.b)}, secrets.token_bytes(32)


class KernelWg:
    """The WireGuard module: ``ip link add type wireguard``, configured with ``wg``."""

    name = KERNEL

    def create(self, host: Host, logdir: Path, started: Started) -> None:
        run(["modprobe", "wireguard"], check=False)  # built in, or loaded on demand
        run(["ip", "-n", host.netns, "link", "add", host.wg, "type", "wireguard"])
        started(None, None)  # the link dies with its namespace; nothing else to undo

    def configure(self, topo: Topology) -> None:
        keys, psk = _keys(topo)
        for host, other in ((topo.a, topo.b), (topo.b, topo.a)):
            wg = in_netns(host.netns, ["wg", "set", host.wg])
            run(
                [*wg, "private-key", "/dev/stdin", "listen-port", str(host.listen_port)],
                input_text=base64.b64encode(keys[host.role]).decode(),
            )
            peer = base64.b64encode(public_from_private(keys[other.role])).decode()
            run(
                [
                    *wg,
                    "peer",
                    peer,
                    "preshared-key",
                    "/dev/stdin",
                    "endpoint",
                    f"{other.underlay_addr}:{other.listen_port}",
                    "allowed-ips",
                    f"{other.tunnel_addr}/32",
                ],
                input_text=base64.b64encode(psk).decode(),
            )
        del keys, psk

    @staticmethod
    def _show(host: Host, what: str) -> str | None:
        out = run(in_netns(host.netns, ["wg", "show", host.wg, what]), check=False)
        first = out.splitlines()[0] if out.strip() else ""
        _, _, value = first.partition("\t")
        return value.strip() or None

    def latest_handshake(self, host: Host) -> float:
        return float(self._show(host, "latest-handshakes") or 0)

    def endpoint(self, host: Host) -> str | None:
        value = self._show(host, "endpoints")
        return None if value in (None, "(none)") else value

    def restart(self, host: Host, stop: Callable[[], None], logdir: Path, started: Started) -> None:
        # The whole configuration, keys included, moves from one interface to the next
        # through memory: what a reboot or a module reload does to the session.
        conf = run(in_netns(host.netns, ["wg", "showconf", host.wg]))
        run(["ip", "-n", host.netns, "link", "del", host.wg])
        run(["ip", "-n", host.netns, "link", "add", host.wg, "type", "wireguard"])
        run(in_netns(host.netns, ["wg", "setconf", host.wg, "/dev/stdin"]), input_text=conf)
        del conf


class UserspaceWg:
    """wireguard-go, one daemon per host, configured over its config socket."""

    name = USERSPACE

    def __init__(self) -> None:
        self.uapi = UapiClient(WG_SOCKET_DIR, timeout=3.0)
        self.children: dict[int, subprocess.Popen[bytes]] = {}

    def create(self, host: Host, logdir: Path, started: Started) -> None:
        logfile = logdir / f"{host.wg}.log"
        env = dict(os.environ, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD="1")
        with open(logfile, "ab") as out:
            proc = subprocess.Popen(
                in_netns(host.netns, ["wireguard-go", "-f", host.wg]),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
                start_new_session=True,
            )
        self.children[proc.pid] = proc
        started({"pid": proc.pid, "match": host.wg, "what": "wireguard-go"}, host.wg)
        deadline = time.monotonic() + SOCKET_WAIT
        while not self.uapi.has_socket(host.wg):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"wireguard-go for {host.wg} did not start (see {logfile})")
            time.sleep(0.05)

    def configure(self, topo: Topology) -> None:
        keys, psk = _keys(topo)
        for host, other in ((topo.a, topo.b), (topo.b, topo.a)):
            self.uapi.set(
                host.wg,
                [
                    ("private_key", keys[host.role].hex()),
                    ("listen_port", str(host.listen_port)),
                    ("public_key", public_from_private(keys[other.role]).hex()),
                    ("preshared_key", psk.hex()),
                    ("endpoint", f"{other.underlay_addr}:{other.listen_port}"),
                    ("allowed_ip", f"{other.tunnel_addr}/32"),
                ],
            )
        del keys, psk

    def _peer(self, host: Host) -> Any:
        try:
            device = self.uapi.get(host.wg)
        except TunerError:
            return None
        return device.peers[0] if device.peers else None

    def latest_handshake(self, host: Host) -> float:
        peer = self._peer(host)
        return float(peer.latest_handshake) if peer else 0.0

    def endpoint(self, host: Host) -> str | None:
        peer = self._peer(host)
        return peer.endpoint if peer else None

    RESTORE_KEYS = (
        "private_key",
        "listen_port",
        "fwmark",
        "public_key",
        "preshared_key",
        "endpoint",
        "persistent_keepalive_interval",
        "allowed_ip",
    )

    def restart(self, host: Host, stop: Callable[[], None], logdir: Path, started: Started) -> None:
        # The full configuration, keys included, passes through memory only, to the new daemon.
        raw = self.uapi._request(host.wg, b"get=1\n\n").decode("ascii")
        items = [
            (key, value)
            for key, _, value in (line.partition("=") for line in raw.splitlines())
            if key in self.RESTORE_KEYS and value and not (key == "fwmark" and value == "0")
        ]
        stop()
        deadline = time.monotonic() + SOCKET_WAIT
        while self.uapi.has_socket(host.wg) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.create(host, logdir, started)
        self.uapi.set(host.wg, items)
        del raw, items


def backend(name: str) -> Backend:
    if name == KERNEL:
        return KernelWg()
    if name == USERSPACE:
        return UserspaceWg()
    raise LabError(f"unknown WireGuard implementation {name!r}; choose from {', '.join(IMPLS)}")
