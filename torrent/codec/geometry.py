"""Piece geometry: the one place that maps pieces to files and offsets.

The payload of a torrent is its files laid end to end; pieces cut that
stream into fixed lengths (the last shorter). Storage, picker and creation
all ask this module rather than doing the arithmetic themselves.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import NamedTuple

BLOCK_SIZE = 16 * 1024  # BEP 3: requests are 16 KiB by convention


class FileSlice(NamedTuple):
    file_index: int
    offset: int  # within the file
    length: int


@dataclass(frozen=True, slots=True)
class Geometry:
    piece_length: int
    file_lengths: tuple[int, ...]
    file_offsets: tuple[int, ...] = field(init=False, repr=False)
    total_length: int = field(init=False)
    num_pieces: int = field(init=False)

    def __post_init__(self) -> None:
        if self.piece_length <= 0:
            raise ValueError(f"piece length must be positive, not {self.piece_length}")
        offsets, pos = [], 0
        for length in self.file_lengths:
            offsets.append(pos)
            pos += length
        object.__setattr__(self, "file_offsets", tuple(offsets))
        object.__setattr__(self, "total_length", pos)
        object.__setattr__(self, "num_pieces", -(-pos // self.piece_length))

    def piece_size(self, index: int) -> int:
        self._check(index)
        return min(self.piece_length, self.total_length - index * self.piece_length)

    def piece_span(self, index: int) -> tuple[int, int]:
        """Byte range ``[start, end)`` of a piece in the concatenated payload."""
        start = index * self.piece_length
        return start, start + self.piece_size(index)

    def num_blocks(self, index: int) -> int:
        return -(-self.piece_size(index) // BLOCK_SIZE)

    def slices(self, start: int, length: int) -> list[FileSlice]:
        """The file regions covering ``length`` bytes of payload from ``start``."""
        offsets = self.file_offsets
        out: list[FileSlice] = []
        i = max(bisect.bisect_right(offsets, start) - 1, 0)
        end = start + length
        while start < end and i < len(offsets):
            file_end = offsets[i] + self.file_lengths[i]
            if file_end > start:
                n = min(end, file_end) - start
                out.append(FileSlice(i, start - offsets[i], n))
                start += n
            i += 1
        return out

    def piece_slices(self, index: int) -> list[FileSlice]:
        start, end = self.piece_span(index)
        return self.slices(start, end - start)

    def file_pieces(self, file_index: int) -> range:
        """The pieces holding any byte of a file (empty for empty files)."""
        offset = self.file_offsets[file_index]
        length = self.file_lengths[file_index]
        if length == 0:
            return range(0)
        return range(offset // self.piece_length, (offset + length - 1) // self.piece_length + 1)

    def _check(self, index: int) -> None:
        if not 0 <= index < self.num_pieces:
            raise IndexError(f"piece {index} out of range 0..{self.num_pieces - 1}")
