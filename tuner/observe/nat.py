"""The NAT tracker: follows every peer's endpoint and traffic from one snapshot to the
next, and keeps what each endpoint churn says about the peer's NAT.

It lives as long as its Observer (the daemon's whole run; a one-shot ``plan`` only
sees its sampling interval) and sees every snapshot that Observer takes, including
the verification steps'. The arithmetic is ``tuner.model.nat``'s.

Memory is what bounds it on a hub with 50,000 peers: per peer it keeps one float and
one byte in arrays aligned with the previous snapshot's peers (which the daemon holds
anyway), not an object and a key; only peers that churned get a ``Track``.
"""

from __future__ import annotations

import math
from array import array

from tuner.model.nat import NatPeer, Track, churn_bound, churned, record
from tuner.model.snapshot import Peer, Snapshot

MAX_TRACKS = 100_000
"""Churned peers remembered; beyond this the memory starts over (a bound, not a cache)."""


class NatTracker:
    def __init__(self) -> None:
        self._last: Snapshot | None = None
        self._since: dict[str, tuple[array[float], bytearray]] = {}
        """Per interface, aligned with ``_last``'s peers: the monotonic time of the
        snapshot before rx last grew (nan: not seen), and whether the hub sent since."""
        self._tracks: dict[tuple[str, str], Track] = {}

    def update(self, snapshot: Snapshot) -> tuple[NatPeer, ...]:
        """Fold ``snapshot`` in; the peers whose endpoint has churned, with their bound."""
        before, self._last = self._last, snapshot
        if len(self._tracks) > MAX_TRACKS:
            self._tracks.clear()
        fresh: dict[str, tuple[array[float], bytearray]] = {}
        forward = before is not None and snapshot.monotonic > before.monotonic
        for iface in snapshot.interfaces:
            old = before.interface(iface.name) if before is not None and forward else None
            kept = self._since.get(iface.name)
            if old is None or kept is None or len(kept[0]) != len(old.peers):
                n = len(iface.peers)
                fresh[iface.name] = (array("d", [math.nan]) * n, bytearray(n))
                continue
            assert before is not None  # noqa: S101 - old implies before
            times = (before.monotonic, snapshot.monotonic, snapshot.taken_at)
            fresh[iface.name] = self._fold(iface.name, old.peers, iface.peers, kept, times)
        self._since = fresh
        return tuple(
            NatPeer(name, key, t.churns, t.lifetime, t.last_churn)
            for (name, key), t in self._tracks.items()
        )

    def _fold(
        self,
        name: str,
        old_peers: tuple[Peer, ...],
        peers: tuple[Peer, ...],
        kept: tuple[array[float], bytearray],
        times: tuple[float, float, float],
    ) -> tuple[array[float], bytearray]:
        """One interface's peers against the previous snapshot's (aligned arrays in,
        aligned arrays out; ``times`` is previous monotonic, monotonic, wall clock)."""
        prev_mono, mono, wall = times
        old_since, old_sent = kept
        since = array("d", [math.nan]) * len(peers)
        sent = bytearray(len(peers))
        same_order = len(old_peers) == len(peers) and all(
            a.public_key == b.public_key for a, b in zip(old_peers, peers, strict=True)
        )
        index = None if same_order else {p.public_key: j for j, p in enumerate(old_peers)}
        tracks = self._tracks
        for j, peer in enumerate(peers):
            k = j if index is None else index.get(peer.public_key, -1)
            if k < 0:
                continue
            was = old_peers[k]
            rx_since, sent_after = old_since[k], old_sent[k]
            if peer.endpoint != was.endpoint and churned(was, peer):
                key = (name, peer.public_key)
                track = tracks.get(key)
                if track is None:
                    track = tracks[key] = Track()
                known = None if math.isnan(rx_since) else rx_since
                record(track, churn_bound(known, bool(sent_after), was, peer, mono), wall)
            if peer.rx_bytes > was.rx_bytes:
                since[j] = prev_mono
            else:
                since[j] = rx_since
                sent[j] = 1 if sent_after or peer.tx_bytes > was.tx_bytes else 0
        return since, sent
