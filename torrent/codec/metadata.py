"""BEP 9 metadata exchange (``ut_metadata``), sans-IO: its messages, and the assembly of a torrent's info
dictionary from 16 KiB pieces fetched from several peers.

The info dictionary is trusted only once its SHA-1 equals the info-hash the magnet link named; until then
it is bytes of a bounded size. A peer whose pieces made a mismatch is named so the caller can drop it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from torrent.codec import bencoding
from torrent.core.errors import BencodeError, ProtocolError
from torrent.core.settings import Limits

PIECE = 16 * 1024
MAX_METADATA = 16 * 1024 * 1024  # bytes; the largest info dictionaries of real torrents are a few MiB
REQUEST, DATA, REJECT = 0, 1, 2
_HEADER_LIMITS = Limits(bencode_max_depth=2, bencode_max_size=PIECE + 256, bencode_max_string=64)


class MetadataError(ProtocolError):
    """A malformed ut_metadata message, or metadata that does not match the info-hash."""


@dataclass(frozen=True, slots=True)
class MetadataMessage:
    kind: int  # REQUEST, DATA or REJECT
    piece: int
    total_size: int | None = None  # DATA
    data: bytes = b""  # DATA: the piece


def parse(payload: bytes) -> MetadataMessage:
    """One ut_metadata payload (after the extended message id)."""
    try:
        header, end = bencoding.decode_prefix(payload, limits=_HEADER_LIMITS)
    except BencodeError as exc:
        raise MetadataError(f"ut_metadata header is not bencode: {exc}") from None
    if not isinstance(header, dict):
        raise MetadataError("ut_metadata header is not a dictionary")
    kind, piece = header.get(b"msg_type"), header.get(b"piece")
    if kind not in (REQUEST, DATA, REJECT) or not isinstance(piece, int) or not 0 <= piece < MAX_METADATA // PIECE:
        raise MetadataError(f"ut_metadata message type {kind!r} piece {piece!r}")
    if kind != DATA:
        return MetadataMessage(kind, piece)
    total = header.get(b"total_size")
    if not isinstance(total, int) or not 0 < total <= MAX_METADATA:
        raise MetadataError(f"ut_metadata total_size {total!r}")
    data = payload[end:]
    if len(data) > PIECE:
        raise MetadataError(f"ut_metadata piece of {len(data)} bytes")
    return MetadataMessage(DATA, piece, total, data)


def request(piece: int) -> bytes:
    return bencoding.encode({b"msg_type": REQUEST, b"piece": piece})


def reject(piece: int) -> bytes:
    return bencoding.encode({b"msg_type": REJECT, b"piece": piece})


def data(piece: int, metadata: bytes) -> bytes:
    """Piece ``piece`` of our info dictionary, as a DATA message."""
    chunk = metadata[piece * PIECE:(piece + 1) * PIECE]
    return bencoding.encode({b"msg_type": DATA, b"piece": piece, b"total_size": len(metadata)}) + chunk


def piece_count(size: int) -> int:
    return -(-size // PIECE)


@dataclass
class Assembly:
    """The info dictionary of ``info_hash`` (``size`` bytes, as a peer's handshake said) coming in pieces."""

    info_hash: bytes
    size: int
    pieces: list[bytes | None] = field(init=False)
    senders: list[Any] = field(init=False)  # who sent each piece
    asked: dict[int, Any] = field(default_factory=dict, init=False)  # piece → peer asked
    bad_peers: list[Any] = field(default_factory=list, init=False)  # who sent a mismatch, after one

    def __post_init__(self) -> None:
        if not 0 < self.size <= MAX_METADATA:
            raise MetadataError(f"metadata size {self.size} is out of range (1 to {MAX_METADATA} bytes)")
        count = piece_count(self.size)
        self.pieces = [None] * count
        self.senders = [None] * count

    def next_piece(self, peer: Any) -> int | None:
        """A missing piece nobody is asked for (or None): ask ``peer`` for it."""
        for index, got in enumerate(self.pieces):
            if got is None and index not in self.asked:
                self.asked[index] = peer
                return index
        return None

    def forget(self, peer: Any) -> None:
        """``peer`` rejected us or went away: its pieces may be asked of someone else."""
        self.asked = {i: p for i, p in self.asked.items() if p is not peer}

    def received(self, peer: Any, message: MetadataMessage) -> bytes | None:
        """Store one DATA piece; the whole info dictionary once it is complete and verified.

        Raises ``MetadataError`` naming the fault; for a hash mismatch the pieces start over and
        ``bad_peers`` lists who sent them."""
        index = message.piece
        if message.total_size != self.size or index >= len(self.pieces):
            raise MetadataError(f"metadata piece {index} of a {message.total_size}-byte dictionary; "
                                f"expected {self.size} bytes")
        expected = min(PIECE, self.size - index * PIECE)
        if len(message.data) != expected:
            raise MetadataError(f"metadata piece {index} has {len(message.data)} bytes, not {expected}")
        self.asked.pop(index, None)
        if self.pieces[index] is None:
            self.pieces[index] = message.data
            self.senders[index] = peer
        if any(p is None for p in self.pieces):
            return None
        info = b"".join(p for p in self.pieces if p is not None)
        if hashlib.sha1(info).digest() != self.info_hash:
            self.bad_peers = [p for p in dict.fromkeys(self.senders) if p is not None]
            count = len(self.pieces)
            self.pieces, self.senders, self.asked = [None] * count, [None] * count, {}
            raise MetadataError("the metadata does not match the info-hash")
        return info
