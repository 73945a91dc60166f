"""Piece picker: which blocks to request from which peer (sans-IO policy and state).

The engine tells the picker what the swarm has (``peer_bitfield`` / ``peer_have`` /
``peer_gone``), what it received (``block_received``) and what the hash check said
(``piece_verified`` / ``piece_failed``); it asks ``pick(peer, n)`` for up to ``n``
blocks to request. No sockets, no clocks, no asyncio: timeouts and snub detection
are the engine's, which reports them with ``request_timed_out`` / ``release`` and
``pick(..., snubbed=True)``.

Requests end in one of four ways: the block arrives (``block_received``: the first
copy is kept, whoever else was asked gets a ``cancel``), the peer rejects it or we
cancel it (``block_rejected``: free for anyone again), the engine's timer fires
(``request_timed_out``: free for *other* peers, but still outstanding at this one —
it is not asked again while another connected peer has the piece, and its copy is
welcome if it comes), or the peer goes
(``peer_gone``) or is written off (``release``: choked without BEP 6, snubbed).

Order of a pick for one peer (each step only when the earlier ones left room):

1. pieces reserved for this peer (smart-ban re-fetch after a failed hash check);
2. the piece this peer is already filling (one peer per piece where possible: whole
   pieces from one source keep smart-ban attribution simple and writes contiguous);
3. "open" partial pieces: started, blocks free, nobody filling them (left by a peer
   that went away, choked us, rejected or timed out) — finish partials first;
4. untouched pieces, highest priority first; within a priority, random pieces while
   fewer than ``random_first`` are complete, then rarest first with a random
   tie-break (snubbed peers take the most common instead, and do not fill);
5. free blocks of pieces other peers are filling (only once nothing untouched fits);
6. endgame: when no wanted piece some connected peer has still has a free block,
   blocks already requested from others, at most ``endgame_requesters`` peers per
   block and never twice to one peer; ``block_received`` names the peers to cancel.

Availability without per-piece Python work on a bitfield: the count of connected
non-seed peers having each piece is kept *bit-sliced*, as a few bitfields ("planes")
holding the binary digits of every piece's count. A joining (or leaving) peer's
bitfield is added with a ripple-carry over the planes, ~3 word-wise operations per
plane (≈8 planes for 200 peers), and one ``have`` flips a couple of bits. Seeds are a
counter added to every piece (have-all costs O(1)). Rarest-first among the pieces a
peer offers is then a bit-sliced minimum: start from ``peer & untouched`` and, from
the top plane down, keep the pieces whose digit is 0 if any are left. That is about
two word-wise calls per plane, so a pick does no O(num_pieces) Python work; with the
compiled ``Bitfield`` those calls are C loops over 64-bit words. The random
tie-break starts the scan of the minimal set at a random piece (pieces after long
gaps are a little more likely; good enough to spread peers out).

Block state exists only for pieces in progress ("partials"): per block the peers it
is requested from and the peer that delivered it. Block → peer attribution stays in
the picker for the life of a piece attempt; ``piece_verified`` / ``piece_failed``
return it (one peer key per block) for the engine's smart-ban, and
``block_sources`` shows it mid-flight. The engine keeps the data.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Hashable, Sequence
from typing import Any, NamedTuple

from torrent.core.bitfield import Bitfield
from torrent.core.errors import ProtocolError
from torrent.codec.geometry import BLOCK_SIZE, Geometry

__all__ = [
    "DEFAULT_PRIORITY",
    "MAX_PRIORITY",
    "Block",
    "PiecePicker",
    "PieceProgress",
    "Received",
]

MAX_PRIORITY = 7  # priorities: 0 = skip, 1 = normal … 7 = highest
DEFAULT_PRIORITY = 1
_BLOCK_SHIFT = BLOCK_SIZE.bit_length() - 1
assert 1 << _BLOCK_SHIFT == BLOCK_SIZE
_BLOCK_MASK = BLOCK_SIZE - 1
# A bitfield with at most this many pieces is added to / removed from the availability
# planes one piece at a time; bigger ones with the word-wise ripple. Measured at 100 000
# pieces and 200 peers, the two cost the same at about 100 pieces (compiled Bitfield,
# ~55 µs) and 500 pieces (pure twin, ~1.7 ms).
_SMALL_BITFIELD = 64


class Block(NamedTuple):
    """One request: what goes into ``request`` / ``cancel`` messages."""

    index: int
    begin: int
    length: int


class Received(NamedTuple):
    """What ``block_received`` decided about one block."""

    new: bool  # first copy of a block of a piece we are fetching: keep the data
    complete: bool  # it completed its piece: hash the piece now
    cancel: Sequence[Hashable]  # other peers it was requested from: send them ``cancel``


class PieceProgress(NamedTuple):
    """A piece in progress, for the UI and the engine's piece buffers."""

    index: int
    blocks: int
    received: int
    requested: int  # blocks with at least one request outstanding
    pending_hash: bool  # every block received, waiting for the hash check
    reserved_for: Hashable | None


_NOT_NEW = Received(False, False, ())
_NEW = Received(True, False, ())
_new_tuple = tuple.__new__


class _Peer:
    """What the picker knows of one connected peer."""

    __slots__ = ("bf", "current", "key", "one", "out", "reserved", "seed")

    def __init__(self, key: Hashable, bf: Any) -> None:
        self.key = key
        self.bf = bf  # the picker's own copy; the shared full field for seeds
        self.seed = False
        self.out: set[int] = set()  # outstanding requests as block keys
        self.one = (self,)  # the requester tuple of a block only this peer was asked for
        self.current = -1  # the piece this peer is filling, or -1
        self.reserved: set[int] = set()  # pieces only this peer may fetch


