"""Current values of the knobs wg-tuner may change: sysctls, RPS/XPS masks, its nft table,
the underlays' NIC offload features."""

from __future__ import annotations

from collections.abc import Iterable

from tuner.adapters.ethtool import FeaturePort
from tuner.adapters.nft import Nft
from tuner.errors import ObserveError
from tuner.model.cpumask import normalise_mask
from tuner.model.knobs import OFFLOAD_FEATURES, READ_ONLY_SYSCTLS, SYSCTL_ALLOWLIST
from tuner.model.snapshot import Knobs, frozen_map
from tuner.observe.paths import HostPaths
from tuner.observe.procfs import read_sysctl


def read_queue_masks(
    paths: HostPaths, devices: Iterable[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """RPS (rx-N/rps_cpus) and XPS (tx-N/xps_cpus) masks, normalised to CPU lists."""
    rps: dict[str, str] = {}
    xps: dict[str, str] = {}
    for dev in devices:
        queues = paths.sys("class", "net", dev, "queues")
        try:
            entries = sorted(p.name for p in queues.iterdir())
        except OSError:
            continue
        for queue in entries:
            target, name = (rps, "rps_cpus") if queue.startswith("rx-") else (xps, "xps_cpus")
            try:
                text = (queues / queue / name).read_text()
            except OSError:
                continue  # xps_cpus is unreadable on some single-queue devices
            try:
                target[f"{dev}/{queue}"] = normalise_mask(text)
            except ValueError:
                continue
    return rps, xps


def read_offloads(
    features: FeaturePort, devices: Iterable[str], notes: list[str]
) -> dict[str, str]:
    """The allowlisted features each device's driver lets change, as on/off."""
    out: dict[str, str] = {}
    for dev in devices:
        try:
            got = features.features(dev)
        except ObserveError as exc:
            notes.append(str(exc))
            continue
        for name in OFFLOAD_FEATURES:
            enabled, changeable = got.get(name, (False, False))
            if changeable:
                out[f"{dev}/{name}"] = "on" if enabled else "off"
    return out


def read_knobs(
    paths: HostPaths,
    devices: Iterable[str],
    nft: Nft | None,
    features: FeaturePort | None = None,
) -> tuple[Knobs, tuple[str, ...]]:
    notes: list[str] = []
    devices = list(devices)
    sysctls = {key: read_sysctl(paths, key) for key in SYSCTL_ALLOWLIST + READ_ONLY_SYSCTLS}
    rps, xps = read_queue_masks(paths, devices)
    table: str | None = None
    if nft is not None and nft.available:
        try:
            table = nft.read_table()
        except ObserveError as exc:
            notes.append(str(exc))
    elif nft is not None:
        notes.append("nft is not installed: MSS clamping state unknown")
    offloads = read_offloads(features, devices, notes) if features is not None else {}
    knobs = Knobs(
        frozen_map(sysctls), frozen_map(rps), frozen_map(xps), table, frozen_map(offloads)
    )
    return knobs, tuple(notes)
