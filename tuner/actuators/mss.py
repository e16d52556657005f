"""TCP MSS clamping in nftables, in the one table wg-tuner owns (``inet wg_tuner``).

One rule per tunnel interface in a forward chain at mangle priority::

    oifname "wg0" tcp flags syn tcp option maxseg size set rt mtu   (value "pmtu")
    oifname "wg0" tcp flags syn tcp option maxseg size set 1300     (value "1300")

The whole table is rebuilt in one atomic, pre-checked batch on every change, so the
ruleset outside it is never touched; when the last rule goes, the table goes.
"""

from __future__ import annotations

import shutil
from typing import Any, ClassVar, Protocol

from tuner.actuators import validate
from tuner.actuators.base import Target, Value
from tuner.adapters.nft import NftError, list_table_objects, run_batch
from tuner.errors import InvalidValue, PermanentActuatorError
from tuner.model.knobs import NFT_FAMILY, NFT_TABLE
from tuner.model.mss import COMMENT, settings_from

CHAIN = "mss"
MANGLE_PRIORITY = -150
MIN_MSS, MAX_MSS = 536, 65495


class NftPort(Protocol):
    def objects(self) -> list[dict[str, Any]] | None: ...
    def batch(self, commands: list[dict[str, Any]]) -> None: ...


class NftBinary:
    def __init__(self, binary: str | None = None) -> None:
        found = binary or shutil.which("nft")
        if found is None:
            raise PermanentActuatorError("nft is not installed: MSS clamping needs nftables")
        self.binary = found

    def objects(self) -> list[dict[str, Any]] | None:
        try:
            return list_table_objects(self.binary, NFT_FAMILY, NFT_TABLE)
        except NftError as exc:
            raise PermanentActuatorError(f"reading the nft table failed: {exc}") from exc

    def batch(self, commands: list[dict[str, Any]]) -> None:
        try:
            run_batch(self.binary, commands)
        except NftError as exc:
            raise PermanentActuatorError(f"nft refused the MSS table: {exc}") from exc


def _table() -> dict[str, Any]:
    return {"table": {"family": NFT_FAMILY, "name": NFT_TABLE}}


def render(settings: dict[str, str]) -> list[dict[str, Any]]:
    """The atomic batch that makes our table hold exactly ``settings``."""
    commands: list[dict[str, Any]] = [{"add": _table()}, {"delete": _table()}]
    if not settings:
        return commands
    commands += [
        {"add": _table()},
        {
            "add": {
                "chain": {
                    "family": NFT_FAMILY,
                    "table": NFT_TABLE,
                    "name": CHAIN,
                    "type": "filter",
                    "hook": "forward",
                    "prio": MANGLE_PRIORITY,
                    "policy": "accept",
                }
            }
        },
    ]
    for ifname, value in sorted(settings.items()):
        size: Any = {"rt": {"key": "mtu"}} if value == "pmtu" else int(value)
        commands.append(
            {
                "add": {
                    "rule": {
                        "family": NFT_FAMILY,
                        "table": NFT_TABLE,
                        "chain": CHAIN,
                        "comment": COMMENT + ifname,
                        "expr": [
                            {
                                "match": {
                                    "op": "==",
                                    "left": {"meta": {"key": "oifname"}},
                                    "right": ifname,
                                }
                            },
                            {
                                "match": {
                                    "op": "in",
                                    "left": {"payload": {"protocol": "tcp", "field": "flags"}},
                                    "right": "syn",
                                }
                            },
                            {
                                "mangle": {
                                    "key": {"tcp option": {"name": "maxseg", "field": "size"}},
                                    "value": size,
                                }
                            },
                        ],
                    }
                }
            }
        )
    return commands


def _value(value: Value) -> str | None:
    if value is None or value == "pmtu":
        return value
    return str(validate.integer(value, MIN_MSS, MAX_MSS, "MSS"))


class MssBackend(Protocol):
    def settings(self) -> dict[str, str]:
        """Interface -> clamp value ("pmtu" or a size) currently installed by wg-tuner."""
        ...

    def replace(self, settings: dict[str, str]) -> None:
        """Make wg-tuner's rules hold exactly ``settings`` (none: remove them all)."""
        ...


class NftMss:
    """The nftables backend: one table, rebuilt in one atomic, pre-checked batch."""

    def __init__(self, nft: NftPort) -> None:
        self.nft = nft

    def settings(self) -> dict[str, str]:
        return settings_from(self.nft.objects())

    def replace(self, settings: dict[str, str]) -> None:
        self.nft.batch(render(settings))


class MssClampActuator:
    kind: ClassVar[str] = "mss_clamp"

    def __init__(self, backend: MssBackend) -> None:
        self.backend = backend

    def read(self, target: Target) -> Value:
        return self.backend.settings().get(validate.ifname(target.name))

    def _set(self, target: Target, value: str | None) -> bool:
        ifname = validate.ifname(target.name)
        settings = self.backend.settings()
        if settings.get(ifname) == value:
            return False
        if value is None:
            settings.pop(ifname, None)
        else:
            settings[ifname] = value
        self.backend.replace(settings)
        return True

    def apply(self, target: Target, desired: Value) -> bool:
        value = _value(desired)
        if value is None:
            raise InvalidValue("an MSS clamp needs 'pmtu' or a size")
        return self._set(target, value)

    def revert(self, target: Target, prior: Value) -> None:
        self._set(target, _value(prior))

    def check(self, target: Target) -> str | None:
        try:
            validate.ifname(target.name)
            self.backend.settings()
        except (InvalidValue, PermanentActuatorError) as exc:
            return str(exc)
        return None