class _Partial:
    """Block state of one piece in progress."""

    __slots__ = (
        "complete",
        "filler",
        "got",
        "index",
        "last_len",
        "late",
        "n_free",
        "n_got",
        "nblocks",
        "next_free",
        "req",
        "reserved",
    )

    def __init__(self, index: int, nblocks: int, last_len: int) -> None:
        self.index = index
        self.nblocks = nblocks
        self.last_len = last_len
        # req[b]: None, or the tuple of _Peer it is outstanding at.
        self.req: list[tuple[_Peer, ...] | None] = [None] * nblocks
        # got[b]: None, or the _Peer that delivered it (attribution).
        self.got: list[_Peer | None] = [None] * nblocks
        self.n_free = nblocks  # neither requested nor received
        self.n_got = 0
        self.next_free = 0  # no free block below this
        self.filler: _Peer | None = None  # the peer filling it block by block
        self.reserved: _Peer | None = None  # smart-ban re-fetch: only this peer
        self.complete = False  # all received, awaiting the hash check
        # Requests the engine timed out but the peer never answered: block → peers.
        # The block counts as free for everyone else; those peers are not asked
        # for it again while it may still arrive from them. None when empty.
        self.late: dict[int, tuple[_Peer, ...]] | None = None


class PiecePicker:
    """Rarest-first block picker with partial-first, endgame, priorities and BEP 6.

    ``have`` is our verified pieces (copied); its class picks the bitfield
    implementation used inside (``bitfield_class`` overrides; default ``Bitfield``).
    Peer keys are any hashable the engine likes (its peer objects). ``rng`` makes
    picks reproducible. ``endgame_requesters`` bounds how many peers one block may
    be outstanding at in endgame (1 turns endgame off).
    """

    def __init__(
        self,
        geometry: Geometry,
        have: Any = None,
        *,
        rng: random.Random | None = None,
        random_first: int = 4,
        endgame_requesters: int = 2,
        bitfield_class: type | None = None,
    ) -> None:
        n = geometry.num_pieces
        cls = bitfield_class or (type(have) if have is not None else Bitfield)
        if endgame_requesters < 1:
            raise ValueError("endgame_requesters must be at least 1")
        self.geometry = geometry
        self.num_pieces = n
        self.random_first = random_first
        self.endgame_requesters = endgame_requesters
        self._cls = cls
        self._rng = rng or random.Random()
        if have is None:
            self.have = cls(n)
        else:
            if len(have) != n:
                raise ValueError(f"have has {len(have)} pieces, the torrent {n}")
            self.have = self._own(have)

        pl = geometry.piece_length
        self._nb = -(-pl // BLOCK_SIZE)
        self._last_len = pl - (self._nb - 1) * BLOCK_SIZE
        if n:
            size = geometry.piece_size(n - 1)
            self._nb_end = -(-size // BLOCK_SIZE)
            self._last_len_end = size - (self._nb_end - 1) * BLOCK_SIZE
        else:
            self._nb_end, self._last_len_end = 0, 0
        self._shift = max(self._nb, 1).bit_length()
        self._kmask = (1 << self._shift) - 1

        self._peers: dict[Hashable, _Peer] = {}
        self._seeds = 0
        self._planes: list[Any] = []  # binary digits of non-seed availability
        self._any: Any = None  # cache: OR of the planes (pieces some non-seed has)
        self._full = cls(n)
        self._full.set_all()

        self._partials: dict[int, _Partial] = {}
        self._open: dict[int, None] = {}  # partials with free blocks and no filler
        self._with_free: dict[int, None] = {}  # partials with free blocks (unreserved)

        self._prio = bytearray([DEFAULT_PRIORITY]) * n
        self._levels: list[tuple[int, Any]] = []  # (priority, untouched pieces), high first
        self._fresh_of: dict[int, Any] = {}
        self._skip: Any = None  # have | priority 0: what we do not need
        self._rebuild_priorities()

    # ------------------------------------------------------------------ helpers

    def _own(self, bf: Any) -> Any:
        """A private copy of ``bf`` in our bitfield class."""
        if type(bf) is self._cls:
            return bf.copy()
        return self._cls.from_bytes(bf.to_bytes(), len(bf))

    def _mask_of(self, p: int) -> Any:
        """Bitfield of the pieces whose priority is ``p`` (string ops in C)."""
        n = self.num_pieces
        table = bytes(0x31 if j == p else 0x30 for j in range(256))
        bits = bytes(self._prio).translate(table) + b"0" * (-n % 8)
        value = int(bits, 2) if bits else 0
        return self._cls.from_bytes(value.to_bytes((n + 7) >> 3, "big"), n)

    def _rebuild_priorities(self) -> None:
        n = self.num_pieces
        busy = self._cls(n)
        for i in self._partials:
            busy.set(i)
        not_fresh = self.have.or_(busy)
        present = set(self._prio)
        fresh_of = {p: self._mask_of(p).and_not(not_fresh) for p in sorted(present - {0})}
        self._fresh_of = fresh_of
        self._levels = sorted(fresh_of.items(), reverse=True)
        zero = self._mask_of(0) if 0 in present else self._cls(n)
        self._skip = zero.or_(self.have)

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.num_pieces:
            raise IndexError(f"piece {index} out of range for {self.num_pieces} pieces")

    def _block(self, P: _Partial, b: int) -> Block:
        length = P.last_len if b == P.nblocks - 1 else BLOCK_SIZE
        return _new_tuple(Block, (P.index, b << _BLOCK_SHIFT, length))

    def _new_partial(self, i: int) -> _Partial:
        if i == self.num_pieces - 1:
            P = _Partial(i, self._nb_end, self._last_len_end)
        else:
            P = _Partial(i, self._nb, self._last_len)
        self._partials[i] = P
        return P

    def _available(self, i: int) -> bool:
        if self._seeds:
            return True
        for pl in self._planes:
            if pl.get(i):
                return True
        return False

    def _others_have(self, i: int, st: _Peer) -> bool:
        """Does a connected peer other than ``st`` have piece ``i``?"""
        count = self._seeds + sum(pl.get(i) << k for k, pl in enumerate(self._planes))
        return count > 1 or (count == 1 and not st.bf.get(i))

    def _any_have(self) -> Any:
        """Pieces some connected non-seed has (cached until availability changes)."""
        if self._any is None:
            acc = self._cls(self.num_pieces)
            for pl in self._planes:
                acc = acc.or_(pl)
            self._any = acc
        return self._any

    # ------------------------------------------------------------------ availability

    def _add_peer(self, peer: Hashable) -> _Peer:
        st = _Peer(peer, self._cls(self.num_pieces))
        self._peers[peer] = st
        return st

    def _inc(self, i: int) -> None:
        for pl in self._planes:
            if pl.get(i):
                pl.clear(i)
            else:
                pl.set(i)
                return
        top = self._cls(self.num_pieces)
        top.set(i)
        self._planes.append(top)

    def _dec(self, i: int) -> None:
        for pl in self._planes:
            if pl.get(i):
                pl.clear(i)
                break
            pl.set(i)
        self._trim()

    def _trim(self) -> None:
        planes = self._planes
        while planes and planes[-1].none():
            planes.pop()

    def _add_bf(self, bf: Any) -> None:
        """Add one to the availability of every piece in ``bf`` (ripple-carry)."""
        self._any = None
        if bf.count() <= _SMALL_BITFIELD:
            i = bf.next_set(0)
            while i >= 0:
                self._inc(i)
                i = bf.next_set(i + 1)
            return
        planes = self._planes
        carry = bf
        for k, pl in enumerate(planes):
            t = pl.and_(carry)
            planes[k] = pl.or_(carry).and_not(t)  # pl ^ carry
            carry = t
            if carry.none():
                return
        planes.append(carry.copy() if carry is bf else carry)

    def _sub_bf(self, bf: Any) -> None:
        """Subtract one from the availability of every piece in ``bf`` (ripple-borrow)."""
        self._any = None
        if bf.count() <= _SMALL_BITFIELD:
            i = bf.next_set(0)
            while i >= 0:
                self._dec(i)
                i = bf.next_set(i + 1)
            return
        planes = self._planes
        borrow = bf
        for k, pl in enumerate(planes):
            nxt = borrow.and_not(pl)
            planes[k] = pl.or_(borrow).and_not(pl.and_(borrow))  # pl ^ borrow
            borrow = nxt
            if borrow.none():
                break
        self._trim()

    def _forget_pieces(self, st: _Peer) -> None:
        if st.seed:
            self._seeds -= 1
            st.seed = False
        else:
            self._sub_bf(st.bf)
        st.bf = self._cls(self.num_pieces)

    def _promote(self, st: _Peer) -> None:
        """A peer that now has every piece counts as a seed (off the planes)."""
        self._sub_bf(st.bf)
        st.bf = self._full
        st.seed = True
        self._seeds += 1

    # ------------------------------------------------------------------ swarm knowledge

    def add_peer(self, peer: Hashable) -> None:
        """Register a peer that has nothing yet (no bitfield sent, or ``have none``)."""
        self.peer_have_none(peer)

    def peer_bitfield(self, peer: Hashable, bitfield: Any) -> bool:
        """The peer's ``bitfield`` message (any Bitfield class; copied). Returns interest."""
        n = self.num_pieces
        if len(bitfield) != n:
            raise ValueError(f"bitfield has {len(bitfield)} pieces, the torrent {n}")
        st = self._peers.get(peer)
        if st is None:
            st = self._add_peer(peer)
        else:
            self._forget_pieces(st)
        if bitfield.all():
            st.bf = self._full
            st.seed = True
            self._seeds += 1
        else:
            st.bf = self._own(bitfield)
            self._add_bf(st.bf)
        return self.interesting(peer)

    def peer_have_all(self, peer: Hashable) -> bool:
        """BEP 6 ``have all``: O(1), seeds are a counter. Returns interest."""
        return self.peer_bitfield(peer, self._full)

    def peer_have_none(self, peer: Hashable) -> None:
        """BEP 6 ``have none`` (or a peer that sent no bitfield)."""
        st = self._peers.get(peer)
        if st is None:
            self._add_peer(peer)
        else:
            self._forget_pieces(st)

    def peer_have(self, peer: Hashable, index: int) -> bool:
        """A ``have`` message. True if it is a piece we still need (send interested).

        An index out of range is the peer's fault: ``ProtocolError``.
        """
        st = self._peers.get(peer)
        if st is None:
            st = self._add_peer(peer)
        bf = st.bf
        try:
            if bf.get(index):
                return False
        except IndexError:
            raise ProtocolError(
                f"have for piece {index}, the torrent has {self.num_pieces}"
            ) from None
        bf.set(index)
        for pl in self._planes:
            if pl.get(index):
                pl.clear(index)
            else:
                pl.set(index)
                break
        else:
            self._inc_top(index)
        self._any = None
        if bf.all():
            self._promote(st)
        return not self._skip.get(index)

    def _inc_top(self, i: int) -> None:
        top = self._cls(self.num_pieces)
        top.set(i)
        self._planes.append(top)

    def peer_gone(self, peer: Hashable) -> list[Block]:
        """Forget a peer. Returns the blocks it had outstanding (free again unless
        another peer has them too); its reservations lapse."""
        st = self._peers.pop(peer, None)
        if st is None:
            return []
        blocks = self._release(st)
        for i in sorted(st.reserved):
            self._unreserve(i)
        self._forget_pieces(st)
        st.one = ()  # break the self-reference
        return blocks

    def interesting(self, peer: Hashable) -> bool:
        """Does the peer have a piece we still need?"""
        st = self._peers.get(peer)
        if st is None:
            return False
        if st.seed:
            return not self._skip.all()
        return bool(st.bf.any_and_not(self._skip))

    def availability(self, index: int) -> int:
        """How many connected peers have piece ``index``."""
        self._check_index(index)
        return self._seeds + sum(pl.get(index) << k for k, pl in enumerate(self._planes))

    @property
    def num_peers(self) -> int:
        return len(self._peers)

    @property
    def num_seeds(self) -> int:
        return self._seeds

    # ------------------------------------------------------------------ priorities

    def set_piece_priorities(self, priorities: Sequence[int]) -> None:
        """One priority per piece: 0 skips it, 1 normal … 7 highest.

        Pieces in progress whose priority drops to 0 get no new requests; those
        already sent still count when they arrive.
        """
        if len(priorities) != self.num_pieces:
            raise ValueError(f"{len(priorities)} priorities for {self.num_pieces} pieces")
        prio = bytearray(priorities)
        if prio and max(prio) > MAX_PRIORITY:
            raise ValueError(f"piece priorities range 0..{MAX_PRIORITY}, got {max(prio)}")
        self._prio = prio
        self._rebuild_priorities()

    def set_file_priorities(self, file_priorities: Sequence[int]) -> None:
        """Per-file priorities; a piece gets the highest priority of the files it
        touches, so a piece shared with a wanted file is fetched."""
        geo = self.geometry
        if len(file_priorities) != len(geo.file_lengths):
            raise ValueError(
                f"{len(file_priorities)} priorities for {len(geo.file_lengths)} files"
            )
        prio = bytearray(self.num_pieces)
        for f, p in enumerate(file_priorities):
            if not 0 <= p <= MAX_PRIORITY:
                raise ValueError(f"file priorities range 0..{MAX_PRIORITY}, got {p}")
            r = geo.file_pieces(f)
            if not r:
                continue
            a, b = r.start, r.stop
            # Pieces strictly inside the file's range hold only this file's bytes.
            if b - a > 2:
                prio[a + 1 : b - 1] = bytes([p]) * (b - a - 2)
            prio[a] = max(prio[a], p)
            prio[b - 1] = max(prio[b - 1], p)
        self.set_piece_priorities(prio)

    def piece_priority(self, index: int) -> int:
        self._check_index(index)
        return self._prio[index]

    @property
    def wanted_remaining(self) -> int:
        """Wanted pieces not yet verified (in progress and awaiting hash included)."""
        return self.num_pieces - self._skip.count()

    @property
    def done(self) -> bool:
        """Every wanted piece verified."""
        return self._skip.all()

    # ------------------------------------------------------------------ picking

    def pick(
        self,
        peer: Hashable,
        count: int,
        *,
        allowed_fast: Collection[int] = (),
        choked: bool = False,
        snubbed: bool = False,
        new_pieces: bool = True,
    ) -> list[Block]:
        """Up to ``count`` blocks to request from ``peer`` now, in request order.

        ``choked``: only pieces in the peer's BEP 6 ``allowed_fast`` set. ``snubbed``:
        a slow peer gets common pieces and never holds a piece for itself.
        ``new_pieces=False``: only blocks of pieces already in progress (the engine's
        cap on memory for pieces being assembled).
        """
        st = self._peers.get(peer)
        if st is None or count <= 0:
            return []
        allowed: Collection[int] | None = None
        if choked:
            if not allowed_fast:
                self._drop_filler(st)
                return []
            allowed = allowed_fast if isinstance(allowed_fast, (set, frozenset)) else frozenset(allowed_fast)
        out: list[Block] = []
        need = count
        prio = self._prio
        partials = self._partials

        # 1. Pieces reserved for this peer (smart-ban re-fetch).
        if st.reserved:
            bf = st.bf
            for i in sorted(st.reserved):
                P = partials[i]
                if P.n_free and prio[i] and (allowed is None or i in allowed) and bf.get(i):
                    need -= self._take(P, st, need, out)
                    if not need:
                        return out

        # 2. The piece this peer is filling.
        i = st.current
        if i >= 0:
            if prio[i] and not snubbed and (allowed is None or i in allowed):
                need -= self._take(partials[i], st, need, out)
                if not need:
                    return out
            # Nothing more it can take there (what is left timed out at this peer):
            # the rest is for others.
            self._drop_filler(st)

        # 3. Partial pieces nobody is filling.
        if self._open and not snubbed:
            need = self._pick_open(st, need, out, allowed)
            if not need:
                return out

        # 4. Untouched pieces.
        if new_pieces:
            need = self._pick_fresh(st, need, out, allowed, snubbed)
            if not need:
                return out

        # 5. Free blocks of pieces other peers are filling.
        if self._with_free:
            need = self._pick_shared(st, need, out, allowed)
            if not need:
                return out

        # 6. Endgame duplicates.
        if not snubbed and self.endgame_requesters > 1 and self._endgame_now():
            self._pick_dups(st, need, out, allowed)
        return out

    def _take(self, P: _Partial, st: _Peer, need: int, out: list[Block]) -> int:
        """Request up to ``need`` free blocks of ``P`` from ``st``; returns how many."""
        if not P.n_free:
            return 0
        req = P.req
        got = P.got
        nb = P.nblocks
        last = nb - 1
        i = P.index
        base = i << self._shift
        one = st.one
        keys = st.out
        b = P.next_free
        late = P.late
        skipped = -1
        n = 0
        while b < nb:
            if req[b] is None and got[b] is None:
                if late is not None and st in late.get(b, ()):
                    if P.reserved is not st and self._others_have(i, st):
                        if skipped < 0:
                            skipped = b
                        b += 1
                        continue
                    # Nobody else has the piece: ask this peer again.
                    rest = tuple(q for q in late[b] if q is not st)
                    if rest:
                        late[b] = rest
                    else:
                        del late[b]
                req[b] = one
                keys.add(base | b)
                out.append(_new_tuple(Block, (i, b << _BLOCK_SHIFT, BLOCK_SIZE if b != last else P.last_len)))
                n += 1
                if n == need:
                    b += 1
                    break
            b += 1
        P.next_free = b if skipped < 0 else skipped
        if n:
            P.n_free -= n
            if not P.n_free:
                self._exhausted(P)
        return n

    def _start(self, i: int, p: int, st: _Peer, need: int, out: list[Block], fill: bool) -> int:
        """Begin untouched piece ``i`` (priority ``p``) with ``st``; returns need left."""
        self._fresh_of[p].clear(i)
        P = self._new_partial(i)
        nb = P.nblocks
        take = min(nb, need)
        req = P.req
        one = st.one
        base = i << self._shift
        for b in range(take):
            req[b] = one
        st.out.update(range(base, base + take))
        out.extend([_new_tuple(Block, (i, b << _BLOCK_SHIFT, BLOCK_SIZE)) for b in range(take)])
        if take == nb and P.last_len != BLOCK_SIZE:
            out[-1] = _new_tuple(Block, (i, (nb - 1) << _BLOCK_SHIFT, P.last_len))
        P.n_free = nb - take
        P.next_free = take
        if P.n_free:
            self._with_free[i] = None
            if fill:
                if st.current >= 0:
                    self._drop_filler(st)
                P.filler = st
                st.current = i
            else:
                self._open[i] = None
        return need - take

    def _pick_open(self, st: _Peer, need: int, out: list[Block], allowed: Any) -> int:
        prio = self._prio
        bf = st.bf
        partials = self._partials
        for i in list(self._open):
            if not prio[i] or (allowed is not None and i not in allowed) or not bf.get(i):
                continue
            if st.current >= 0:
                self._drop_filler(st)
            del self._open[i]
            P = partials[i]
            P.filler = st
            st.current = i
            need -= self._take(P, st, need, out)
            if not need:
                break
            self._drop_filler(st)  # the blocks left timed out at this peer
        return need

    def _pick_fresh(self, st: _Peer, need: int, out: list[Block], allowed: Any, snubbed: bool) -> int:
        bf = st.bf
        fill = not snubbed
        n = self.num_pieces
        for p, fresh in self._levels:
            if fresh.none():
                continue
            if allowed is not None:
                for i in sorted(allowed):
                    if 0 <= i < n and fresh.get(i) and bf.get(i):
                        need = self._start(i, p, st, need, out, fill)
                        if not need:
                            return 0
                continue
            cand = fresh if st.seed else bf.and_(fresh)
            if cand.none():
                continue
            if self.have.count() < self.random_first:
                need = self._take_set(cand, cand, p, st, need, out, fill)
            else:
                while need and not cand.none():
                    need = self._take_set(self._extreme(cand, snubbed), cand, p, st, need, out, fill)
            if not need:
                return 0
        return need

    def _extreme(self, cand: Any, most_common: bool) -> Any:
        """The pieces of ``cand`` with the least (or most) availability: a
        bit-sliced minimum over the planes, top digit first."""
        s = cand
        for pl in reversed(self._planes):
            t = s.and_(pl) if most_common else s.and_not(pl)
            if not t.none():
                s = t
        return s

    def _take_set(
        self, s: Any, cand: Any, p: int, st: _Peer, need: int, out: list[Block], fill: bool
    ) -> int:
        """Start pieces of ``s`` from a random one on; each taken piece leaves ``s``
        and ``cand`` (which may be the untouched set itself)."""
        i = s.next_set(self._rng.randrange(self.num_pieces))
        if i < 0:
            i = s.next_set(0)
        while i >= 0:
            need = self._start(i, p, st, need, out, fill)
            s.clear(i)
            cand.clear(i)
            if not need:
                return 0
            i = s.next_set(i + 1)
            if i < 0:
                i = s.next_set(0)
        return need

    def _pick_shared(self, st: _Peer, need: int, out: list[Block], allowed: Any) -> int:
        prio = self._prio
        bf = st.bf
        partials = self._partials
        for i in list(self._with_free):
            if not prio[i] or (allowed is not None and i not in allowed) or not bf.get(i):
                continue
            need -= self._take(partials[i], st, need, out)
            if not need:
                break
        return need

    def _endgame_now(self) -> bool:
        """No wanted piece that some connected peer has still has a free block."""
        if self._seeds:
            for _, fresh in self._levels:
                if not fresh.none():
                    return False
        elif self._planes:
            anyone = self._any_have()
            for _, fresh in self._levels:
                if not fresh.none() and not fresh.and_(anyone).none():
                    return False
        prio = self._prio
        for i in self._with_free:
            if prio[i] and self._available(i):
                return False
        return True

    def _pick_dups(self, st: _Peer, need: int, out: list[Block], allowed: Any) -> int:
        prio = self._prio
        bf = st.bf
        maxr = self.endgame_requesters
        one = st.one
        keys = st.out
        for P in list(self._partials.values()):
            if P.complete or P.reserved is not None or P.n_free + P.n_got == P.nblocks:
                continue
            i = P.index
            if not prio[i] or (allowed is not None and i not in allowed) or not bf.get(i):
                continue
            req = P.req
            late = P.late
            base = i << self._shift
            for b in range(P.nblocks):
                r = req[b]
                if r is not None and len(r) < maxr and st not in r and (
                    late is None or st not in late.get(b, ())
                ):
                    req[b] = r + one
                    keys.add(base | b)
                    out.append(self._block(P, b))
                    need -= 1
                    if not need:
                        return 0
        return need

    # ------------------------------------------------------------------ partial bookkeeping

    def _exhausted(self, P: _Partial) -> None:
        """``P`` has no free block left."""
        i = P.index
        self._with_free.pop(i, None)
        self._open.pop(i, None)
        f = P.filler
        if f is not None:
            f.current = -1
            P.filler = None

    def _became_free(self, P: _Partial) -> None:
        """``P`` has a free block again."""
        if P.reserved is None and not P.complete:
            i = P.index
            self._with_free[i] = None
            if P.filler is None:
                self._open[i] = None

    def _drop_filler(self, st: _Peer) -> None:
        i = st.current
        if i < 0:
            return
        st.current = -1
        P = self._partials[i]
        P.filler = None
        if P.n_free and P.reserved is None:
            self._open[i] = None

    def _unstart(self, P: _Partial) -> None:
        """A piece with nothing received or requested goes back to the untouched set."""
        i = P.index
        self._forget_late(P)
        del self._partials[i]
        self._with_free.pop(i, None)
        self._open.pop(i, None)
        if P.filler is not None:
            P.filler.current = -1
            P.filler = None
        p = self._prio[i]
        if p and not self.have.get(i):
            self._fresh_of[p].set(i)

    def _free_block(self, P: _Partial, b: int) -> None:
        P.n_free += 1
        P.next_free = min(P.next_free, b)
        if P.n_free == 1:
            self._became_free(P)
        self._maybe_unstart(P)

    def _maybe_unstart(self, P: _Partial) -> None:
        """Back to untouched if nothing is received, requested or may still arrive."""
        if P.n_free == P.nblocks and P.reserved is None and not P.late:
            self._unstart(P)

    def _forget_late(self, P: _Partial) -> None:
        if P.late:
            base = P.index << self._shift
            for b, peers in P.late.items():
                for q in peers:
                    q.out.discard(base | b)
        P.late = None

    def _make_late(self, P: _Partial, st: _Peer, b: int) -> None:
        if P.late is None:
            P.late = {}
        P.late[b] = P.late.get(b, ()) + st.one
        self._unrequest(P, st, b)

    def _unlate(self, P: _Partial, st: _Peer, b: int) -> bool:
        """Remove ``st`` from the late requesters of ``b``; False if it was not one."""
        late = P.late
        peers = late.get(b) if late else None
        if not peers or st not in peers:
            return False
        rest = tuple(q for q in peers if q is not st)
        if rest:
            late[b] = rest
        else:
            del late[b]
            self._maybe_unstart(P)
        return True

    def _unrequest(self, P: _Partial, st: _Peer, b: int) -> None:
        """Remove ``st`` from the requesters of block ``b`` (its key already gone)."""
        r = P.req[b]
        if r is None:
            return
        if r is st.one:
            rest: tuple[_Peer, ...] = ()
        else:
            rest = tuple(q for q in r if q is not st)
            if len(rest) == len(r):
                return
        if rest:
            P.req[b] = rest
        else:
            P.req[b] = None
            self._free_block(P, b)

    def _release(self, st: _Peer) -> list[Block]:
        keys = sorted(st.out)
        st.out = set()
        shift = self._shift
        kmask = self._kmask
        partials = self._partials
        blocks = []
        self._drop_filler(st)
        for key in keys:
            P = partials[key >> shift]
            b = key & kmask
            blocks.append(self._block(P, b))
            if not self._unlate(P, st, b):
                self._unrequest(P, st, b)
        return blocks

    def _unreserve(self, i: int) -> None:
        P = self._partials[i]
        st = P.reserved
        if st is None:
            return
        P.reserved = None
        st.reserved.discard(i)
        if P.complete:
            return
        if P.n_free:
            self._became_free(P)
        self._maybe_unstart(P)

    # ------------------------------------------------------------------ requests and data

    def block_received(self, peer: Hashable, index: int, begin: int) -> Received:
        """A ``piece`` message arrived. ``new`` False means drop the data: we have it,
        do not want it, it is not a block boundary, or the piece is not in progress
        (blocks are only accepted for pieces we requested something of) or reserved
        for another peer. ``cancel`` lists the other peers to send ``cancel`` to."""
        P = self._partials.get(index)
        if P is None or begin & _BLOCK_MASK:
            return _NOT_NEW
        b = begin >> _BLOCK_SHIFT
        if b >= P.nblocks or P.got[b] is not None:
            return _NOT_NEW
        st = self._peers.get(peer)
        if st is None or (P.reserved is not None and P.reserved is not st):
            return _NOT_NEW
        key = (index << self._shift) | b
        r = P.req[b]
        cancel: Sequence[Hashable] = ()
        if r is None:  # after a timeout or release: still welcome
            P.n_free -= 1
            if not P.n_free:
                self._exhausted(P)
        else:
            P.req[b] = None
            if r is st.one:
                st.out.discard(key)
            else:
                cancel = []
                for q in r:
                    q.out.discard(key)
                    if q is not st:
                        cancel.append(q.key)
        if P.late is not None:
            late = P.late.pop(b, None)
            if late is not None:
                if not cancel:
                    cancel = []
                for q in late:
                    q.out.discard(key)
                    if q is not st:
                        cancel.append(q.key)
        P.got[b] = st
        P.n_got += 1
        if P.n_got == P.nblocks:
            P.complete = True
            return Received(True, True, cancel)
        return Received(True, False, cancel) if cancel else _NEW

    def _request_key(self, st: _Peer | None, index: int, begin: int) -> int:
        """The key of a request outstanding at ``st``, or -1."""
        if st is None or begin & _BLOCK_MASK:
            return -1
        b = begin >> _BLOCK_SHIFT
        if not 0 <= b <= self._kmask:
            return -1
        key = (index << self._shift) | b
        return key if key in st.out else -1

    def block_rejected(self, peer: Hashable, index: int, begin: int) -> bool:
        """BEP 6 ``reject``, or we sent ``cancel``: the request is gone (also one that
        had timed out) and the block is free again for any peer, this one included.
        False if it was not outstanding at this peer."""
        st = self._peers.get(peer)
        key = self._request_key(st, index, begin)
        if key < 0:
            return False
        assert st is not None
        st.out.remove(key)
        P = self._partials[index]
        b = key & self._kmask
        if not self._unlate(P, st, b):
            self._unrequest(P, st, b)
        return True

    def request_timed_out(self, peer: Hashable, index: int, begin: int) -> bool:
        """The engine gave up waiting for a block: it is free for other peers now.
        The request stays outstanding at this peer ("late"): while another connected
        peer has the piece this one is not asked for the block again, and if it still
        sends it the data is accepted (and ``cancel`` names whoever was asked since),
        so keep passing its blocks to ``block_received``. Call ``block_rejected`` when
        you send ``cancel`` for it (or give up on its data): then the peer may be asked
        again at once. False if it was not outstanding, or had already timed out."""
        st = self._peers.get(peer)
        key = self._request_key(st, index, begin)
        if key < 0:
            return False
        assert st is not None
        P = self._partials[index]
        b = key & self._kmask
        r = P.req[b]
        if r is None or st not in r:
            return False
        self._make_late(P, st, b)
        return True

    def release(self, peer: Hashable) -> list[Block]:
        """Free every request outstanding at ``peer`` and its claim on the piece it is
        filling (choked without BEP 6, or snubbed). Returns those blocks: send
        ``cancel`` for them if the peer is still expected to answer."""
        st = self._peers.get(peer)
        return self._release(st) if st is not None else []

    def peer_choked(self, peer: Hashable) -> None:
        """The peer choked us with BEP 6 in force: its requests stay (it answers each
        with data or ``reject``), but the piece it was filling is open to others."""
        st = self._peers.get(peer)
        if st is not None:
            self._drop_filler(st)

    def outstanding(self, peer: Hashable) -> list[Block]:
        """Requests outstanding at ``peer`` (timed-out ones included), in piece/offset
        order."""
        st = self._peers.get(peer)
        if st is None:
            return []
        shift, kmask = self._shift, self._kmask
        return [self._block(self._partials[k >> shift], k & kmask) for k in sorted(st.out)]

    def num_outstanding(self, peer: Hashable) -> int:
        st = self._peers.get(peer)
        return len(st.out) if st is not None else 0

    # ------------------------------------------------------------------ hash check results

    def _attribution(self, P: _Partial) -> list[Hashable | None]:
        return [q.key if q is not None else None for q in P.got]

    def piece_verified(self, index: int) -> list[Hashable | None]:
        """Piece ``index`` passed its hash check (or we got it some other way). Returns
        the peer that delivered each block (None where unknown)."""
        self._check_index(index)
        if self.have.get(index):
            return []
        P = self._partials.get(index)
        sources: list[Hashable | None] = []
        if P is not None:
            sources = self._attribution(P)
            self._discard_partial(P)
        else:
            p = self._prio[index]
            if p:
                self._fresh_of[p].clear(index)
        self.have.set(index)
        self._skip.set(index)
        return sources

    def _discard_partial(self, P: _Partial) -> None:
        i = P.index
        base = i << self._shift
        for b, r in enumerate(P.req):
            if r is not None:
                for q in r:
                    q.out.discard(base | b)
        self._forget_late(P)
        if P.reserved is not None:
            P.reserved.reserved.discard(i)
            P.reserved = None
        self._exhausted(P)
        del self._partials[i]

    def piece_failed(self, index: int, *, reserve_for: Hashable | None = None) -> list[Hashable | None]:
        """Piece ``index`` failed its hash check: all its blocks are free again.
        Returns the peer that delivered each block of the failed attempt.
        ``reserve_for``: only that peer may fetch it until it verifies, the peer
        leaves, or ``unreserve``."""
        P = self._partials.get(index)
        if P is None or not P.complete:
            raise ValueError(f"piece {index} is not awaiting its hash check")
        sources = self._attribution(P)
        st = self._peers.get(reserve_for) if reserve_for is not None else None
        if P.reserved is not None:
            P.reserved.reserved.discard(index)
            P.reserved = None
        self._forget_late(P)  # every block arrived, so there is none
        nb = P.nblocks
        P.req = [None] * nb
        P.got = [None] * nb
        P.n_free = nb
        P.n_got = 0
        P.next_free = 0
        P.complete = False
        if st is not None:
            P.reserved = st
            st.reserved.add(index)
        else:
            self._unstart(P)
        return sources

    def unreserve(self, index: int) -> None:
        """Lift a ``reserve_for`` restriction (e.g. the reserved peer is too slow)."""
        if index in self._partials:
            self._unreserve(index)

    def block_sources(self, index: int) -> list[Hashable | None]:
        """Who delivered each block of a piece in progress so far."""
        P = self._partials.get(index)
        return self._attribution(P) if P is not None else []

    # ------------------------------------------------------------------ state for engine and UI

    @property
    def in_endgame(self) -> bool:
        """Every block a connected peer could serve is requested, and some are."""
        return self._endgame_now() and any(
            P.n_free + P.n_got < P.nblocks for P in self._partials.values()
        )

    def partials(self) -> list[PieceProgress]:
        """Pieces in progress, by index."""
        out = []
        for i in sorted(self._partials):
            P = self._partials[i]
            requested = sum(r is not None for r in P.req)
            out.append(PieceProgress(
                i, P.nblocks, P.n_got, requested, P.complete,
                P.reserved.key if P.reserved is not None else None,
            ))
        return out

    # ------------------------------------------------------------------ self-check

    def _validate(self) -> None:
        """Check every internal invariant (O(pieces × peers); tests only)."""
        n = self.num_pieces
        peers = list(self._peers.values())
        # Availability planes and seeds.
        assert self._seeds == sum(st.seed for st in peers)
        for st in peers:
            assert (st.bf is self._full) == st.seed
        if self._planes:
            assert not self._planes[-1].none()
        for i in range(n):
            expect = sum(1 for st in peers if not st.seed and st.bf.get(i))
            got = sum(pl.get(i) << k for k, pl in enumerate(self._planes))
            assert got == expect, (i, got, expect)
        # Untouched sets: right priority, not had, not in progress.
        for p, fresh in self._levels:
            assert self._fresh_of[p] is fresh
            for i in fresh.iter_set():
                assert self._prio[i] == p and not self.have.get(i) and i not in self._partials
        for i in range(n):
            wanted = self._prio[i] and not self.have.get(i)
            assert self._skip.get(i) == (not wanted)
            if wanted and i not in self._partials:
                assert self._fresh_of[self._prio[i]].get(i), i
        # Partials and requests.
        out_keys: dict[_Peer, set[int]] = {st: set() for st in peers}
        for i, P in self._partials.items():
            assert P.index == i and not self.have.get(i)
            free = [b for b in range(P.nblocks) if P.req[b] is None and P.got[b] is None]
            assert P.n_free == len(free)
            assert P.n_got == sum(q is not None for q in P.got)
            assert all(b >= P.next_free for b in free)
            assert P.complete == (P.n_got == P.nblocks)
            assert not (P.n_free == P.nblocks and P.reserved is None and not P.late), i
            for b, r in enumerate(P.req):
                if r is not None:
                    assert P.got[b] is None and len(r) == len(set(map(id, r)))
                    assert len(r) <= max(self.endgame_requesters, 1)
                    for q in r:
                        assert q in out_keys, "request held by a peer that left"
                        out_keys[q].add((i << self._shift) | b)
            for b, late in (P.late or {}).items():
                assert late and P.got[b] is None and len(late) == len(set(map(id, late)))
                for q in late:
                    assert q in out_keys and q not in (P.req[b] or ())
                    out_keys[q].add((i << self._shift) | b)
            assert (i in self._with_free) == bool(P.n_free and P.reserved is None and not P.complete)
            assert (i in self._open) == bool(
                P.n_free and P.reserved is None and not P.complete and P.filler is None
            )
            if P.filler is not None:
                assert P.filler.current == i and P.n_free
            if P.reserved is not None:
                assert i in P.reserved.reserved and P.reserved in out_keys
        for st in peers:
            assert st.out == out_keys[st], st.key
            if st.current >= 0:
                assert self._partials[st.current].filler is st
            for i in st.reserved:
                assert self._partials[i].reserved is st
