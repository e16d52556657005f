"""Runs inside the VM with systemd as PID 1: the Ansible role's deploy playbook and the
shipped unit under a real service manager, and commit-confirmed's transient timers.

``python -m tests.vm.guest_systemd REPO WHEELS``: REPO is the repository (its ansible/
tree, read-only), WHEELS a directory of wheels (wg-tuner and its dependencies) that pip
installs from, since the VM has no network. One JSON report, one test per check, as in
guest_lab.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.vm.guest_kernel import REPORT, check
from tests.vm.guest_lab import (
    CT_KEYS,
    nat_in_the_initial_namespace,
    nat_removed,
    records,
    sysctl,
    wait_for,
)

REPO = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
WHEELS = sys.argv[2] if len(sys.argv) > 2 else "/nonexistent"
ANSIBLE = Path(sys.executable).parent / "ansible-playbook"
WINDOW, GRACE = 6, 2
RECAP = r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=0\s+failed=0"


def show(unit: str, *props: str) -> dict[str, str]:
    out = subprocess.run(
        ["systemctl", "show", unit, *(f"--property={p}" for p in props)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal(unit: str) -> str:
    """The unit's status and last journal lines, for a failure's message."""
    status = subprocess.run(
        ["systemctl", "status", "--no-pager", "-l", unit],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = subprocess.run(
        ["journalctl", "-u", unit, "--no-pager", "-n", "40", "-o", "cat"],
        capture_output=True,
        text=True,
        check=False,
    )
    return status.stdout + lines.stdout


def journal_diagnosis(counts: dict[str, float]) -> str:
    """What the daemon counted, what the journal holds, how long journalctl takes here,
    and whether the kernel saw a seccomp kill: for a failed journal check's message."""

    def run(*argv: str) -> str:
        began = time.monotonic()
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
        took = time.monotonic() - began
        return f"$ {' '.join(argv)} (rc {out.returncode}, {took:.1f} s)\n{out.stdout[-1500:]}"

    return "\n".join(
        [
            f"daemon's log counters: {counts}",
            run("journalctl", "--no-pager", "-o", "cat", "-n", "8", "_COMM=wireguard-go"),
            run(
                "journalctl",
                "--output=json",
                "--no-pager",
                "--quiet",
                "--boot",
                "--output-fields=MESSAGE,PRIORITY",
                "--since=-600s",
                "_COMM=wireguard-go",
            ),
            run("journalctl", "--no-pager", "-o", "cat", "-n", "15", "-u", "wg-tuner"),
            run("sh", "-c", "journalctl -k --no-pager -o cat | grep -iE 'seccomp|audit' | tail"),
        ]
    )


def deploy() -> dict[str, Any]:
    """ansible-playbook deploy.yml against this machine; returns the recap's counts."""
    variables = {
        "wg_tuner_hosts": "localhost",
        "wg_tuner_package": "wg-tuner",
        "wg_tuner_pip_extra_args": f"--no-index --find-links {WHEELS}",
        "wg_tuner_interval": 1,
        "wg_tuner_resize_wireguard_sockets": True,
        "ansible_python_interpreter": "/usr/bin/python3",  # apt needs the system's python3-apt
    }
    began = time.monotonic()
    # ansible-core from the venv, imported with its site (not from our bundle).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"ANSIBLE_CONFIG": str(REPO / "ansible/ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(ANSIBLE), "-i", "localhost,", "-c", "local",
         str(REPO / "ansible/playbooks/deploy.yml"), "-e", json.dumps(variables)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # to stderr as it comes: the run's log, read live on the host
        lines.append(line)
        sys.stderr.write(f"{time.monotonic() - began:7.1f} {line}")
        sys.stderr.flush()
    proc.wait(timeout=60)
    out = "".join(lines)
    assert proc.returncode == 0, out[-3000:] + journal("wg-tuner")
    recap = re.search(RECAP, out)
    assert recap, out[-3000:]
    return {"ok": int(recap[1]), "changed": int(recap[2]), "seconds": time.monotonic() - began}


