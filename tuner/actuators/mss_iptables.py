"""The iptables fallback for MSS clamping, used only where the nft binary is missing.

wg-tuner owns one chain, ``mangle WG_TUNER_MSS``, jumped to from FORWARD::

    -A WG_TUNER_MSS -o wg0 -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu

The chain's rules are replaced in one ``iptables-restore --noflush`` transaction; when
the last rule goes, the jump and the chain go too. Interface names were validated
before they get here and every command is an argument list.
"""

from __future__ import annotations

import shutil
import subprocess

from tuner.actuators import validate
from tuner.errors import PermanentActuatorError

CHAIN = "WG_TUNER_MSS"
COMMENT = "wg-tuner mss "
TIMEOUT = 10.0


class IptablesMss:
    def __init__(self, binary: str | None = None) -> None:
        found = binary or shutil.which("iptables")
        if found is None:
            raise PermanentActuatorError("neither nft nor iptables is installed")
        self.iptables = found
        self.restore = shutil.which("iptables-restore") or "iptables-restore"

    def _run(self, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PermanentActuatorError(f"{argv[0]} failed to run") from exc

    def settings(self) -> dict[str, str]:
        proc = self._run([self.iptables, "-w", "-t", "mangle", "-S", CHAIN])
        if proc.returncode != 0:
            return {}  # no chain: nothing of ours is installed
        out: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            words = line.split()
            if "-o" not in words or "TCPMSS" not in words:
                continue
            ifname = words[words.index("-o") + 1]
            if "--clamp-mss-to-pmtu" in words:
                out[ifname] = "pmtu"
            elif "--set-mss" in words:
                out[ifname] = words[words.index("--set-mss") + 1]
        return out

    def replace(self, settings: dict[str, str]) -> None:
        if not settings:
            self._run([self.iptables, "-w", "-t", "mangle", "-D", "FORWARD", "-j", CHAIN])
            self._run([self.iptables, "-w", "-t", "mangle", "-F", CHAIN])
            self._run([self.iptables, "-w", "-t", "mangle", "-X", CHAIN])
            return
        lines = ["*mangle", f":{CHAIN} - [0:0]"]
        for ifname, value in sorted(settings.items()):
            validate.ifname(ifname)
            action = (
                "--clamp-mss-to-pmtu"
                if value == "pmtu"
                else f"--set-mss {validate.integer(value, 536, 65495, 'MSS')}"
            )
            lines.append(
                f"-A {CHAIN} -o {ifname} -p tcp --tcp-flags SYN,RST SYN "
                f'-m comment --comment "{COMMENT}{ifname}" -j TCPMSS {action}'
            )
        lines.append("COMMIT")
        proc = self._run([self.restore, "-w", "--noflush"], "\n".join(lines) + "\n")
        if proc.returncode != 0:
            raise PermanentActuatorError(f"iptables-restore refused the MSS chain: {proc.stderr}")
        check = self._run([self.iptables, "-w", "-t", "mangle", "-C", "FORWARD", "-j", CHAIN])
        if check.returncode != 0:
            added = self._run([self.iptables, "-w", "-t", "mangle", "-A", "FORWARD", "-j", CHAIN])
            if added.returncode != 0:
                raise PermanentActuatorError("could not add the jump to WG_TUNER_MSS")
