from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tuner.actuators.base import Target
from tuner.actuators.persist import Persisted, Persistence
from tuner.errors import InvalidValue

PRIVATE = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
PEER = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
CONF = f"""[Interface]
PrivateKey = {PRIVATE}
Address = 10.0.0.1/24
ListenPort = 51820

[Peer]
PublicKey = {PEER}
AllowedIPs = 10.0.0.2/32
Endpoint = 203.0.113.2:51820
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    conf = tmp_path / "etc" / "wireguard" / "wg0.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(CONF)
    conf.chmod(0o600)
    return tmp_path


def test_wg_quick_mtu_and_keepalive_round_trip(root: Path) -> None:
    p = Persistence(root)
    conf = root / "etc/wireguard/wg0.conf"
    mtu = p.persist(Target("mtu", "wg0"), "1340")
    ka = p.persist(Target("keepalive", "wg0", PEER), "25")
    text = conf.read_text()
    assert "MTU = 1340" in text.split("[Peer]")[0]
    assert "PersistentKeepalive = 25" in text.split("[Peer]")[1]
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert (root / "etc/wireguard/wg0.conf.wg-tuner.bak").read_text() == CONF
    assert PRIVATE not in repr(mtu) + repr(ka)
    p.unpersist(ka)
    p.unpersist(mtu)
    assert conf.read_text() == CONF


def test_existing_line_is_replaced_and_restored(root: Path) -> None:
    conf = root / "etc/wireguard/wg0.conf"
    conf.write_text(CONF.replace("ListenPort = 51820\n", "ListenPort = 51820\nMTU = 1420\n"))
    original = conf.read_text()
    p = Persistence(root)
    record = p.persist(Target("mtu", "wg0"), "1340")
    assert record.previous == "MTU = 1420"
    assert "MTU = 1420" not in conf.read_text()
    p.unpersist(record)
    assert conf.read_text() == original


def test_sysctl_file_owned_and_removed_when_empty(tmp_path: Path) -> None:
    p = Persistence(tmp_path)
    a = p.persist(Target("sysctl", "net.core.rmem_max"), "7340032")
    b = p.persist(Target("sysctl", "net.core.wmem_max"), "7340032")
    path = tmp_path / "etc/sysctl.d/90-wg-tuner.conf"
    assert "net.core.rmem_max = 7340032" in path.read_text()
    p.unpersist(a)
    assert "rmem_max" not in path.read_text()
    p.unpersist(b)
    assert not path.exists()


def test_refusals(root: Path) -> None:
    p = Persistence(root)
    with pytest.raises(InvalidValue):
        p.persist(Target("sysctl", "kernel.core_pattern"), "1")
    with pytest.raises(InvalidValue):
        p.persist(Target("mtu", "wg0"), "1340\nPostUp = rm -rf /")
    with pytest.raises(InvalidValue):
        p.persist(Target("mss_clamp", "wg0"), "pmtu")
    with pytest.raises(Exception, match="no wg-quick config"):
        p.persist(Target("mtu", "wg9"), "1340")
    assert (root / "etc/wireguard/wg0.conf").read_text() == CONF


KEY = "x" * 42 + "A="


@pytest.mark.parametrize(
    "data",
    [
        {"path": "etc/shadow", "key": "MTU", "section": "Interface", "previous": None},
        {
            "path": "etc/wireguard/../shadow.conf",
            "key": "MTU",
            "section": "Interface",
            "previous": None,
        },
        {
            "path": "etc/wireguard/wg0.conf",
            "key": "PrivateKey",
            "section": "Interface",
            "previous": None,
        },
        {
            "path": "etc/wireguard/wg0.conf",
            "key": "MTU",
            "section": "Interface",
            "previous": "MTU = 1420\nPostUp = /bin/sh",
        },
        {
            "path": "etc/sysctl.d/90-wg-tuner.conf",
            "key": "kernel.modprobe",
            "section": "sysctl",
            "previous": None,
        },
        {"path": "etc/wireguard/wg0.conf", "key": "MTU", "section": "Interface"},
        "etc/wireguard/wg0.conf",
    ],
)
def test_a_persisted_record_is_checked_before_anything_is_written_from_it(data: object) -> None:
    with pytest.raises(InvalidValue):
        Persisted.from_record(data)


def test_the_records_persist_writes_pass_the_check() -> None:
    for data in (
        {
            "path": "etc/wireguard/wg0.conf",
            "key": "MTU",
            "section": "Interface",
            "previous": "MTU = 1420",
        },
        {
            "path": "etc/wireguard/wg0.conf",
            "key": "PersistentKeepalive",
            "section": f"Peer:{KEY}",
            "previous": None,
        },
        {
            "path": "etc/sysctl.d/90-wg-tuner.conf",
            "key": "net.core.rmem_max",
            "section": "sysctl",
            "previous": "212992",
        },
    ):
        assert Persisted.from_record(data) == Persisted(**data)  # type: ignore[arg-type]
