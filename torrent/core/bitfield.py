"""Piece bitfields (BEP 3 wire layout) and the import point that picks an implementation.

``PyBitfield`` is the pure-Python twin of ``_speedups.bitfield.Bitfield``; the
same tests run against both. Callers use ``Bitfield``, which is the compiled
class unless it is not built or ``TORRENT_PURE_PYTHON`` is set.

The twin leans on C-level primitives instead of per-bit Python loops: bulk set
algebra and counting go through ``int.from_bytes`` / ``&`` / ``~`` /
``int.bit_count``, and scans for the next set or clear piece go through a
compiled regular expression that skips whole bytes.
"""

from __future__ import annotations

import operator
import re
from itertools import compress
from typing import Any, Iterator

from torrent.core import speedups
from torrent.core.errors import BitfieldError

__all__ = ["Bitfield", "PyBitfield"]

# First byte that has a set bit / a clear bit, searched from a byte offset.
_NONZERO_BYTE = re.compile(rb"[^\x00]")
_NOT_FULL_BYTE = re.compile(rb"[^\xff]")
# A bit string of b"0"/b"1" -> 0/1 bytes, so itertools.compress can select indexes.
_BITS_TO_FLAGS = bytes.maketrans(b"01", b"\x00\x01")


def _nbytes(length: int) -> int:
    return (length + 7) >> 3


def _check_length(length: Any) -> int:
    length = operator.index(length)
    if length < 0:
        raise ValueError(f"bitfield length must be >= 0, got {length}")
    return length


