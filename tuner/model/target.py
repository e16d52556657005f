"""What a change is made to (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Target:
    """``name`` is an interface, a sysctl key, ``irq/N`` or ``DEV/rx-N``."""

    kind: str
    name: str
    peer: str = ""
    """A peer's base64 public key, for per-peer knobs."""

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" + (f"/{self.peer[:8]}" if self.peer else "")
