"""Runs inside the VM (Debian's stock kernel, the VM's own initial namespace), as root.

One Python process does every check (a Python start costs seconds under emulation) and
writes one JSON report: ``{check: {"ok": bool, "detail": ..., ...}}``. The host-side
tests (test_vm_kernel.py) assert on it, one test per check. Nothing here is mocked:
kernel WireGuard over generic netlink, netlink MTU, /proc/sys of the initial namespace,
/proc/irq and RPS masks of a multi-queue virtio-net NIC.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuner.actuators.irq import IrqAffinityActuator
from tuner.actuators.keepalive import GenetlinkWg, KeepaliveActuator
from tuner.actuators.mtu import MtuActuator, NetlinkLinks
from tuner.actuators.offload import OffloadActuator
from tuner.actuators.sysctl import SysctlActuator
from tuner.adapters.ethtool import EthtoolFeatures
from tuner.errors import NotApplicable, NotRevertible, PermanentActuatorError
from tuner.lab import vm_sender
from tuner.lab.vm import TAP_GUEST, TAP_HOST
from tuner.lab.vm_sender import Request
from tuner.model.target import Target
from tuner.observe.collector import Observer
from tuner.observe.offload_history import FILE as OFFLOAD_FILE
from tuner.observe.offload_history import OffloadHistory
from tuner.observe.paths import HostPaths

WG = "wgvm0"
POLICIES = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd() / "policies"
REPORT: dict[str, dict[str, Any]] = {}


def sh(*argv: str, input_text: str | None = None) -> str:
    return subprocess.run(
        list(argv), input=input_text, capture_output=True, text=True, check=True
    ).stdout


ONLY = {x for x in os.environ.get("WGT_VM_ONLY", "").split(",") if x}
"""A developer's shortcut (never set by the tests): run only these checks."""


def check(name: str) -> Callable[[Callable[[], dict[str, Any]]], None]:
    def run(fn: Callable[[], dict[str, Any]]) -> None:
        if ONLY and name not in ONLY:
            return
        began = time.monotonic()
        # Progress for the host (tuner.lab.vm waits while the guest's stderr grows).
        print(f"check {name}: started", file=sys.stderr, flush=True)
        try:
            result = fn()
            REPORT[name] = {"ok": True, **result}
        except Exception as exc:
            REPORT[name] = {"ok": False, "error": repr(exc), "trace": traceback.format_exc()}
        REPORT[name]["seconds"] = round(time.monotonic() - began, 2)
        ok = "passed" if REPORT[name]["ok"] else "FAILED"
        print(f"check {name}: {ok} in {REPORT[name]['seconds']} s", file=sys.stderr, flush=True)

    return run


def wireguard() -> dict[str, str]:
    """wgvm0 with a private key, a listen port and three peers (one with a PSK)."""
    sh("modprobe", "wireguard")
    sh("ip", "link", "add", WG, "type", "wireguard")
    private = sh("wg", "genkey").strip()
    psk = sh("wg", "genpsk").strip()
    Path("/run/wgvm.key").write_text(private)
    Path("/run/wgvm.psk").write_text(psk)
    peers = [sh("wg", "pubkey", input_text=sh("wg", "genkey")).strip() for _ in range(3)]
    sh("wg", "set", WG, "private-key", "/run/wgvm.key", "listen-port", "51820", "fwmark", "0x42")
    sh(
        "wg",
        "set",
        WG,
        "peer",
        peers[0],
        "endpoint",
        "192.0.2.1:51820",
        "allowed-ips",
        "10.9.0.2/32,fd00::2/128",
        "persistent-keepalive",
        "25",
    )
    sh(
        "wg",
        "set",
        WG,
        "peer",
        peers[1],
        "preshared-key",
        "/run/wgvm.psk",
        "endpoint",
        "[2001:db8::1]:4500",
        "allowed-ips",
        "10.9.1.0/24",
    )
    sh("wg", "set", WG, "peer", peers[2], "allowed-ips", "10.9.2.3/32")
    sh("ip", "address", "add", "10.9.0.1/24", "dev", WG)
    sh("ip", "link", "set", WG, "up")
    return {"private": private, "psk": psk, **{f"peer{i}": p for i, p in enumerate(peers)}}


