"""nftables through ``nft -j`` (JSON in and out), with argument lists only.

pyroute2's nftables support is a prototype and python3-nftables is Debian-only, so the
``nft`` binary is the portable interface. Only wg-tuner's own table is read here.
"""

from __future__ import annotations

import json
import shutil
import subprocess

from tuner.errors import ObserveError
from tuner.model.knobs import NFT_FAMILY, NFT_TABLE

NFT_TIMEOUT = 5.0


def canonical_table(document: object) -> str:
    """The table's objects as canonical JSON, without metainfo or kernel handles."""

    def strip(value: object) -> object:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in sorted(value.items()) if k != "handle"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    items = document.get("nftables", []) if isinstance(document, dict) else []
    kept = [strip(item) for item in items if isinstance(item, dict) and "metainfo" not in item]
    return json.dumps(kept, sort_keys=True, separators=(",", ":"))


class Nft:
    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or shutil.which("nft")

    @property
    def available(self) -> bool:
        return self.binary is not None

    def read_table(self, family: str = NFT_FAMILY, table: str = NFT_TABLE) -> str | None:
        """Our table as canonical JSON, or None when it does not exist."""
        if self.binary is None:
            raise ObserveError("nft is not installed")
        try:
            objects = list_table_objects(self.binary, family, table)
        except NftError as exc:
            raise ObserveError(f"nft failed listing the wg-tuner table: {exc}") from exc
        return None if objects is None else canonical_table({"nftables": objects})


class NftError(Exception):
    """nft rejected a batch (message is nft's own, which never contains secrets)."""


def run_batch(binary: str, commands: list[dict[str, object]]) -> None:
    """Check a JSON batch with ``nft -c``, then apply it atomically; argument lists only."""
    payload = json.dumps({"nftables": commands})
    for argv in ([binary, "-c", "-j", "-f", "-"], [binary, "-j", "-f", "-"]):
        try:
            proc = subprocess.run(
                argv,
                input=payload,
                capture_output=True,
                text=True,
                timeout=NFT_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise NftError("nft timed out") from exc
        if proc.returncode != 0:
            raise NftError(proc.stderr.strip() or f"nft exited {proc.returncode}")


def list_table_objects(binary: str, family: str, table: str) -> list[dict[str, object]] | None:
    """The table's objects as nft prints them, or None when the table does not exist."""
    try:
        proc = subprocess.run(
            [binary, "-j", "list", "table", family, table],
            capture_output=True,
            text=True,
            timeout=NFT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise NftError("nft timed out") from exc
    if proc.returncode != 0:
        if "No such file or directory" in proc.stderr:
            return None
        raise NftError(proc.stderr.strip())
    try:
        items = json.loads(proc.stdout).get("nftables", [])
    except (ValueError, AttributeError) as exc:
        raise NftError("nft returned invalid JSON") from exc
    return [i for i in items if isinstance(i, dict) and "metainfo" not in i]
