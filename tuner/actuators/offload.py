"""NIC offload features of underlay links (target ``DEV/feature``), through ethtool's
kernel interface. Revert sets the feature back to exactly what was read."""

from __future__ import annotations

from typing import ClassVar

from tuner.actuators.base import Target, Value
from tuner.adapters.ethtool import FeaturePort
from tuner.errors import InvalidValue, NotApplicable, ObserveError, PermanentActuatorError
from tuner.model.kinds import OFFLOAD
from tuner.model.knobs import OFFLOAD_FEATURES


class OffloadActuator:
    kind: ClassVar[str] = "offload"

    def __init__(self, port: FeaturePort) -> None:
        self.port = port

    @staticmethod
    def _split(target: Target) -> tuple[str, str]:
        dev, _, feature = target.name.partition("/")
        if not dev or feature not in OFFLOAD_FEATURES:
            raise InvalidValue(f"offload {target.name!r} is not DEV/<allowlisted feature>")
        return dev, feature

    def _state(self, target: Target) -> tuple[bool, bool]:
        dev, feature = self._split(target)
        try:
            got = self.port.features(dev)
        except ObserveError as exc:
            raise PermanentActuatorError(str(exc)) from exc
        if feature not in got:
            raise NotApplicable(f"{dev} has no feature {feature}")
        return got[feature]

    def read(self, target: Target) -> Value:
        enabled, _ = self._state(target)
        return "on" if enabled else "off"

    def _write(self, target: Target, value: str) -> None:
        reason = self.check(target)
        if reason:
            raise NotApplicable(reason)
        dev, feature = self._split(target)
        try:
            self.port.set(dev, feature, value == "on")
        except ObserveError as exc:
            raise PermanentActuatorError(str(exc)) from exc
        if self.read(target) != value:
            # The driver took the request and left the feature as it was (a dependency
            # such as GRO for UDP GRO forwarding): nothing changed, and it says so.
            raise PermanentActuatorError(f"{target.name} stayed {self.read(target)}")

    def apply(self, target: Target, desired: Value) -> bool:
        value = OFFLOAD.value.parse(desired, None)
        if self.read(target) == value:
            return False
        self._write(target, value)
        return True

    def revert(self, target: Target, prior: Value) -> None:
        if prior is None:
            return
        value = OFFLOAD.value.parse(prior, None)
        if self.read(target) != value:
            self._write(target, value)

    def check(self, target: Target) -> str | None:
        try:
            _, changeable = self._state(target)
        except (NotApplicable, InvalidValue, PermanentActuatorError) as exc:
            return str(exc)
        return None if changeable else f"{target.name} is fixed by the driver"
