"""One torrent's swarm: peers, requests, verification, serving, choking.

The swarm composes the policy objects (``PiecePicker``, ``Choker``), the
storage, and the peer connections; it is the ``PeerOwner`` of each
connection. It decides, the peers move bytes, storage and hashing run in
worker threads. Blocks are assembled in per-piece buffers (``assembly_bytes`` of
them), verified, then written once per piece; pieces requested past that budget
(up to ``requested_bytes``, which slow peers need) have their blocks written to
disk as they arrive and are read back to be hashed (``BlockSpill``).

The picker is the one owner of what was requested from whom, when, and who
delivered each block; the swarm asks it instead of keeping its own books.

Blame (smart ban): when a piece fails its hash, a piece sent entirely by one
peer bans that peer; otherwise the piece is fetched again from a single peer
and the two copies are compared block by block, so only the senders of
blocks that differ from the verified copy are banned.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import random
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

from torrent.codec import wire
from torrent.codec.geometry import BLOCK_SIZE
from torrent.codec.metainfo import Metainfo
from torrent.core.bitfield import Bitfield
from torrent.core.errors import StorageError
from torrent.core.settings import DEFAULT_SETTINGS, Settings
from torrent.engine.choker import Choker, PeerView
from torrent.engine.picker import Block, PiecePicker
from torrent.engine.ratelimit import LimiterChain
from torrent.engine.uploads import ReadAccount, UploadReads
from torrent.peer.connection import PeerConnection, settle_duplicate
from torrent.peer.extensions import NO_EXTENSIONS, PeerExtensions
from torrent.storage.files import DataChangedError, Storage
from torrent.storage.journal import PieceJournal
from torrent.storage.spill import BlockSpill
from torrent.storage.verifier import PieceVerifier

log = logging.getLogger(__name__)


# Under an upload limit, a write carries this long's worth of the limit: a write, a timer and a read at the
# far end per block cost our capped seeder 13.7 user s/GiB; 20 ms of the rate is still a smooth rate.
LIMITED_WRITE_SECONDS = 0.02
# A peer with requests outstanding gets more once an eighth of its pipeline is free, not after every read:
# capped seeders send 20 blocks a write, and refilling each read cost our leecher 0.27 user s/GiB in
# fills and request writes (py-spy; 16 seeders at 16 MiB/s), and woke the seeders as often.
REFILL_FRACTION = 8
# Why a connection between two seeds ends (neither has anything for the other), as libtorrent and
# Transmission end it; the dialler then leaves that address alone while it seeds.
BOTH_SEEDS = "both seeds"


def peer_identity(host: str, port: int) -> tuple[str, int] | str:
    """Whom a ban applies to: the IP, except on loopback where many honest
    peers share one address."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host
    return (host, port) if addr.is_loopback else host


class SwarmHost(Protocol):
    """What a swarm needs from the torrent that owns it."""

    executor: Executor

    def connection_allowed(self) -> bool: ...
    def note_self_address(self, address: tuple[str, int] | None) -> None: ...
    def torrent_completed(self, swarm: Swarm) -> None: ...
    def storage_failed(self, swarm: Swarm, exc: StorageError) -> None: ...
    def peer_banned(self, swarm: Swarm, identity: object, reason: str) -> None: ...
    def peer_attached(self, swarm: Swarm, peer: PeerConnection) -> None: ...


@dataclass(slots=True)
class FailedPiece:
    """A piece that failed its hash, kept block-hashed for the comparison."""

    block_hashes: dict[int, tuple[bytes, object]]  # begin → (sha1 of block, sender identity)


@dataclass(slots=True)
class PeerState:
    """What the swarm tracks per connection (the connection tracks the wire,
    the picker the requests)."""

    identity: object
    serving: deque[tuple[int, int, int]] = field(default_factory=deque)  # requests queued for upload
    serve_task: asyncio.Task[None] | None = None
    reads: ReadAccount = field(default_factory=ReadAccount)  # the disk reads its requests cost
    snubbed: bool = False