class PyBitfield:
    """Which pieces a peer (or we) have, as a packed BEP 3 bitfield.

    Bit ``i`` is piece ``i``; the first byte's high bit is piece 0. Spare bits
    past the length are always zero, and ``count()`` is kept current so it is O(1).
    """

    __slots__ = ("_length", "_data", "_count")
    __hash__ = None  # type: ignore[assignment]  # mutable

    _length: int
    _data: bytearray
    _count: int

    def __init__(self, length: int) -> None:
        self._length = _check_length(length)
        self._data = bytearray(_nbytes(self._length))
        self._count = 0

    @classmethod
    def _wrap(cls, length: int, data: bytearray, count: int) -> PyBitfield:
        bf = cls.__new__(cls)
        bf._length = length
        bf._data = data
        bf._count = count
        return bf

    def _from_int(self, value: int) -> PyBitfield:
        """A bitfield of our length whose wire bytes are ``value`` big-endian."""
        data = bytearray(value.to_bytes(len(self._data), "big"))
        return self._wrap(self._length, data, value.bit_count())

    def _as_int(self) -> int:
        return int.from_bytes(self._data, "big")

    @classmethod
    def from_bytes(cls, data: Any, length: int) -> PyBitfield:
        """Parse a wire bitfield; ``BitfieldError`` if its size or spare bits are wrong."""
        length = _check_length(length)
        buf = bytearray(memoryview(data))  # memoryview: reject ints and str
        expected = _nbytes(length)
        if len(buf) != expected:
            raise BitfieldError(
                f"bitfield for {length} pieces must be {expected} bytes, got {len(buf)}"
            )
        if length & 7:
            last = buf[-1]
            if last & (0xFF >> (length & 7)):
                raise BitfieldError(
                    f"bitfield for {length} pieces has spare bits set in its last byte "
                    f"(0x{last:02x})"
                )
        return cls._wrap(length, buf, int.from_bytes(buf, "big").bit_count())

    def to_bytes(self) -> bytes:
        """The wire form (``ceil(len/8)`` bytes, spare bits zero)."""
        return bytes(self._data)

    def copy(self) -> PyBitfield:
        """An independent bitfield with the same bits."""
        return self._wrap(self._length, bytearray(self._data), self._count)

    __copy__ = copy

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self).from_bytes, (self.to_bytes(), self._length))

    def __len__(self) -> int:
        return self._length

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PyBitfield):
            return NotImplemented
        return self._length == other._length and self._data == other._data

    def __repr__(self) -> str:
        return f"{type(self).__name__}(length={self._length}, count={self._count})"

    def _index_error(self, index: int) -> IndexError:
        return IndexError(f"piece index {index} out of range for {self._length} pieces")

    def get(self, index: int) -> bool:
        """True if piece ``index`` is set; IndexError outside ``[0, len)``."""
        if not 0 <= index < self._length:
            raise self._index_error(index)
        return bool(self._data[index >> 3] & (0x80 >> (index & 7)))

    __getitem__ = get

    def set(self, index: int) -> None:
        """Mark piece ``index`` as present."""
        if not 0 <= index < self._length:
            raise self._index_error(index)
        data = self._data
        pos = index >> 3
        old = data[pos]
        mask = 0x80 >> (index & 7)
        if not old & mask:
            data[pos] = old | mask
            self._count += 1

    def clear(self, index: int) -> None:
        """Mark piece ``index`` as missing."""
        if not 0 <= index < self._length:
            raise self._index_error(index)
        data = self._data
        pos = index >> 3
        old = data[pos]
        mask = 0x80 >> (index & 7)
        if old & mask:
            data[pos] = old & ~mask
            self._count -= 1

    def set_all(self) -> None:
        """Every piece present (a seed)."""
        n = len(self._data)
        if not n:
            return
        self._data[:] = b"\xff" * n
        self._data[-1] = (0xFF << (-self._length & 7)) & 0xFF
        self._count = self._length

    def clear_all(self) -> None:
        """No piece present."""
        self._data[:] = bytes(len(self._data))
        self._count = 0

    def count(self) -> int:
        """Number of set pieces, O(1)."""
        return self._count

    def all(self) -> bool:
        """True if every piece is set (also for a zero-length field)."""
        return self._count == self._length

    def none(self) -> bool:
        """True if no piece is set."""
        return self._count == 0

    def iter_set(self) -> list[int]:
        """Indexes of the set pieces, ascending, as a list."""
        if not self._count:
            return []
        # Binary string of the whole field (C), turned into 0/1 flags (C) that
        # itertools.compress uses to pick indexes from a range (C).
        bits = format(self._as_int(), f"0{len(self._data) * 8}b")
        return list(compress(range(self._length), bits.encode().translate(_BITS_TO_FLAGS)))

    def __iter__(self) -> Iterator[int]:
        return iter(self.iter_set())

    def _check_start(self, start: int) -> None:
        if not 0 <= start <= self._length:
            raise IndexError(f"start {start} out of range for {self._length} pieces")

    def next_set(self, start: int) -> int:
        """First set index >= ``start`` or -1; ``start`` may be ``len(self)``."""
        self._check_start(start)
        data = self._data
        pos = start >> 3
        if pos >= len(data):
            return -1
        byte = data[pos] & (0xFF >> (start & 7))
        if not byte:
            match = _NONZERO_BYTE.search(data, pos + 1)
            if match is None:
                return -1
            pos = match.start()
            byte = data[pos]
        # Spare bits are zero, so a hit is always below the length.
        return (pos << 3) + 8 - byte.bit_length()

    def next_clear(self, start: int) -> int:
        """First clear index >= ``start`` or -1; ``start`` may be ``len(self)``."""
        self._check_start(start)
        data = self._data
        pos = start >> 3
        if pos >= len(data):
            return -1
        byte = ~data[pos] & (0xFF >> (start & 7))
        if not byte:
            match = _NOT_FULL_BYTE.search(data, pos + 1)
            if match is None:
                return -1
            pos = match.start()
            byte = ~data[pos] & 0xFF
        index = (pos << 3) + 8 - byte.bit_length()
        return index if index < self._length else -1

    def _check_same(self, other: PyBitfield) -> None:
        if not isinstance(other, PyBitfield):
            raise TypeError(f"expected a {type(self).__name__}, got {type(other).__name__}")
        if other._length != self._length:
            raise ValueError(f"bitfield lengths differ: {self._length} and {other._length}")

    def and_not(self, other: PyBitfield) -> PyBitfield:
        """Pieces in self missing from ``other`` (``self & ~other``)."""
        self._check_same(other)
        return self._from_int(self._as_int() & ~other._as_int())

    def and_(self, other: PyBitfield) -> PyBitfield:
        """Pieces in both."""
        self._check_same(other)
        return self._from_int(self._as_int() & other._as_int())

    def or_(self, other: PyBitfield) -> PyBitfield:
        """Pieces in either."""
        self._check_same(other)
        return self._from_int(self._as_int() | other._as_int())

    def any_and_not(self, other: PyBitfield) -> bool:
        """Is some piece in self missing from ``other``? (interest test)"""
        self._check_same(other)
        if not self._count or other._count == other._length:
            return False
        return bool(self._as_int() & ~other._as_int())

    def __and__(self, other: object) -> PyBitfield:
        if not isinstance(other, PyBitfield):
            return NotImplemented
        return self.and_(other)

    def __or__(self, other: object) -> PyBitfield:
        if not isinstance(other, PyBitfield):
            return NotImplemented
        return self.or_(other)


Bitfield = speedups.select("bitfield", "Bitfield", PyBitfield)
