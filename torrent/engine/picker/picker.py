"""Piece picker: which blocks to request from which peer (sans-IO policy and state).

The engine tells the picker what the swarm has (``peer_bitfield`` / ``peer_have`` /
``peer_gone``), what it received (``block_received``) and what the hash check said
(``piece_verified`` / ``piece_failed``); it asks ``pick(peer, n, now=...)`` for up to
``n`` blocks to request. No sockets, no clocks, no asyncio: the engine passes the
time in, and decides about timeouts and snubbing from the picker's answers.

The picker is the one record of what is outstanding where, and since when, so the
engine keeps no copy that could disagree with it: every block ``pick`` returns is an
outstanding request at that peer, stamped with ``now``, kept per peer in request
order (``oldest_request`` is O(1), ``requests_before`` lists the overdue ones oldest
first, stopping at the first that is not). A request ends in one of these ways:

- the block arrives (``block_received``): accepted only if it is outstanding at
  *that* peer, so a copy that comes after a cancel, a reject or a release is
  dropped; the first copy wins, and ``cancel`` names the other peers it was asked
  of (their requests end here too);
- the peer rejects it, or the engine cancels it (``block_rejected``): free for
  anyone again, this peer included. A timed-out request is one the engine cancels:
  it sends ``cancel`` and calls ``block_rejected``;
- the peer goes (``peer_gone``) or is written off (``release``: choked without
  BEP 6, snubbed): every request outstanding there ends;
- its piece verifies while it is outstanding (``piece_verified``).

Order of a pick for one peer (each step only when the earlier ones left room):

1. pieces reserved for this peer (smart-ban re-fetch after a failed hash check);
2. the piece this peer is already filling (one peer per piece where possible: whole
   pieces from one source keep smart-ban attribution simple and writes contiguous);
3. "open" partial pieces: started, blocks free, nobody filling them (left by a peer
   that went away, choked us or rejected) — finish partials first;
4. untouched pieces, highest priority first; within a priority, in sequential mode
   the lowest index first, otherwise random pieces while fewer than
   ``random_first`` are complete, then rarest first with a random tie-break
   (snubbed peers take the most common instead); snubbed peers never fill a piece;
5. free blocks of pieces other peers are filling (only once nothing untouched fits);
6. endgame: when no wanted piece some connected peer has still has a free block,
   blocks already requested from others, at most ``endgame_requesters`` peers per
   block and never twice to one peer; ``block_received`` names the peers to cancel.

The sub-jobs live beside this module: ``availability`` (bit-sliced counts, so a pick
does no O(num_pieces) Python work), ``priorities`` (untouched pieces per level, the
skip set) and ``partials`` (block state of pieces in progress). This class composes
them and holds what ties them together: the peers, their requests, the pick order.
The hot paths (``pick`` → ``_take`` / ``_start``, and ``block_received``) read the
parts' attributes directly into locals and make no call per block.

Block → peer attribution stays in the picker for the life of a piece attempt:
``block_sources`` shows it (also while the complete piece awaits its hash check),
and ``piece_verified`` / ``piece_failed`` return it (one peer key per block) for the
engine's smart-ban. The engine keeps the data.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Hashable, Sequence
from typing import Any

from torrent.codec.geometry import BLOCK_SIZE, Geometry
from torrent.core.bitfield import Bitfield
from torrent.core.errors import ProtocolError
from torrent.engine.picker.availability import Availability
from torrent.engine.picker.partials import (
    BLOCK_MASK,
    BLOCK_SHIFT,
    NEW,
    NOT_NEW,
    Block,
    Partial,
    PieceProgress,
    Received,
)
from torrent.engine.picker.priorities import Priorities, piece_priorities

__all__ = ["PiecePicker"]

_new_tuple = tuple.__new__


class _Peer:
    """What the picker knows of one connected peer."""

    __slots__ = ("bf", "current", "key", "one", "out", "reserved", "seed")

    def __init__(self, key: Hashable, bf: Any) -> None:
        self.key = key
        self.bf = bf  # the picker's own copy; the shared full field for seeds
        self.seed = False
        # Outstanding requests: block key → request time, in request order. Times
        # never decrease, so the first entry is the oldest.
        self.out: dict[int, float] = {}
        self.one = (self,)  # the requester tuple of a block only this peer was asked for
        self.current = -1  # the piece this peer is filling, or -1
        self.reserved: set[int] = set()  # pieces only this peer may fetch


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
            have = cls(n)
        else:
            if len(have) != n:
                raise ValueError(f"have has {len(have)} pieces, the torrent {n}")
            have = self._own(have)

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
        self._avail = Availability(cls, n)
        self._full = cls(n)  # the bitfield of every seed
        self._full.set_all()

        self._partials: dict[int, Partial] = {}
        self._open: dict[int, None] = {}  # partials with free blocks and no filler
        self._with_free: dict[int, None] = {}  # partials with free blocks (unreserved)

        self._pri = Priorities(cls, have)
        self.have = have  # the same bitfield as ``self._pri.have``: ours, never replaced
        self._sequential = False
        self._clock = 0.0  # the latest request time seen: times never go back
        self._may_start = 0  # untouched pieces the pick under way may still start

    # ------------------------------------------------------------------ helpers

    def _own(self, bf: Any) -> Any:
        """A private copy of ``bf`` in our bitfield class."""
        if type(bf) is self._cls:
            return bf.copy()
        return self._cls.from_bytes(bf.to_bytes(), len(bf))

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.num_pieces:
            raise IndexError(f"piece {index} out of range for {self.num_pieces} pieces")

    def _new_partial(self, i: int) -> Partial:
        if i == self.num_pieces - 1:
            P = Partial(i, self._nb_end, self._last_len_end)
        else:
            P = Partial(i, self._nb, self._last_len)
        self._partials[i] = P
        return P

    def _add_peer(self, peer: Hashable) -> _Peer:
        st = _Peer(peer, self._cls(self.num_pieces))
        self._peers[peer] = st
        return st

    def _forget_pieces(self, st: _Peer) -> None:
        if st.seed:
            self._avail.seeds -= 1
            st.seed = False
        else:
            self._avail.remove(st.bf)
        st.bf = self._cls(self.num_pieces)

    def _promote(self, st: _Peer) -> None:
        """A peer that now has every piece counts as a seed (off the planes)."""
        self._avail.remove(st.bf)
        st.bf = self._full
        st.seed = True
        self._avail.seeds += 1

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
            self._avail.seeds += 1
        else:
            st.bf = self._own(bitfield)
            self._avail.add(st.bf)
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
        avail = self._avail  # Availability.inc, inline: a call costs 10 % of a have
        avail.union = None
        for pl in avail.planes:
            if pl.get(index):
                pl.clear(index)
            else:
                pl.set(index)
                break
        else:
            top = self._cls(self.num_pieces)
            top.set(index)
            avail.planes.append(top)
        if bf.all():
            self._promote(st)
        return not self._pri.skip.get(index)

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
            return not self._pri.skip.all()
        return bool(st.bf.any_and_not(self._pri.skip))

    def availability(self, index: int) -> int:
        """How many connected peers have piece ``index``."""
        self._check_index(index)
        return self._avail.count(index)

    def availability_bytes(self) -> bytes:
        """One byte per piece: how many connected peers have it (seeds included),
        saturating at 255. For a piece map; built from whole bitfields, ~1 ms for
        100 000 pieces and 200 peers."""
        return self._avail.to_bytes()

    @property
    def num_peers(self) -> int:
        return len(self._peers)

    @property
    def num_seeds(self) -> int:
        return self._avail.seeds

    # ------------------------------------------------------------------ priorities and order

    def set_piece_priorities(self, priorities: Sequence[int]) -> None:
        """One priority per piece: 0 skips it, 1 normal … 7 highest.

        Pieces in progress whose priority drops to 0 get no new requests; those
        already sent still count when they arrive.
        """
        self._pri.set(priorities, self._partials)

    def set_file_priorities(self, file_priorities: Sequence[int], *, first_last: bool = False) -> None:
        """Per-file priorities (pass 0 for BEP 47 pad files); a piece gets the
        highest priority of the files it touches, so a piece shared with a wanted
        file is fetched. ``first_last``: the first and last piece of every file
        whose priority is not 0 get ``MAX_PRIORITY`` (previews, media players)."""
        self.set_piece_priorities(piece_priorities(self.geometry, file_priorities, first_last=first_last))

    def piece_priority(self, index: int) -> int:
        self._check_index(index)
        return self._pri.prio[index]

    def set_sequential(self, on: bool) -> None:
        """Sequential download: untouched pieces start lowest index first within
        each priority level, instead of random-first / rarest-first. Partials,
        endgame, allowed-fast and reservations work as before."""
        self._sequential = bool(on)

    @property
    def sequential(self) -> bool:
        return self._sequential

    @property
    def wanted_remaining(self) -> int:
        """Wanted pieces not yet verified (in progress and awaiting hash included)."""
        return self.num_pieces - self._pri.skip.count()

    @property
    def done(self) -> bool:
        """Every wanted piece verified."""
        return self._pri.skip.all()

    # ------------------------------------------------------------------ picking

    def pick(
        self,
        peer: Hashable,
        count: int,
        *,
        now: float = 0.0,
        allowed_fast: Collection[int] = (),
        choked: bool = False,
        snubbed: bool = False,
        new_pieces: int | None = None,
    ) -> list[Block]:
        """Up to ``count`` blocks to request from ``peer`` now, in request order.

        Each block returned is outstanding at ``peer`` from now on, requested at
        ``now`` (the engine's clock; a time earlier than one already passed counts
        as that one, so a peer's requests stay in time order).
        ``choked``: only pieces in the peer's BEP 6 ``allowed_fast`` set. ``snubbed``:
        a slow peer gets common pieces and never holds a piece for itself.
        ``new_pieces``: at most this many untouched pieces are started (0: only blocks
        of pieces already in progress; the engine's cap on memory for pieces in
        progress); None: no limit.
        """
        st = self._peers.get(peer)
        if st is None or count <= 0:
            return []
        if now < self._clock:
            now = self._clock
        else:
            self._clock = now
        allowed: Collection[int] | None = None
        if choked:
            if not allowed_fast:
                self._drop_filler(st)
                return []
            allowed = allowed_fast if isinstance(allowed_fast, (set, frozenset)) else frozenset(allowed_fast)
        out: list[Block] = []
        need = count
        prio = self._pri.prio
        partials = self._partials

        # 1. Pieces reserved for this peer (smart-ban re-fetch).
        if st.reserved:
            bf = st.bf
            for i in sorted(st.reserved):
                P = partials[i]
                if P.n_free and prio[i] and (allowed is None or i in allowed) and bf.get(i):
                    need -= self._take(P, st, need, out, now)
                    if not need:
                        return out

        # 2. The piece this peer is filling.
        i = st.current
        if i >= 0:
            if prio[i] and not snubbed and (allowed is None or i in allowed):
                need -= self._take(partials[i], st, need, out, now)
                if not need:
                    return out
            # Taken to its last free block (then it has no filler any more), or not
            # for this pick: the rest is for others.
            self._drop_filler(st)

        # 3. Partial pieces nobody is filling.
        if self._open and not snubbed:
            need = self._pick_open(st, need, out, allowed, now)
            if not need:
                return out

        # 4. Untouched pieces.
        self._may_start = self.num_pieces if new_pieces is None else new_pieces
        if self._may_start > 0:
            need = self._pick_fresh(st, need, out, allowed, snubbed, now)
            if not need:
                return out

        # 5. Free blocks of pieces other peers are filling.
        if self._with_free:
            need = self._pick_shared(st, need, out, allowed, now)
            if not need:
                return out

        # 6. Endgame duplicates.
        if not snubbed and self.endgame_requesters > 1 and self._endgame_now():
            self._pick_dups(st, need, out, allowed, now)
        return out

    def _take(self, P: Partial, st: _Peer, need: int, out: list[Block], now: float) -> int:
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
        n = 0
        while b < nb:
            if req[b] is None and got[b] is None:
                req[b] = one
                keys[base | b] = now
                out.append(_new_tuple(Block, (i, b << BLOCK_SHIFT, BLOCK_SIZE if b != last else P.last_len)))
                n += 1
                if n == need:
                    b += 1
                    break
            b += 1
        P.next_free = b
        P.n_free -= n  # n > 0: a free block lies at or after next_free
        if not P.n_free:
            self._exhausted(P)
        return n

    def _start(self, i: int, fresh: Any, st: _Peer, need: int, out: list[Block], fill: bool, now: float) -> int:
        """Begin untouched piece ``i`` (a member of ``fresh``) with ``st``; returns
        need left."""
        fresh.clear(i)
        self._may_start -= 1
        P = self._new_partial(i)
        nb = P.nblocks
        take = nb if nb <= need else need
        P.req[:take] = [st.one] * take
        keys = st.out
        base = i << self._shift
        for k in range(base, base + take):
            keys[k] = now
        out.extend([_new_tuple(Block, (i, b << BLOCK_SHIFT, BLOCK_SIZE)) for b in range(take)])
        if take == nb and P.last_len != BLOCK_SIZE:
            out[-1] = _new_tuple(Block, (i, (nb - 1) << BLOCK_SHIFT, P.last_len))
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

    def _pick_open(self, st: _Peer, need: int, out: list[Block], allowed: Any, now: float) -> int:
        prio = self._pri.prio
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
            # Either ``need`` is met or the piece has no free block left (and no filler).
            need -= self._take(P, st, need, out, now)
            if not need:
                break
        return need

    def _pick_fresh(self, st: _Peer, need: int, out: list[Block], allowed: Any, snubbed: bool, now: float) -> int:
        bf = st.bf
        fill = not snubbed
        n = self.num_pieces
        for _, fresh in self._pri.levels:
            if fresh.none():
                continue
            if allowed is not None:
                for i in sorted(allowed):
                    if 0 <= i < n and fresh.get(i) and bf.get(i):
                        need = self._start(i, fresh, st, need, out, fill, now)
                        if not need or not self._may_start:
                            return need
                continue
            cand = fresh if st.seed else bf.and_(fresh)
            if cand.none():
                continue
            if self._sequential:
                i = cand.next_set(0)
                while i >= 0:
                    need = self._start(i, fresh, st, need, out, fill, now)
                    if not need or not self._may_start:
                        return need
                    i = cand.next_set(i + 1)
            elif self.have.count() < self.random_first:
                need = self._take_set(cand, cand, fresh, st, need, out, fill, now)
            else:
                extreme = self._avail.extreme
                while need and self._may_start and not cand.none():
                    need = self._take_set(extreme(cand, snubbed), cand, fresh, st, need, out, fill, now)
            if not need or not self._may_start:
                return need
        return need

    def _take_set(
        self, s: Any, cand: Any, fresh: Any, st: _Peer, need: int, out: list[Block], fill: bool, now: float
    ) -> int:
        """Start pieces of ``s`` from a random one on; each taken piece leaves ``s``
        and ``cand`` (either may be ``fresh`` itself)."""
        i = s.next_set(self._rng.randrange(self.num_pieces))
        if i < 0:
            i = s.next_set(0)
        while i >= 0:
            need = self._start(i, fresh, st, need, out, fill, now)
            s.clear(i)
            cand.clear(i)
            if not need or not self._may_start:
                return need
            i = s.next_set(i + 1)
            if i < 0:
                i = s.next_set(0)
        return need

    def _pick_shared(self, st: _Peer, need: int, out: list[Block], allowed: Any, now: float) -> int:
        prio = self._pri.prio
        bf = st.bf
        partials = self._partials
        for i in list(self._with_free):
            if not prio[i] or (allowed is not None and i not in allowed) or not bf.get(i):
                continue
            need -= self._take(partials[i], st, need, out, now)
            if not need:
                break
        return need

    def _endgame_now(self) -> bool:
        """No wanted piece that some connected peer has still has a free block."""
        pri = self._pri
        levels = pri.levels
        avail = self._avail
        if avail.seeds:
            for _, fresh in levels:
                if not fresh.none():
                    return False
        elif avail.planes:
            anyone = avail.any_have()
            for _, fresh in levels:
                if not fresh.none() and not fresh.and_(anyone).none():
                    return False
        prio = pri.prio
        for i in self._with_free:
            if prio[i] and avail.has(i):
                return False
        return True

    def _pick_dups(self, st: _Peer, need: int, out: list[Block], allowed: Any, now: float) -> int:
        prio = self._pri.prio
        bf = st.bf
        maxr = self.endgame_requesters
        one = st.one
        keys = st.out
        for P in self._partials.values():
            if P.complete or P.reserved is not None or P.n_free + P.n_got == P.nblocks:
                continue
            i = P.index
            if not prio[i] or (allowed is not None and i not in allowed) or not bf.get(i):
                continue
            req = P.req
            base = i << self._shift
            for b in range(P.nblocks):
                r = req[b]
                if r is not None and len(r) < maxr and st not in r:
                    req[b] = r + one
                    keys[base | b] = now
                    out.append(P.block(b))
                    need -= 1
                    if not need:
                        return 0
        return need

    # ------------------------------------------------------------------ partial bookkeeping

    def _exhausted(self, P: Partial) -> None:
        """``P`` has no free block left."""
        i = P.index
        self._with_free.pop(i, None)
        self._open.pop(i, None)
        f = P.filler
        if f is not None:
            f.current = -1
            P.filler = None

    def _became_free(self, P: Partial) -> None:
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

    def _unstart(self, P: Partial) -> None:
        """A piece with nothing received or requested goes back to the untouched set."""
        i = P.index
        del self._partials[i]
        self._with_free.pop(i, None)
        self._open.pop(i, None)
        if P.filler is not None:
            P.filler.current = -1
            P.filler = None
        self._pri.untouched(i)

    def _unrequest(self, P: Partial, st: _Peer, b: int) -> None:
        """Remove ``st`` from the requesters of block ``b`` (its key already gone);
        a block nobody holds is free, a piece with only free blocks untouched."""
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
            P.req[b] = rest if len(rest) > 1 else rest[0].one
            return
        P.req[b] = None
        P.n_free += 1
        if b < P.next_free:
            P.next_free = b
        if P.n_free == 1:
            self._became_free(P)
        if P.n_free == P.nblocks and P.reserved is None:
            self._unstart(P)

    def _release(self, st: _Peer) -> list[Block]:
        keys = sorted(st.out)
        st.out = {}
        shift = self._shift
        kmask = self._kmask
        partials = self._partials
        blocks = []
        self._drop_filler(st)
        for key in keys:
            P = partials[key >> shift]
            b = key & kmask
            blocks.append(P.block(b))
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
        if P.n_free == P.nblocks:
            self._unstart(P)

    # ------------------------------------------------------------------ requests and data

    def block_received(self, peer: Hashable, index: int, begin: int) -> Received:
        """A ``piece`` message arrived. ``new`` True: keep the data, it was
        outstanding at this peer and is the first copy. False: drop it (never asked
        of this peer, or no longer: cancelled, rejected, released, or another peer's
        copy came first). ``cancel`` lists the other peers it was requested from:
        send them ``cancel``; their requests are gone already."""
        st = self._peers.get(peer)
        if st is None or begin & BLOCK_MASK:
            return NOT_NEW
        b = begin >> BLOCK_SHIFT
        if not 0 <= b <= self._kmask:
            return NOT_NEW
        key = (index << self._shift) | b
        if st.out.pop(key, None) is None:
            return NOT_NEW
        P = self._partials[index]
        r = P.req[b]
        P.req[b] = None
        if r is st.one:
            cancel: Sequence[Hashable] = ()
        else:
            cancel = []
            for q in r:
                if q is not st:
                    del q.out[key]
                    cancel.append(q.key)
        P.got[b] = st
        P.n_got += 1
        if P.n_got == P.nblocks:
            P.complete = True
            return Received(True, True, cancel)
        return Received(True, False, cancel) if cancel else NEW

    def _request_key(self, st: _Peer | None, index: int, begin: int) -> int:
        """The key of a request outstanding at ``st``, or -1."""
        if st is None or begin & BLOCK_MASK:
            return -1
        b = begin >> BLOCK_SHIFT
        if not 0 <= b <= self._kmask:
            return -1
        key = (index << self._shift) | b
        return key if key in st.out else -1

    def block_rejected(self, peer: Hashable, index: int, begin: int) -> bool:
        """BEP 6 ``reject``, or we sent ``cancel`` (a request that timed out, say):
        the request is gone and the block is free again for any peer, this one
        included; a copy that still comes from this peer is dropped. False if it
        was not outstanding at this peer."""
        st = self._peers.get(peer)
        key = self._request_key(st, index, begin)
        if key < 0:
            return False
        assert st is not None
        del st.out[key]
        self._unrequest(self._partials[index], st, key & self._kmask)
        return True

    def release(self, peer: Hashable) -> list[Block]:
        """End every request outstanding at ``peer`` and its claim on the piece it
        is filling (choked without BEP 6, or snubbed). Returns those blocks, in
        piece/offset order: send ``cancel`` for them if the peer is still expected
        to answer (its copies are dropped now)."""
        st = self._peers.get(peer)
        return self._release(st) if st is not None else []

    def peer_choked(self, peer: Hashable) -> None:
        """The peer choked us with BEP 6 in force: its requests stay (it answers each
        with data or ``reject``), but the piece it was filling is open to others."""
        st = self._peers.get(peer)
        if st is not None:
            self._drop_filler(st)

    def outstanding(self, peer: Hashable) -> list[Block]:
        """Requests outstanding at ``peer``, in piece/offset order."""
        st = self._peers.get(peer)
        if st is None:
            return []
        shift, kmask, partials = self._shift, self._kmask, self._partials
        return [partials[k >> shift].block(k & kmask) for k in sorted(st.out)]

    def num_outstanding(self, peer: Hashable) -> int:
        st = self._peers.get(peer)
        return len(st.out) if st is not None else 0

    def oldest_request(self, peer: Hashable) -> float | None:
        """When the oldest request outstanding at ``peer`` was made (the ``now`` of
        its ``pick``); None if nothing is outstanding there."""
        st = self._peers.get(peer)
        if st is None or not st.out:
            return None
        return next(iter(st.out.values()))

    def requests_before(self, peer: Hashable, cutoff: float) -> list[Block]:
        """The requests outstanding at ``peer`` made at or before ``cutoff``,
        oldest first (for timeouts: ``cutoff = now - request_timeout``)."""
        st = self._peers.get(peer)
        if st is None:
            return []
        shift, kmask, partials = self._shift, self._kmask, self._partials
        blocks = []
        for key, t in st.out.items():
            if t > cutoff:
                break
            blocks.append(partials[key >> shift].block(key & kmask))
        return blocks

    # ------------------------------------------------------------------ hash check results

    def piece_verified(self, index: int) -> list[Hashable | None]:
        """Piece ``index`` passed its hash check (or we got it some other way). Returns
        the peer that delivered each block (None where unknown); requests still
        outstanding for it end (their copies are dropped)."""
        self._check_index(index)
        if self.have.get(index):
            return []
        P = self._partials.get(index)
        sources: list[Hashable | None] = []
        if P is not None:
            sources = P.sources()
            self._discard_partial(P)
        self._pri.verified(index)
        return sources

    def _discard_partial(self, P: Partial) -> None:
        i = P.index
        base = i << self._shift
        for b, r in enumerate(P.req):
            if r is not None:
                for q in r:
                    del q.out[base | b]
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
        sources = P.sources()
        st = self._peers.get(reserve_for) if reserve_for is not None else None
        if P.reserved is not None:
            P.reserved.reserved.discard(index)
            P.reserved = None
        P.reset()  # complete: no request outstanding, no filler
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
        """Who delivered each block of a piece in progress so far (None: not yet),
        also while the complete piece awaits its hash check; [] for a piece not in
        progress."""
        P = self._partials.get(index)
        return P.sources() if P is not None else []

    def block_requesters(self, index: int) -> list[tuple[Hashable, ...]]:
        """Per block of a piece in progress, the peers it is outstanding at (``()``
        if none); [] for a piece not in progress."""
        P = self._partials.get(index)
        return P.requesters() if P is not None else []

    # ------------------------------------------------------------------ state for engine and UI

    @property
    def in_endgame(self) -> bool:
        """Every block a connected peer could serve is requested, and some are."""
        return self._endgame_now() and any(
            P.n_free + P.n_got < P.nblocks for P in self._partials.values()
        )

    def partials(self) -> list[PieceProgress]:
        """Pieces in progress, by index."""
        partials = self._partials
        return [partials[i].progress() for i in sorted(partials)]

    def num_in_progress(self) -> int:
        """Pieces started and not yet verified: requested, arriving, or waiting for their hash check."""
        return len(self._partials)

    def in_progress(self) -> list[tuple[int, bool]]:
        """(piece, whether any block of it arrived) for each piece in progress,
        unordered: the cheap form of ``partials`` for a piece map."""
        return [(i, P.n_got > 0) for i, P in self._partials.items()]

    # ------------------------------------------------------------------ self-check

    def _validate(self) -> None:
        """Check every internal invariant (O(pieces × peers); tests only)."""
        n = self.num_pieces
        peers = list(self._peers.values())
        avail = self._avail
        pri = self._pri
        # Availability planes and seeds.
        assert avail.seeds == sum(st.seed for st in peers)
        for st in peers:
            assert (st.bf is self._full) == st.seed
            assert st.one == (st,) and self._peers[st.key] is st
        if avail.planes:
            assert not avail.planes[-1].none()
        nonseed = [sum(1 for st in peers if not st.seed and st.bf.get(i)) for i in range(n)]
        assert [sum(pl.get(i) << k for k, pl in enumerate(avail.planes)) for i in range(n)] == nonseed
        if avail.union is not None:
            assert list(avail.union.iter_set()) == [i for i in range(n) if nonseed[i]]
        assert avail.to_bytes() == bytes(min(255, c + avail.seeds) for c in nonseed)
        # Untouched sets: right priority, not had, not in progress.
        assert pri.have is self.have and len(pri.prio) == n
        assert [p for p, _ in pri.levels] == sorted(pri.fresh_of, reverse=True)
        for p, fresh in pri.levels:
            assert pri.fresh_of[p] is fresh and p > 0
            for i in fresh.iter_set():
                assert pri.prio[i] == p and not self.have.get(i) and i not in self._partials
        for i in range(n):
            wanted = pri.prio[i] and not self.have.get(i)
            assert pri.skip.get(i) == (not wanted)
            if wanted and i not in self._partials:
                assert pri.fresh_of[pri.prio[i]].get(i), i
        # Partials and requests.
        out_keys: dict[_Peer, set[int]] = {st: set() for st in peers}
        for i, P in self._partials.items():
            assert P.index == i and not self.have.get(i)
            free = [b for b in range(P.nblocks) if P.req[b] is None and P.got[b] is None]
            assert P.n_free == len(free)
            assert P.n_got == sum(q is not None for q in P.got)
            assert all(b >= P.next_free for b in free)
            assert P.complete == (P.n_got == P.nblocks)
            assert not (P.n_free == P.nblocks and P.reserved is None), i
            for b, r in enumerate(P.req):
                if r is not None:
                    assert r and P.got[b] is None and len(r) == len(set(map(id, r)))
                    assert len(r) <= max(self.endgame_requesters, 1)
                    for q in r:
                        assert q in out_keys, "request held by a peer that left"
                        assert P.reserved is None or q is P.reserved, "request of a piece reserved for another"
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
            assert set(st.out) == out_keys[st], st.key
            times = list(st.out.values())
            assert times == sorted(times), "requests out of time order"
            assert all(t <= self._clock for t in times)
            if st.current >= 0:
                assert self._partials[st.current].filler is st
            for i in st.reserved:
                assert self._partials[i].reserved is st
        assert set(self._open) <= set(self._with_free)
