"""The actuator protocol, targets and health checks.

Every kind of change answers the same four questions (ARCHITECTURE.md):
``read`` the current value, ``apply`` a desired value idempotently, ``revert`` to a
recorded value exactly, and say which ``health_checks`` must hold afterwards. There is
no dry-run flag: a dry-run simply never calls ``apply``. ``check`` says, without
changing anything, why a target cannot be changed here (the guard holds it then).

Values are strings (``None`` = absent): what ``read`` returns is what ``revert``
restores. ``same`` compares two values after the kind's normalisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from tuner.model.snapshot import frozen_map
from tuner.model.target import Target

__all__ = ["Actuator", "HealthCheck", "Target", "Value"]

Value = str | None


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """A named condition the verifier evaluates after a change (values are plain data)."""

    name: str
    params: Mapping[str, object] = field(default_factory=frozen_map)


class Actuator(Protocol):
    kind: ClassVar[str]

    def read(self, target: Target) -> Value: ...

    def apply(self, target: Target, desired: Value) -> bool:
        """Make ``target`` equal ``desired``; False when it already was (nothing written)."""
        ...

    def revert(self, target: Target, prior: Value) -> None: ...

    def check(self, target: Target) -> str | None:
        """Why ``target`` cannot be changed here, or None when it can."""
        ...

    def same(self, a: Value, b: Value) -> bool: ...

    def health_checks(self, target: Target, desired: Value) -> tuple[HealthCheck, ...]: ...
