"""The real daemon at 10,000 peers beside local clients that attack its metrics endpoint.

A hundred clients that send a request and never read the answer, and a hundred that
send their headers a byte at a time (slowloris), reconnecting whenever dropped: the
daemon keeps cycling, an honest scrape keeps being answered, and its memory stays within
a fifth of what it was with honest scrapes only (on the thread-per-connection server it
grew from about 72 MB to 826 MB, and cycles failed to start threads).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

from bench.run import add_peers
from tests.conftest import WG_TUNER, unique
from tests.reliability import FigureFn
from tuner.adapters.uapi import UapiClient

PEERS = 10_000
ATTACK_SECONDS = 12

ATTACKER = r"""
import json, socket, sys, time, urllib.request
port, seconds, hostile = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
def connect(kind):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    return [kind, s, 0]
def send(c, data):
    try:
        c[1].send(data)
        return True
    except BlockingIOError:
        return True
    except OSError:
        return False
clients = [connect("never-reads") for _ in range(hostile)]
clients += [connect("slow") for _ in range(hostile)]
time.sleep(0.2)
for c in clients:
    if c[0] == "never-reads":
        send(c, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
scrapes, failures, worst = 0, 0, 0.0
end = time.monotonic() + seconds
next_scrape = time.monotonic()
while time.monotonic() < end:
    for i, c in enumerate(clients):
        ok = send(c, b"X" if c[0] == "slow" else b"")
        if not ok:
            c[1].close()
            clients[i] = connect(c[0])
            if c[0] == "never-reads":
                time.sleep(0.001)
                send(clients[i], b"GET /metrics HTTP/1.1\r\n\r\n")
    if time.monotonic() >= next_scrape:
        next_scrape += 1.0
        began = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                body = r.read()
            assert b"wg_tuner_peer_" in body
            scrapes += 1
        except Exception as exc:
            failures += 1
            print(repr(exc), file=sys.stderr)
        worst = max(worst, time.monotonic() - began)
    time.sleep(0.25)
print(json.dumps({"scrapes": scrapes, "failures": failures, "worst_s": round(worst, 2)}))
"""

SCRAPER = r"""
import sys, urllib.request
for _ in range(5):
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=30) as r:
        assert b"wg_tuner_peer_" in r.read()
"""


def _add_peers(client: UapiClient, ifname: str) -> None:
    client.set(ifname, [("private_key", secrets.token_bytes(32).hex())])
    add_peers(client, ifname, 0, PEERS)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _cycles(log: Path) -> int:
    lines = [x for x in log.read_text().splitlines() if x.startswith("{")]
    return sum(json.loads(x)["event"] == "cycle.done" for x in lines)


def test_hostile_local_clients_do_not_stop_cycles_or_scrapes_or_grow_memory(
    wg_netns: tuple[str, str], tmp_path: Path, figure: FigureFn
) -> None:
    netns, ifname = wg_netns
    _add_peers(UapiClient(Path("/var/run/wireguard"), timeout=60), ifname)
    port = 20000 + secrets.randbelow(5000)
    log = tmp_path / "daemon.log"
    state = tmp_path / unique("state")
    argv = ["ip", "netns", "exec", netns, WG_TUNER, "run", "--mode", "observe"]
    argv += ["--interval", "1", "--log-format", "json", "--state-dir", str(state)]
    argv += ["--metrics-listen", f"127.0.0.1:{port}"]
    with open(log, "w") as err:
        daemon = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
    in_ns = ["ip", "netns", "exec", netns, sys.executable, "-c"]
    try:
        deadline = time.monotonic() + 90
        while _cycles(log) < 3:
            assert daemon.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the daemon did not cycle"
            time.sleep(0.2)
        subprocess.run([*in_ns, SCRAPER, str(port)], check=True, timeout=120)

        def phase(hostile: int) -> tuple[dict[str, float], float, int]:
            """Scrapes every second for ATTACK_SECONDS beside ``hostile`` clients of each
            kind: the scrapes' result, the daemon's peak RSS, the cycles it ran."""
            before = _cycles(log)
            attack = subprocess.Popen(
                [*in_ns, ATTACKER, str(port), str(ATTACK_SECONDS), str(hostile)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            peak = 0.0
            while attack.poll() is None:
                peak = max(peak, _rss_mb(daemon.pid))
                time.sleep(0.1)
            out, errors = attack.communicate()
            assert attack.returncode == 0, errors
            result = json.loads(out)
            assert result["failures"] == 0, (result, errors)
            return result, peak, _cycles(log) - before

        honest, normal, _ = phase(0)  # the daemon's own peak over as many cycles
        result, peak, cycled = phase(100)
        assert daemon.poll() is None, log.read_text()[-2000:]
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    figure(
        "Security",
        "metrics endpoint, 10,000 peers: daemon RSS peak with honest scrapes",
        normal,
        "MB",
    )
    figure("Security", "... RSS peak under 100 never-reading + 100 slowloris clients", peak, "MB")
    figure("Security", "... daemon cycles during the attack", cycled, f"in {ATTACK_SECONDS} s")
    assert result["scrapes"] >= ATTACK_SECONDS - 2 and honest["scrapes"] >= ATTACK_SECONDS - 2
    assert cycled >= ATTACK_SECONDS // 3, f"only {cycled} cycles in {ATTACK_SECONDS} s"
    assert peak <= normal * 1.2, f"RSS {normal:.0f} MB -> {peak:.0f} MB under the attack"