def secrets_of(keys: dict[str, str]) -> list[str]:
    out = []
    for name in ("private", "psk"):
        raw = base64.b64decode(keys[name])
        out += [keys[name], raw.hex()]
    return out


def nic_up() -> str:
    """The virtio-net NIC up with ``TAP_GUEST`` (once), answering the tap's host end."""
    nic = next(p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith("e"))
    if TAP_GUEST not in sh("ip", "-4", "-o", "addr", "show", "dev", nic):
        sh("ip", "addr", "add", f"{TAP_GUEST}/24", "dev", nic)
        sh("ip", "link", "set", nic, "up")
    return nic


def queue_irqs() -> dict[int, str]:
    """The NIC's queue IRQs (``virtioN-input.Q``, ``virtioN-output.Q``) by number."""
    return {
        int(line.split(":")[0]): line.split()[-1]
        for line in Path("/proc/interrupts").read_text().splitlines()
        if "-input." in line or "-output." in line
    }


def affinity(irq: int) -> str:
    return Path(f"/proc/irq/{irq}/smp_affinity_list").read_text().strip()


def cpu_work(seconds: float) -> dict[str, list[float]]:
    """Per CPU over ``seconds``: softirq share of its time (/proc/stat), packets its
    softirq processed (softnet_stat), interrupts of the NIC's input queues."""

    def read() -> tuple[list[list[int]], list[int], list[int]]:
        stat = [
            [int(x) for x in line.split()[1:9]]
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("cpu") and line[3].isdigit()
        ]
        net = [
            int(line.split()[0], 16)
            for line in Path("/proc/net/softnet_stat").read_text().splitlines()
        ]
        irqs = [0] * len(stat)
        for line in Path("/proc/interrupts").read_text().splitlines():
            if "-input." in line:
                for cpu, count in enumerate(line.split(":")[1].split()[: len(stat)]):
                    irqs[cpu] += int(count)
        return stat, net, irqs

    (s0, n0, i0) = read()
    time.sleep(seconds)
    (s1, n1, i1) = read()
    softirq = []
    for a, b in zip(s0, s1, strict=True):
        d = [y - x for x, y in zip(a, b, strict=True)]
        softirq.append(round(d[6] / max(1, sum(d)), 2))
    return {
        "softirq": softirq,
        "processed": [b - a for a, b in zip(n0, n1, strict=True)],
        "interrupts": [b - a for a, b in zip(i0, i1, strict=True)],
    }


def tuner_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-S", "-m", "tuner", *args, "--log-format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )


