"""Allowlisted sysctls under /proc/sys. Revert writes back the exact original text."""

from __future__ import annotations

import os
from typing import ClassVar

from tuner.actuators import validate
from tuner.actuators.base import Target, Value
from tuner.errors import InvalidValue, NotApplicable, PermanentActuatorError
from tuner.model.kinds import SYSCTL
from tuner.model.knobs import INITIAL_NETNS_ONLY, SYSCTL_ALLOWLIST
from tuner.observe.paths import HostPaths


class SysctlActuator:
    kind: ClassVar[str] = "sysctl"

    def __init__(self, paths: HostPaths) -> None:
        self.paths = paths

    def _path(self, target: Target) -> os.PathLike[str]:
        if target.name not in SYSCTL_ALLOWLIST:
            raise InvalidValue(f"sysctl {target.name!r} is not on wg-tuner's allowlist")
        return self.paths.sysctl(target.name)

    def read(self, target: Target) -> Value:
        path = self._path(target)
        try:
            with open(path, encoding="ascii") as fh:
                return fh.read().rstrip("\n")
        except FileNotFoundError:
            raise NotApplicable(f"{target.name} does not exist in this network namespace") from None
        except OSError as exc:
            raise PermanentActuatorError(f"{target.name}: {exc.strerror}") from exc

    def _write(self, target: Target, text: str) -> None:
        reason = self.check(target)
        if reason:
            raise NotApplicable(reason)
        try:
            with open(self._path(target), "w", encoding="ascii") as fh:
                fh.write(text + "\n")
        except OSError as exc:
            raise PermanentActuatorError(f"writing {target.name} failed: {exc.strerror}") from exc

    def apply(self, target: Target, desired: Value) -> bool:
        value = validate.sysctl_value(desired)
        if SYSCTL.value.same(self.read(target), value):
            return False
        self._write(target, value)
        return True

    def revert(self, target: Target, prior: Value) -> None:
        value = validate.sysctl_prior(prior)
        current = self.read(target)
        if current != value:
            self._write(target, value)

    def check(self, target: Target) -> str | None:
        try:
            self.read(target)
        except (NotApplicable, InvalidValue, PermanentActuatorError) as exc:
            return str(exc)
        # A child namespace shows net.core.* read-only (mode 0444); the kernel's own mode
        # bits say whether this namespace may write, with no need to identify namespaces.
        if not os.stat(self._path(target)).st_mode & 0o222:
            where = (
                "writable only in the initial network namespace"
                if target.name in INITIAL_NETNS_ONLY
                else "read-only here"
            )
            return f"{target.name} is {where}"
        return None
