"""When each torrent is next announced on the LAN, and when the next datagram may go (sans-IO).

BEP 14 announces share one multicast group with every client on the network, so two limits hold: each
torrent at most once per ``interval`` (libtorrent and Transmission use 5 minutes), and at most one
datagram per ``gap`` however many torrents are due; the caller packs the due ones into that datagram.
Times are whatever clock the caller passes.
"""

from __future__ import annotations

import heapq

ANNOUNCE_INTERVAL = 300.0  # seconds between two announces of one torrent
SEND_INTERVAL = 1.0  # seconds between two datagrams
MAX_TORRENTS = 10_000  # torrents scheduled at once


class AnnounceSchedule:
    def __init__(self, *, interval: float = ANNOUNCE_INTERVAL, gap: float = SEND_INTERVAL,
                 max_torrents: int = MAX_TORRENTS) -> None:
        if interval <= 0 or gap <= 0:
            raise ValueError("announce interval and datagram gap must be positive")
        self.interval = interval
        self.gap = gap
        self.max_torrents = max_torrents
        self._due: dict[bytes, float] = {}  # info-hash → when it is next announced
        self._next_send = float("-inf")

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, info_hash: object) -> bool:
        return info_hash in self._due

    def add(self, info_hash: bytes, now: float) -> bool:
        """Announce ``info_hash`` from ``now`` on (a torrent already here keeps its time); False when
        ``max_torrents`` are scheduled already."""
        if info_hash in self._due:
            return True
        if len(self._due) >= self.max_torrents:
            return False
        self._due[info_hash] = now
        return True

    def remove(self, info_hash: bytes) -> None:
        self._due.pop(info_hash, None)

    def reset(self, now: float) -> None:
        """Every torrent is due at ``now`` (our listen port changed); the datagram gap still holds."""
        self._due = dict.fromkeys(self._due, now)

    def take(self, now: float, limit: int) -> list[bytes]:
        """Up to ``limit`` torrents to announce in one datagram at ``now``, the longest overdue first,
        in the order added among equals, and recorded as announced; none when the last datagram went less
        than ``gap`` ago."""
        if now < self._next_send or limit <= 0:
            return []
        due = heapq.nsmallest(limit, (h for h, t in self._due.items() if t <= now), key=self._due.__getitem__)
        for info_hash in due:
            self._due[info_hash] = now + self.interval
        if due:
            self._next_send = now + self.gap
        return due

    def next_time(self) -> float | None:
        """When ``take`` will next have something (None with nothing scheduled)."""
        if not self._due:
            return None
        return max(min(self._due.values()), self._next_send)
