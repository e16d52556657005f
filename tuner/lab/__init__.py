"""The lab: a real WireGuard network in network namespaces, for the demo and the tests."""
