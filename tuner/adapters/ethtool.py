"""NIC features (offloads) through the kernel's ethtool interface, via pyroute2.

``features(dev)`` gives each feature's state and whether the driver lets it change
(a ``[fixed]`` feature in ``ethtool -k``); ``set(dev, name, on)`` changes one. Nothing
goes through a shell or the ethtool binary.
"""

from __future__ import annotations

from contextlib import closing
from typing import Any, Protocol

from pyroute2.ethtool import Ethtool

from tuner.errors import ObserveError


class FeaturePort(Protocol):
    def features(self, dev: str) -> dict[str, tuple[bool, bool]]:
        """name -> (enabled, changeable)."""
        ...

    def set(self, dev: str, name: str, on: bool) -> None: ...


class EthtoolFeatures:
    """The real port: one pyroute2 Ethtool per call (in this process's namespace)."""

    def features(self, dev: str) -> dict[str, tuple[bool, bool]]:
        try:
            with closing(Ethtool()) as tool:
                got: Any = tool.get_features(dev)
        except Exception as exc:  # pyroute2 raises NetlinkError, OSError or its own
            raise ObserveError(f"{dev}: offload features unreadable: {exc}") from exc
        return {
            name: (bool(f.enable), bool(f.available)) for name, f in got.features.items() if name
        }

    def set(self, dev: str, name: str, on: bool) -> None:
        try:
            with closing(Ethtool()) as tool:
                got: Any = tool.get_features(dev)
                got.features[name].enable = on
                tool.set_features(dev, got)
        except Exception as exc:
            raise ObserveError(f"{dev}: setting {name} failed: {exc}") from exc
