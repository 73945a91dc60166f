"""SHA-1 piece hashing: the pure-Python twin and the selector.

``hashlib`` releases the GIL for buffers over 2 KiB, so the twin also scales
across threads; the compiled module saves the per-piece Python work and is
what a batch of small pieces needs. Callers use the module-level names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from torrent.core import speedups

DIGEST_SIZE = 20


def _piece_count(size: int, piece_length: int) -> int:
    if piece_length <= 0:
        raise ValueError(f"piece_length must be positive, not {piece_length}")
    return -(-size // piece_length)


def py_sha1(data: bytes | bytearray | memoryview) -> bytes:
    """SHA-1 digest of ``data``."""
    return hashlib.sha1(data).digest()


def py_sha1_pieces(data: bytes | bytearray | memoryview, piece_length: int) -> bytes:
    """Concatenated digests of consecutive pieces; the last may be short."""
    view = memoryview(data).cast("B")
    count = _piece_count(len(view), piece_length)
    sha1 = hashlib.sha1
    return b"".join(sha1(view[i * piece_length:(i + 1) * piece_length]).digest() for i in range(count))


def py_verify_pieces(data: bytes | bytearray | memoryview, piece_length: int,
                     expected: bytes | bytearray | memoryview) -> list[bool]:
    """Check consecutive pieces against concatenated expected digests."""
    view = memoryview(data).cast("B")
    count = _piece_count(len(view), piece_length)
    expected = bytes(expected)
    if len(expected) != count * DIGEST_SIZE:
        raise ValueError(
            f"expected {count * DIGEST_SIZE} bytes of digests for {count} pieces, got {len(expected)}")
    actual = py_sha1_pieces(view, piece_length)
    return [actual[i:i + DIGEST_SIZE] == expected[i:i + DIGEST_SIZE]
            for i in range(0, count * DIGEST_SIZE, DIGEST_SIZE)]


def py_sha1_many(buffers: Sequence[bytes | bytearray | memoryview]) -> list[bytes]:
    """SHA-1 of each of several separate buffers."""
    return [hashlib.sha1(b).digest() for b in buffers]


def py_verify_piece(data: bytes | bytearray | memoryview, digest: bytes | bytearray | memoryview) -> bool:
    """True when SHA-1 of ``data`` equals the 20-byte ``digest``."""
    if len(digest) != DIGEST_SIZE:
        raise ValueError(f"a SHA-1 digest is 20 bytes, not {len(digest)}")
    return hashlib.sha1(data).digest() == bytes(digest)


sha1 = speedups.select("hashing", "sha1", py_sha1)
sha1_pieces = speedups.select("hashing", "sha1_pieces", py_sha1_pieces)
verify_pieces = speedups.select("hashing", "verify_pieces", py_verify_pieces)
verify_piece = speedups.select("hashing", "verify_piece", py_verify_piece)
sha1_many = speedups.select("hashing", "sha1_many", py_sha1_many)