def guard_units() -> list[str]:
    out = subprocess.run(
        ["systemctl", "list-units", "--all", "--plain", "--no-legend", "wg-tuner-guard-*"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


@contextlib.contextmanager
def a_full_conntrack_table(name: str) -> Iterator[tuple[Path, Path]]:
    """The initial namespace's conntrack table at 190 of 200 (what conntrack-pressure
    raises), its policy due after 1 s; yields (policies, state) and restores the sysctls."""
    subprocess.run(["modprobe", "nf_conntrack"], check=True)
    saved = {key: sysctl(key) for key in CT_KEYS}
    policies = Path(f"/run/wgt-{name}-policies")
    policies.mkdir(exist_ok=True)
    text = (REPO / "policies/conntrack-pressure.yaml").read_text()
    (policies / "conntrack-pressure.yaml").write_text(text.replace("for: 60s", "for: 1s"))
    try:
        sysctl("net.netfilter.nf_conntrack_udp_timeout", "300")
        sysctl("net.netfilter.nf_conntrack_max", "200")
        nat_in_the_initial_namespace(190)
        yield policies, Path(f"/run/wgt-{name}-state")
    finally:
        nat_removed()
        for key, value in saved.items():
            sysctl(key, value)


def conntrack_apply(state: Path, policies: Path) -> list[str]:
    """wg-tuner from this bundle (python -S, PYTHONPATH): what the guard's unit must
    be able to run too."""
    return [
        sys.executable, "-S", "-m", "tuner", "apply", "--format", "json",
        "--state-dir", str(state), "--policies", str(policies), "--sample", "1.5",
        "--settle", "0.5", "--verify-window", str(WINDOW), "--grace", str(GRACE),
        "--log-format", "json",
    ]  # fmt: skip


def main() -> int:
    @check("systemd_is_pid1")
    def pid1() -> dict[str, Any]:
        comm = Path("/proc/1/comm").read_text().strip()
        assert comm == "systemd" and Path("/run/systemd/system").is_dir(), comm
        return {"uptime": float(Path("/proc/uptime").read_text().split()[0])}

    # Before the deploy: its daemon would see the same conntrack table.
    @check("a_transient_timer_reverts_a_killed_apply")
    def timer() -> dict[str, Any]:
        with a_full_conntrack_table("killed") as (policies, state):
            proc = subprocess.Popen(
                conntrack_apply(state, policies), stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            applied = lambda: any(r["state"] == "applied" for r in records(state))  # noqa: E731
            wait_for("an applied change", applied, 300)
            rec = next(r for r in records(state) if r["state"] == "applied")
            guard = rec["extra"]["guard"]
            units = guard_units()
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            assert sysctl("net.netfilter.nf_conntrack_max") == "400"
            reverted_at = wait_for(
                "the timer's revert", lambda: sysctl("net.netfilter.nf_conntrack_max") == "200", 180
            )
        last = records(state)[-1]
        assert (last["state"], last["code"]) == ("reverted", "deadline"), last
        assert guard["how"] == "systemd" and f"{guard['unit']}.timer" in units, (guard, units)
        wait_for("the guard's units to go", lambda: not guard_units(), 60)
        return {
            "guard": guard["how"],
            "units": units,
            "late": round(reverted_at - (float(rec["deadline"]) + GRACE), 2),
        }

    @check("a_verified_apply_cancels_its_timer")
    def cancelled() -> dict[str, Any]:
        with a_full_conntrack_table("verified") as (policies, state):
            done = subprocess.run(
                conntrack_apply(state, policies),
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert done.returncode == 0, done.stderr[-2000:]
            states = [r["state"] for r in records(state)]
            left = guard_units()
        assert states[-1] == "verified", states
        rec = next(r for r in records(state) if r["state"] == "applied")
        assert rec["extra"]["guard"]["how"] == "systemd", rec["extra"]
        assert left == [], left
        return {"states": states}

    @check("deploy_playbook_installs_enables_and_starts")
    def first() -> dict[str, Any]:
        # No network here: the apt cache counts as fresh and pip installs from WHEELS.
        stamp = Path("/var/lib/apt/periodic/update-success-stamp")
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
        result = deploy()
        enabled = subprocess.run(
            ["systemctl", "is-enabled", "wg-tuner"], capture_output=True, text=True, check=False
        ).stdout.strip()
        wait_for(
            "wg-tuner active",
            lambda: show("wg-tuner", "ActiveState")["ActiveState"] in ("active", "failed"),
            120,
        )
        state = show("wg-tuner", "ActiveState", "SubState", "Type", "NotifyAccess", "StatusText")
        assert (enabled, state["ActiveState"]) == ("enabled", "active"), journal("wg-tuner")
        return {**result, "enabled": enabled, **state}

    def deployed() -> None:
        assert REPORT["deploy_playbook_installs_enables_and_starts"]["ok"], "no deployed unit"

    @check("the_watchdog_is_fed")
    def watchdog() -> dict[str, Any]:
        deployed()
        props = ("WatchdogUSec", "WatchdogTimestampMonotonic", "NRestarts", "ActiveState")
        before = show("wg-tuner", *props)
        time.sleep(6)
        after = show("wg-tuner", *props)
        fed = int(after["WatchdogTimestampMonotonic"]) - int(before["WatchdogTimestampMonotonic"])
        assert fed > 0 and after["NRestarts"] == "0" and after["ActiveState"] == "active", after
        return {"watchdog_usec": after["WatchdogUSec"], "fed_within_us": fed}

    @check("the_deployed_daemon_reads_the_kernel_log")
    def kernel_log() -> dict[str, Any]:
        """Under the unit's sandbox (PrivateDevices, CAP_SYSLOG, /dev/kmsg bound in
        read-only) the daemon's metrics carry the kernel log's event counters."""
        deployed()

        def scraped() -> str:
            with urllib.request.urlopen("http://127.0.0.1:10586/metrics", timeout=10) as r:
                return str(r.read().decode())

        def ready() -> bool:
            try:
                return "wg_tuner_snapshot_timestamp_seconds" in scraped()
            except OSError:
                return False  # not listening yet

        wait_for("a scrape", ready, 120)
        text = scraped()
        lines = [x for x in text.splitlines() if x.startswith("wg_tuner_log_events_total")]
        assert lines, text[-2000:] + journal("wg-tuner")
        return {"series": len(lines)}

    @check("the_deployed_daemon_counts_wireguard_gos_journal")
    def wireguard_go_journal() -> dict[str, Any]:
        """wireguard-go under a unit of its own (verbose), logging to the real journald:
        a peer nobody answers gives handshake retries and failed sends (the VM has no
        route out), and the deployed daemon counts them from the journal."""
        deployed()
        env = ("LOG_LEVEL=verbose", "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1")
        subprocess.run(
            ["systemd-run", "--unit=wgt-wggo", *(f"--setenv={e}" for e in env),
             "wireguard-go", "-f", "wgj0"],
            check=True, capture_output=True,
        )  # fmt: skip
        try:
            wait_for("wgj0", lambda: Path("/sys/class/net/wgj0").exists(), 60)

            def genkey() -> str:
                return subprocess.run(
                    ["wg", "genkey"], capture_output=True, text=True, check=True
                ).stdout

            key = genkey()  # the interface's; the peer's below belongs to nobody
            nobody = subprocess.run(
                ["wg", "pubkey"], input=genkey(), capture_output=True, text=True, check=True
            )
            keyfile = Path("/run/wgt-wggo.key")
            keyfile.write_text(key)
            subprocess.run(
                ["wg", "set", "wgj0", "private-key", str(keyfile), "listen-port", "51830",
                 "peer", nobody.stdout.strip(), "endpoint", "192.0.2.9:51820",
                 "allowed-ips", "10.77.0.2/32"],
                check=True,
            )  # fmt: skip
            subprocess.run(["ip", "addr", "add", "10.77.0.1/24", "dev", "wgj0"], check=True)
            subprocess.run(["ip", "link", "set", "wgj0", "up"], check=True)
            # Traffic for the peer, one packet every 30 s: each starts a handshake, and
            # wireguard-go retries it every 5 s until the next packet. Traffic every
            # 0.5 s (as before) started a new handshake each 5 s instead, which raced
            # the retry timer and under emulation won it for minutes: no retry line.
            sender = (
                "import socket,time\n"
                "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                "for _ in range(10):\n"
                "    s.sendto(b'x',('10.77.0.2',9)); time.sleep(30)\n"
            )
            pinger = subprocess.Popen(
                [sys.executable, "-S", "-c", sender],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

            def counts() -> dict[str, float]:
                with urllib.request.urlopen("http://127.0.0.1:10586/metrics", timeout=10) as r:
                    text = r.read().decode()
                found = re.findall(r'wg_tuner_log_events_total\{kind="(\w+)"\} (\S+)', text)
                return {kind: float(value) for kind, value in found}

            try:
                try:
                    wait_for(
                        "handshake retries counted from the journal",
                        lambda: counts().get("handshake_retry", 0) >= 1,
                        150,
                    )
                except AssertionError:
                    raise AssertionError(journal_diagnosis(counts())) from None
                got = counts()
            finally:
                pinger.kill()
                pinger.wait()
            lines = subprocess.run(
                ["journalctl", "--no-pager", "-o", "cat", "_COMM=wireguard-go"],
                capture_output=True, text=True, check=False,
            ).stdout  # fmt: skip
            assert "Handshake did not complete" in lines, lines[-2000:]
            return {
                "handshake_retry": got.get("handshake_retry", 0),
                "send_error": got.get("send_error", 0),
                "journal_lines": len(lines.splitlines()),
            }
        finally:
            subprocess.run(["systemctl", "stop", "wgt-wggo"], check=False)

    @check("the_units_sandbox_lets_udp_socket_grow_resize_only_when_opted_in")
    def sandboxed_resize() -> dict[str, Any]:
        """The socket_buffer actuator under the deployed unit's own sandbox: a oneshot
        unit written from the deployed wg-tuner.service (its capabilities, system call
        filter, mounts, parsed by systemd as that file is), with only the command
        replaced. With the opt-in it resizes a wireguard-go socket in place and
        restores it; with the opt-in's lines taken out it is refused, and says why."""
        deployed()
        unit = Path("/etc/systemd/system/wg-tuner.service").read_text()
        service = unit.split("[Service]", 1)[1].split("[Install]", 1)[0]
        dropped = ("Type", "NotifyAccess", "ExecStart", "ExecReload", "Restart", "RestartSec",
                   "RestartPreventExitStatus", "WatchdogSec")  # fmt: skip
        settings = [
            line.strip()
            for line in re.sub(r"\\\n", " ", service).splitlines()
            if "=" in line and not line.startswith("#") and line.split("=", 1)[0] not in dropped
        ]
        opt_in = ("CapabilityBoundingSet=CAP_SYS_PTRACE", "AmbientCapabilities=CAP_SYS_PTRACE",
                  "SystemCallFilter=pidfd_getfd")  # fmt: skip
        assert all(line in settings for line in opt_in), settings
        script = Path("/run/wgt-sandbox.py")
        script.write_text(
            "import json,sys\n"
            "from tuner.actuators.base import Target\n"
            "from tuner.actuators.registry import build\n"
            "a=build()['socket_buffer'];t=Target('socket_buffer',sys.argv[1])\n"
            "out={'check':a.check(t)}\n"
            "if out['check'] is None:\n"
            "    out['prior']=p=a.read(t);out['changed']=a.apply(t,'7340032')\n"
            "    out['grown']=a.read(t);a.revert(t,p);out['restored']=a.read(t)\n"
            "print('RESULT',json.dumps(out),flush=True)\n"
        )

        def under(name: str, lines: list[str]) -> dict[str, Any]:
            Path(f"/run/systemd/system/{name}.service").write_text(
                "[Service]\nType=oneshot\n"
                f"ExecStart=/opt/wg-tuner/bin/python {script} wgs0\n" + "\n".join(lines) + "\n"
            )
            subprocess.run(["systemctl", "daemon-reload"], check=True)
            started = subprocess.run(
                ["systemctl", "start", f"{name}.service"],
                capture_output=True,
                text=True,
                check=False,
                timeout=300,
            )
            assert started.returncode == 0, (started.stderr, journal(name)[-3000:])

            def results() -> list[str]:  # journald takes the line in on its own time
                return [x for x in journal(name).splitlines() if x.startswith("RESULT ")]

            wait_for(f"{name}'s result in the journal", lambda: bool(results()), 30)
            (line,) = results()
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result

        subprocess.run(
            ["systemd-run", "--unit=wgt-wgsock",
             "--setenv=WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1",
             "wireguard-go", "-f", "wgs0"],
            check=True, capture_output=True,
        )  # fmt: skip
        try:
            wait_for("wgs0", lambda: Path("/sys/class/net/wgs0").exists(), 60)
            subprocess.run(["wg", "set", "wgs0", "listen-port", "51840"], check=True)
            subprocess.run(["ip", "link", "set", "wgs0", "up"], check=True)
            allowed = under("wgt-sandbox-opted-in", settings)
            refused = under("wgt-sandbox-default", [x for x in settings if x not in opt_in])
        finally:
            subprocess.run(["systemctl", "stop", "wgt-wgsock"], check=False)
            for name in ("wgt-sandbox-opted-in", "wgt-sandbox-default"):
                Path(f"/run/systemd/system/{name}.service").unlink(missing_ok=True)
        assert allowed["check"] is None and allowed["changed"] is True, allowed
        assert allowed["grown"] == "7340032" and allowed["restored"] == allowed["prior"], allowed
        assert "CAP_SYS_PTRACE" in (refused["check"] or ""), refused
        return {"opted_in": allowed, "default": refused, "settings": len(settings)}

    @check("second_deploy_changes_nothing")
    def second() -> dict[str, Any]:
        deployed()
        result = deploy()
        assert result["changed"] == 0, result
        return result

    print(json.dumps(REPORT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
