"""One torrent's swarm: peers, requests, verification, serving, choking.

The swarm composes the policy objects (``PiecePicker``, ``Choker``), the
storage, and the peer connections; it is the ``PeerOwner`` of each
connection. It decides, the peers move bytes, storage and hashing run in
worker threads. Blocks are assembled in per-piece buffers (bounded by the
picker's partial pieces), verified, then written once per piece.

Blame (smart ban): every block remembers which peer sent it. When a piece
fails its hash, a piece sent entirely by one peer bans that peer; otherwise
the piece is fetched again from a single peer and the two copies are
compared block by block, so only the senders of blocks that differ from the
verified copy are banned.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from torrent.codec import wire
from torrent.core.bitfield import Bitfield
from torrent.engine.choker import Choker, PeerView
from torrent.core.errors import StorageError
from torrent.codec.geometry import BLOCK_SIZE
from torrent.codec.metainfo import Metainfo
from torrent.peer.connection import PeerConnection
from torrent.core.settings import DEFAULT_SETTINGS, Settings
from torrent.engine.picker import Block, PiecePicker
from torrent.storage.files import Storage
from torrent.storage.verifier import PieceVerifier

log = logging.getLogger(__name__)

def peer_identity(host: str, port: int) -> tuple[str, int] | str:
    """Whom a ban applies to: the IP, except on loopback and private test
    networks where many honest peers share one address."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host
    return (host, port) if addr.is_loopback else host


@dataclass(slots=True)
class PartialPiece:
    """A piece being assembled in memory, with who sent each block."""

    index: int
    data: bytearray
    senders: dict[int, object] = field(default_factory=dict)  # begin → peer identity


@dataclass(slots=True)
class FailedPiece:
    """A piece that failed its hash, kept block-hashed for the comparison."""

    block_hashes: dict[int, tuple[bytes, object]]  # begin → (sha1 of block, sender identity)


@dataclass(slots=True)
class PeerState:
    """What the swarm tracks per connection (the connection tracks the wire)."""

    identity: object
    outstanding: dict[Block, float] = field(default_factory=dict)  # block → time requested
    serving: deque[tuple[int, int, int]] = field(default_factory=deque)  # requests queued for upload
    serve_task: asyncio.Task[None] | None = None
    read_ahead: int = -1  # piece of the last request, whose read has been started
    snubbed: bool = False


