"""Piece priorities, and the sets of pieces the picker may still start.

A pick must find "an untouched piece of the highest priority this peer has" without
scanning every piece: the untouched wanted pieces are kept as one bitfield per
priority level that occurs (``levels``, highest first), and what we do not need at
all, ``have | priority 0``, as one more (``skip``: interest and "done" are word-wise
tests against it). The sets are rebuilt only when priorities change, from the
priority bytes with ``bytes.translate`` (a C loop), and kept current piece by piece
as pieces start, go back untouched, or verify.

File priorities become piece priorities here too (``piece_priorities``): a piece
gets the highest priority of the files it touches, so a piece shared with a wanted
file is fetched; the first and last piece of a wanted file may be raised to the top
(previews and media players read them first).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from torrent.codec.geometry import Geometry

__all__ = ["DEFAULT_PRIORITY", "MAX_PRIORITY", "Priorities", "piece_priorities"]

MAX_PRIORITY = 7  # priorities: 0 = skip, 1 = normal … 7 = highest
DEFAULT_PRIORITY = 1


def piece_priorities(geometry: Geometry, file_priorities: Sequence[int], *, first_last: bool = False) -> bytearray:
    """One priority per piece from one per file (0 for BEP 47 pad files): the
    highest of the files a piece touches. ``first_last``: the first and last piece
    of every file whose priority is not 0 get ``MAX_PRIORITY``."""
    nfiles = len(geometry.file_lengths)
    if len(file_priorities) != nfiles:
        raise ValueError(f"{len(file_priorities)} priorities for {nfiles} files")
    prio = bytearray(geometry.num_pieces)
    ends: list[int] = []
    for f, p in enumerate(file_priorities):
        if not 0 <= p <= MAX_PRIORITY:
            raise ValueError(f"file priorities range 0..{MAX_PRIORITY}, got {p}")
        r = geometry.file_pieces(f)
        if not r:
            continue  # an empty file has no piece
        a, b = r.start, r.stop
        # Pieces strictly inside the file's range hold only this file's bytes.
        if b - a > 2:
            prio[a + 1 : b - 1] = bytes([p]) * (b - a - 2)
        prio[a] = max(prio[a], p)
        prio[b - 1] = max(prio[b - 1], p)
        if first_last and p:
            ends += (a, b - 1)
    for i in ends:
        prio[i] = MAX_PRIORITY
    return prio


class Priorities:
    """Priority of every piece, what is left to start at each level, what we skip.

    ``have`` is the picker's set of verified pieces (this object updates it in
    ``verified``). ``prio`` (bytes-like, one per piece), ``levels`` and ``skip`` are
    read directly by the picker's loops; change them only through the methods here.
    """

    __slots__ = ("_cls", "fresh_of", "have", "levels", "n", "prio", "skip")

    def __init__(self, cls: type, have: Any) -> None:
        self._cls = cls
        self.n = len(have)
        self.have = have
        self.prio = bytearray([DEFAULT_PRIORITY]) * self.n
        self.levels: list[tuple[int, Any]] = []  # (priority, untouched wanted pieces), highest first
        self.fresh_of: dict[int, Any] = {}  # the same bitfields by priority
        self.skip: Any = None  # have | priority 0: what we do not need
        self.rebuild(())

    def set(self, priorities: Sequence[int], in_progress: Iterable[int]) -> None:
        """New priorities (one per piece, 0..``MAX_PRIORITY``); ``in_progress``:
        the pieces started, which are not untouched whatever their priority."""
        if len(priorities) != self.n:
            raise ValueError(f"{len(priorities)} priorities for {self.n} pieces")
        prio = bytearray(priorities)
        if prio and max(prio) > MAX_PRIORITY:
            raise ValueError(f"piece priorities range 0..{MAX_PRIORITY}, got {max(prio)}")
        self.prio = prio
        self.rebuild(in_progress)

    def rebuild(self, in_progress: Iterable[int]) -> None:
        busy = self._cls(self.n)
        for i in in_progress:
            busy.set(i)
        not_fresh = self.have.or_(busy)
        present = set(self.prio)
        fresh_of = {p: self._mask_of(p).and_not(not_fresh) for p in sorted(present - {0})}
        self.fresh_of = fresh_of
        self.levels = sorted(fresh_of.items(), reverse=True)
        zero = self._mask_of(0) if 0 in present else self._cls(self.n)
        self.skip = zero.or_(self.have)

    def _mask_of(self, p: int) -> Any:
        """Bitfield of the pieces whose priority is ``p`` (string ops in C)."""
        n = self.n
        table = bytes(0x31 if j == p else 0x30 for j in range(256))
        bits = bytes(self.prio).translate(table) + b"0" * (-n % 8)
        value = int(bits, 2) if bits else 0
        return self._cls.from_bytes(value.to_bytes((n + 7) >> 3, "big"), n)

    def untouched(self, i: int) -> None:
        """Piece ``i`` is no longer in progress (nothing received or requested)."""
        p = self.prio[i]
        if p and not self.have.get(i):
            self.fresh_of[p].set(i)

    def verified(self, i: int) -> None:
        """Piece ``i`` is ours now."""
        p = self.prio[i]
        if p:
            self.fresh_of[p].clear(i)
        self.have.set(i)
        self.skip.set(i)
