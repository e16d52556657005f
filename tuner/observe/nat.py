"""The NAT tracker: follows every peer's endpoint and traffic from one snapshot to the
next, and keeps what each endpoint churn says about the peer's NAT.

It lives as long as its Observer (the daemon's whole run; a one-shot ``plan`` only
sees its sampling interval) and sees every snapshot that Observer takes, including
the verification steps'. The arithmetic is ``tuner.model.nat``'s.
"""

from __future__ import annotations

from tuner.model.nat import NatPeer, Track, step
from tuner.model.snapshot import Snapshot

MAX_TRACKS = 200_000
"""Peers remembered; beyond this the memory starts over (a bound, not a cache)."""


class NatTracker:
    def __init__(self) -> None:
        self._last: Snapshot | None = None
        self._tracks: dict[tuple[str, str], Track] = {}

    def update(self, snapshot: Snapshot) -> tuple[NatPeer, ...]:
        """Fold ``snapshot`` in; the peers whose endpoint has churned, with their bound."""
        before, self._last = self._last, snapshot
        tracks = self._tracks
        if len(tracks) > MAX_TRACKS:
            tracks.clear()
        if before is not None and snapshot.monotonic > before.monotonic:
            times = (before.monotonic, snapshot.monotonic, snapshot.taken_at)
            for iface in snapshot.interfaces:
                old = before.interface(iface.name)
                if old is None:
                    continue
                prior = {p.public_key: p for p in old.peers}
                for peer in iface.peers:
                    was = prior.get(peer.public_key)
                    if was is None or was is peer:
                        continue
                    if (
                        was.rx_bytes == peer.rx_bytes
                        and was.tx_bytes == peer.tx_bytes
                        and was.endpoint == peer.endpoint
                    ):
                        continue
                    key = (iface.name, peer.public_key)
                    track = tracks.get(key)
                    if track is None:
                        track = tracks[key] = Track()
                    step(track, was, peer, times)
        return tuple(
            NatPeer(name, key, t.churns, t.lifetime, t.last_churn)
            for (name, key), t in tracks.items()
            if t.churns
        )