class Swarm:
    """Everything for one torrent; created and started by the session."""

    def __init__(self, metainfo: Metainfo, storage: Storage, have: Bitfield, *, peer_id: bytes,
                 listen_port: int | None, session: SwarmHost, settings: Settings = DEFAULT_SETTINGS,
                 rng: random.Random | None = None) -> None:
        self.metainfo = metainfo
        self.info_hash = metainfo.info_hash
        self.peer_id = peer_id
        self.num_pieces = metainfo.num_pieces
        self.have = have
        self.storage = storage
        self.listen_port = listen_port
        self.session = session
        self.settings = settings
        self.max_peers = settings.torrent.max_peers
        self._rng = rng or random.Random()
        self.picker = PiecePicker(metainfo.geometry, have.copy(), rng=self._rng,
                                  random_first=settings.torrent.random_first,
                                  endgame_requesters=settings.torrent.endgame_requesters)
        wanted = storage.wanted_pieces()
        if not wanted.all():
            self.picker.set_piece_priorities([1 if wanted.get(i) else 0 for i in range(self.num_pieces)])
        self.choker = Choker(settings.torrent, rng=self._rng)
        self.peers: dict[PeerConnection, PeerState] = {}
        self.banned: set[object] = set()
        self.ban_reasons: dict[object, str] = {}
        self.partial: dict[int, PartialPiece] = {}
        self.failed: dict[int, FailedPiece] = {}
        self.downloaded = 0  # verified payload bytes fetched this session
        self.uploaded = 0
        self.wasted = 0  # bytes of blocks dropped (unrequested, duplicate, failed)
        self.hash_failures = 0
        self.completed = asyncio.Event()
        if self.wanted_done():
            self.completed.set()
        self._read_cache: OrderedDict[int, asyncio.Future[bytes]] = OrderedDict()
        self._read_cache_max = max(2, settings.torrent.read_cache_bytes // metainfo.piece_length)
        self._to_fill: set[PeerConnection] = set()
        self._fill_scheduled = False
        self._closing = False
        self._backlog = 0  # bytes of complete pieces not yet hashed and written
        self._max_assembling = max(4, settings.torrent.assembly_bytes // metainfo.piece_length)
        self.verifier = PieceVerifier(storage, session.executor, self._verified)
        self._spare: list[bytearray] = []
        # The backlog's buffers, once written, are the next ones filled.
        self._max_spare = max(2, settings.torrent.write_backlog_bytes // metainfo.piece_length)

    # ---- PeerOwner ----------------------------------------------------------

    def attach(self, peer: PeerConnection) -> str | None:
        if self._closing:
            return "torrent is stopping"
        if peer.remote_id == self.peer_id:
            self.session.note_self_address(peer.address)
            return "connected to ourselves"
        host, port = peer.address or ("?", 0)
        identity = peer_identity(host, port if peer.outgoing else (peer.listen_port or port))
        if identity in self.banned:
            return f"banned: {self.ban_reasons.get(identity, 'sent bad data')}"
        if any(p.remote_id == peer.remote_id for p in self.peers):
            return "duplicate connection"
        if len(self.peers) >= self.max_peers:
            return "too many peers"
        if not self.session.connection_allowed():
            return "too many connections in this session"
        self.peers[peer] = PeerState(identity)
        return None

    def detach(self, peer: PeerConnection) -> None:
        state = self.peers.pop(peer, None)
        if state is None:
            return
        if self.picker.peer_gone(peer):
            self._wake_all()
        if state.serve_task is not None:
            state.serve_task.cancel()
        self._to_fill.discard(peer)
        self._wake_all()

    def on_bitfield(self, peer: PeerConnection) -> None:
        assert peer.bitfield is not None
        if peer.bitfield.all():
            interested = self.picker.peer_have_all(peer)  # O(1): seeds are a counter
        else:
            interested = self.picker.peer_bitfield(peer, peer.bitfield)
        peer.set_interested(interested)
        if interested:
            self._schedule_fill(peer)

    def on_have(self, peer: PeerConnection, index: int) -> None:
        if self.picker.peer_have(peer, index):
            peer.set_interested(True)
            self._schedule_fill(peer)

    def on_choke_change(self, peer: PeerConnection) -> None:
        state = self.peers.get(peer)
        if state is None:
            return
        if peer.peer_choking:
            if peer.supports_fast:
                # BEP 6: each request will still be answered, by data or a reject.
                self.picker.peer_choked(peer)
            else:
                # BEP 3: a choke discards every pending request.
                state.outstanding.clear()
                self.picker.release(peer)
            self._wake_all()
        else:
            self._schedule_fill(peer)

    def on_interest_change(self, peer: PeerConnection) -> None:
        if not peer.peer_interested:
            peer.set_choking(True)
        elif peer.am_choking and peer in self.peers and self.unchoked_count() < self.choker.upload_slots:
            # A free slot goes to a newcomer now, not at the next rechoke.
            peer.set_choking(False)

    def unchoked_count(self) -> int:
        return sum(1 for p in self.peers if not p.am_choking)

    def on_blocks(self, peer: PeerConnection, blocks: list[wire.Piece]) -> None:
        """The blocks of one read, copied once each into their piece buffer."""
        state = self.peers.get(peer)
        if state is None:
            self.wasted += sum([len(block.data) for block in blocks])
            return
        outstanding = state.outstanding
        block_received = self.picker.block_received
        partial = self.partial
        for index, begin, data in blocks:
            length = len(data)
            block = Block(index, begin, length)
            if outstanding.pop(block, None) is None:
                # Never requested, or already cancelled and answered elsewhere.
                self.wasted += length
                continue
            received = block_received(peer, index, begin)
            for other in received.cancel:
                other_state = self.peers.get(other)
                if other_state is not None and other_state.outstanding.pop(block, None) is not None:
                    other.send(wire.build_cancel(index, begin, length))
            if not received.new:
                self.wasted += length
                continue
            piece = partial.get(index)
            if piece is None:
                piece = partial[index] = PartialPiece(index, self._piece_buffer(index))
            piece.data[begin:begin + length] = data
            piece.senders[begin] = state.identity
            if received.complete:
                del partial[index]
                self._backlog += len(piece.data)
                self.verifier.submit(piece, index, piece.data)
        self._schedule_fill(peer)

    def _piece_buffer(self, index: int) -> bytearray:
        """Every block overwrites its part before the piece is complete, so a
        reused buffer needs no clearing."""
        size = self.metainfo.geometry.piece_size(index)
        if size == self.metainfo.piece_length and self._spare:
            return self._spare.pop()
        return bytearray(size)

    def _recycle(self, data: bytearray) -> None:
        if len(data) == self.metainfo.piece_length and len(self._spare) < self._max_spare:
            self._spare.append(data)

    def on_reject(self, peer: PeerConnection, index: int, begin: int, length: int) -> None:
        state = self.peers.get(peer)
        block = Block(index, begin, length)
        if state is not None and state.outstanding.pop(block, None) is not None:
            self.picker.block_rejected(peer, index, begin)
            self._wake_all()

    def on_request(self, peer: PeerConnection, index: int, begin: int, length: int) -> None:
        state = self.peers.get(peer)
        if state is None:
            return
        geometry = self.metainfo.geometry
        if begin + length > geometry.piece_size(index):
            peer.close(f"request beyond the end of piece {index}: begin {begin}, length {length}")
            return
        if not self.have.get(index):
            peer.close(f"request for piece {index}, which we do not have")
            return
        if peer.am_choking and index not in self._allowed_fast_for(peer):
            if peer.supports_fast:
                peer.send(wire.build_reject(index, begin, length))
            return
        if len(state.serving) >= self.settings.peer.max_requests:
            peer.close(f"more than {self.settings.peer.max_requests} requests queued")
            return
        state.serving.append((index, begin, length))
        if index != state.read_ahead:
            state.read_ahead = index
            self._cached_piece(index)  # read ahead: the disk works while earlier blocks go out
        if state.serve_task is None or state.serve_task.done():
            state.serve_task = asyncio.get_running_loop().create_task(self._serve(peer, state))

    def on_cancel(self, peer: PeerConnection, index: int, begin: int, length: int) -> None:
        state = self.peers.get(peer)
        if state is not None:
            try:
                state.serving.remove((index, begin, length))
            except ValueError:
                pass

    def on_allowed_fast(self, peer: PeerConnection, index: int) -> None:
        self._schedule_fill(peer)

    # ---- requesting ----------------------------------------------------------

    def _schedule_fill(self, peer: PeerConnection) -> None:
        """Batch request decisions: one pass per loop iteration, not per message."""
        self._to_fill.add(peer)
        if not self._fill_scheduled:
            self._fill_scheduled = True
            asyncio.get_running_loop().call_soon(self._fill_all)

    def _wake_all(self) -> None:
        for peer in self.peers:
            self._schedule_fill(peer)

    def _fill_all(self) -> None:
        self._fill_scheduled = False
        peers, self._to_fill = self._to_fill, set()
        for peer in peers:
            if not peer.closed and peer in self.peers:
                self._fill(peer, self.peers[peer])

    def _fill(self, peer: PeerConnection, state: PeerState) -> None:
        if peer.bitfield is None or not peer.am_interested:
            return
        if self._backlog > self.settings.torrent.write_backlog_bytes:
            return  # the write that brings the backlog down wakes every peer
        choked = peer.peer_choking
        if choked and not peer.allowed_fast:
            return
        rate = peer.downloaded.rate(time.monotonic())
        ps = self.settings.peer
        depth = max(ps.min_pipeline, int(rate * ps.pipeline_seconds / BLOCK_SIZE))
        depth = min(depth, peer.reqq, ps.max_requests)
        want = depth - len(state.outstanding)
        if want <= 0:
            return
        if state.snubbed:
            want = min(want, 1)  # a snubbed peer gets one request at a time, of a common piece
        limiter = self.session.download_limiter
        if limiter.rate:
            # The download limit holds back requests, not received bytes: what
            # we ask for is what peers send.
            want = min(want, int(limiter.available() // BLOCK_SIZE))
            if want <= 0:
                asyncio.get_running_loop().call_later(BLOCK_SIZE / limiter.rate, self._schedule_fill, peer)
                return
        new_pieces = len(self.partial) < self._max_assembling
        blocks = self.picker.pick(peer, want, allowed_fast=peer.allowed_fast, choked=choked,
                                  snubbed=state.snubbed, new_pieces=new_pieces)
        if not blocks:
            if not state.outstanding and not self.picker.interesting(peer):
                peer.set_interested(False)
            return
        if limiter.rate:
            limiter.spend(sum(block.length for block in blocks))
        now = time.monotonic()
        out = []
        for block in blocks:
            state.outstanding[block] = now
            out.append(wire.build_request(block.index, block.begin, block.length))
        peer.send(b"".join(out))

    def _give_up(self, peer: PeerConnection, state: PeerState, blocks: list[Block]) -> None:
        """Stop waiting for ``blocks`` from ``peer``: cancel them there and let
        other peers take them. A copy that still arrives is dropped."""
        for block in blocks:
            del state.outstanding[block]
            peer.send(wire.build_cancel(*block))
            self.picker.block_rejected(peer, block.index, block.begin)
        self._wake_all()

    # ---- verification and blame ---------------------------------------------

    def _verified(self, piece: PartialPiece, result: bool | StorageError) -> None:
        """The verifier's answer for a complete piece (on the loop)."""
        limit = self.settings.torrent.write_backlog_bytes
        was_full = self._backlog > limit
        self._backlog -= len(piece.data)
        if was_full and self._backlog <= limit:
            self._wake_all()
        if self._closing:
            return
        if isinstance(result, StorageError):
            self.picker.piece_failed(piece.index)
            self.session.storage_failed(self, result)
            return
        if result:
            self._piece_good(piece)
        else:
            self._piece_bad(piece)
        self._recycle(piece.data)

    def _piece_good(self, piece: PartialPiece) -> None:
        index = piece.index
        self.have.set(index)
        self.picker.piece_verified(index)
        self.downloaded += len(piece.data)
        earlier = self.failed.pop(index, None)
        if earlier is not None:
            self._blame(index, earlier, piece)
        have_msg = wire.build_have(index)
        for peer in list(self.peers):
            peer.send_soon(have_msg)
            if peer.am_interested and not self.picker.interesting(peer):
                state = self.peers.get(peer)
                if state is not None and not state.outstanding:
                    peer.set_interested(False)
        if self.wanted_done() and not self.completed.is_set():
            self.completed.set()
            self.session.torrent_completed(self)

    def _piece_bad(self, piece: PartialPiece) -> None:
        index = piece.index
        self.hash_failures += 1
        self.wasted += len(piece.data)
        senders = set(piece.senders.values())
        if len(senders) == 1:
            (culprit,) = senders
            self.ban(culprit, f"sent piece {index}, which failed its hash check")
            self.picker.piece_failed(index)
            self._wake_all()
            return
        # Several senders: remember each block's hash and fetch the piece
        # again from one peer; the comparison then names the liars.
        self.failed[index] = FailedPiece({
            begin: (hashlib.sha1(piece.data[begin:begin + BLOCK_SIZE]).digest(), sender)
            for begin, sender in piece.senders.items()})
        reserve = self._choose_refetch_peer(index, senders)
        self.picker.piece_failed(index, reserve_for=reserve)
        self._wake_all()

    def _choose_refetch_peer(self, index: int, exclude: set[object]) -> PeerConnection | None:
        """A single peer to fetch a failed piece from: one that has been
        delivering, and had no part in the failed copy if possible, so the
        fresh copy is independent of the suspects."""
        candidates = [p for p, s in self.peers.items()
                      if p.bitfield is not None and p.bitfield.get(index) and not s.snubbed
                      and p.downloaded.total and not p.closed]
        fresh = [p for p in candidates if self.peers[p].identity not in exclude]
        pool = fresh or candidates
        if not pool:
            return None
        now = time.monotonic()
        return max(pool, key=lambda p: p.downloaded.rate(now))

    def _move_reservations(self, peer: PeerConnection) -> None:
        """A peer that stopped delivering loses its smart-ban re-fetches: the
        pieces open to everyone (the fresh copy is proven by its hash, whoever
        sends it, so the block comparison stays sound)."""
        for progress in self.picker.partials():
            if progress.reserved_for is peer:
                self.picker.unreserve(progress.index)

    def _blame(self, index: int, failed: FailedPiece, good: PartialPiece) -> None:
        """Ban exactly the senders of blocks that differ from the verified copy."""
        for begin, (digest, sender) in failed.block_hashes.items():
            if hashlib.sha1(good.data[begin:begin + BLOCK_SIZE]).digest() != digest:
                self.ban(sender, f"sent a corrupt block of piece {index} (offset {begin})")

    def ban(self, identity: object, reason: str) -> None:
        if identity in self.banned:
            return
        self.banned.add(identity)
        self.ban_reasons[identity] = reason
        log.warning("banning %s: %s", identity, reason)
        for peer, state in list(self.peers.items()):
            if state.identity == identity:
                peer.close(f"banned: {reason}")

    def wanted_done(self) -> bool:
        return self.picker.wanted_remaining == 0

    # ---- serving ---------------------------------------------------------------

    def _allowed_fast_for(self, peer: PeerConnection) -> frozenset[int]:
        return frozenset()  # we grant no allowed-fast pieces; BEP 6 makes that optional

    async def _serve(self, peer: PeerConnection, state: PeerState) -> None:
        """Send queued blocks in order, reading off the loop and honouring
        the upload limit and the transport's back-pressure. Blocks of pieces
        already read leave together: one write per batch, not per block."""
        limiter = self.session.upload_limiter
        serving = state.serving
        while serving and not peer.closed:
            if not peer.drained.is_set():
                await peer.drained.wait()
                continue
            # With a limit, a block at a time keeps the rate smooth.
            limit = BLOCK_SIZE if limiter.rate else self.settings.peer.send_batch_bytes
            batch: list[tuple[int, int, memoryview]] = []
            size = 0
            while serving and size < limit:
                index, begin, length = serving[0]
                if peer.am_choking and index not in self._allowed_fast_for(peer):
                    serving.popleft()
                    continue
                future = self._cached_piece(index)
                if not future.done():
                    break
                serving.popleft()
                try:
                    piece = future.result()
                except StorageError as exc:
                    self.session.storage_failed(self, exc)
                    return
                batch.append((index, begin, memoryview(piece)[begin:begin + length]))
                size += length
            if batch:
                if limiter.rate:
                    await limiter.acquire(size + 13 * len(batch))
                peer.send_blocks(batch)
                self.uploaded += size
            elif serving:
                try:
                    # Shielded: the read is shared, one peer leaving must not cancel it for all.
                    await asyncio.shield(self._cached_piece(serving[0][0]))
                except StorageError as exc:
                    self.session.storage_failed(self, exc)
                    return

    def _cached_piece(self, index: int) -> asyncio.Future[bytes]:
        """The whole piece, read once for all of its blocks (and all peers):
        one disk read and one thread hop per piece instead of per block."""
        future = self._read_cache.get(index)
        if future is not None:
            self._read_cache.move_to_end(index)
            return future
        future = asyncio.ensure_future(self.storage.read_piece_async(index))
        self._read_cache[index] = future
        while len(self._read_cache) > self._read_cache_max:
            self._read_cache.popitem(last=False)
        future.add_done_callback(lambda f: (f.cancelled() or f.exception()) and self._read_cache.pop(index, None))
        return future

    # ---- periodic work -----------------------------------------------------------

    def tick(self, now: float) -> None:
        """Once a second: timeouts, snubbing, keep-alives."""
        ps = self.settings.peer
        for peer, state in list(self.peers.items()):
            if now - peer.last_received > ps.idle_timeout:
                peer.close("idle for too long")
                continue
            if now - peer.last_sent > ps.keepalive_every:
                peer.send(wire.build_keepalive())
            if state.outstanding:
                oldest = min(state.outstanding.values())
                if not peer.peer_choking and now - max(peer.last_block, oldest) > ps.snub_time:
                    state.snubbed = True
                    state.outstanding.clear()
                    self.picker.release(peer)
                    self._move_reservations(peer)
                    self._wake_all()
                elif now - oldest > ps.request_timeout:
                    self._give_up(peer, state, [b for b, t in state.outstanding.items()
                                                if now - t > ps.request_timeout])
            elif state.snubbed and now - peer.last_block < ps.snub_time:
                state.snubbed = False

    def rechoke(self, now: float) -> None:
        views = [PeerView(p, p.peer_interested, p.downloaded.rate(now), p.uploaded.rate(now),
                          now - p.connected_at, self.peers[p].snubbed) for p in self.peers]
        unchoke = self.choker.rechoke(views, seeding=self.have.all() or self.wanted_done())
        for peer in list(self.peers):
            peer.set_choking(peer not in unchoke)

    def close(self) -> None:
        self._closing = True
        for peer in list(self.peers):
            peer.close("torrent stopped")

    # ---- numbers for front ends --------------------------------------------------

    @property
    def left(self) -> int:
        geometry = self.metainfo.geometry
        missing = self.num_pieces - self.have.count()
        if missing and not self.have.get(self.num_pieces - 1):
            return (missing - 1) * geometry.piece_length + geometry.piece_size(self.num_pieces - 1)
        return missing * geometry.piece_length

    def connected_addresses(self) -> Iterable[tuple[str, int]]:
        return (p.address for p in self.peers if p.address)


class SwarmHost:
    """What a swarm needs from its session (the session implements it)."""

    upload_limiter: object
    download_limiter: object
    executor: Executor

    def connection_allowed(self) -> bool: ...
    def note_self_address(self, address: tuple[str, int] | None) -> None: ...
    def torrent_completed(self, swarm: Swarm) -> None: ...
    def storage_failed(self, swarm: Swarm, exc: StorageError) -> None: ...
