"""Friendly peer names, read the way the tools that write them do.

WireGuard itself has no names: the tools that manage it keep them in comments of the
configs they write. Recognised, per peer section:

- ``# friendly_name = NAME`` in the section (prometheus_wireguard_exporter's convention,
  also written by wg-portal);
- ``# -WGP- Display name: NAME`` in the section (wg-portal);
- ``# Name: NAME`` or ``# Name = NAME`` just above the section or in it (wireguard-ui);
- ``# Client: NAME (ID)`` just above the section (wg-easy).

Sources: wg-quick configs (``/etc/wireguard/IFACE.conf``, ``[Peer]``) and
systemd-networkd netdevs (``/etc/systemd/network/*.netdev`` with ``Kind=wireguard``:
``[NetDev] Name=`` is the interface, ``[WireGuardPeer]`` the peers).

These files hold private and preshared keys (wg-portal even writes peers' private keys
into comments). Only the lines above are looked at, and only ``PublicKey`` among the
settings: nothing else from a file is kept, logged or put in an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

MAX_NAME = 64
MAX_FILE = 4 << 20
"""Configs larger than this are skipped (a name is not worth reading 4 MiB for)."""

_SECTION = re.compile(r"^\s*\[(?P<name>[A-Za-z]+)\]\s*$")
_SETTING = re.compile(r"^\s*(?P<key>[A-Za-z]+)\s*=\s*(?P<value>\S.*?)\s*$")
_NAME = re.compile(r"^\s*#\s*Name\s*[:=]\s*(?P<name>.+?)\s*$")
_ANYWHERE = (
    (1, re.compile(r"^\s*#\s*friendly_name\s*=\s*(?P<name>.+?)\s*$")),
    (2, re.compile(r"^\s*#\s*-WGP-\s+Display name:\s*(?P<name>.+?)\s*$")),
)
"""Comments that name the section they are in, wherever in it."""
_ABOVE = (
    (3, _NAME),
    (4, re.compile(r"^\s*#\s*Client:\s*(?P<name>.+?)(?:\s+\([^()]*\))?\s*$")),
)
"""Comments that name the next section when they stand just above it (a ``# Name``
also counts at the head of its section, before any setting)."""
_KEY = re.compile(r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")
"""A WireGuard public key in base64 (32 bytes: the last character's low bits are 0)."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where names come from; the defaults are where the tools write them."""

    wg_quick: Path = Path("/etc/wireguard")
    networkd: Path = Path("/etc/systemd/network")


def clean(name: str) -> str | None:
    """A label-safe name: printable, single-line, at most MAX_NAME characters."""
    text = "".join(c for c in name if c.isprintable()).strip()
    return text[:MAX_NAME] or None


def parse(text: str, peer_section: str) -> dict[str, str]:
    """Names by public key from one config's text; ``peer_section`` is ``Peer`` (wg-quick)
    or ``WireGuardPeer`` (networkd)."""
    names: dict[str, str] = {}
    above: list[tuple[int, str]] = []  # candidates in the comments just above a section
    current: list[tuple[int, str]] | None = None  # candidates of the open peer section
    key: str | None = None
    head = False  # no setting yet in the open section

    def close() -> None:
        if current is not None and key is not None and current:
            names[key] = min(current, key=lambda c: c[0])[1]  # the first of the best

    for line in text.splitlines():
        section = _SECTION.match(line)
        if section:
            close()
            key = None
            current = list(above) if section["name"] == peer_section else None
            above, head = [], True
            continue
        if line.lstrip().startswith("#"):
            for rank, pattern in _ABOVE:
                found = pattern.match(line)
                if found and (name := clean(found["name"])):
                    above.append((rank, name))
            if current is not None:
                patterns = (*_ANYWHERE, (3, _NAME)) if head else _ANYWHERE
                for rank, pattern in patterns:
                    found = pattern.match(line)
                    if found and (name := clean(found["name"])):
                        current.append((rank, name))
            continue
        if not line.strip():
            continue
        above, head = [], False  # a setting detaches the comments above it
        setting = _SETTING.match(line)
        if current is not None and setting and setting["key"] == "PublicKey":
            value = setting["value"]
            key = value if _KEY.match(value) else None
    close()
    return names


def _netdev_interface(text: str) -> str | None:
    """``[NetDev] Name=`` of a netdev whose ``Kind=wireguard``; None for other kinds."""
    section, name, kind = None, None, None
    for line in text.splitlines():
        found = _SECTION.match(line)
        if found:
            section = found["name"]
            continue
        setting = _SETTING.match(line)
        if section == "NetDev" and setting:
            if setting["key"] == "Name":
                name = setting["value"]
            elif setting["key"] == "Kind":
                kind = setting["value"]
    return name if kind == "wireguard" else None


def _read(path: Path) -> str | None:
    try:
        if not path.is_file() or path.stat().st_size > MAX_FILE:
            return None
        return path.read_text(errors="replace")
    except OSError as exc:
        log.info("peer_names.unreadable", path=str(path), error=exc.strerror)
        return None


Parsed = tuple[str | None, dict[str, str]]
"""What one file gives: its interface (None: not ours to name) and names by key."""


def _parse_file(path: Path, netdev: bool) -> Parsed:
    text = _read(path)
    if text is None:
        return None, {}
    if netdev:
        iface = _netdev_interface(text)
        return iface, parse(text, "WireGuardPeer") if iface else {}
    return path.stem, parse(text, "Peer")


def read(
    source: Source,
    interfaces: Iterable[str],
    parse_file: Callable[[Path, bool], Parsed] = _parse_file,
) -> dict[str, Mapping[str, str]]:
    """Names by interface, then public key, for the ``interfaces`` asked about. A wg-quick
    config's name wins over a netdev's for the same peer."""
    wanted = set(interfaces)
    out: dict[str, dict[str, str]] = {}
    for iface in sorted(wanted):
        _, names = parse_file(source.wg_quick / f"{iface}.conf", False)
        if names:
            out.setdefault(iface, {}).update(names)
    try:
        netdevs = sorted(source.networkd.glob("*.netdev"))
    except OSError:
        netdevs = []
    for path in netdevs:
        netdev_iface, names = parse_file(path, True)
        if netdev_iface in wanted:
            for key, name in names.items():
                out.setdefault(netdev_iface, {}).setdefault(key, name)
    return {iface: names for iface, names in out.items() if names}


class NameReader:
    """``read`` for a daemon: a file is parsed again only when its size or mtime changed,
    so a cycle costs a stat per config."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self._cache: dict[tuple[Path, bool], tuple[tuple[int, int], Parsed]] = {}

    def _parse(self, path: Path, netdev: bool) -> Parsed:
        try:
            info = path.stat()
        except OSError:
            self._cache.pop((path, netdev), None)
            return None, {}
        stamp = (info.st_mtime_ns, info.st_size)
        cached = self._cache.get((path, netdev))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        parsed = _parse_file(path, netdev)
        self._cache[(path, netdev)] = (stamp, parsed)
        return parsed

    def read(self, interfaces: Iterable[str]) -> dict[str, Mapping[str, str]]:
        return read(self.source, interfaces, self._parse)
