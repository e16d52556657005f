"""One line per kind: the real actuators for this host."""

from __future__ import annotations

from tuner.actuators.base import Actuator
from tuner.actuators.irq import IrqAffinityActuator
from tuner.actuators.keepalive import GenetlinkWg, KeepaliveActuator, UapiWg, WgPort
from tuner.actuators.mss import MssClampActuator, NftBinary
from tuner.actuators.mtu import MtuActuator, NetlinkLinks
from tuner.actuators.sysctl import SysctlActuator
from tuner.adapters.uapi import UapiClient
from tuner.observe.paths import HostPaths

KINDS = ("mtu", "keepalive", "sysctl", "irq_affinity", "mss_clamp")


def build(paths: HostPaths | None = None) -> dict[str, Actuator]:
    paths = paths or HostPaths()
    uapi = UapiClient(paths.wg_socket_dir)
    userspace, kernel = UapiWg(uapi), GenetlinkWg()

    def wg_port(ifname: str) -> WgPort:
        # As `wg` does: the config socket when there is one, else generic netlink.
        return userspace if uapi.has_socket(ifname) else kernel

    class LazyNft:
        """nft is looked up when an MSS change is made, not when wg-tuner starts."""

        def objects(self) -> list[dict[str, object]] | None:
            return NftBinary().objects()

        def batch(self, commands: list[dict[str, object]]) -> None:
            NftBinary().batch(commands)

    return {
        "mtu": MtuActuator(NetlinkLinks()),
        "keepalive": KeepaliveActuator(wg_port),
        "sysctl": SysctlActuator(paths),
        "irq_affinity": IrqAffinityActuator(paths),
        "mss_clamp": MssClampActuator(LazyNft()),
    }