class Swarm:
    """Everything for one running torrent; created and closed by its owner."""

    def __init__(self, metainfo: Metainfo, storage: Storage, have: Bitfield, *, peer_id: bytes,
                 listen_port: int | None, host: SwarmHost, settings: Settings = DEFAULT_SETTINGS,
                 piece_priorities: bytes | None = None, sequential: bool = False,
                 max_peers: int | None = None, upload_slots: int | None = None,
                 down_limiter: LimiterChain | None = None, up_limiter: LimiterChain | None = None,
                 journal: PieceJournal | None = None, rng: random.Random | None = None,
                 extensions: PeerExtensions = NO_EXTENSIONS) -> None:
        self.metainfo = metainfo
        self.extensions = extensions
        self.info_hash = metainfo.info_hash
        self.peer_id = peer_id
        self.num_pieces = metainfo.num_pieces
        self.have = have
        self.storage = storage
        self.listen_port = listen_port
        self.host = host
        self.settings = settings
        self.max_peers = max_peers or settings.torrent.max_peers
        self.down_limiter = down_limiter or LimiterChain()
        self.up_limiter = up_limiter or LimiterChain()
        self._rng = rng or random.Random()
        self.picker = PiecePicker(metainfo.geometry, have.copy(), rng=self._rng,
                                  random_first=settings.torrent.random_first,
                                  endgame_requesters=settings.torrent.endgame_requesters)
        if piece_priorities is not None:
            self.picker.set_piece_priorities(piece_priorities)
        self.picker.set_sequential(sequential)
        self.choker = Choker(settings.torrent, upload_slots=upload_slots, rng=self._rng)
        self.peers: dict[PeerConnection, PeerState] = {}
        self.banned: set[object] = set()
        self.ban_reasons: dict[object, str] = {}
        self.partial: dict[int, bytearray] = {}  # pieces being assembled in memory
        self.on_disk: set[int] = set()  # pieces in progress whose blocks go to disk as they arrive
        self._read_back: set[int] = set()  # complete on disk, with the verifier (no buffer until then)
        self._verifying = 0  # complete pieces in memory, with the verifier
        self.failed: dict[int, FailedPiece] = {}  # awaiting a smart-ban re-fetch
        self.refetch_refused: set[object] = set()  # identities that did not send a re-fetch reserved for them
        self.hash_failed: set[int] = set()  # failed their hash check and not verified since
        self.downloaded = 0  # verified payload bytes fetched by this swarm
        self.uploaded = 0
        self.wasted = 0  # bytes of blocks dropped (unrequested, duplicate, failed)
        self.hash_failures = 0
        self.down_rate = 0.0  # payload bytes/s over all peers, as of the last tick
        self.up_rate = 0.0
        self.completed = self.wanted_done()
        self.uploads = UploadReads(storage, metainfo.geometry.piece_size, metainfo.piece_length, host.executor,
                                   cache_bytes=0)
        self._size_uploads()
        self._to_fill: set[PeerConnection] = set()
        self._short: set[PeerConnection] = set()  # given less than they could take: the budget was spent
        self._fill_scheduled = False
        self._closing = False
        self.backlog = 0  # bytes waiting for the disk: complete pieces, and blocks of pieces on disk
        self._max_assembling = self._max_requested = self._hold_at = 0
        self._budget(settings)
        self.verifier = PieceVerifier(storage, host.executor, self._verified, journal=journal)
        self.spill = BlockSpill(storage, host.executor, self._spilled, self._spill_failed)
        self._spare: list[bytearray] = []
        # Peers' reading waits while the disk is behind: spilled blocks queued for it, or complete pieces
        # waiting for the verifier (from _hold_at to half of it).
        self._held_for_spill = self._held_for_verifier = False
        # The backlog's buffers, once written, are the next ones filled.
        self._max_spare = max(2, settings.torrent.write_backlog_bytes // metainfo.piece_length)

    # ---- settings while running ----------------------------------------------

    def apply(self, settings: Settings, *, max_peers: int | None, upload_slots: int | None) -> None:
        """A new settings tree or per-torrent limits, from the next decision on."""
        self.settings = settings
        self.max_peers = max_peers or settings.torrent.max_peers
        self.choker.settings = settings.torrent
        self.choker.upload_slots = upload_slots or settings.torrent.upload_slots
        self._size_uploads()
        self._budget(settings)
        self._max_spare = max(2, settings.torrent.write_backlog_bytes // self.metainfo.piece_length)
        self._wake_all()

    def _size_uploads(self) -> None:
        """A seed: the whole read cache, and pieces in the page cache read on the loop. A leecher: a quarter
        of the cache, as the assembly budget is its memory and other leechers ask for the pieces it verified
        last, which a small cache holds (fan-out leechers were at 130 MB with both in full); and its reads
        in workers, a few at a time, as reads on the loop let its uploads pin 27 MB of pieces in sockets'
        queues in a fan-out leecher."""
        full = self.settings.torrent.read_cache_bytes
        self.uploads.resize(full if self.completed else full // 4, read_on_loop=self.completed)

    def _budget(self, settings: Settings) -> None:
        piece_length = self.metainfo.piece_length
        self._max_assembling = settings.torrent.assembly_bytes // piece_length
        read = -(-settings.peer.recv_buffer // piece_length) + 1  # pieces one read can start or complete
        self._hold_at = max(1, self._max_assembling // 2, self._max_assembling - read)
        self._max_requested = max(4, self._max_assembling, settings.torrent.requested_bytes // piece_length)

    def set_priorities(self, piece_priorities: bytes, sequential: bool) -> None:
        self.picker.set_piece_priorities(piece_priorities)
        self.picker.set_sequential(sequential)
        self.completed = self.wanted_done()
        self._size_uploads()
        for peer in list(self.peers):
            if peer.bitfield is not None:
                peer.set_interested(self.picker.interesting(peer) or self.picker.num_outstanding(peer) > 0)
        self._wake_all()

    # ---- PeerOwner ----------------------------------------------------------

    def attach(self, peer: PeerConnection) -> str | None:
        if self._closing:
            return "torrent is stopping"
        if peer.remote_id == self.peer_id:
            self.host.note_self_address(peer.address)
            return "connected to ourselves"
        host, port = peer.address or ("?", 0)
        # Its own address: on loopback, where every peer shares the IP, the port it dialled from or that we
        # dialled (``listen_port`` is ours, the same for every incoming peer: a ban under it refused them all).
        identity = peer_identity(host, port)
        if identity in self.banned:
            return f"banned: {self.ban_reasons.get(identity, 'sent bad data')}"
        refusal = settle_duplicate(self.peers, peer, self.peer_id)
        if refusal is not None:
            return refusal
        if len(self.peers) >= self.max_peers and not self._make_room():
            return "too many peers"
        if not self.host.connection_allowed():
            return "too many connections in this session"
        self.peers[peer] = PeerState(identity)
        peer.identity = identity
        if self._reading_held:
            peer.hold_reading(True)
        self.host.peer_attached(self, peer)
        return None

    def _make_room(self) -> bool:
        """At the peer limit: close the longest-idle peer that moved no payload either way for
        ``evict_idle_after`` and has nothing we want; False if every peer is worth keeping."""
        now = time.monotonic()
        idle_after = self.settings.torrent.evict_idle_after
        idle = [p for p in self.peers if not p.am_interested and not p.downloaded.total and not p.uploaded.total
                and now - p.connected_at > idle_after]
        if not idle:
            return False
        min(idle, key=lambda p: p.connected_at).close("made room for a newcomer: no payload either way")
        return True

    def adopt(self, peers: Iterable[PeerConnection]) -> None:
        """Take connections made while the metadata was fetched (``MetadataSwarm.hand_over``)."""
        for peer in peers:
            peer.rebind(self)
            if peer.closed:
                continue
            refusal = self.attach(peer)
            if refusal is not None:
                peer.close(refusal)
                continue
            for index in self.have.iter_set():  # pieces found on disk since we told it we had none
                peer.send_soon(wire.build_have(index))
            if peer.bitfield is not None:
                self.on_bitfield(peer)

    def detach(self, peer: PeerConnection) -> None:
        state = self.peers.pop(peer, None)
        if state is None:
            return
        self.picker.peer_gone(peer)
        if state.serve_task is not None:
            state.serve_task.cancel()
        state.reads.close()
        self._to_fill.discard(peer)
        self._short.discard(peer)
        self._wake_all()

    def on_bitfield(self, peer: PeerConnection) -> None:
        assert peer.bitfield is not None
        if peer.bitfield.all():
            if self.have.all():
                peer.close(BOTH_SEEDS)
                return
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
        elif self.have.all() and peer.bitfield.all():  # type: ignore[union-attr]
            peer.close(BOTH_SEEDS)

    def on_choke_change(self, peer: PeerConnection) -> None:
        if peer not in self.peers:
            return
        if peer.peer_choking:
            if peer.supports_fast:
                # BEP 6: each request will still be answered, by data or a reject.
                self.picker.peer_choked(peer)
            else:
                # BEP 3: a choke discards every pending request.
                self.picker.release(peer)
            self._wake_all()
        else:
            self._schedule_fill(peer)

    def on_interest_change(self, peer: PeerConnection) -> None:
        """A free slot goes to an interested newcomer now, not at the next rechoke. A peer that loses
        interest stays unchoked until the rechoke takes its slot back: no message answers a change of
        interest, so a peer flipping it hundreds of thousands of times makes us send nothing."""
        if (peer.peer_interested and peer.am_choking and peer in self.peers
                and self.unchoked_count() < self.choker.upload_slots):
            peer.set_choking(False)

    def unchoked_count(self) -> int:
        """Slots in use: unchoked peers that want something (the others leave at the next rechoke)."""
        return sum(1 for p in self.peers if not p.am_choking and p.peer_interested)

    def on_blocks(self, peer: PeerConnection, blocks: list[wire.Piece]) -> None:
        """The blocks of one read, copied once each into their piece buffer."""
        if peer not in self.peers:
            self.wasted += sum([len(block.data) for block in blocks])
            return
        block_received = self.picker.block_received
        partial = self.partial
        for index, begin, data in blocks:
            received = block_received(peer, index, begin)
            if not received.new:
                # Not asked of this peer (never, or cancelled), or a copy we have.
                self.wasted += len(data)
                continue
            length = len(data)
            if received.cancel:
                cancel = wire.build_cancel(index, begin, length)
                for other in received.cancel:
                    other.send(cancel)  # type: ignore[attr-defined]
            buf = partial.get(index)
            if buf is None:
                if index not in self.on_disk:
                    buf = self._piece_buffer(index)
                if buf is None:
                    self._spill_block(index, begin, data, received.complete)
                    continue
                partial[index] = buf
            buf[begin:begin + length] = data
            if received.complete:
                del partial[index]
                self.backlog += len(buf)
                self._verifying += 1
                self.verifier.submit(index, buf)
        self._check_verifier_hold()
        self._schedule_fill(peer)

    def _piece_buffer(self, index: int) -> bytearray | None:
        """A buffer for a piece's first block, None when pieces assembling, waiting for the verifier and
        spare already fill the assembly budget (its blocks go to disk).
        Every block overwrites its part before the piece is complete, so a reused buffer needs no
        clearing."""
        size = self.metainfo.geometry.piece_size(index)
        if size == self.metainfo.piece_length and self._spare:
            return self._spare.pop()
        if len(self.partial) + self._verifying >= self._max_assembling:
            return None
        return bytearray(size)

    def _recycle(self, data: bytearray) -> None:
        """Keep a buffer for the next piece while pieces assembling and spares stay within the assembly
        budget: the leecher's memory is that budget, whatever the number of peers."""
        spare = self._spare
        if len(data) == self.metainfo.piece_length and len(spare) < self._max_spare and \
                len(spare) + len(self.partial) + self._verifying < self._max_assembling:
            spare.append(data)

    def _spill_block(self, index: int, begin: int, data: memoryview, complete: bool) -> None:
        """A block of a piece without a buffer: to disk now. Past a quarter of the write backlog (a
        worker writes to the page cache at GB/s: a short queue keeps up), reading from the swarm's
        peers waits for the disk, so the blocks queued stay bounded whatever is outstanding."""
        self.on_disk.add(index)
        self.backlog += len(data)
        self.spill.write(index, begin, bytes(data), last=complete)
        if complete:
            self.on_disk.discard(index)
        if self.spill.queued_bytes > self.settings.torrent.write_backlog_bytes // 4:
            self._hold_reading(spill=True)

    def _spilled(self, nbytes: int, complete: list[int]) -> None:
        """Blocks are on disk: pieces complete there are read back and hashed."""
        self._disk_done(nbytes)
        if self._held_for_spill and self.spill.queued_bytes <= self.settings.torrent.write_backlog_bytes // 8:
            self._hold_reading(spill=False)
        for index in complete:
            self._read_back.add(index)
            self.verifier.submit(index, None)

    def _check_verifier_hold(self) -> None:
        """Fast peers' pieces can outrun the verifier and fill the assembly budget with complete pieces:
        spilling the next ones would add a write and a read back to the disk that is already behind, so
        reading waits for the verifier instead, from where the reads under way still fit in the budget
        to where half of that is left. Pieces assembling (slow peers' pieces, which spilling is for)
        never hold reading on their own, and a hold ends once the verifier is idle whatever they take."""
        taken = len(self.partial) + self._verifying
        if self._held_for_verifier:
            if taken <= self._hold_at // 2 or not self._verifying:
                self._hold_reading(verifier=False)
        elif taken >= self._hold_at and self._verifying * 2 >= self._max_assembling:
            self._hold_reading(verifier=True)

    @property
    def _reading_held(self) -> bool:
        return self._held_for_spill or self._held_for_verifier

    def _hold_reading(self, *, spill: bool | None = None, verifier: bool | None = None) -> None:
        """Set a reason to hold peers' reading; peers read while neither holds."""
        was = self._reading_held
        if spill is not None:
            self._held_for_spill = spill
        if verifier is not None:
            self._held_for_verifier = verifier
        held = self._reading_held
        if held != was:
            for peer in self.peers:
                peer.hold_reading(held)

    def _spill_failed(self, exc: StorageError) -> None:
        if not self._closing:
            self.host.storage_failed(self, exc)

    def _disk_done(self, nbytes: int) -> None:
        """``nbytes`` left the backlog: peers held back by it may ask for more."""
        limit = self.settings.torrent.write_backlog_bytes
        was_full = self.backlog > limit
        self.backlog -= nbytes
        if was_full and self.backlog <= limit:
            self._wake_all()

    def on_reject(self, peer: PeerConnection, index: int, begin: int, length: int) -> None:
        if peer in self.peers and self.picker.block_rejected(peer, index, begin):
            if index in self.failed:
                self._move_reservations(peer, index)  # it will not send that piece alone
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
        if peer.am_choking:
            # We grant no allowed-fast pieces (BEP 6 makes that optional).
            if peer.supports_fast:
                peer.send(wire.build_reject(index, begin, length))
            return
        max_requests = self.settings.peer.max_requests
        if len(state.serving) >= max_requests:
            peer.close(f"more than {max_requests} requests queued")
            return
        # No read here: the serving task reads what is at the head of the queue when its turn comes, so
        # a request cancelled before then never costs a disk read.
        request = (index, begin, length)
        state.serving.append(request)
        state.reads.ask(request)
        if state.serve_task is None or state.serve_task.done():
            state.serve_task = asyncio.get_running_loop().create_task(self._serve(peer, state))

    def on_cancel(self, peer: PeerConnection, index: int, begin: int, length: int) -> None:
        state = self.peers.get(peer)
        if state is not None:
            request = (index, begin, length)
            try:
                state.serving.remove(request)
            except ValueError:
                return
            state.reads.forget(request)

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
        if peer.bitfield is None or not peer.am_interested or self._closing:
            return
        if self.backlog > self.settings.torrent.write_backlog_bytes:
            return  # the write that brings the backlog down wakes every peer
        choked = peer.peer_choking
        if choked and not peer.allowed_fast:
            return
        now = time.monotonic()
        rate = peer.downloaded.rate(now)
        ps = self.settings.peer
        depth = max(ps.min_pipeline, int(rate * ps.pipeline_seconds / BLOCK_SIZE))
        depth = min(depth, peer.reqq, ps.max_requests)
        picker = self.picker
        outstanding = picker.num_outstanding(peer)
        want = depth - outstanding
        if want <= 0 or (outstanding and want < depth // REFILL_FRACTION):
            return
        if state.snubbed:
            want = min(want, 1)  # a snubbed peer gets one request at a time, of a common piece
        limiter = self.down_limiter
        limited = limiter.rate
        if limited:
            # The download limit holds back requests, not received bytes: what
            # we ask for is what peers send.
            want = min(want, int(limiter.available() // BLOCK_SIZE))
            if want <= 0:
                asyncio.get_running_loop().call_later(BLOCK_SIZE / limited, self._schedule_fill, peer)
                return
        # Pieces asked for, not only those with a block in: with many peers the requests, not the
        # arrivals, are what grows (in memory up to the assembly budget, then on disk).
        new_pieces = max(0, self._max_requested - picker.num_in_progress())
        blocks = picker.pick(peer, want, now=now, allowed_fast=peer.allowed_fast, choked=choked,
                             snubbed=state.snubbed, new_pieces=new_pieces)
        if len(blocks) < want and picker.num_in_progress() >= self._max_requested:
            self._short.add(peer)  # the next verified piece makes room for it
        if not blocks:
            if not outstanding and not picker.interesting(peer):
                peer.set_interested(False)
            return
        if limited:
            limiter.spend(sum(block.length for block in blocks))
        build = wire.build_request
        peer.send(b"".join([build(index, begin, length) for index, begin, length in blocks]))

    def _give_up(self, peer: PeerConnection, blocks: list[Block]) -> None:
        """Stop waiting for ``blocks`` from ``peer``: cancel them there and let
        other peers take them. A copy that still arrives is dropped."""
        for block in blocks:
            peer.send(wire.build_cancel(*block))
            self.picker.block_rejected(peer, block.index, block.begin)
        self._wake_all()

    # ---- verification and blame ---------------------------------------------

    def _verified(self, index: int, data: bytearray, result: bool | StorageError) -> None:
        """The verifier's answer for a complete piece (on the loop)."""
        if index in self._read_back:
            self._read_back.discard(index)
        else:
            self._verifying -= 1
            self._disk_done(len(data))
            self._check_verifier_hold()
        if self._closing:
            return
        if isinstance(result, StorageError):
            self.picker.piece_failed(index)
            self.host.storage_failed(self, result)
            return
        if result:
            self._piece_good(index, data)
        else:
            self._piece_bad(index, data)
        self._recycle(data)
        if self._short:  # a verified piece left the budget: room for those it held back
            short, self._short = self._short, set()
            for peer in short:
                self._schedule_fill(peer)

    def _piece_good(self, index: int, data: bytearray) -> None:
        self.have.set(index)
        self.picker.piece_verified(index)
        self.hash_failed.discard(index)
        self.downloaded += self.metainfo.geometry.piece_size(index)
        earlier = self.failed.pop(index, None)
        if earlier is not None:
            self._blame(index, earlier, data)
        have_msg = wire.build_have(index)
        seed = self.have.all()
        for peer in list(self.peers):
            if peer.bitfield is not None and peer.bitfield.all():
                if seed:
                    peer.close(BOTH_SEEDS)
                    continue
                peer.send_later(have_msg)  # for its display of us only: with the next request, or the tick
            else:
                peer.send_soon(have_msg)
            if peer.am_interested and not self.picker.interesting(peer) and not self.picker.num_outstanding(peer):
                peer.set_interested(False)
        if not self.completed and self.wanted_done():
            self.completed = True
            self._size_uploads()
            self.host.torrent_completed(self)

    def _piece_bad(self, index: int, data: bytearray) -> None:
        self.hash_failures += 1
        self.hash_failed.add(index)
        self.wasted += self.metainfo.geometry.piece_size(index)
        sources = self.picker.block_sources(index)
        senders = {getattr(peer, "identity", None) for peer in sources if peer is not None}
        senders.discard(None)
        if len(senders) <= 1:
            if senders:
                self.ban(senders.pop(), f"sent piece {index}, which failed its hash check")
            self.picker.piece_failed(index)
            self._wake_all()
            return
        # Several senders: remember each block's hash and fetch the piece
        # again from one peer; the comparison then names the liars.
        self.failed[index] = FailedPiece({
            b * BLOCK_SIZE: (hashlib.sha1(data[b * BLOCK_SIZE:(b + 1) * BLOCK_SIZE]).digest(),
                             getattr(peer, "identity", None))
            for b, peer in enumerate(sources) if peer is not None})
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
        # Not one that refused a re-fetch before, if possible: a liar that rejects the half it
        # corrupts would otherwise hold every failed piece reserved for it, and nobody fetch them.
        willing = [p for p in candidates if self.peers[p].identity not in self.refetch_refused] or candidates
        fresh = [p for p in willing if self.peers[p].identity not in exclude]
        pool = fresh or willing
        if not pool:
            return None
        now = time.monotonic()
        return max(pool, key=lambda p: p.downloaded.rate(now))

    def _move_reservations(self, peer: PeerConnection, index: int | None = None) -> None:
        """A peer that stopped delivering (or rejected a block of piece ``index``)
        loses its smart-ban re-fetches (of that piece), and is the last choice for
        the next ones: the pieces open to everyone (the fresh copy is proven by its
        hash, whoever sends it, so the block comparison stays sound)."""
        for progress in self.picker.partials():
            if progress.reserved_for is peer and index in (None, progress.index):
                self.picker.unreserve(progress.index)
                self.refetch_refused.add(self.peers[peer].identity)

    def _blame(self, index: int, failed: FailedPiece, good: bytearray) -> None:
        """Ban exactly the senders of blocks that differ from the verified copy."""
        for begin, (digest, sender) in failed.block_hashes.items():
            if sender is not None and hashlib.sha1(good[begin:begin + BLOCK_SIZE]).digest() != digest:
                self.ban(sender, f"sent a corrupt block of piece {index} (offset {begin})")

    def ban(self, identity: object, reason: str) -> None:
        if identity in self.banned:
            return
        self.banned.add(identity)
        self.ban_reasons[identity] = reason
        log.warning("%s: banning %s: %s", self.metainfo.name, _show_identity(identity), reason)
        self.host.peer_banned(self, identity, reason)
        for peer, state in list(self.peers.items()):
            if state.identity == identity:
                peer.close(f"banned: {reason}")

    def wanted_done(self) -> bool:
        return self.picker.wanted_remaining == 0

    # ---- serving ---------------------------------------------------------------

    async def _serve(self, peer: PeerConnection, state: PeerState) -> None:
        """Send queued blocks in order, reading off the loop and honouring
        the upload limits and the transport's back-pressure. Blocks already
        read leave together: one write per batch, not per block."""
        limiter = self.up_limiter
        uploads = self.uploads
        serving = state.serving
        account = state.reads
        while serving and not peer.closed:
            if not peer.drained.is_set():
                await peer.drained.wait()
                continue
            uploads.read_ahead(account, serving)
            limited = limiter.rate
            limit = self.settings.peer.send_batch_bytes
            if limited:
                limit = max(BLOCK_SIZE, min(limit, int(limited * LIMITED_WRITE_SECONDS)))
            batch: list[tuple[int, int, memoryview]] = []
            size = 0
            while serving and size < limit:
                request = serving[0]
                if peer.am_choking:
                    # BEP 6: a choke no longer drops a fast peer's requests; each is rejected.
                    for queued in serving:
                        account.forget(queued)
                    self._reject_queue(peer, state)
                    break
                future, offset = uploads.source(account, request)
                if not future.done():
                    break
                try:
                    data = future.result()
                except StorageError as exc:
                    self._serving_failed(peer, state, exc)
                    return
                serving.popleft()
                uploads.sent(account, request)
                index, begin, length = request
                batch.append((index, begin, memoryview(data)[offset:offset + length]))
                size += length
            if batch:
                if limited:
                    await limiter.acquire(size + 13 * len(batch))
                peer.send_blocks(batch)
                self.uploaded += size
            elif serving:
                # Waited for, not awaited: a piece read is shared, so one peer leaving must not cancel it
                # for all; and a block read cancelled under us (the peer cancelled its request, perhaps
                # in the same read as its next request) only sends the loop round again.
                read = uploads.source(account, serving[0])[0]
                await asyncio.wait((read,))
                if not read.cancelled() and (exc := read.exception()) is not None:
                    if not isinstance(exc, StorageError):
                        raise exc
                    self._serving_failed(peer, state, exc)
                    return

    def _reject_queue(self, peer: PeerConnection, state: PeerState) -> None:
        """Empty a peer's queue, rejecting every request in it, in one write, if it speaks BEP 6."""
        if peer.supports_fast and state.serving:
            build = wire.build_reject
            peer.send(b"".join([build(index, begin, length) for index, begin, length in state.serving]))
        state.serving.clear()

    def _serving_failed(self, peer: PeerConnection, state: PeerState, exc: StorageError) -> None:
        """A read for serving failed (storage never hands out a piece that fails its hash): nothing more
        goes to this peer, a fast peer has its requests rejected (BEP 6), pieces whose data is gone are
        ours no longer, and the owner stops the torrent (error state: a recheck tells what is still good)."""
        self._reject_queue(peer, state)
        state.reads.close()
        if isinstance(exc, DataChangedError):
            for index in exc.pieces:
                self.have.clear(index)
                self.uploads.drop(index)
        self.host.storage_failed(self, exc)

    # ---- periodic work -----------------------------------------------------------

    def tick(self, now: float) -> None:
        """Once a second: timeouts, snubbing, keep-alives, and the rates displays read."""
        ps = self.settings.peer
        picker = self.picker
        down = up = 0.0
        for peer, state in list(self.peers.items()):
            peer.down_rate = rate = peer.downloaded.rate(now)
            down += rate
            peer.up_rate = rate = peer.uploaded.rate(now)
            up += rate
            if now - peer.last_received > ps.idle_timeout:
                peer.close("idle for too long")
                continue
            peer.flush_later()
            if now - peer.last_sent > ps.keepalive_every:
                peer.send(wire.build_keepalive())
            oldest = picker.oldest_request(peer)
            if oldest is not None:
                if not peer.peer_choking and now - max(peer.last_block, oldest) > ps.snub_time:
                    state.snubbed = True
                    picker.release(peer)
                    self._move_reservations(peer)
                    self._wake_all()
                elif now - oldest > ps.request_timeout:
                    self._give_up(peer, picker.requests_before(peer, now - ps.request_timeout))
            elif state.snubbed and now - peer.last_block < ps.snub_time:
                state.snubbed = False
        self.down_rate, self.up_rate = down, up

    def rechoke(self, now: float) -> None:
        views = [PeerView(p, p.peer_interested, p.downloaded.rate(now), p.uploaded.rate(now),
                          now - p.connected_at, self.peers[p].snubbed) for p in self.peers]
        unchoke = self.choker.rechoke(views, seeding=self.have.all() or self.wanted_done())
        for peer in list(self.peers):
            peer.set_choking(peer not in unchoke)

    def needs_quick_rechoke(self) -> bool:
        """Unchoke interested newcomers at once while we still have free slots."""
        return self.unchoked_count() < self.choker.upload_slots and any(
            p.peer_interested and p.am_choking for p in self.peers)

    def close(self) -> None:
        self._closing = True
        self.spill.stop()
        for peer in list(self.peers):
            peer.close("torrent stopped")
        self.verifier.stop()

    # ---- numbers for the owner -----------------------------------------------------

    @property
    def left(self) -> int:
        geometry = self.metainfo.geometry
        missing = self.num_pieces - self.have.count()
        if missing and not self.have.get(self.num_pieces - 1):
            return (missing - 1) * geometry.piece_length + geometry.piece_size(self.num_pieces - 1)
        return missing * geometry.piece_length

    def connected_addresses(self) -> list[tuple[str, int]]:
        """Each peer's address, and for incoming peers their listen address too (not to be dialled again)."""
        out = [p.address for p in self.peers if p.address]
        out += [a for p in self.peers if not p.outgoing and (a := p.listen_address) is not None]
        return out



def _show_identity(identity: object) -> str:
    if isinstance(identity, tuple) and len(identity) == 2:
        host, port = identity
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(identity)
