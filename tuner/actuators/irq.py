"""IRQ affinity (/proc/irq/N/smp_affinity_list) and RPS/XPS masks
(/sys/class/net/DEV/queues/{rx,tx}-N/{rps,xps}_cpus).

Targets: ``irq/24`` or ``DEV/rx-0`` / ``DEV/tx-0``. Values are canonical CPU lists
(``0-3``) whatever the file's spelling, so ``00000000,0000000f`` equals ``0-3``.
A kernel-managed IRQ rejects writes: ``apply`` raises NotRevertible, which the journal
records so the guard holds that target at plan time from then on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from tuner.actuators import validate
from tuner.actuators.base import Target, Value
from tuner.errors import InvalidValue, NotRevertible, PermanentActuatorError
from tuner.model.cpumask import (
    format_cpu_list,
    format_hex_mask,
    normalise_list,
    normalise_mask,
    parse_cpu_list,
)
from tuner.observe.paths import HostPaths

_IRQ = re.compile(r"irq/([0-9]{1,6})")
_QUEUE = re.compile(r"([^/]{1,15})/((rx|tx)-[0-9]{1,5})")


def _write_file(path: Path, text: str) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(text)


class IrqAffinityActuator:
    kind: ClassVar[str] = "irq_affinity"

    def __init__(self, paths: HostPaths, write: Callable[[Path, str], None] = _write_file) -> None:
        self.paths = paths
        self.write = write

    def _locate(self, target: Target) -> tuple[Path, bool]:
        """(file, is_list): IRQ files take a CPU list, queue files a hex mask."""
        if m := _IRQ.fullmatch(target.name):
            return self.paths.proc("irq", m.group(1), "smp_affinity_list"), True
        if m := _QUEUE.fullmatch(target.name):
            dev = validate.ifname(m.group(1))
            name = "rps_cpus" if m.group(3) == "rx" else "xps_cpus"
            return self.paths.sys("class", "net", dev, "queues", m.group(2), name), False
        raise InvalidValue(f"affinity target {target.name!r} is not irq/N or DEV/rx-N|tx-N")

    def read(self, target: Target) -> Value:
        path, is_list = self._locate(target)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise PermanentActuatorError(f"{target.name}: no such IRQ or queue") from None
        except OSError as exc:
            raise PermanentActuatorError(f"{target.name}: {exc.strerror}") from exc
        return normalise_list(text) if is_list else normalise_mask(text)

    def _put(self, target: Target, cpus: str) -> None:
        path, is_list = self._locate(target)
        wanted = parse_cpu_list(cpus)
        text = format_cpu_list(wanted) if is_list else format_hex_mask(wanted)
        try:
            self.write(path, text + "\n")
        except OSError as exc:
            raise NotRevertible(
                f"{target.name}: the kernel rejects writes ({exc.strerror}); managed IRQ?"
            ) from exc

    def _cpus(self, value: Value, *, allow_empty: bool) -> str:
        if value is None:
            raise InvalidValue("a CPU list is required")
        try:
            cpus = parse_cpu_list(value)
        except ValueError as exc:
            raise InvalidValue(f"bad CPU list: {exc}") from None
        if not cpus and not allow_empty:
            raise InvalidValue("an empty CPU list would leave nobody to take the work")
        return format_cpu_list(cpus)

    def apply(self, target: Target, desired: Value) -> bool:
        _, is_list = self._locate(target)
        # An empty RPS/XPS mask means "off" and is valid; an IRQ needs at least one CPU.
        cpus = self._cpus(desired, allow_empty=not is_list)
        if self.read(target) == cpus:
            return False
        self._put(target, cpus)
        return True

    def revert(self, target: Target, prior: Value) -> None:
        cpus = self._cpus(prior, allow_empty=True)
        if self.read(target) != cpus:
            self._put(target, cpus)

    def check(self, target: Target) -> str | None:
        # Read-only: a kernel-managed IRQ is only found out when a write is refused
        # (NotRevertible); the journal records that and the guard holds it from then on.
        try:
            self.read(target)
        except (PermanentActuatorError, InvalidValue) as exc:
            return str(exc)
        return None
