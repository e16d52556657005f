"""The contract every actuator passes (ARCHITECTURE.md), on fakes and a temporary tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck as HC
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import require_privileges
from tests.fakehost import build_tree
from tests.fakeports import FakeFeatures, FakeLinks, FakeNft, FakeWg
from tuner.actuators.base import Actuator, Target
from tuner.actuators.irq import IrqAffinityActuator
from tuner.actuators.keepalive import KeepaliveActuator
from tuner.actuators.mss import MssClampActuator, NftMss
from tuner.actuators.mtu import MtuActuator
from tuner.actuators.offload import OffloadActuator
from tuner.actuators.socket_buffer import SocketBufferActuator
from tuner.actuators.sysctl import SysctlActuator
from tuner.adapters.sockowner import SocketOwner, find_owner
from tuner.errors import InvalidValue, NotApplicable, NotRevertible
from tuner.model.checks import POLICY_CHECKS
from tuner.model.kinds import KINDS as declared_kinds
from tuner.model.kinds import VALUE_CHECKS
from tuner.observe.paths import HostPaths

PEER = "CZZ9R+7zfotIs5Bje0Xl7cqdsJb9IDO6OgKiGoXCTD8="


@dataclass
class Case:
    actuator: Actuator
    target: Target
    desired: str
    writes: Callable[[], int]


def tree_writes(paths: HostPaths) -> Callable[[], int]:
    """Count writes under a tree by modification times (a rewrite of the same text counts)."""

    def stamp() -> int:
        return sum(p.stat().st_mtime_ns for p in paths.root.rglob("*") if p.is_file())

    base = stamp()
    return lambda: 0 if stamp() == base else 1


def make_case(kind: str, tmp_path: Path) -> Case:  # noqa: PLR0911 - one case per kind
    paths = HostPaths.under(build_tree(tmp_path))
    if kind == "mtu":
        links = FakeLinks({"wg0": 1420})
        return Case(MtuActuator(links), Target("mtu", "wg0"), "1340", lambda: links.writes)
    if kind == "keepalive":
        wg = FakeWg({("wg0", PEER): 0})
        return Case(
            KeepaliveActuator(lambda _: wg),
            Target("keepalive", "wg0", PEER),
            "25",
            lambda: wg.writes,
        )
    if kind == "sysctl":
        return Case(
            SysctlActuator(paths),
            Target("sysctl", "net.core.rmem_max"),
            "7340032",
            tree_writes(paths),
        )
    if kind == "irq":
        return Case(
            IrqAffinityActuator(paths), Target("irq_affinity", "irq/24"), "1", tree_writes(paths)
        )
    if kind == "rps":
        return Case(
            IrqAffinityActuator(paths),
            Target("irq_affinity", "eth0/rx-1"),
            "0-1",
            tree_writes(paths),
        )
    if kind == "offload":
        features = FakeFeatures()
        return Case(
            OffloadActuator(features),
            Target("offload", "eth0/rx-udp-gro-forwarding"),
            "on",
            lambda: features.writes,
        )
    if kind == "socket":
        actuator = CountingSocketBuffer(udp_owner())
        return Case(actuator, Target("socket_buffer", "wg0"), "7340032", lambda: actuator.writes)
    nft = FakeNft()
    return Case(
        MssClampActuator(NftMss(nft)), Target("mss_clamp", "wg0"), "pmtu", lambda: nft.writes
    )


class CountingSocketBuffer(SocketBufferActuator):
    def __init__(self, owner: tuple[SocketOwner, int]) -> None:
        super().__init__(lambda _: owner)
        self.writes = 0

    def _write(self, target: Target, size: int) -> None:
        self.writes += 1
        super()._write(target, size)


_CHILDREN: list[subprocess.Popen[str]] = []
_DIRS: list[Path] = []


def udp_owner() -> tuple[SocketOwner, int]:
    """A real process of ours holding a UDP socket per family on one port and a
    listening config socket, as a userspace WireGuard does; found by that socket as
    wg-tuner finds one, and killed after the test (the ``children`` fixture)."""
    require_privileges()  # SO_RCVBUFFORCE needs CAP_NET_ADMIN
    config = Path(tempfile.mkdtemp(prefix="wgtc-")) / "wg0.sock"
    _DIRS.append(config.parent)
    code = (
        "import socket,sys,time\n"
        "a=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);a.bind(('127.0.0.1',0))\n"
        "port=a.getsockname()[1]\n"
        "b=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM);b.bind(('::1',port))\n"
        "u=socket.socket(socket.AF_UNIX);u.bind(sys.argv[1]);u.listen()\n"
        "print(port,flush=True);time.sleep(120)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(config)], stdout=subprocess.PIPE, text=True
    )
    _CHILDREN.append(child)
    assert child.stdout is not None
    port = int(child.stdout.readline())
    owner = find_owner(Path("/proc"), config)
    assert owner is not None and owner.pid == child.pid
    return owner, port


@pytest.fixture(autouse=True)
def children() -> Iterator[None]:
    yield
    while _CHILDREN:
        child = _CHILDREN.pop()
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    while _DIRS:
        shutil.rmtree(_DIRS.pop(), ignore_errors=True)


KINDS = ["mtu", "keepalive", "sysctl", "irq", "rps", "mss", "offload", "socket"]
DECLARED = declared_kinds


@pytest.mark.parametrize("kind", KINDS)
def test_read_after_apply_equals_desired(kind: str, tmp_path: Path) -> None:
    case = make_case(kind, tmp_path)
    assert case.actuator.apply(case.target, case.desired) is True
    value = DECLARED[case.target.kind].value
    assert value.same(case.actuator.read(case.target), case.desired)


@pytest.mark.parametrize("kind", KINDS)
def test_apply_twice_equals_once(kind: str, tmp_path: Path) -> None:
    case = make_case(kind, tmp_path)
    case.actuator.apply(case.target, case.desired)
    after_first = case.actuator.read(case.target)
    writes = case.writes()
    assert case.actuator.apply(case.target, case.desired) is False
    assert case.writes() == writes
    assert case.actuator.read(case.target) == after_first


@pytest.mark.parametrize("kind", KINDS)
def test_revert_restores_prior_exactly(kind: str, tmp_path: Path) -> None:
    case = make_case(kind, tmp_path)
    prior = case.actuator.read(case.target)
    case.actuator.apply(case.target, case.desired)
    case.actuator.revert(case.target, prior)
    assert case.actuator.read(case.target) == prior


@pytest.mark.parametrize("kind", KINDS)
def test_applying_the_current_value_writes_nothing(kind: str, tmp_path: Path) -> None:
    case = make_case(kind, tmp_path)
    current = case.actuator.read(case.target)
    if current is None:  # MSS: absent is not a value one can apply
        case.actuator.apply(case.target, case.desired)
        current = case.actuator.read(case.target)
        case = Case(case.actuator, case.target, case.desired, case.writes)
    before = case.writes()
    assert case.actuator.apply(case.target, current) is False
    assert case.writes() == before


@pytest.mark.parametrize("kind", KINDS)
def test_health_checks_are_not_empty_and_check_passes(kind: str, tmp_path: Path) -> None:
    case = make_case(kind, tmp_path)
    checks = DECLARED[case.target.kind].health_checks(case.target, case.desired)
    assert checks and all(c.name for c in checks)
    assert checks[0].name in VALUE_CHECKS
    assert all(c.name in POLICY_CHECKS for c in checks[1:])
    assert case.actuator.check(case.target) is None


def test_every_declared_kind_has_an_actuator_and_nothing_else_does() -> None:
    from tuner.actuators import registry

    built = registry.build()
    assert set(built) == set(DECLARED)
    for name, actuator in built.items():
        assert actuator.kind == name


def test_sysctl_normalised_compare_and_exact_revert(tmp_path: Path) -> None:
    paths = HostPaths.under(build_tree(tmp_path))
    act = SysctlActuator(paths)
    (paths.sysctl("net.core.rmem_default")).write_text("212992\t\n")
    target = Target("sysctl", "net.core.rmem_default")
    prior = act.read(target)
    assert prior == "212992\t"
    act.apply(target, "4194304")
    act.revert(target, prior)
    assert paths.sysctl("net.core.rmem_default").read_text() == "212992\t\n"


def test_sysctl_outside_allowlist_refused(tmp_path: Path) -> None:
    act = SysctlActuator(HostPaths.under(build_tree(tmp_path)))
    with pytest.raises(InvalidValue):
        act.apply(Target("sysctl", "kernel.core_pattern"), "1")


def test_initial_namespace_only_sysctl_is_not_applicable(tmp_path: Path) -> None:
    paths = HostPaths.under(build_tree(tmp_path))
    act = SysctlActuator(paths)
    paths.sysctl("net.core.rmem_max").chmod(0o444)  # how a child namespace shows it
    target = Target("sysctl", "net.core.rmem_max")
    assert "initial network namespace" in (act.check(target) or "")
    with pytest.raises(NotApplicable):
        act.apply(target, "7340032")
    assert paths.sysctl("net.core.rmem_max").read_text() == "212992\n"
    missing = Target("sysctl", "net.core.netdev_max_backlog")
    assert "does not exist" in (act.check(missing) or "")


def test_managed_irq_is_not_revertible(tmp_path: Path) -> None:
    paths = HostPaths.under(build_tree(tmp_path))

    def reject(path: Path, text: str) -> None:
        raise OSError(5, "Input/output error")

    act = IrqAffinityActuator(paths, write=reject)
    target = Target("irq_affinity", "irq/24")
    assert act.check(target) is None  # check never writes; the refusal shows on apply
    with pytest.raises(NotRevertible, match="rejects writes"):
        act.apply(target, "1")


def test_masks_compare_normalised(tmp_path: Path) -> None:
    paths = HostPaths.under(build_tree(tmp_path))
    act = IrqAffinityActuator(paths)
    target = Target("irq_affinity", "eth0/rx-0")
    assert act.read(target) == "0-1"  # the file says 00000000,00000003
    assert act.apply(target, "1,0") is False
    act.apply(target, "1")
    assert (paths.sys("class/net/eth0/queues/rx-0/rps_cpus")).read_text() == "2\n"


def test_mtu_bounds(tmp_path: Path) -> None:
    act = MtuActuator(FakeLinks({"wg0": 1420}, underlay=1500))
    for bad in ("1279", "1441", "-1", "1e3", "", "1340\n"):
        with pytest.raises(InvalidValue):
            act.apply(Target("mtu", "wg0"), bad)


def test_keepalive_unknown_peer_is_refused_not_created() -> None:
    wg = FakeWg({("wg0", PEER): 0})
    act = KeepaliveActuator(lambda _: wg)
    other = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    assert act.check(Target("keepalive", "wg0", other)) is not None
    with pytest.raises(Exception, match="no peer"):
        act.apply(Target("keepalive", "wg0", other), "25")
    assert list(wg.peers) == [("wg0", PEER)]


def test_mss_last_rule_removes_the_table() -> None:
    nft = FakeNft()
    act = MssClampActuator(NftMss(nft))
    act.apply(Target("mss_clamp", "wg0"), "pmtu")
    act.apply(Target("mss_clamp", "wg1"), "1300")
    assert act.read(Target("mss_clamp", "wg1")) == "1300"
    act.revert(Target("mss_clamp", "wg0"), None)
    assert act.read(Target("mss_clamp", "wg1")) == "1300"
    act.revert(Target("mss_clamp", "wg1"), None)
    assert nft.table is None


HOSTILE = st.one_of(
    st.text(alphabet=st.sampled_from("\n\x00=-/ \t;$`'\"a1"), min_size=1, max_size=20),
    st.sampled_from(["1\n", "-1", "99999999999999999999", "1;reboot", "\x00", "25\nremove=true"]),
)


@settings(max_examples=150, suppress_health_check=[HC.function_scoped_fixture])
@given(value=HOSTILE, name=HOSTILE)
def test_hostile_values_never_reach_a_port(value: str, name: str, tmp_path: Path) -> None:
    links, wg, nft = FakeLinks({"wg0": 1420}), FakeWg({("wg0", PEER): 0}), FakeNft()
    cases = [
        (MtuActuator(links), Target("mtu", name), Target("mtu", "wg0")),
        (
            KeepaliveActuator(lambda _: wg),
            Target("keepalive", name, PEER),
            Target("keepalive", "wg0", PEER),
        ),
        (MssClampActuator(NftMss(nft)), Target("mss_clamp", name), Target("mss_clamp", "wg0")),
    ]
    for act, bad_target, good_target in cases:
        for target, desired in ((bad_target, "25"), (good_target, value)):
            try:
                act.apply(target, desired)
            except Exception:  # noqa: S112 - any refusal is fine; a write is not
                continue
            # accepted: then it must have been a clean value and a clean name
            assert "\n" not in desired and "\x00" not in desired
            assert target.name == "wg0" or target.name.isprintable()
    assert not any(k[0] != "wg0" for k in wg.peers)
    assert set(links.mtus) == {"wg0"}
    assert all("\n" not in str(o) and "\x00" not in str(o) for o in (nft.table or []))


def test_sysctl_hostile_values(tmp_path: Path) -> None:
    paths = HostPaths.under(build_tree(tmp_path))
    act = SysctlActuator(paths)
    for bad in ("1\n2", "-1", "1;2", "", "1 " * 20, "\x00", "0x10", "1e9"):
        with pytest.raises(InvalidValue):
            act.apply(Target("sysctl", "net.core.rmem_max"), bad)
    assert paths.sysctl("net.core.rmem_max").read_text() == "212992\n"
    assert os.listdir(paths.sysctl("net.core.rmem_max").parent)


def test_the_actuator_docstring_names_files_that_exist() -> None:
    import re

    from tuner.actuators import base

    folder = Path(base.__file__).parent
    named = re.findall(r"``([a-z_]+\.py)``", base.__doc__ or "")
    assert len(named) >= 5
    for name in named:
        assert (folder / name).exists(), name


def test_offload_fixed_and_unknown_features_are_refused_and_nothing_is_written() -> None:
    features = FakeFeatures()
    actuator = OffloadActuator(features)
    fixed = Target("offload", "eth0/rx-checksum")
    assert "fixed" in str(actuator.check(fixed))
    with pytest.raises(NotApplicable):
        actuator.apply(fixed, "off")
    with pytest.raises(InvalidValue):
        actuator.read(Target("offload", "eth0/rx-anything-else"))
    with pytest.raises(InvalidValue):
        actuator.read(Target("offload", "no-feature-here"))
    assert features.writes == 0
