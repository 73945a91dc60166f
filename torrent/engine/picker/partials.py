"""Block state of the pieces in progress, and the small values the picker hands out.

Per-block state exists only for pieces in progress ("partials"), a few hundred at a
time, never for the 100 000 untouched or verified ones. Per block a partial keeps
the peers its request is outstanding at (a tuple, almost always one peer's shared
1-tuple, so the common case allocates nothing) and the peer that delivered it. The
attribution stays for the life of a piece attempt, through the hash check: the
engine's smart-ban needs it after the last block, when the verdict comes.

Counters (``n_free``, ``n_got``, ``next_free``) let the picker skip a piece with
nothing to take, and start its scan at the first free block, without looking at
the blocks.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple

from torrent.codec.geometry import BLOCK_SIZE

__all__ = ["BLOCK_MASK", "BLOCK_SHIFT", "Block", "Partial", "PieceProgress", "Received"]

BLOCK_SHIFT = BLOCK_SIZE.bit_length() - 1
assert 1 << BLOCK_SHIFT == BLOCK_SIZE
BLOCK_MASK = BLOCK_SIZE - 1


class Block(NamedTuple):
    """One request: what goes into ``request`` / ``cancel`` messages."""

    index: int
    begin: int
    length: int


class Received(NamedTuple):
    """What ``block_received`` decided about one block."""

    new: bool  # it was outstanding at this peer and is the first copy: keep the data
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


NOT_NEW = Received(False, False, ())
NEW = Received(True, False, ())
_new_tuple = tuple.__new__  # a NamedTuple without its __new__: a third of the cost


class Partial:
    """Block state of one piece in progress. ``req`` / ``got`` hold the picker's
    per-peer records (anything with a ``key``)."""

    __slots__ = (
        "complete",
        "filler",
        "got",
        "index",
        "last_len",
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
        # req[b]: None, or the tuple of peers the block is outstanding at.
        self.req: list[tuple[Any, ...] | None] = [None] * nblocks
        # got[b]: None, or the peer that delivered it (attribution).
        self.got: list[Any] = [None] * nblocks
        self.n_free = nblocks  # neither requested nor received
        self.n_got = 0
        self.next_free = 0  # no free block below this
        self.filler: Any = None  # the peer filling it block by block
        self.reserved: Any = None  # smart-ban re-fetch: only this peer
        self.complete = False  # all received, awaiting the hash check

    def block(self, b: int) -> Block:
        return _new_tuple(Block, (self.index, b << BLOCK_SHIFT, self.last_len if b == self.nblocks - 1 else BLOCK_SIZE))

    def sources(self) -> list[Hashable | None]:
        """The key of the peer that delivered each block (None: not yet)."""
        return [q.key if q is not None else None for q in self.got]

    def requesters(self) -> list[tuple[Hashable, ...]]:
        """Per block, the keys of the peers it is outstanding at."""
        return [tuple(q.key for q in r) if r is not None else () for r in self.req]

    def reset(self) -> None:
        """Forget every block (a failed hash check): all free again."""
        nb = self.nblocks
        self.req = [None] * nb
        self.got = [None] * nb
        self.n_free = nb
        self.n_got = 0
        self.next_free = 0
        self.complete = False

    def progress(self) -> PieceProgress:
        return PieceProgress(
            self.index, self.nblocks, self.n_got, sum(r is not None for r in self.req), self.complete,
            self.reserved.key if self.reserved is not None else None,
        )
