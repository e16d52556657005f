"""Parsers and readers for the /proc files wg-tuner watches.

The parsers are pure (text in, values out) so they are tested on recorded text; the
``read_*`` functions only add the file access through HostPaths. A file that does not
exist in this namespace or kernel yields an empty value, never an exception.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from tuner.model.cpumask import normalise_list, normalise_mask
from tuner.model.kinds import normalise_sysctl
from tuner.model.snapshot import Conntrack, CpuSoftnet, CpuTimes, Interrupt, ProcessCpu
from tuner.observe.paths import HostPaths


def _read(path: object) -> str | None:
    try:
        with open(str(path), encoding="ascii", errors="replace") as fh:
            return fh.read()
    except (FileNotFoundError, NotADirectoryError, PermissionError, OSError):
        return None


def parse_header_pairs(text: str) -> Mapping[str, Mapping[str, int]]:
    """/proc/net/snmp and /proc/net/netstat: pairs of ``Proto: names`` / ``Proto: values``."""
    out: dict[str, Mapping[str, int]] = {}
    lines = text.splitlines()
    for header, values in zip(lines[::2], lines[1::2], strict=False):
        proto, _, names = header.partition(":")
        vproto, _, nums = values.partition(":")
        if proto != vproto:
            continue
        table: dict[str, int] = {}
        for name, num in zip(names.split(), nums.split(), strict=False):
            try:
                table[name] = int(num)
            except ValueError:
                continue
        out[proto.strip()] = MappingProxyType(table)
    return MappingProxyType(out)


def parse_softnet(text: str) -> tuple[CpuSoftnet, ...]:
    """/proc/net/softnet_stat: hex columns per CPU (processed, dropped, time_squeeze, ...)."""
    rows: list[CpuSoftnet] = []
    for index, line in enumerate(text.splitlines()):
        cols = line.split()
        if len(cols) < 3:
            continue
        # Column 13 (since 5.10) is the CPU id; older kernels list online CPUs in order.
        cpu = int(cols[12], 16) if len(cols) >= 13 else index
        rows.append(CpuSoftnet(cpu, int(cols[0], 16), int(cols[1], 16), int(cols[2], 16)))
    return tuple(rows)


def parse_stat(text: str) -> tuple[CpuTimes, ...]:
    """Per-core lines of /proc/stat (``cpuN user nice system idle iowait irq softirq steal``)."""
    rows: list[CpuTimes] = []
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        cols = line.split()
        nums = [int(c) for c in cols[1:9]] + [0] * (8 - len(cols[1:9]))
        rows.append(CpuTimes(int(cols[0][3:]), *nums))
    return tuple(rows)


def _named_after(name: str, prefixes: Iterable[str]) -> str | None:
    """The prefix an IRQ's action name belongs to (``eth0`` for ``eth0-TxRx-0``)."""
    return next((p for p in prefixes if name == p or name.startswith((f"{p}-", f"{p}:"))), None)


def parse_interrupts(
    text: str, devices: Iterable[str]
) -> tuple[tuple[int, str, tuple[int, ...]], ...]:
    """Numbered IRQ lines of /proc/interrupts whose action names one of ``devices``.

    Returns (irq, action name, per-CPU counts). NIC queue IRQs are named after the
    device (``eth0-TxRx-0``, ``eth0``), so matching the name prefix finds them.
    """
    wanted = tuple(d for d in devices if d)
    lines = text.splitlines()
    if not lines or not wanted:
        return ()
    ncpu = len(lines[0].split())
    out: list[tuple[int, str, tuple[int, ...]]] = []
    for line in lines[1:]:
        label, _, rest = line.partition(":")
        if not label.strip().isdigit():
            continue
        cols = rest.split()
        counts = tuple(int(c) for c in cols[:ncpu] if c.isdigit())
        name = cols[-1] if cols else ""
        if _named_after(name, wanted) is not None:
            out.append((int(label), name, counts))
    return tuple(out)


_SNMP6_PROTO = re.compile(r"([A-Za-z]+6)")


def parse_snmp6(text: str) -> Mapping[str, Mapping[str, int]]:
    """/proc/net/snmp6: one ``Ip6InReceives  123`` per line, grouped by the name's
    protocol (``Ip6``, ``Icmp6``, ``Udp6``, ``UdpLite6``); names are kept whole."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            continue
        proto = _SNMP6_PROTO.match(parts[0])
        if proto:
            out.setdefault(proto[1], {})[parts[0]] = int(parts[1])
    return MappingProxyType({k: MappingProxyType(v) for k, v in out.items()})


def read_snmp(paths: HostPaths) -> Mapping[str, Mapping[str, int]]:
    """/proc/net/snmp, with /proc/net/snmp6's protocols beside (absent without IPv6)."""
    text = _read(paths.proc("net", "snmp"))
    text6 = _read(paths.proc("net", "snmp6"))
    v4 = parse_header_pairs(text) if text else {}
    v6 = parse_snmp6(text6) if text6 else {}
    return MappingProxyType({**v4, **v6})


