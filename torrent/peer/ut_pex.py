"""``ut_pex`` (BEP 11) on the extension registry: tell peers whom we are connected to, learn whom they are.

Each peer that speaks ut_pex gets, at most once a minute, the listen addresses of our other peers that
changed since its last message (``codec.pex.PexTracker`` keeps that per peer and caps each message).
What peers tell us goes to the torrent's candidates, tagged ``pex``; a peer that sends more often than
BEP 11 allows is ignored for that message. Off for private torrents (BEP 27): ``enabled`` says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from torrent.codec import pex

if TYPE_CHECKING:
    from torrent.peer.connection import PeerConnection

NAME = "ut_pex"
Address = tuple[str, int]


class PexExtension:
    name = NAME

    def __init__(self, *, connected: Callable[[], Iterable[PeerConnection]],
                 on_peers: Callable[[list[Address], set[Address]], None],
                 enabled: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.monotonic, interval: float = pex.INTERVAL) -> None:
        self.connected = connected
        self.on_peers = on_peers  # (the addresses added, those of them flagged as seeds)
        self.enabled = enabled
        self.clock = clock
        self.interval = interval
        self.trackers: dict[PeerConnection, pex.PexTracker] = {}
        self.learned = 0  # addresses peers told us, all messages

    def handshake_fields(self) -> dict[str, Any]:
        return {}

    def peer_ready(self, peer: PeerConnection) -> None:
        ext = peer.extension
        if ext is None or not ext.m.get(NAME) or not self.enabled():
            self.trackers.pop(peer, None)
            return
        host, port = peer.address or ("?", 0)
        recipient = (host, port if peer.outgoing else ext.p)
        tracker = self.trackers.get(peer)
        if tracker is None:
            self.trackers[peer] = pex.PexTracker(recipient, interval=self.interval)
        else:
            tracker.recipient = recipient

    def peer_gone(self, peer: PeerConnection) -> None:
        self.trackers.pop(peer, None)

    def received(self, peer: PeerConnection, payload: bytes) -> None:
        message = pex.parse(payload)  # PexError (a ProtocolError) drops the peer
        tracker = self.trackers.get(peer)
        if tracker is None or not self.enabled() or not tracker.received(self.clock()):
            return  # we never offered ut_pex to it, or it floods
        added = [(p.host, p.port) for p in message.added]
        if added:
            self.learned += len(added)
            self.on_peers(added, {(p.host, p.port) for p in message.added if p.flags & pex.SEED})

    def tick(self) -> None:
        """Send each peer what changed, when its minute is up."""
        if not self.trackers or not self.enabled():
            return
        now = self.clock()
        due = [(peer, tracker) for peer, tracker in self.trackers.items() if tracker.due(now)]
        if not due:
            return
        current = list(_listen_addresses(self.connected()))
        for peer, tracker in due:
            payload = tracker.poll(current, now)
            if payload is not None:
                peer.send_extended(NAME, payload)


def _listen_addresses(peers: Iterable[PeerConnection]) -> Iterable[tuple[str, int, int]]:
    """Where each peer accepts connections, with its BEP 11 flags; incoming peers that never told us
    their listen port are left out (their source port is not one anybody could dial)."""
    for peer in peers:
        if peer.closed or peer.address is None:
            continue
        host, port = peer.address
        flags = 0
        if not peer.outgoing:
            port = peer.extension.p if peer.extension is not None and peer.extension.p else 0
        else:
            flags |= pex.REACHABLE
        if peer.bitfield is not None and peer.bitfield.all():
            flags |= pex.SEED
        if port:
            yield host, port, flags
