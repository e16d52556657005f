"""`make bench`: build a wireguard-go interface with many peers in a throwaway namespace,
measure reading it, and write docs/benchmarks.md. Needs root; removes what it made."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import secrets
import subprocess
import sys
import time
from pathlib import Path

from tuner.adapters.uapi import UapiClient

REPO = Path(__file__).resolve().parent.parent
SOCKETS = Path("/var/run/wireguard")


def add_peers(client: UapiClient, ifname: str, start: int, stop: int) -> None:
    batch: list[tuple[str, str]] = []
    for i in range(start, stop):
        batch += [
            ("public_key", secrets.token_bytes(32).hex()),
            ("endpoint", f"198.18.{i // 250 % 250}.{i % 250 + 1}:51820"),
            ("allowed_ip", f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}/32"),
        ]
        if len(batch) >= 3000:
            client.set(ifname, batch)
            batch = []
    if batch:
        client.set(ifname, batch)


def measure(netns: str, ifname: str, repeat: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            "-m",
            "bench.measure_read",
            ifname,
            "--repeat",
            str(repeat),
        ],
        text=True,
        stdout=subprocess.PIPE,
        check=True,
        cwd=REPO,
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def read_benchmark(sizes: list[int], repeat: int) -> list[dict[str, float]]:
    tag = secrets.token_hex(3)
    netns, ifname = f"wgbench-{tag}", f"wgbench{tag}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    proc = None
    try:
        env = dict(os.environ, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD="1")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "wireguard-go", "-f", ifname],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = UapiClient(SOCKETS, timeout=60)
        deadline = time.monotonic() + 10
        while not client.has_socket(ifname):
            if time.monotonic() > deadline:
                raise SystemExit("wireguard-go did not start")
            time.sleep(0.05)
        client.set(
            ifname, [("private_key", secrets.token_bytes(32).hex()), ("listen_port", "51999")]
        )
        rows, have = [], 0
        for size in sorted(sizes):
            add_peers(client, ifname, have, size)
            have = size
            print(f"bench: reading {size} peers ...", file=sys.stderr)
            rows.append(measure(netns, ifname, repeat))
        return rows
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", netns], check=False)


def probe_benchmark(repeat: int) -> list[dict[str, object]]:
    """Probes used and time per peer on the lab, clean and with blackholes."""
    import statistics
    import tempfile

    from tuner.lab.lab import Lab

    state = Path(tempfile.mkdtemp(prefix="wg-tuner-bench-"))
    lab = Lab("bp" + secrets.token_hex(2), state)
    lab.up()
    rows: list[dict[str, object]] = []
    try:
        for label, path in (
            ("clean path", None),
            ("blackhole 1400", 1400),
            ("blackhole 1300", 1300),
        ):
            if path:
                lab.fault("mtu-blackhole", True, mtu=path)
            samples = []
            for _ in range(repeat):
                out = subprocess.run(
                    [
                        "ip",
                        "netns",
                        "exec",
                        lab.topo.a.netns,
                        sys.executable,
                        "-m",
                        "tuner",
                        "status",
                        "--probe",
                        "--sample",
                        "0",
                        "--format",
                        "json",
                        "--state-dir",
                        str(state),
                        "--log-format",
                        "json",
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                    cwd=REPO,
                ).stdout
                samples.append(json.loads(out)["probes"][0])
            if path:
                lab.fault("mtu-blackhole", False)
            rows.append(
                {
                    "case": label,
                    "answer": sorted({s["tunnel_mtu"] for s in samples}),
                    "method": samples[0]["method"],
                    "probes": statistics.median(s["probes"] for s in samples),
                    "sizes": statistics.median(s["sizes"] for s in samples),
                    "seconds": round(statistics.median(s["duration"] for s in samples), 2),
                }
            )
    finally:
        lab.down()
    return rows


def git_commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    return out.stdout.strip() or "unknown"


def render(rows: list[dict[str, float]], probe_rows: list[dict[str, object]]) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` on {now}, commit `{git_commit()}`, "
        f"{platform.machine()} with {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        "wireguard-go in a network namespace. Medians in milliseconds. Do not edit by hand.",
        "",
        "## Reading one interface",
        "",
        "`wg show` is `wg show IF dump` as a subprocess (what a script would run). "
        "`socket` is the raw `get=1` exchange alone (wireguard-go building its reply), "
        "`parse` our parser alone, `read` socket + parse, `snapshot` a whole Snapshot "
        "(links, routes, /proc, knobs).",
        "",
        "| peers | reply | wg show | socket | parse | read | snapshot | read / wg show |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = r["interface_read_ms"] / r["wg_show_dump_ms"] if r["wg_show_dump_ms"] else 0
        lines.append(
            f"| {r['peers']:,} | {r['reply_bytes'] / 1e6:.1f} MB | {r['wg_show_dump_ms']} | "
            f"{r['socket_only_ms']} | {r['parse_only_ms']} | {r['interface_read_ms']} | "
            f"{r['snapshot_ms']} | {ratio:.2f} |"
        )
    lines += [
        "",
        "## Daemon cycle",
        "",
        "One `wg-tuner run` cycle in observe mode with the shipped policies and nothing due",
        "(observe, evaluate, plan, journal read; probes excluded: they run only when due).",
        "RSS is the peak of the measuring process, which holds up to 2,000 snapshots.",
        "",
        "| peers | cycle (ms) | peak RSS (MB) |",
        "|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['peers']:,} | {r['cycle_ms']} | {r['rss_mb']} |")
    lines += [
        "",
        "## Path-MTU probe per peer (lab, wireguard-go)",
        "",
        "Sizes are the distinct packet sizes probed; packets are the ICMP echo requests",
        "sent (each lost size is retried twice). Time is the whole search for one peer.",
        "Expected answers: 1420 (clean), 1340, 1240.",
        "",
        "| case | answer | method | sizes | packets | seconds |",
        "|---|---|---|---:|---:|---:|",
    ]
    for p in probe_rows:
        lines.append(
            f"| {p['case']} | {', '.join(str(a) for a in p['answer'])} | {p['method']} | "
            f"{p['sizes']} | {p['probes']} | {p['seconds']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("make bench needs root (namespaces, wireguard-go)")
    rows = read_benchmark([int(s) for s in args.sizes.split(",")], args.repeat)
    probe_rows = probe_benchmark(max(3, args.repeat // 2))
    text = render(rows, probe_rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
