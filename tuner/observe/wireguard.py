"""Find this namespace's WireGuard interfaces and read them with the right backend.

The socket directory is shared by every network namespace, so the links of *this*
namespace decide what is ours: a ``wireguard`` link is read over generic netlink, a
``tun`` link with a socket of the same name over the config socket (as ``wg`` does).
A socket without a link here belongs to another namespace and is ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from tuner.adapters.uapi import UapiClient, UapiDevice
from tuner.adapters.wgdump import dump_device
from tuner.errors import ObserveError, TunerError
from tuner.model.snapshot import Implementation, Link, WgInterface

log = structlog.get_logger("tuner.observe")


def implementation_of(link: Link, uapi: UapiClient) -> Implementation | None:
    if link.kind == "wireguard":
        return Implementation.KERNEL
    if link.kind == "tun" and uapi.has_socket(link.name):
        return Implementation.USERSPACE
    return None


@dataclass(frozen=True, slots=True)
class WgReadResult:
    interfaces: tuple[WgInterface, ...]
    notes: tuple[str, ...]
    errors: tuple[str, ...]


class WireGuardReader:
    def __init__(
        self,
        uapi: UapiClient,
        kernel_reader: Callable[[str], UapiDevice] = dump_device,
        link_exists: Callable[[str], bool] | None = None,
    ) -> None:
        self.uapi = uapi
        self.kernel_reader = kernel_reader
        self.link_exists = link_exists

    def read(self, links: tuple[Link, ...], only: tuple[str, ...] = ()) -> WgReadResult:
        found: list[WgInterface] = []
        notes: list[str] = []
        errors: list[str] = []
        for link in links:
            if only and link.name not in only:
                continue
            impl = implementation_of(link, self.uapi)
            if impl is None:
                continue
            try:
                device = (
                    self.uapi.get(link.name)
                    if impl is Implementation.USERSPACE
                    else self.kernel_reader(link.name)
                )
            except Exception as exc:  # one interface's failure is its own
                if not isinstance(exc, TunerError):
                    # A reply no parser rule anticipated: this interface is unobserved this
                    # cycle, the others are read and the daemon keeps cycling.
                    exc = ObserveError(f"{link.name}: unreadable reply ({type(exc).__name__})")
                if self.link_exists is not None and not self.link_exists(link.name):
                    log.info("observe.interface_vanished", interface=link.name)
                    notes.append(f"{link.name}: vanished while being read")
                    continue
                log.warning("observe.interface_failed", interface=link.name, error=str(exc))
                errors.append(str(exc) if isinstance(exc, ObserveError) else f"{link.name}: {exc}")
                continue
            found.append(
                WgInterface(
                    name=link.name,
                    implementation=impl,
                    public_key=device.public_key,
                    listen_port=device.listen_port,
                    fwmark=device.fwmark,
                    link=link,
                    peers=device.peers,
                )
            )
        return WgReadResult(tuple(found), tuple(notes), tuple(errors))
