from __future__ import annotations

import pytest

from tuner.lab.topology import Topology


@pytest.mark.parametrize("prefix", ["wgt\n", "", "-x", "UPPER", "toolongname", "a b", "a/b"])
def test_bad_prefixes_rejected(prefix: str) -> None:
    with pytest.raises(ValueError):
        Topology(prefix)


def test_names_fit_interface_limits() -> None:
    topo = Topology("abcdefgh")
    names = [topo.router_a, topo.router_b, topo.a.veth, topo.b.veth, topo.a.wg, topo.b.wg]
    assert all(len(n) <= 15 for n in names)
