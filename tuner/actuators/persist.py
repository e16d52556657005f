"""Optional write-through of a verified change, so it survives a reboot (off by default).

- sysctls go to ``/etc/sysctl.d/90-wg-tuner.conf``, a file wg-tuner owns;
- MTU and PersistentKeepalive go to the wg-quick config ``/etc/wireguard/IF.conf``
  (``MTU =`` in [Interface], ``PersistentKeepalive =`` in the peer's [Peer]).

Every write goes through the fd-based atomic writer (``tuner.files``) and keeps the
file's mode; before wg-tuner first edits a wg-quick file it saves
``IF.conf.wg-tuner.bak``. ``persist`` returns the line it replaced so ``unpersist``
restores exactly that. The wg-quick file
holds the private key: its content is never logged, returned or put in an error.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from tuner.actuators import validate
from tuner.actuators.base import Target
from tuner.errors import InvalidValue, PermanentActuatorError
from tuner.files import write_atomic
from tuner.model.kinds import KEEPALIVE, MTU, SYSCTL
from tuner.model.knobs import SYSCTL_ALLOWLIST

SYSCTL_FILE = "etc/sysctl.d/90-wg-tuner.conf"
WG_DIR = "etc/wireguard"
HEADER = "# Managed by wg-tuner: verified changes written through. Do not edit.\n"


@dataclass(frozen=True, slots=True)
class Persisted:
    """What ``persist`` changed: the file and the line it replaced (None: it added one)."""

    path: str
    key: str
    section: str
    previous: str | None

    @classmethod
    def from_record(cls, data: object) -> Persisted:
        """A journal record's ``persisted`` field, checked before anything is written
        from it: only the files, keys and sections ``persist`` itself writes, and a
        previous line of one line. A record edited to name another file is refused."""
        if not isinstance(data, dict) or set(data) != {"path", "key", "section", "previous"}:
            raise InvalidValue("a persisted record must have path, key, section, previous")
        path, key, section, previous = (data[k] for k in ("path", "key", "section", "previous"))
        if not all(isinstance(v, str) for v in (path, key, section)):
            raise InvalidValue("a persisted record's path, key and section are text")
        if previous is not None and (
            not isinstance(previous, str)
            or "\n" in previous
            or "\0" in previous
            or len(previous) > 512
        ):
            raise InvalidValue("a persisted record's previous line is not one line of text")
        if path == SYSCTL_FILE:
            ok = section == "sysctl" and key in SYSCTL_ALLOWLIST
        else:
            match = _WG_PATH.fullmatch(path)
            ok = (
                match is not None
                and _is_ifname(match.group(1))
                and (
                    (section == "Interface" and key == "MTU")
                    or (
                        _PEER_SECTION.fullmatch(section) is not None
                        and key == "PersistentKeepalive"
                    )
                )
            )
        if not ok:
            raise InvalidValue("a persisted record names a file or key wg-tuner never writes")
        return cls(path, key, section, previous)


_WG_PATH = re.compile(rf"{WG_DIR}/([^/]+)\.conf")


def _is_ifname(name: str) -> bool:
    try:
        validate.ifname(name)
    except InvalidValue:
        return False
    return True


_PEER_SECTION = re.compile(r"Peer:[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")


def _atomic_write(path: Path, text: str) -> None:
    # Config files keep their mode; a new sysctl.d file is world-readable like its peers.
    write_atomic(path, text, 0o644, keep_mode=True, dir_mode=0o755)


def _section_bounds(lines: list[str], section: str) -> tuple[int, int] | None:
    """[start, end) of the section: ``Interface`` or ``Peer:BASE64KEY``."""
    header, _, peer = section.partition(":")
    i = 0
    while i < len(lines):
        if lines[i].strip().lower() == f"[{header.lower()}]":
            end = i + 1
            while end < len(lines) and not lines[end].strip().startswith("["):
                end += 1
            if not peer or any(
                ln.split("=", 1)[0].strip().lower() == "publickey"
                and ln.split("=", 1)[1].strip() == peer
                for ln in lines[i + 1 : end]
                if "=" in ln
            ):
                return i, end
            i = end
        else:
            i += 1
    return None


def _set_line(text: str, section: str, key: str, line: str | None) -> tuple[str, str | None]:
    """Replace (or add, or remove when ``line`` is None) ``key`` in ``section``."""
    lines = text.splitlines(keepends=True)
    bounds = _section_bounds(lines, section)
    if bounds is None:
        name = section.partition(":")[0]
        raise PermanentActuatorError(f"the wg-quick config has no [{name}] section for this")
    start, end = bounds
    for i in range(start + 1, end):
        if "=" in lines[i] and lines[i].split("=", 1)[0].strip().lower() == key.lower():
            previous = lines[i].rstrip("\n")
            if line is None:
                del lines[i]
            else:
                lines[i] = line + "\n"
            return "".join(lines), previous
    if line is not None:
        insert = end
        while insert > start + 1 and not lines[insert - 1].strip():
            insert -= 1
        if insert > 0 and not lines[insert - 1].endswith("\n"):
            lines[insert - 1] += "\n"
        lines.insert(insert, line + "\n")
    return "".join(lines), None


class Persistence:
    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root

    def persist(self, target: Target, value: str) -> Persisted:
        if target.kind == SYSCTL.name:
            return self._sysctl(target.name, validate.sysctl_value(value))
        if target.kind == MTU.name:
            mtu = validate.integer(value, *(MTU.bounds or (1280, 65535)), "MTU")
            return self._wg_quick(target.name, "Interface", "MTU", f"MTU = {mtu}")
        if target.kind == KEEPALIVE.name:
            seconds = validate.integer(value, *(KEEPALIVE.bounds or (0, 65535)), "keepalive")
            return self._wg_quick(
                target.name,
                f"Peer:{target.peer}",
                "PersistentKeepalive",
                f"PersistentKeepalive = {seconds}",
            )
        raise InvalidValue(f"{target.kind} changes cannot be persisted")

    def unpersist(self, record: Persisted) -> None:
        path = self.root / record.path
        if record.section == "sysctl":
            entries = self._sysctl_entries(path)
            entries.pop(record.key, None)
            if entries:
                _atomic_write(path, self._sysctl_text(entries))
            else:
                path.unlink(missing_ok=True)
            return
        text, _ = _set_line(path.read_text(), record.section, record.key, record.previous)
        _atomic_write(path, text)

    def _sysctl_entries(self, path: Path) -> dict[str, str]:
        entries: dict[str, str] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                key, sep, value = line.partition("=")
                if sep and not line.lstrip().startswith("#"):
                    entries[key.strip()] = value.strip()
        return entries

    @staticmethod
    def _sysctl_text(entries: dict[str, str]) -> str:
        return HEADER + "".join(f"{k} = {v}\n" for k, v in sorted(entries.items()))

    def _sysctl(self, key: str, value: str) -> Persisted:
        if key not in SYSCTL_ALLOWLIST:
            raise InvalidValue(f"sysctl {key!r} is not on wg-tuner's allowlist")
        path = self.root / SYSCTL_FILE
        entries = self._sysctl_entries(path)
        previous = entries.get(key)
        entries[key] = value
        _atomic_write(path, self._sysctl_text(entries))
        return Persisted(SYSCTL_FILE, key, "sysctl", previous)

    def _wg_quick(self, ifname: str, section: str, key: str, line: str) -> Persisted:
        rel = f"{WG_DIR}/{validate.ifname(ifname)}.conf"
        path = self.root / rel
        if not path.is_file():
            raise PermanentActuatorError(f"no wg-quick config for {ifname} to persist into")
        backup = path.with_name(path.name + ".wg-tuner.bak")
        original = path.read_text()
        if not os.path.lexists(backup):
            # Through the same writer: never through a (dangling) symlink, no umask window.
            write_atomic(backup, original, stat.S_IMODE(path.stat().st_mode), dir_mode=0o700)
        text, previous = _set_line(original, section, key, line)
        _atomic_write(path, text)
        return Persisted(rel, key, section, previous)
