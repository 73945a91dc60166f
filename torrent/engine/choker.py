"""Who we upload to: tit-for-tat plus an optimistic unchoke (BEP 3 "choking").

Sans-IO policy: the engine calls ``rechoke`` every ``rechoke_interval`` seconds with
a snapshot of its peers and applies the returned set. Leeching, the regular
slots go to the interested peers that upload to us fastest (reciprocation);
seeding, they go to the peers we upload to fastest, rotated so every peer
gets a turn; peers that move nothing tie, and the tie is drawn anew each round (a
stable order would leave the slots to the first connected). One extra slot is
optimistic, changed every ``optimistic_every`` rounds (30 s): of the interested
peers that waited longest for such a turn, the newest newcomer (connected less
than ``new_peer_age`` ago), else one drawn at random — that is how a newcomer
with nothing to offer gets its first pieces within one period, however many
idle peers crowd the torrent.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from torrent.core.settings import TorrentSettings

DEFAULT_TORRENT = TorrentSettings()


@dataclass(frozen=True, slots=True)
class PeerView:
    """What the choker needs to know of one connected peer."""

    key: Hashable
    interested: bool  # they want something from us
    download_rate: float  # bytes/s they send us
    upload_rate: float  # bytes/s we send them
    connected_for: float  # seconds
    snubbed: bool = False  # they unchoked us but sent nothing for a long time


class Choker:
    """``settings`` gives the slots and the optimistic rotation; replace it
    (``settings``) to change them while running."""

    def __init__(self, settings: TorrentSettings = DEFAULT_TORRENT, *, upload_slots: int | None = None,
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self.upload_slots = settings.upload_slots if upload_slots is None else upload_slots
        if self.upload_slots < 1:
            raise ValueError("upload_slots must be at least 1")
        self._rng = rng or random.Random()
        self._round = 0
        self._optimistic: Hashable | None = None
        self._turns: dict[Hashable, int] = {}  # peer → round of its last optimistic turn

    @property
    def optimistic(self) -> Hashable | None:
        return self._optimistic

    def rechoke(self, peers: Iterable[PeerView], *, seeding: bool) -> set[Hashable]:
        """The keys of the peers to have unchoked after this round."""
        candidates = [p for p in peers if p.interested]
        regular_slots = max(self.upload_slots - 1, 1)
        if seeding:
            # Fastest first, but peers that already had a long turn at the top
            # make room: sort by rate with a random jitter per round.
            ranked = sorted(candidates, key=lambda p: (p.upload_rate * self._rng.uniform(0.75, 1.0),
                                                       self._rng.random()), reverse=True)
        else:
            ranked = sorted(candidates, key=lambda p: (not p.snubbed, p.download_rate, self._rng.random()),
                            reverse=True)
        regular = {p.key for p in ranked[:regular_slots]}

        self._round += 1
        keys = {p.key for p in candidates}
        self._turns = {k: r for k, r in self._turns.items() if k in keys}  # bounded by the peers we have
        if (self._optimistic not in keys or self._optimistic in regular
                or self._round % self.settings.optimistic_every == 1):
            self._optimistic = self._draw_optimistic([p for p in candidates if p.key not in regular])
        unchoked = set(regular)
        if self._optimistic is not None:
            unchoked.add(self._optimistic)
        return unchoked

    def _draw_optimistic(self, pool: list[PeerView]) -> Hashable | None:
        if not pool:
            return None
        oldest = min(self._turns.get(p.key, -1) for p in pool)
        pool = [p for p in pool if self._turns.get(p.key, -1) == oldest]  # who waited longest for a turn
        new = [p for p in pool if p.connected_for < self.settings.new_peer_age]
        # The newest newcomer first: it gets its turn at the next draw, however large the idle crowd.
        key = min(new, key=lambda p: p.connected_for).key if new else self._rng.choice(pool).key
        self._turns[key] = self._round
        return key