def main() -> int:
    keys = wireguard()
    leaks = secrets_of(keys)
    sh("modprobe", "virtio_net")

    @check("status_matches_wg_show_dump")
    def status() -> dict[str, Any]:
        proc = tuner_cli("status", "--format", "json", "--sample", "0", "--state-dir", "/run/st")
        assert proc.returncode == 0, proc.stderr[-2000:]
        data = json.loads(proc.stdout)
        (iface,) = [i for i in data["interfaces"] if i["name"] == WG]
        dump = [line.split("\t") for line in sh("wg", "show", WG, "dump").splitlines()]
        head, rows = dump[0], dump[1:]
        mismatches = []

        def same(what: str, ours: object, theirs: object) -> None:
            if ours != theirs:
                mismatches.append(f"{what}: {ours!r} != {theirs!r}")

        same("implementation", iface["implementation"], "kernel")
        same("public_key", iface["public_key"], head[1])
        same("listen_port", iface["listen_port"], int(head[2]))
        same("fwmark", iface["fwmark"], int(head[3], 16) if head[3] != "off" else 0)
        peers = {p["public_key"]: p for p in iface["peers"]}
        same("peer count", len(peers), len(rows))
        for row in rows:
            key, _psk, endpoint, allowed, handshake, rx, tx, keepalive = row
            p = peers.get(key, {})
            same(
                f"{key[:8]} endpoint", p.get("endpoint"), None if endpoint == "(none)" else endpoint
            )
            same(
                f"{key[:8]} allowed",
                sorted(p.get("allowed_ips", [])),
                sorted(a for a in allowed.split(",") if a != "(none)"),
            )
            same(f"{key[:8]} handshake", int(p.get("latest_handshake", -1)), int(handshake))
            same(f"{key[:8]} rx", p.get("rx_bytes"), int(rx))
            same(f"{key[:8]} tx", p.get("tx_bytes"), int(tx))
            same(
                f"{key[:8]} keepalive",
                p.get("persistent_keepalive"),
                0 if keepalive == "off" else int(keepalive),
            )
        assert not mismatches, mismatches
        found = [s[:6] for s in leaks if s in proc.stdout or s in proc.stderr]
        assert not found, f"secrets in status output: {found}"
        return {"fields": 4 + 6 * len(rows), "peers": len(rows), "socket": iface["socket"]}

    @check("metrics_match_and_carry_no_secret")
    def metrics() -> dict[str, Any]:
        proc = tuner_cli("metrics", "--state-dir", "/run/st")
        assert proc.returncode == 0, proc.stderr[-2000:]
        series = [x for x in proc.stdout.splitlines() if x.startswith("wireguard_sent_bytes_total")]
        assert len(series) == 3, series
        found = [s[:6] for s in leaks if s in proc.stdout or s in proc.stderr]
        assert not found, f"secrets in metrics: {found}"
        return {"peer_series": len(series)}

    @check("keepalive_through_genetlink")
    def keepalive() -> dict[str, Any]:
        act = KeepaliveActuator(lambda ifname: GenetlinkWg())
        target = Target("keepalive", WG, keys["peer0"])
        assert act.read(target) == "25"
        assert act.apply(target, "15") is True
        assert act.apply(target, "15") is False, "applying twice writes again"
        shown = sh("wg", "show", WG, "persistent-keepalive")
        assert f"{keys['peer0']}\t15" in shown, shown
        act.revert(target, "25")
        assert act.read(target) == "25"
        before = sh("wg", "show", WG, "peers").split()
        unknown = Target("keepalive", WG, sh("wg", "pubkey", input_text=sh("wg", "genkey")).strip())
        try:
            act.apply(unknown, "25")
            raise AssertionError("an unknown peer was accepted")
        except PermanentActuatorError:
            pass
        after = sh("wg", "show", WG, "peers").split()
        assert before == after, "an unknown key created a peer"
        return {"peers_before": len(before), "peers_after": len(after)}

    @check("mtu_through_netlink")
    def mtu() -> dict[str, Any]:
        act = MtuActuator(NetlinkLinks())
        target = Target("mtu", WG)
        prior = act.read(target)
        assert act.apply(target, "1380") is True
        shown = json.loads(sh("ip", "-j", "link", "show", WG))[0]["mtu"]
        act.revert(target, prior)
        assert shown == 1380 and act.read(target) == prior
        return {"prior": prior, "set": shown}

    @check("initial_namespace_sysctls")
    def sysctls() -> dict[str, Any]:
        sh("modprobe", "nf_conntrack")
        act = SysctlActuator(HostPaths())
        done = {}
        for key, factor in (
            ("net.core.rmem_max", 4),
            ("net.core.wmem_max", 4),
            ("net.core.rmem_default", 2),
            ("net.core.netdev_max_backlog", 4),
            ("net.netfilter.nf_conntrack_max", 2),
        ):
            target = Target("sysctl", key)
            assert act.check(target) is None, f"{key}: {act.check(target)}"
            prior = act.read(target)
            assert prior is not None
            want = str(int(prior) * factor)
            assert act.apply(target, want) is True
            kernel = sh("sysctl", "-n", key).strip()
            act.revert(target, prior)
            assert kernel == want and act.read(target) == prior, (key, kernel, want)
            done[key] = [prior, want]
        return {"changed_and_restored": done}

    @check("irq_affinity_and_rps_on_virtio_queues")
    def irqs() -> dict[str, Any]:
        queues = list(queue_irqs().items())
        assert len(queues) >= 4, f"expected 2 queue pairs: {queues}"
        act = IrqAffinityActuator(HostPaths())
        moved = {}
        for irq, name in queues:
            target = Target("irq_affinity", f"irq/{irq}")
            prior = act.read(target)
            assert act.apply(target, "1") in (True, False)
            kernel = Path(f"/proc/irq/{irq}/smp_affinity_list").read_text().strip()
            act.revert(target, prior)
            assert kernel == "1" and act.read(target) == prior, (irq, kernel, prior)
            moved[name] = prior
        nic = next(p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith("e"))
        rps = Target("irq_affinity", f"{nic}/rx-1")
        prior = act.read(rps)
        act.apply(rps, "0-1")
        mask = Path(f"/sys/class/net/{nic}/queues/rx-1/rps_cpus").read_text().strip()
        act.revert(rps, prior)
        assert mask.endswith("3") and act.read(rps) == prior, (mask, prior)
        return {"irqs": moved, "rps": {"queue": rps.name, "mask_set": mask, "prior": prior}}

    @check("irq_counts_follow_the_affinity_under_load")
    def irq_load() -> dict[str, Any]:
        # Real receive interrupts: a ping flood to the tap's host end, whose replies come
        # in on the NIC's input queues. Each queue's IRQ is moved to one CPU, then to the
        # other, through the actuator; /proc/interrupts must count the flood's interrupts
        # on the CPU the mask names, and the exact prior masks come back at the end.
        nic_up()
        inputs = [
            int(line.split(":")[0])
            for line in Path("/proc/interrupts").read_text().splitlines()
            if "-input." in line
        ]
        assert inputs, "no virtio-net input queue IRQs"

        def per_cpu() -> list[int]:
            total = [0, 0]
            for line in Path("/proc/interrupts").read_text().splitlines():
                head = line.split(":")[0].strip()
                if head.isdigit() and int(head) in inputs:
                    cols = line.split(":")[1].split()
                    total = [total[0] + int(cols[0]), total[1] + int(cols[1])]
            return total

        def flood() -> list[int]:
            before = per_cpu()
            sh("ping", "-f", "-q", "-c", "2000", "-s", "512", TAP_HOST)
            after = per_cpu()
            return [after[0] - before[0], after[1] - before[1]]

        act = IrqAffinityActuator(HostPaths())
        targets = [Target("irq_affinity", f"irq/{irq}") for irq in inputs]
        priors = [act.read(t) for t in targets]
        seen = {}
        try:
            for cpu in ("1", "0"):
                for target in targets:
                    act.apply(target, cpu)
                seen[cpu] = flood()
        finally:
            for target, prior in zip(targets, priors, strict=True):
                act.revert(target, prior)
        restored = [act.read(t) for t in targets]
        on1, on0 = seen["1"], seen["0"]
        assert on1[1] >= 50 and on1[0] <= on1[1] // 10, seen
        assert on0[0] >= 50 and on0[1] <= on0[0] // 10, seen
        assert restored == priors, (restored, priors)
        return {"irqs": inputs, "to_cpu1": on1, "to_cpu0": on0, "priors": priors}

    @check("softirq_hotspot_spread_over_the_queue_irqs")
    def hotspot() -> dict[str, Any]:
        """A flood from outside (the tap's host end: 256 flows, 1,400-byte datagrams to
        wgvm0's port) with every queue IRQ on CPU 0 drowns CPU 0 in softirq while CPU 1
        idles. softirq-irq-spread moves queue 1's IRQs to CPU 1; softirq_spreads
        verifies it on softirq time itself; rollback --last restores every mask."""
        nic_up()
        policies = Path("/run/wgt-spread-policies")
        policies.mkdir()
        text = (POLICIES / "softirq-hotspot.yaml").read_text()
        # The shipped policy wants 5 minutes; one apply samples once.
        (policies / "softirq-hotspot.yaml").write_text(text.replace("for: 5m", "for: 0s"))
        state = Path("/run/wgt-spread")
        irqs = queue_irqs()
        priors = {irq: Path(f"/proc/irq/{irq}/smp_affinity_list").read_text() for irq in irqs}
        flood = Request(rate=150_000, seconds=120, port=51820, flows=256, size=1400)
        try:
            for irq in irqs:
                Path(f"/proc/irq/{irq}/smp_affinity_list").write_text("0")
            stacked = dict.fromkeys(irqs.values(), "0")
            with vm_sender.flood(TAP_HOST, flood):
                time.sleep(1.0)
                before = cpu_work(3.0)
                # On CPU 1, the idle one: on CPU 0 softirq would starve it.
                proc = subprocess.run(
                    ["taskset", "-c", "1", sys.executable, "-S", "-m", "tuner", "apply",
                     "--format", "json", "--state-dir", str(state), "--policies",
                     str(policies), "--sample", "3", "--settle", "1", "--verify-window", "4",
                     "--grace", "1", "--log-format", "json"],
                    capture_output=True, text=True, timeout=300, check=False,
                )  # fmt: skip
                spread = {name: affinity(irq) for irq, name in irqs.items()}
                after = cpu_work(3.0)
            rollback = tuner_cli("rollback", "--last", "--format", "json", "--state-dir",
                                 str(state))  # fmt: skip
            restored = {name: affinity(irq) for irq, name in irqs.items()}
        finally:
            for irq, prior in priors.items():
                Path(f"/proc/irq/{irq}/smp_affinity_list").write_text(prior)
        assert proc.stdout, proc.stderr[-3000:]
        changes = json.loads(proc.stdout)["changes"]
        moved = [c for c in changes if c["status"] != "noop"]
        assert moved and all(c["policy"] == "softirq-irq-spread" for c in moved), changes
        checks = {c["name"]: c["detail"] for c in moved[0]["verification"]["checks"]}
        assert all(c["status"] == "verified" for c in moved), (changes, before, after)
        assert "softirq_spreads" in checks, checks
        assert rollback.returncode == 0 and restored == stacked, (rollback.stderr, restored)
        return {
            "stacked": stacked,
            "spread": spread,
            "restored": restored,
            "before": before,
            "after": after,
            "checks": checks,
            "moved": sorted(c["target"] for c in moved),
        }

    @check("offloads_on_virtio_net")
    def offloads() -> dict[str, Any]:
        # The real virtio-net driver: its changeable features set and reverted exactly
        # through ethtool netlink, each read back with the ethtool binary; a feature the
        # driver fixes is refused and left as it was.
        nic = next(p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith("e"))

        def ethtool_k() -> dict[str, str]:
            out = sh("ethtool", "-k", nic)
            return {
                k.strip(): v.strip()
                for k, v in (x.split(":", 1) for x in out.splitlines()[1:] if ":" in x)
            }

        act = OffloadActuator(EthtoolFeatures())
        toggled = {}
        for feature, shown in (
            ("rx-gro", "generic-receive-offload"),
            ("rx-udp-gro-forwarding", "rx-udp-gro-forwarding"),
            ("tx-generic-segmentation", "generic-segmentation-offload"),
        ):
            target = Target("offload", f"{nic}/{feature}")
            assert act.check(target) is None, (feature, act.check(target))
            prior = act.read(target)
            other = "off" if prior == "on" else "on"
            assert act.apply(target, other) is True
            during = ethtool_k()[shown]
            act.revert(target, prior)
            after = ethtool_k()[shown]
            assert during.startswith(other) and after.startswith(str(prior)), (feature, during)
            assert act.read(target) == prior
            toggled[feature] = f"{prior} -> {other} -> {prior}"
        fixed = [k for k, v in ethtool_k().items() if v.endswith("[fixed]")]
        assert fixed, "virtio-net fixes some features (e.g. its hardware checksums)"
        names = {  # ethtool's display names of the features wg-tuner may write
            "rx-checksumming": "rx-checksum",
            "tx-udp-segmentation": "tx-udp-segmentation",
            "rx-gro-list": "rx-gro-list",
            "tx-tcp-segmentation": "tx-tcp-segmentation",
            "tx-tcp6-segmentation": "tx-tcp6-segmentation",
        }
        kernel_name = next((names[k] for k in fixed if k in names), None)
        assert kernel_name, f"none of {sorted(names)} is fixed here: {fixed}"
        target = Target("offload", f"{nic}/{kernel_name}")
        reason = act.check(target)
        assert reason is not None and "fixed" in reason, reason
        before = ethtool_k()
        try:
            act.apply(target, "off" if act.read(target) == "on" else "on")
            raise AssertionError(f"{kernel_name} (fixed) was accepted")
        except NotApplicable:
            pass
        assert ethtool_k() == before, "a refused feature changed something"
        return {"nic": nic, "toggled": toggled, "refused": kernel_name, "fixed": len(fixed)}

    @check("offload_errors_turn_the_feature_off")
    def offload_errors() -> dict[str, Any]:
        """Someone turns UDP GRO forwarding on under a virtio-net driver that breaks its
        aggregates (an nft netdev rule zeroes the IP checksum of anything longer than
        the MTU: only GRO makes such packets). A one-flow UDP flood from outside to a
        port with no socket (GRO aggregates it: forwarding's rule) fails its checksums;
        offload-errors turns exactly that feature off, verified by the errors stopping.
        (Exact revert of a feature: offloads_on_virtio_net; of this remedy: the lab.)"""
        nic = nic_up()
        policies = Path("/run/wgt-offload-policies")
        policies.mkdir()
        (policies / "offloads.yaml").write_text((POLICIES / "offloads.yaml").read_text())
        state = Path("/run/wgt-offload")
        feature = "rx-udp-gro-forwarding"

        def apply() -> list[dict[str, Any]]:
            proc = tuner_cli("apply", "--format", "json", "--state-dir", str(state),
                             "--policies", str(policies), "--sample", "1", "--settle",
                             "0.5", "--verify-window", "3", "--grace", "1", "--probe-max",
                             "0")  # fmt: skip
            assert proc.stdout, proc.stderr[-3000:]
            return [c for c in json.loads(proc.stdout)["changes"] if c["kind"] == "offload"]

        def errors(seconds: float = 2.0) -> float:
            def count() -> int:
                rows = [r.split() for r in Path("/proc/net/netstat").read_text().splitlines()]
                ip = [r for r in rows if r[0] == "IpExt:"]
                return int(dict(zip(ip[0], ip[1], strict=True))["InCsumErrors"])

            first = count()
            time.sleep(seconds)
            return (count() - first) / seconds

        def shown() -> str:
            line = next(x for x in sh("ethtool", "-k", nic).splitlines() if x.startswith(feature))
            return line.split(":", 1)[1].split()[0]

        rule = f"""table netdev wgt_bad_gro {{
            chain ingress {{
                type filter hook ingress device "{nic}" priority 0; policy accept;
                meta protocol ip meta length > 1500 ip checksum set 0
            }}
        }}"""
        flood = Request(rate=10_000, seconds=120, port=9, flows=1, size=1400)
        sh("nft", "-f", "-", input_text=rule)
        try:
            assert shown() == "off", "the kernel's default"
            # wg-tuner's observer looks once and remembers it off (in this process: a
            # CLI start costs 5 s under emulation; apply reads the same file).
            Observer(offload_history=OffloadHistory(state / OFFLOAD_FILE)).observe()
            with vm_sender.flood(TAP_HOST, flood):
                clean = errors(1.0)
                sh("ethtool", "-K", nic, feature, "on")  # not wg-tuner
                broken = errors()
                changes = apply()
                after = shown()
                stopped = errors()
        finally:
            sh("nft", "delete", "table", "netdev", "wgt_bad_gro")
            sh("ethtool", "-K", nic, feature, "off")
        [change] = changes
        checks = {c["name"]: c for c in change["verification"]["checks"]}
        assert (change["policy"], change["target"], change["status"]) == (
            "offload-errors",
            f"{nic}/{feature}",
            "verified",
        ), change
        assert checks["rx_errors_stop"]["passed"], checks
        assert clean == 0 and broken > 1 and stopped == 0, (clean, broken, stopped)
        assert after == "off"
        return {
            "errors_per_s": [clean, broken, stopped],
            "target": change["target"],
            "verified": checks["rx_errors_stop"]["detail"],
        }

    @check("managed_irq_refuses_and_is_not_revertible")
    def managed() -> dict[str, Any]:
        # blk-mq spreads a multi-queue disk's request IRQs itself (managed affinity): the
        # kernel answers EIO to any write, which must surface as NotRevertible.
        sh("modprobe", "virtio_blk")
        deadline = time.monotonic() + 30
        while True:
            queues = [
                (int(line.split(":")[0]), line.split()[-1])
                for line in Path("/proc/interrupts").read_text().splitlines()
                if "-req." in line
            ]
            if queues or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert queues, "no virtio-blk request IRQs"
        act = IrqAffinityActuator(HostPaths())
        refused = {}
        for irq, name in queues:
            target = Target("irq_affinity", f"irq/{irq}")
            prior = act.read(target)
            other = "0" if prior != "0" else "1"
            try:
                act.apply(target, other)
            except NotRevertible as exc:
                refused[name] = str(exc)
            else:
                raise AssertionError(f"{name} (irq {irq}) accepted an affinity write")
            assert act.read(target) == prior, (name, act.read(target), prior)
        return {"refused": refused}

    print(json.dumps(REPORT, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
