from __future__ import annotations

import socket

from tuner.model.routes import Route, RouteTable

V4, V6 = socket.AF_INET, socket.AF_INET6


def test_longest_prefix_wins_and_metric_breaks_ties() -> None:
    table = RouteTable(
        [
            Route(V4, None, 0, oif=2, priority=100),
            Route(V4, None, 0, oif=9, priority=50),
            Route(V4, "198.51.100.0", 24, oif=3),
            Route(V4, "198.51.100.128", 25, oif=4),
            Route(V6, "2001:db8::", 32, oif=5),
            Route(V6, "2001:db8:1::", 64, oif=6),
        ]
    )
    assert table.lookup("203.0.113.9") == 9  # default route with the lower metric
    assert table.lookup("198.51.100.7") == 3
    assert table.lookup("198.51.100.200") == 4
    assert table.lookup("2001:db8::1") == 5
    assert table.lookup("2001:db8:1::1") == 6
    assert table.lookup("2001:db9::1") is None  # no IPv6 default
    assert table.lookup("not-an-address") is None


def test_empty_table_routes_nothing() -> None:
    assert RouteTable([]).lookup("192.0.2.1") is None
