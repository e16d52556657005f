"""The actuator protocol: the write edge of one kind of change.

An actuator answers four questions for its kind: ``read`` the current value, ``apply``
a desired value idempotently, ``revert`` to a recorded value exactly, and ``check``,
without changing anything, why a target cannot be changed here (the guard holds it
then). There is no dry-run flag: a dry-run simply never calls ``apply``. Everything
else about a kind (value type and comparison, bounds, targets, health checks) is its
declaration in ``tuner.model.kinds``. The actuators: ``mtu.py``, ``keepalive.py``,
``sysctl.py``, ``irq.py`` (``irq_affinity``: IRQ affinity and RPS/XPS), ``mss.py``
(``mss_clamp``, with ``mss_iptables.py`` as its fallback backend) and ``offload.py``
(NIC features); ``registry.py`` builds one of each.

Values are strings (``None`` = absent): what ``read`` returns is what ``revert``
restores.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from tuner.model.checks import HealthCheck
from tuner.model.target import Target

__all__ = ["Actuator", "HealthCheck", "Target", "Value"]

Value = str | None


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
