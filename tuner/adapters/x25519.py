"""Curve25519 public-key derivation (RFC 7748), so an interface's public key can be shown.

The userspace config socket reports only the private key. We derive the public key
where the private key is read and drop the private key right there. Pure Python is fast
enough for one scalar multiplication per interface per read.
"""

from __future__ import annotations

_P = 2**255 - 19
_A24 = 121665


def _clamp(scalar: bytes) -> int:
    k = bytearray(scalar)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    return int.from_bytes(k, "little")


def public_from_private(private: bytes) -> bytes:
    """X25519(private, 9): the public key that belongs to a 32-byte private key."""
    if len(private) != 32:
        raise ValueError("a Curve25519 private key is 32 bytes")
    k = _clamp(private)
    x1, x2, z2, x3, z3, swap = 9, 1, 0, 9, 1, 0
    for t in range(254, -1, -1):
        bit = (k >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % _P, (x2 - z2) % _P
        aa, bb = a * a % _P, b * b % _P
        e = (aa - bb) % _P
        c, d = (x3 + z3) % _P, (x3 - z3) % _P
        da, cb = d * a % _P, c * b % _P
        x3 = (da + cb) ** 2 % _P
        z3 = x1 * (da - cb) ** 2 % _P
        x2 = aa * bb % _P
        z2 = e * (aa + _A24 * e) % _P
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, _P - 2, _P) % _P).to_bytes(32, "little")
