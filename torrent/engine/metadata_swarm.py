"""A magnet's peers before its info dictionary is known: they give us the metadata, then the download.

The ``MetadataSwarm`` is the ``PeerOwner`` of connections made while the piece count is unknown. It keeps
them alive (idle timeouts, keep-alives) while ``ut_metadata`` fetches the dictionary; the connections
remember what pieces their peers announced, and ``hand_over`` gives them to the ``Swarm`` of the download
once it exists, so no peer is dialled twice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from torrent.codec import wire
from torrent.core.settings import DEFAULT_SETTINGS, Settings
from torrent.peer.connection import PeerConnection, settle_duplicate
from torrent.peer.extensions import PeerExtensions

if TYPE_CHECKING:
    from torrent.engine.swarm import SwarmHost

log = logging.getLogger(__name__)


class MetadataSwarm:
    num_pieces = None
    have = None

    def __init__(self, info_hash: bytes, *, peer_id: bytes, host: SwarmHost, extensions: PeerExtensions,
                 settings: Settings = DEFAULT_SETTINGS, max_peers: int | None = None) -> None:
        self.info_hash = info_hash
        self.peer_id = peer_id
        self.host = host
        self.extensions = extensions
        self.settings = settings
        self.max_peers = max_peers or settings.torrent.max_peers
        self.peers: dict[PeerConnection, None] = {}
        self._closing = False

    # ---- PeerOwner ----------------------------------------------------------------------------

    def attach(self, peer: PeerConnection) -> str | None:
        if self._closing:
            return "torrent is stopping"
        if peer.remote_id == self.peer_id:
            self.host.note_self_address(peer.address)
            return "connected to ourselves"
        refusal = settle_duplicate(self.peers, peer, self.peer_id)
        if refusal is not None:
            return refusal
        if len(self.peers) >= self.max_peers:
            return "too many peers"
        if not self.host.connection_allowed():
            return "too many connections in this session"
        self.peers[peer] = None
        self.host.peer_attached(self, peer)  # type: ignore[arg-type]
        return None

    def detach(self, peer: PeerConnection) -> None:
        self.peers.pop(peer, None)

    # The piece count is unknown: what the peer announces stays in the connection until ``hand_over``,
    # and nothing was requested, so there is nothing to take or count yet.

    def on_bitfield(self, peer: PeerConnection) -> None:
        """Kept raw by the connection."""

    def on_have(self, peer: PeerConnection, index: int) -> None:
        """Kept raw by the connection."""

    def on_choke_change(self, peer: PeerConnection) -> None:
        """Nothing is requested before the hand-over."""

    def on_interest_change(self, peer: PeerConnection) -> None:
        """We have nothing to unchoke them for."""

    def on_blocks(self, peer: PeerConnection, blocks: list[wire.Piece]) -> None:
        """Never requested, and no torrent to count the waste in yet."""

    def on_reject(self, peer: PeerConnection, index: int, begin: int, length: int) -> None:
        """Nothing was requested."""

    def on_request(self, peer: PeerConnection, index: int, begin: int, length: int) -> None:
        if peer.supports_fast:
            peer.send(wire.build_reject(index, begin, length))  # we said we have nothing

    def on_cancel(self, peer: PeerConnection, index: int, begin: int, length: int) -> None:
        """Every request was rejected at once."""

    def on_allowed_fast(self, peer: PeerConnection, index: int) -> None:
        """Nothing is requested before the hand-over."""

    # ---- for the owner ------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        ps = self.settings.peer
        for peer in list(self.peers):
            if now - peer.last_received > ps.idle_timeout:
                peer.close("idle for too long")
            elif now - peer.last_sent > ps.keepalive_every:
                peer.send(wire.build_keepalive())

    def hand_over(self) -> list[PeerConnection]:
        """The open connections, no longer ours (the download's ``Swarm.adopt`` takes them)."""
        peers = [p for p in self.peers if not p.closed]
        self.peers.clear()
        self._closing = True
        return peers

    def connected_addresses(self) -> list[tuple[str, int]]:
        """Each peer's address, and for incoming peers their listen address too (not to be dialled again)."""
        out = [p.address for p in self.peers if p.address]
        out += [a for p in self.peers if not p.outgoing and (a := p.listen_address) is not None]
        return out

    def close(self) -> None:
        self._closing = True
        for peer in list(self.peers):
            peer.close("torrent stopped")