def read_netstat(paths: HostPaths) -> Mapping[str, Mapping[str, int]]:
    text = _read(paths.proc("net", "netstat"))
    return parse_header_pairs(text) if text else MappingProxyType({})


def read_softnet(paths: HostPaths) -> tuple[CpuSoftnet, ...]:
    text = _read(paths.proc("net", "softnet_stat"))
    return parse_softnet(text) if text else ()


def read_cpus(paths: HostPaths) -> tuple[CpuTimes, ...]:
    text = _read(paths.proc("stat"))
    return parse_stat(text) if text else ()


_QUEUE_NUMBER = re.compile(r"[^0-9]([0-9]{1,5})$")


def queue_number(prefix: str, name: str) -> int | None:
    """The queue an IRQ named ``name`` serves, after its device's ``prefix``: the number
    that ends it (``-TxRx-3``, ``-input.3``, ``-rx-3``); None when nothing follows the
    prefix or no number ends it (``virtio0-config``)."""
    m = _QUEUE_NUMBER.search(name[len(prefix) :])
    return int(m[1]) if m else None


def irq_prefixes(paths: HostPaths, device: str) -> tuple[str, ...]:
    """Names a link's IRQs begin with in /proc/interrupts: its own, and its bus device's
    when that is a virtio device (virtio-net names its queues ``virtio3-input.0``)."""
    bus = os.path.basename(os.path.realpath(paths.sys("class", "net", device, "device")))
    return (device, bus) if bus.startswith("virtio") and bus[6:].isdigit() else (device,)


def read_interrupts(paths: HostPaths, devices: Iterable[str]) -> tuple[Interrupt, ...]:
    text = _read(paths.proc("interrupts"))
    if not text:
        return ()
    owner = {prefix: dev for dev in devices for prefix in irq_prefixes(paths, dev)}
    out: list[Interrupt] = []
    for irq, name, counts in parse_interrupts(text, owner):
        prefix = _named_after(name, owner)
        if prefix is None:  # parse_interrupts matched it: never
            continue
        affinity = _read(paths.proc("irq", str(irq), "smp_affinity_list"))
        out.append(
            Interrupt(
                irq,
                name,
                counts,
                normalise_list(affinity) if affinity else None,
                owner[prefix],
                queue_number(prefix, name),
            )
        )
    return tuple(out)


def read_irq_cpus(paths: HostPaths) -> str | None:
    text = _read(paths.proc("irq", "default_smp_affinity"))
    try:
        return normalise_mask(text) if text else None
    except ValueError:
        return None


def parse_task_stat(text: str) -> int | None:
    """utime + stime (fields 14 and 15) of /proc/PID/task/TID/stat; the command name
    (field 2) may hold spaces and parentheses, so fields are counted after its last ')'."""
    _, sep, rest = text.rpartition(")")
    fields = rest.split()
    if not sep or len(fields) < 13:
        return None
    utime, stime = fields[11], fields[12]  # fields 14 and 15, counted from field 3
    return int(utime) + int(stime) if utime.isdigit() and stime.isdigit() else None


def read_process_cpu(paths: HostPaths, pid: int) -> ProcessCpu | None:
    """CPU ticks per thread of ``pid``; None when it is gone or unreadable."""
    task = paths.proc(str(pid), "task")
    try:
        tids = [int(t.name) for t in task.iterdir() if t.name.isdigit()]
    except OSError:
        return None
    threads: dict[int, int] = {}
    for tid in tids:
        text = _read(task / str(tid) / "stat")
        ticks = parse_task_stat(text) if text else None
        if ticks is not None:
            threads[tid] = ticks
    return ProcessCpu(pid, MappingProxyType(threads)) if threads else None


def read_conntrack(paths: HostPaths) -> Conntrack | None:
    count = _read(paths.sysctl("net.netfilter.nf_conntrack_count"))
    limit = _read(paths.sysctl("net.netfilter.nf_conntrack_max"))
    if count is None or limit is None:
        return None
    try:
        return Conntrack(int(count), int(limit))
    except ValueError:
        return None


def read_sysctl(paths: HostPaths, key: str) -> str | None:
    text = _read(paths.sysctl(key))
    return None if text is None else normalise_sysctl(text)
