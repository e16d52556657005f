"""Interface MTU through netlink. Bounds: never below 1280 (IPv6 inside the tunnel needs
it) and never above what the underlay can carry after WireGuard's overhead."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from pyroute2.netlink.exceptions import NetlinkError

from tuner.actuators import validate
from tuner.actuators.base import Target, Value
from tuner.errors import PermanentActuatorError, TransientActuatorError
from tuner.model.kinds import MTU

MIN_MTU, MAX_MTU = MTU.bounds or (1280, 65535)
WG_OVERHEAD_V4 = 60
TRANSIENT = frozenset({11, 16, 105})  # EAGAIN, EBUSY, ENOBUFS


class LinkPort(Protocol):
    def get_mtu(self, ifname: str) -> int | None: ...
    def set_mtu(self, ifname: str, mtu: int) -> None: ...
    def underlay_mtu(self, ifname: str) -> int | None:
        """Largest MTU among the links that can carry this interface's packets."""
        ...


class NetlinkLinks:
    """LinkPort over pyroute2 in the current network namespace."""

    def _ipr(self) -> Any:
        from pyroute2 import IPRoute

        return IPRoute()

    def get_mtu(self, ifname: str) -> int | None:
        with self._ipr() as ipr:
            found = ipr.link_lookup(ifname=ifname)
            if not found:
                return None
            return int(ipr.get_links(found[0])[0].get_attr("IFLA_MTU"))

    def set_mtu(self, ifname: str, mtu: int) -> None:
        try:
            with self._ipr() as ipr:
                found = ipr.link_lookup(ifname=ifname)
                if not found:
                    raise PermanentActuatorError(f"{ifname}: no such link")
                ipr.link("set", index=found[0], mtu=mtu)
        except NetlinkError as exc:
            cls = TransientActuatorError if exc.code in TRANSIENT else PermanentActuatorError
            raise cls(f"{ifname}: setting MTU {mtu} failed (errno {exc.code})") from exc

    def underlay_mtu(self, ifname: str) -> int | None:
        with self._ipr() as ipr:
            mtus = []
            for msg in ipr.get_links():
                info = msg.get_attr("IFLA_LINKINFO")
                kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
                name = msg.get_attr("IFLA_IFNAME")
                if name in (ifname, "lo") or kind in ("tun", "wireguard"):
                    continue
                mtus.append(int(msg.get_attr("IFLA_MTU")))
            return max(mtus) if mtus else None


class MtuActuator:
    kind: ClassVar[str] = "mtu"

    def __init__(self, links: LinkPort) -> None:
        self.links = links

    def _current(self, target: Target) -> int:
        mtu = self.links.get_mtu(validate.ifname(target.name))
        if mtu is None:
            raise PermanentActuatorError(f"{target.name}: no such interface")
        return mtu

    def ceiling(self, ifname: str) -> int:
        underlay = self.links.underlay_mtu(ifname)
        return MAX_MTU if underlay is None else max(MIN_MTU, underlay - WG_OVERHEAD_V4)

    def desired_mtu(self, target: Target, desired: Value) -> int:
        return validate.integer(desired, MIN_MTU, self.ceiling(target.name), f"{target.name} MTU")

    def read(self, target: Target) -> Value:
        return str(self._current(target))

    def apply(self, target: Target, desired: Value) -> bool:
        mtu = self.desired_mtu(target, desired)
        if self._current(target) == mtu:
            return False
        self.links.set_mtu(target.name, mtu)
        return True

    def revert(self, target: Target, prior: Value) -> None:
        # The prior value was the interface's own; restore it even if outside our bounds.
        mtu = validate.integer(prior, 68, MAX_MTU, f"{target.name} prior MTU")
        if self._current(target) != mtu:
            self.links.set_mtu(target.name, mtu)

    def check(self, target: Target) -> str | None:
        try:
            self._current(target)
        except PermanentActuatorError as exc:
            return str(exc)
        return None
