"""One line per kind declared in ``tuner.model.kinds``: the real actuators for this host."""

from __future__ import annotations

import shutil

from tuner.actuators.base import Actuator
from tuner.actuators.irq import IrqAffinityActuator
from tuner.actuators.keepalive import GenetlinkWg, KeepaliveActuator, UapiWg, WgPort
from tuner.actuators.mss import MssBackend, MssClampActuator, NftBinary, NftMss
from tuner.actuators.mss_iptables import IptablesMss
from tuner.actuators.mtu import MtuActuator, NetlinkLinks
from tuner.actuators.offload import OffloadActuator
from tuner.actuators.socket_buffer import SocketBufferActuator
from tuner.actuators.sysctl import SysctlActuator
from tuner.adapters.ethtool import EthtoolFeatures
from tuner.adapters.sockowner import SocketOwner
from tuner.adapters.uapi import UapiClient
from tuner.observe.paths import HostPaths


def build(paths: HostPaths | None = None) -> dict[str, Actuator]:
    paths = paths or HostPaths()
    uapi = UapiClient(paths.wg_socket_dir, proc=paths.proc())
    userspace, kernel = UapiWg(uapi), GenetlinkWg()

    def wg_port(ifname: str) -> WgPort:
        # As `wg` does: the config socket when there is one, else generic netlink.
        return userspace if uapi.has_socket(ifname) else kernel

    def socket_owner(ifname: str) -> tuple[SocketOwner, int] | None:
        """The userspace WireGuard behind IF's config socket and its listen port."""
        if not uapi.has_socket(ifname):
            return None
        port = uapi.get(ifname).listen_port
        owner = uapi.owner(ifname)
        return None if owner is None else (owner, port)

    class LazyMss:
        """The backend is chosen when an MSS change is made: nft, else iptables."""

        def _backend(self) -> MssBackend:
            if shutil.which("nft"):
                return NftMss(NftBinary())
            return IptablesMss()

        def settings(self) -> dict[str, str]:
            return self._backend().settings()

        def replace(self, settings: dict[str, str]) -> None:
            self._backend().replace(settings)

    actuators: tuple[Actuator, ...] = (
        MtuActuator(NetlinkLinks()),
        KeepaliveActuator(wg_port),
        SysctlActuator(paths),
        IrqAffinityActuator(paths),
        MssClampActuator(LazyMss()),
        OffloadActuator(EthtoolFeatures()),
        SocketBufferActuator(socket_owner, paths.proc()),
    )
    return {a.kind: a for a in actuators}
