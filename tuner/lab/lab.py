"""Build, change and remove a lab. ``down`` removes exactly what ``up`` recorded.

The record (``STATE_DIR/lab/PREFIX.json``, 0600) is written after every step of
``up``, so a failed or interrupted ``up`` can always be undone by ``down``. Processes
are killed by the PIDs we started, after checking the PID still runs what we started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from tuner.adapters.uapi import UapiClient
from tuner.errors import LabError, TunerError
from tuner.files import write_atomic
from tuner.lab import faults
from tuner.lab.commands import in_netns, missing_tools, run, sysctl_write
from tuner.lab.topology import TUNNEL_PREFIXLEN, UNDERLAY_PREFIXLEN, Host, Topology
from tuner.lab.wireguard import (
    KERNEL,
    USERSPACE,
    WG_SOCKET_DIR,
    Backend,
    Started,
    backend,
    default_impl,
    kernel_module_loadable,
)

log = structlog.get_logger("tuner.lab")

NETNS_DIR = Path("/run/netns")

FAULT_ON: dict[str, Callable[..., dict[str, Any]]] = {
    "mtu-blackhole": faults.mtu_blackhole_on,
    "nat-timeout": faults.nat_timeout_on,
    "loss": faults.loss_on,
    "down": faults.down_on,
    "bad-gro": faults.bad_gro_on,
}
FAULT_OFF: dict[str, Callable[[Topology, dict[str, Any]], None]] = {
    "mtu-blackhole": faults.mtu_blackhole_off,
    "nat-timeout": faults.nat_timeout_off,
    "loss": faults.loss_off,
    "down": faults.down_off,
    "bad-gro": faults.bad_gro_off,
}


@dataclass
class Record:
    """What a lab made; the only thing ``down`` acts on."""

    prefix: str
    namespaces: list[str]
    processes: list[dict[str, Any]]
    sockets: list[str]
    faults: dict[str, dict[str, Any]]
    impl: str = USERSPACE  # records written before the lab knew kernel WireGuard

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)


def _pid_runs(pid: int, needle: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and needle.encode() in cmdline


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _stop_process(pid: int, needle: str, timeout: float = 5.0) -> None:
    if not _pid_runs(pid, needle):
        _reap(pid)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not _pid_runs(pid, needle):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    _reap(pid)


def python() -> list[str]:
    """This interpreter, with -S when it runs without site (the VM lab's bundle)."""
    return [sys.executable, "-S"] if sys.flags.no_site else [sys.executable]


class Lab:
    def __init__(self, prefix: str, state_dir: Path, impl: str | None = None) -> None:
        """``impl`` picks the WireGuard of a new lab (default: the kernel module where the
        running kernel can load it, else wireguard-go); a lab that is up keeps its own."""
        self.topo = Topology(prefix)
        self.state_dir = state_dir
        self.record_path = state_dir / "lab" / f"{prefix}.json"
        self.uapi = UapiClient(WG_SOCKET_DIR, timeout=3.0)
        self._impl = impl
        self._wg: Backend | None = None

    @property
    def wg(self) -> Backend:
        """The lab's WireGuard: the recorded one once up (one object, so the daemons it
        started can be waited for: no zombies inside a long-running test session)."""
        if self._wg is None:
            record = self.load()
            self._wg = backend(record.impl if record else self._impl or default_impl())
        return self._wg

    @property
    def impl(self) -> str:
        return self.wg.name

    # -- record -------------------------------------------------------------
    def load(self) -> Record | None:
        try:
            data = json.loads(self.record_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise LabError(f"lab record {self.record_path} is unreadable: {exc}") from exc
        return Record(**data)

    def save(self, record: Record) -> None:
        write_atomic(self.record_path, record.to_json())

    # -- up -----------------------------------------------------------------
    def up(self) -> Record:
        if self.load() is not None:
            raise LabError(f"lab {self.topo.prefix} is already up (run 'wg-tuner lab down')")
        impl = self.wg.name
        missing = missing_tools(impl)
        if missing:
            raise LabError("missing: " + ", ".join(missing) + " (make demo installs them)")
        if impl == USERSPACE and not Path("/dev/net/tun").exists():
            raise LabError("/dev/net/tun is missing: wireguard-go needs it")
        if impl == KERNEL and not kernel_module_loadable():
            raise LabError("the running kernel cannot load the wireguard module (--impl userspace)")
        clash = [ns for ns in self.topo.namespaces if (NETNS_DIR / ns).exists()]
        clash += [
            h.wg for h in (self.topo.a, self.topo.b) if (WG_SOCKET_DIR / f"{h.wg}.sock").exists()
        ]
        if clash:
            raise LabError(f"names already in use, not ours to touch: {', '.join(clash)}")
        record = Record(self.topo.prefix, [], [], [], {}, impl)
        self.save(record)
        try:
            self._build(record)
        except BaseException:
            log.warning("lab.up_failed", prefix=self.topo.prefix)
            self.down()
            raise
        log.info("lab.up", prefix=self.topo.prefix, impl=impl)
        return record

    def _build(self, record: Record) -> None:
        topo = self.topo
        for ns in topo.namespaces:
            run(["ip", "netns", "add", ns])
            record.namespaces.append(ns)
            self.save(record)
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        self._wire(topo.a, topo.router_a)
        self._wire(topo.b, topo.router_b)
        sysctl_write(topo.router, "net.ipv4.ip_forward", "1")
        for host in (topo.a, topo.b):
            self._create_wireguard(record, host)
        self.wg.configure(topo)
        for host in (topo.a, topo.b):
            self._bring_up(host)
        self.kick("a")
        self.wait_handshake(timeout=10.0)

    @staticmethod
    def _bring_up(host: Host) -> None:
        """Give a host's WireGuard interface its tunnel address and bring it up."""
        tunnel = f"{host.tunnel_addr}/{TUNNEL_PREFIXLEN}"
        run(["ip", "-n", host.netns, "addr", "add", tunnel, "dev", host.wg])
        run(["ip", "-n", host.netns, "link", "set", host.wg, "up"])

    def _wire(self, host: Host, router_end: str) -> None:
        topo = self.topo
        run(
            [
                "ip",
                "link",
                "add",
                host.veth,
                "netns",
                host.netns,
                "type",
                "veth",
                "peer",
                "name",
                router_end,
                "netns",
                topo.router,
            ]
        )
        run(
            [
                "ip",
                "-n",
                host.netns,
                "addr",
                "add",
                f"{host.underlay_addr}/{UNDERLAY_PREFIXLEN}",
                "dev",
                host.veth,
            ]
        )
        run(
            [
                "ip",
                "-n",
                topo.router,
                "addr",
                "add",
                f"{host.gateway}/{UNDERLAY_PREFIXLEN}",
                "dev",
                router_end,
            ]
        )
        run(["ip", "-n", host.netns, "link", "set", host.veth, "up"])
        run(["ip", "-n", topo.router, "link", "set", router_end, "up"])
        run(["ip", "-n", host.netns, "route", "add", "default", "via", host.gateway])

    def _create_wireguard(self, record: Record, host: Host) -> None:
        self.wg.create(host, self._logdir, self._recorder(record))

    def _recorder(self, record: Record) -> Started:
        """What a backend calls once it started something: recorded (and saved) at once,
        so ``down`` can undo it even if the next step fails."""

        def started(process: dict[str, Any] | None, socket: str | None) -> None:
            if process is not None:
                record.processes.append(process)
            if socket is not None:
                record.sockets.append(socket)
            self.save(record)

        return started

    @property
    def _logdir(self) -> Path:
        return self.state_dir / "lab"

    def kick(self, role: str) -> None:
        host = self.topo.host(role)
        other = self.topo.b if role == "a" else self.topo.a
        run(in_netns(host.netns, [*python(), "-m", "tuner.lab.traffic", "kick", other.tunnel_addr]))

    def wait_handshake(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            handshake = self.wg.latest_handshake(self.topo.a)
            if handshake > 0:
                return handshake
            if time.monotonic() > deadline:
                raise LabError("the lab tunnel did not complete a handshake")
            time.sleep(0.1)

    # -- restart ------------------------------------------------------------
    def restart(self, role: str) -> None:
        """Restart a host's WireGuard with the same configuration, as an operator or a
        package upgrade would: the session goes dark until the next handshake."""
        record = self.require()
        host = self.topo.host(role)

        def stop() -> None:
            old = next(p for p in record.processes if p["match"] == host.wg)
            _stop_process(int(old["pid"]), host.wg)
            self._wait_child(int(old["pid"]))
            record.processes.remove(old)
            record.sockets.remove(host.wg)
            self.save(record)

        self.wg.restart(host, stop, self._logdir, self._recorder(record))
        self._bring_up(host)
        log.info("lab.restarted", role=role, impl=self.wg.name)

    def _wait_child(self, pid: int) -> None:
        """Reap a daemon this object started (no zombies inside a long-lived process)."""
        children = getattr(self.wg, "children", {})
        child = children.pop(pid, None)
        if child is not None:
            child.wait(timeout=5)

    # -- down ---------------------------------------------------------------
    def down(self) -> bool:
        """Remove what the record lists. False when there was nothing to remove."""
        record = self.load()
        if record is None:
            return False
        for proc in reversed(record.processes):
            pid = int(proc["pid"])
            _stop_process(pid, str(proc["match"]))
            self._wait_child(pid)
        for ns in reversed(record.namespaces):
            if (NETNS_DIR / ns).exists():
                run(["ip", "netns", "del", ns], check=False)
        for name in record.sockets:
            sock = WG_SOCKET_DIR / f"{name}.sock"
            # Only a socket nobody answers on: a live one would belong to someone else.
            if sock.is_socket() and not self._socket_alive(name):
                sock.unlink(missing_ok=True)
        self.record_path.unlink(missing_ok=True)
        log.info("lab.down", prefix=self.topo.prefix)
        return True

    def _socket_alive(self, name: str) -> bool:
        try:
            self.uapi.get(name)
        except TunerError:
            return False
        return True

    # -- faults -------------------------------------------------------------
    def fault(self, name: str, on: bool, **params: Any) -> dict[str, Any]:
        if name not in FAULT_ON:
            raise LabError(f"unknown fault {name!r}; choose from {', '.join(FAULT_ON)}")
        record = self.require()
        if on:
            if name in record.faults:
                raise LabError(f"fault {name} is already on")
            applied = FAULT_ON[name](self.topo, **params)
            record.faults[name] = applied
        else:
            # Switching off a fault that is not on still cleans up after a crashed "on".
            applied = record.faults.pop(name, {})
            FAULT_OFF[name](self.topo, applied)
        self.save(record)
        log.info("lab.fault", fault=name, on=on)
        return applied

    def require(self) -> Record:
        record = self.load()
        if record is None:
            raise LabError(f"lab {self.topo.prefix} is not up (run 'wg-tuner lab up')")
        return record

    # -- status and traffic -------------------------------------------------
    def status(self) -> dict[str, Any]:
        record = self.load()
        if record is None:
            return {"prefix": self.topo.prefix, "up": False}
        hosts: dict[str, Any] = {}
        for host in (self.topo.a, self.topo.b):
            entry: dict[str, Any] = {
                "netns": host.netns,
                "interface": host.wg,
                "tunnel_address": host.tunnel_addr,
            }
            try:
                handshake = self.wg.latest_handshake(host)
                entry["latest_handshake"] = handshake or None
                entry["endpoint"] = self.wg.endpoint(host)
            except TunerError as exc:
                entry["error"] = str(exc)
            hosts[host.role] = entry
        return {
            "prefix": self.topo.prefix,
            "up": True,
            "impl": record.impl,
            "namespaces": {ns: (NETNS_DIR / ns).exists() for ns in record.namespaces},
            "processes": [
                {**p, "alive": _pid_runs(int(p["pid"]), str(p["match"]))} for p in record.processes
            ],
            "faults": record.faults,
            "hosts": hosts,
        }

    def traffic(self, seconds: float = 3.0, sender: str = "a") -> dict[str, Any]:
        """A bulk TCP transfer through the tunnel with iperf3; returns what it moved."""
        self.require()
        src = self.topo.host(sender)
        dst = self.topo.b if sender == "a" else self.topo.a
        server = subprocess.Popen(
            in_netns(dst.netns, ["iperf3", "-s", "-1", "-B", dst.tunnel_addr]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.3)
            try:
                proc = subprocess.run(
                    in_netns(
                        src.netns,
                        [
                            "iperf3",
                            "-c",
                            dst.tunnel_addr,
                            "-J",
                            "-t",
                            str(seconds),
                            "--connect-timeout",
                            "3000",
                        ],
                    ),
                    capture_output=True,
                    text=True,
                    timeout=seconds + 15,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                return {"ok": False, "bytes": 0, "bits_per_second": 0.0, "error": "stalled"}
            try:
                report = json.loads(proc.stdout)
            except json.JSONDecodeError:
                return {"ok": False, "bytes": 0, "bits_per_second": 0.0, "error": "no report"}
            received = report.get("end", {}).get("sum_received", {})
            moved = int(received.get("bytes", 0))
            return {
                "ok": proc.returncode == 0 and moved > 0,
                "bytes": moved,
                "bits_per_second": float(received.get("bits_per_second", 0.0)),
                "error": report.get("error"),
            }
        finally:
            if server.poll() is None:
                server.terminate()
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
