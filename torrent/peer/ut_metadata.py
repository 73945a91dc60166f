"""``ut_metadata`` (BEP 9) on the extension registry: fetch a magnet's info dictionary, serve ours.

Fetching asks every peer that announced a ``metadata_size`` for pieces nobody else was asked for, a few at
a time, so a dictionary of many pieces comes from several peers at once; a piece unanswered after
``request_timeout`` (or rejected) goes to another peer. The assembled dictionary is used only once its
SHA-1 is the info-hash; the senders of a mismatch are dropped and the pieces fetched again. Serving
answers requests for our dictionary, with a bound on how many pieces one peer may take.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torrent.codec import metadata
from torrent.codec.metadata import Assembly, MetadataError
from torrent.core.settings import DEFAULT_SETTINGS

if TYPE_CHECKING:
    from torrent.peer.connection import PeerConnection

log = logging.getLogger(__name__)

NAME = "ut_metadata"
PER_PEER = 4  # pieces asked of one peer at once
SERVE_ROUNDS = 3  # times one peer may fetch our whole dictionary per connection


@dataclass(slots=True)
class _Peer:
    size: int | None = None  # the metadata_size it announced, if usable
    asked: dict[int, float] = field(default_factory=dict)  # piece → when
    served: int = 0  # pieces we sent it
    refused_until: float = 0.0  # it rejected or ignored us: not asked again before then


class MetadataExtension:
    """One torrent's ``ut_metadata``. ``info``: our info dictionary when known; ``on_metadata`` receives
    the verified dictionary of a magnet; ``on_bad_peer`` is told of a peer to drop and why."""

    name = NAME

    def __init__(self, info_hash: bytes, info: bytes | None, *, on_metadata: Callable[[bytes], None],
                 clock: Callable[[], float] = time.monotonic,
                 request_timeout: float = DEFAULT_SETTINGS.peer.metadata_timeout,
                 max_size: int = metadata.MAX_METADATA) -> None:
        self.info_hash = info_hash
        self.info = info
        self.on_metadata = on_metadata
        self.clock = clock
        self.request_timeout = request_timeout
        self.max_size = max_size
        self.assembly: Assembly | None = None
        self.peers: dict[PeerConnection, _Peer] = {}

    @property
    def fetching(self) -> bool:
        return self.info is None

    def progress(self) -> tuple[int, int]:
        """Metadata pieces received and expected (0, 0 before any peer said the size)."""
        if self.assembly is None:
            return (0, 0)
        pieces = self.assembly.pieces
        return (sum(1 for p in pieces if p is not None), len(pieces))

    # ---- Extension -----------------------------------------------------------------------------

    def handshake_fields(self) -> dict[str, Any]:
        return {"metadata_size": len(self.info)} if self.info is not None else {}

    def peer_ready(self, peer: PeerConnection) -> None:
        state = self.peers.setdefault(peer, _Peer())
        ext = peer.extension
        size = ext.metadata_size if ext is not None and ext.m.get(NAME) else None
        if size is not None and not 0 < size <= self.max_size:
            log.info("%r: ignoring its metadata_size of %d bytes", peer, size)
            size = None
        state.size = size
        self._ask(peer, state)

    def peer_gone(self, peer: PeerConnection) -> None:
        self.peers.pop(peer, None)
        if self.assembly is not None:
            self.assembly.forget(peer)
            self._ask_all()

    def received(self, peer: PeerConnection, payload: bytes) -> None:
        message = metadata.parse(payload)  # MetadataError (a ProtocolError) drops the peer
        state = self.peers.setdefault(peer, _Peer())
        if message.kind == metadata.REQUEST:
            self._serve(peer, state, message.piece)
        elif message.kind == metadata.REJECT:
            if state.asked.pop(message.piece, None) is not None:
                state.refused_until = self.clock() + 4 * self.request_timeout
                if self.assembly is not None:
                    self.assembly.forget(peer)
                    state.asked.clear()
                self._ask_all()
        elif state.asked.pop(message.piece, None) is not None and self.fetching:
            self._data(peer, state, message)
        # Data we did not ask for (or arriving after we finished) is ignored.

    # ---- serving --------------------------------------------------------------------------------

    def _serve(self, peer: PeerConnection, state: _Peer, piece: int) -> None:
        info = self.info
        if info is None or piece >= metadata.piece_count(len(info)) or \
                state.served >= SERVE_ROUNDS * metadata.piece_count(len(info)):
            peer.send_extended(NAME, metadata.reject(piece))
            return
        state.served += 1
        peer.send_extended(NAME, metadata.data(piece, info))

    # ---- fetching ---------------------------------------------------------------------------------

    def _data(self, peer: PeerConnection, state: _Peer, message: metadata.MetadataMessage) -> None:
        assembly = self.assembly
        if assembly is None:
            return
        try:
            info = assembly.received(peer, message)
        except MetadataError as exc:
            bad = assembly.bad_peers or [peer]
            for sender in bad:
                sender.close(f"sent bad metadata: {exc}")
            if assembly.bad_peers:
                self.assembly = None  # the size may have come from a liar: take it again from the others
            self._ask_all()
            return
        if info is None:
            self._ask(peer, state)
            return
        self.info = info
        self.assembly = None
        for other in self.peers.values():
            other.asked.clear()
        self.on_metadata(info)

    def _ask_all(self) -> None:
        for peer, state in list(self.peers.items()):
            self._ask(peer, state)

    def _ask(self, peer: PeerConnection, state: _Peer) -> None:
        if not self.fetching or state.size is None or peer.closed or state.refused_until > self.clock():
            return
        if self.assembly is None:
            self.assembly = self._new_assembly()
            if self.assembly is None:
                return
        if state.size != self.assembly.size:
            return
        now = self.clock()
        while len(state.asked) < PER_PEER:
            piece = self.assembly.next_piece(peer)
            if piece is None:
                return
            state.asked[piece] = now
            peer.send_extended(NAME, metadata.request(piece))

    def _new_assembly(self) -> Assembly | None:
        """The size most peers announced (a lone liar cannot set it for everyone)."""
        sizes = Counter(s.size for p, s in self.peers.items() if s.size is not None and not p.closed)
        if not sizes:
            return None
        return Assembly(self.info_hash, sizes.most_common(1)[0][0])

    def tick(self) -> None:
        """Once a second: pieces unanswered for too long go to other peers."""
        if not self.fetching or self.assembly is None:
            return
        now = self.clock()
        for peer, state in list(self.peers.items()):
            late = [piece for piece, at in state.asked.items() if now - at > self.request_timeout]
            if late:
                for piece in late:
                    del state.asked[piece]
                self.assembly.forget(peer)
                state.asked.clear()
                state.refused_until = now + 4 * self.request_timeout
        self._ask_all()
