"""RC4 for MSE/PE protocol encryption, and the import point that picks an implementation.

``PyRC4`` is the pure-Python twin of ``_speedups.rc4.RC4``; the same tests run
against both. Callers use ``RC4``, which is the compiled class unless it is not
built or ``TORRENT_PURE_PYTHON`` is set.

The API matches the two I/O paths of an encrypted connection, so the cipher is the
only extra pass over the bytes: ``process_into`` decrypts in place where received
bytes landed, ``process_to`` encrypts into a preallocated send buffer, and
``process`` returns a new ``bytes`` for small handshake fields.

The twin cannot avoid one interpreter step per keystream byte, so it keeps that
loop minimal (locals and list lookups only, one append per byte) and does the XOR on whole
chunks through ``int.from_bytes``, a C-level operation.
"""

from __future__ import annotations

import operator
from itertools import cycle, islice
from typing import Any

from torrent.core import speedups

__all__ = ["RC4", "PyRC4"]

MAX_KEY = 256
# Keystream made per step of the twin: bounds its temporary list and integers.
_CHUNK = 64 * 1024
# (a + b) mod 256 for a, b < 256, as a lookup.
_MOD = list(range(256)) * 2
_INDEXES = range(256)


def _writable_bytes(buf: Any) -> memoryview:
    """``buf`` as a writable, flat view of unsigned bytes (TypeError if it cannot be)."""
    view = memoryview(buf)
    if view.readonly:
        raise TypeError(f"RC4 output buffer must be writable, not a read-only {type(buf).__name__}")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


class PyRC4:
    """RC4 stream cipher state; encrypting and decrypting are the same operation.

    ``PyRC4(key, drop=1024)`` discards the first ``drop`` keystream bytes (MSE does).
    State carries across calls, so processing a stream in pieces of any size gives
    the same bytes as processing it at once.
    """

    __slots__ = ("_s", "_i", "_j")

    def __init__(self, key: Any, *, drop: int = 0) -> None:
        drop = operator.index(drop)
        if drop < 0:
            raise ValueError(f"RC4 drop must be >= 0, got {drop}")
        key = bytes(memoryview(key))  # memoryview: reject ints and str
        if not 1 <= len(key) <= MAX_KEY:
            raise ValueError(f"RC4 key must be 1 to {MAX_KEY} bytes long, got {len(key)}")
        s = list(range(256))
        j = 0
        n = len(key)
        for i in range(256):
            j = (j + s[i] + key[i % n]) & 0xFF
            s[i], s[j] = s[j], s[i]
        self._s = s
        self._i = 0
        self._j = 0
        while drop:
            step = min(drop, _CHUNK)
            self._keystream(step)
            drop -= step

    def _keystream(self, n: int) -> bytes:
        """The next ``n`` keystream bytes.

        The ``i`` sequence is fixed, so ``cycle`` supplies it, and ``_MOD`` turns two
        additions mod 256 into list lookups: about 30% faster than the plain loop.
        """
        s = self._s
        mod = _MOD
        i = self._i
        j = self._j
        out: list[int] = []
        append = out.append
        for i in islice(cycle(_INDEXES), i + 1, i + 1 + n):
            si = s[i]
            j = mod[j + si]
            s[i] = sj = s[j]
            s[j] = si
            append(s[mod[si + sj]])
        self._i = i
        self._j = j
        return bytes(out)

    def _xor(self, data: memoryview) -> bytes:
        """``data`` XOR the next ``len(data)`` keystream bytes, one chunk at a time."""
        parts = []
        for pos in range(0, len(data), _CHUNK):
            chunk = data[pos:pos + _CHUNK]
            size = len(chunk)
            mixed = int.from_bytes(chunk, "little") ^ int.from_bytes(self._keystream(size), "little")
            parts.append(mixed.to_bytes(size, "little"))
        return b"".join(parts)

    def process(self, data: Any) -> bytes:
        """The transformed copy of ``data`` (any contiguous bytes-like object)."""
        return self._xor(memoryview(data).cast("B"))

    def process_into(self, buf: Any, start: int = 0, end: int | None = None) -> None:
        """Transform ``buf[start:end]`` in place (a writable bytearray or memoryview).

        The receive path decrypts where the bytes landed, with no copy; bytes
        outside the range are not touched.
        """
        view = _writable_bytes(buf)
        start = operator.index(start)
        stop = len(view) if end is None else operator.index(end)
        if not 0 <= start <= stop <= len(view):
            raise ValueError(f"RC4 range [{start}:{stop}] is outside a buffer of {len(view)} bytes")
        view[start:stop] = self._xor(view[start:stop])

    def process_to(self, src: Any, dst: Any, offset: int = 0) -> int:
        """Write the transform of ``src`` into ``dst[offset:offset + len(src)]``; return that end.

        The send path encrypts straight into its preallocated send buffer, so
        plaintext is read once and ciphertext written once. ``src`` and ``dst``
        may overlap.
        """
        source = memoryview(src).cast("B")
        view = _writable_bytes(dst)
        offset = operator.index(offset)
        end = offset + len(source)
        if offset < 0 or end > len(view):
            raise ValueError(f"RC4 output of {len(source)} bytes at offset {offset} "
                             f"does not fit a buffer of {len(view)} bytes")
        view[offset:end] = self._xor(source)
        return end


RC4 = speedups.select("rc4", "RC4", PyRC4)
