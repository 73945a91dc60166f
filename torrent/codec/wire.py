"""Sans-IO peer wire codec: bytes in, typed events out; messages in, bytes out.

Covers the BEP 3 handshake and messages, the BEP 5 ``port`` message, the
BEP 6 fast extension and the BEP 10 extension protocol framing and handshake.
No sockets, clocks or asyncio: the peer layer feeds received bytes to a
``WireParser`` and writes what the ``build_*`` functions return, so every rule
here is tested with bytes alone, under any fragmentation.

Remote errors (the peer broke the format) raise ``ProtocolError`` subclasses
and leave the parser dead; local errors (we passed a bad value to a builder)
raise ``ValueError``, because they are bugs in this program, not the peer's.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from struct import Struct
from typing import Any, ClassVar, NamedTuple, NoReturn, TypeVar

from torrent.codec import bencoding
from torrent.core.errors import BencodeError, BitfieldError, ProtocolError
from torrent.core.settings import DEFAULT_LIMITS, Limits

__all__ = [
    "PROTOCOL",
    "HANDSHAKE_LENGTH",
    "MessageId",
    "WireError",
    "build_reserved",
    "Handshake",
    "parse_handshake",
    "KeepAlive",
    "Choke",
    "Unchoke",
    "Interested",
    "NotInterested",
    "Have",
    "Bitfield",
    "Request",
    "Piece",
    "Cancel",
    "Port",
    "Suggest",
    "HaveAll",
    "HaveNone",
    "Reject",
    "AllowedFast",
    "Extended",
    "Unknown",
    "Message",
    "Event",
    "ExtensionHandshake",
    "EXTENDED_HANDSHAKE_ID",
    "validate_bitfield",
    "build_keepalive",
    "build_choke",
    "build_unchoke",
    "build_interested",
    "build_not_interested",
    "build_have",
    "build_bitfield",
    "build_request",
    "build_piece_header",
    "build_piece",
    "build_cancel",
    "build_port",
    "build_suggest",
    "build_have_all",
    "build_have_none",
    "build_reject",
    "build_allowed_fast",
    "build_extended",
    "build_extended_handshake",
    "build_message",
    "parse_extended_handshake",
    "encode",
    "WireParser",
]

# BEP 3, "peer protocol": the handshake is the byte 19, the protocol string,
# eight reserved bytes, the 20-byte info-hash and the 20-byte peer id.
PROTOCOL = b"\x13BitTorrent protocol"
HANDSHAKE_LENGTH = 68
_PSTRLEN = PROTOCOL[0]
_HANDSHAKE = Struct(">20s8s20s20s")

# BEP 10, "extension protocol": reserved_byte[5] & 0x10.
# BEP 6, "fast extension": reserved[7] |= 0x04.
# BEP 5, "BitTorrent protocol extension": the last bit of reserved[7].
_EXTENSION_BYTE, _EXTENSION_BIT = 5, 0x10
_FAST_BYTE, _FAST_BIT = 7, 0x04
_DHT_BYTE, _DHT_BIT = 7, 0x01


# BEP 3 "peer messages" (0-8), BEP 5 "port" (9), BEP 6 "fast extension"
# (13-17), BEP 10 "extension protocol" (20). Other ids are reserved or belong
# to extensions we do not speak; BEP 3 says to ignore them.
class MessageId(IntEnum):
    CHOKE = 0
    UNCHOKE = 1
    INTERESTED = 2
    NOT_INTERESTED = 3
    HAVE = 4
    BITFIELD = 5
    REQUEST = 6
    PIECE = 7
    CANCEL = 8
    PORT = 9
    SUGGEST = 13
    HAVE_ALL = 14
    HAVE_NONE = 15
    REJECT = 16
    ALLOWED_FAST = 17
    EXTENDED = 20


# BEP 10: extended message id 0 is the extension handshake.
EXTENDED_HANDSHAKE_ID = 0

# BEP 3: every integer is four bytes big-endian; BEP 5's port is two.
_HEADER = Struct(">IB")  # length prefix + message id
_INDEX_MSG = Struct(">IBI")  # have, suggest, allowed_fast
_BLOCK_MSG = Struct(">IBIII")  # request, cancel, reject
_PIECE_HEADER = Struct(">IBII")
_PORT_MSG = Struct(">IBH")
_EXTENDED_HEADER = Struct(">IBB")
_U32 = Struct(">I")
_U32X2 = Struct(">II")
_U32X3 = Struct(">III")
_U16 = Struct(">H")

# BEP 3, 5 and 6: payload bytes after the id of every fixed-size message.
_FIXED_PAYLOAD = {
    MessageId.CHOKE: 0,
    MessageId.UNCHOKE: 0,
    MessageId.INTERESTED: 0,
    MessageId.NOT_INTERESTED: 0,
    MessageId.HAVE: 4,
    MessageId.REQUEST: 12,
    MessageId.CANCEL: 12,
    MessageId.PORT: 2,
    MessageId.SUGGEST: 4,
    MessageId.HAVE_ALL: 0,
    MessageId.HAVE_NONE: 0,
    MessageId.REJECT: 12,
    MessageId.ALLOWED_FAST: 4,
}
# The same as length prefixes, indexed by id for the parser's loop;
# -1 marks variable-size and unknown ids.
_FIXED_LENGTH = [_FIXED_PAYLOAD[i] + 1 if i in _FIXED_PAYLOAD else -1 for i in range(256)]

_PIECE = int(MessageId.PIECE)
_BITFIELD = int(MessageId.BITFIELD)
_EXTENDED = int(MessageId.EXTENDED)
_PORT = int(MessageId.PORT)


class WireError(ProtocolError):
    """A peer's bytes break the wire format.

    ``kind`` names the message (``"handshake"``, ``"request"``…) so callers
    can log or count offences without parsing the text.
    """

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"{kind}: {reason}")


def _message_name(msg_id: int) -> str:
    try:
        return MessageId(msg_id).name.lower()
    except ValueError:
        return f"message id {msg_id}"


# ---------------------------------------------------------------- handshake


def build_reserved(extensions: bool = True, fast: bool = True, dht: bool = False) -> bytes:
    """The eight reserved handshake bytes advertising the chosen extensions."""
    reserved = bytearray(8)
    if extensions:
        reserved[_EXTENSION_BYTE] |= _EXTENSION_BIT
    if fast:
        reserved[_FAST_BYTE] |= _FAST_BIT
    if dht:
        reserved[_DHT_BYTE] |= _DHT_BIT
    return bytes(reserved)


_DEFAULT_RESERVED = build_reserved()


@dataclass(frozen=True, slots=True)
class Handshake:
    """The BEP 3 handshake; ``reserved`` carries the extension bits."""

    info_hash: bytes
    peer_id: bytes
    reserved: bytes = _DEFAULT_RESERVED

    def __post_init__(self) -> None:
        for name, size in (("info_hash", 20), ("peer_id", 20), ("reserved", 8)):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != size:
                raise ValueError(f"handshake {name} must be {size} bytes, got {value!r}")

    @property
    def supports_extensions(self) -> bool:
        """BEP 10 extension protocol."""
        return bool(self.reserved[_EXTENSION_BYTE] & _EXTENSION_BIT)

    @property
    def supports_fast(self) -> bool:
        """BEP 6 fast extension (used only if both sides set it)."""
        return bool(self.reserved[_FAST_BYTE] & _FAST_BIT)

    @property
    def supports_dht(self) -> bool:
        """BEP 5 DHT: the peer may send a ``port`` message."""
        return bool(self.reserved[_DHT_BYTE] & _DHT_BIT)

    def to_bytes(self) -> bytes:
        """The 68 bytes to send first on a connection."""
        return PROTOCOL + self.reserved + self.info_hash + self.peer_id


def _check_protocol_prefix(data: memoryview, start: int, available: int) -> None:
    """Fail on the first wrong byte of the protocol string, not after 68."""
    if available < 1:
        return
    if data[start] != _PSTRLEN:
        raise WireError(
            "handshake",
            f"protocol string length is {data[start]}, expected {_PSTRLEN} "
            "(not a BitTorrent peer, or an encrypted stream)",
        )
    seen = bytes(data[start : start + min(available, len(PROTOCOL))])
    if seen != PROTOCOL[: len(seen)]:
        # Quote up to the first wrong byte, so the text does not depend on
        # how the bytes were split across reads.
        bad = next(i for i, (a, b) in enumerate(zip(seen, PROTOCOL)) if a != b)
        raise WireError("handshake", f"protocol string starts {seen[1 : bad + 1]!r}, expected {PROTOCOL[1:]!r}")


def _handshake_at(data: memoryview, start: int) -> Handshake:
    reserved, info_hash, peer_id = _HANDSHAKE.unpack_from(data, start)[1:]
    return Handshake(info_hash, peer_id, reserved)


def parse_handshake(data: bytes | bytearray | memoryview) -> Handshake:
    """Parse exactly one 68-byte handshake."""
    view = memoryview(data).cast("B")
    if len(view) != HANDSHAKE_LENGTH:
        raise WireError("handshake", f"{len(view)} bytes, expected {HANDSHAKE_LENGTH}")
    _check_protocol_prefix(view, 0, len(view))
    return _handshake_at(view, 0)


# ---------------------------------------------------------------- messages


# The messages that come once per block or piece (have, request, piece,
# cancel, reject, and the one-index fast messages) are typed tuples: built
# from the parser with ``tuple.__new__`` they cost a fifth of a frozen
# dataclass, and they stay immutable. Unlike plain tuples, messages of
# different types never compare equal.


T = TypeVar("T")
_new = tuple.__new__


def _typed_eq(self: tuple, other: object) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other)  # type: ignore[arg-type]


def _typed_ne(self: tuple, other: object) -> bool:
    return not _typed_eq(self, other)


def _typed_hash(self: tuple) -> int:
    return hash((type(self).__name__, tuple.__hash__(self)))


def _message_tuple(msg_id: MessageId) -> Callable[[type[T]], type[T]]:
    def decorate(cls: type[T]) -> type[T]:
        cls.ID = msg_id  # type: ignore[attr-defined]
        cls.__eq__ = _typed_eq  # type: ignore[assignment,method-assign]
        cls.__ne__ = _typed_ne  # type: ignore[assignment,method-assign]
        cls.__hash__ = _typed_hash  # type: ignore[assignment,method-assign]
        return cls

    return decorate


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A zero-length message: the peer is still there."""


@dataclass(frozen=True, slots=True)
class Choke:
    ID: ClassVar[MessageId] = MessageId.CHOKE


@dataclass(frozen=True, slots=True)
class Unchoke:
    ID: ClassVar[MessageId] = MessageId.UNCHOKE


@dataclass(frozen=True, slots=True)
class Interested:
    ID: ClassVar[MessageId] = MessageId.INTERESTED


@dataclass(frozen=True, slots=True)
class NotInterested:
    ID: ClassVar[MessageId] = MessageId.NOT_INTERESTED


@_message_tuple(MessageId.HAVE)
class Have(NamedTuple):
    index: int


@dataclass(frozen=True, slots=True)
class Bitfield:
    """Raw bitfield bytes; checked against the piece count only if known."""

    ID: ClassVar[MessageId] = MessageId.BITFIELD
    data: bytes


@_message_tuple(MessageId.REQUEST)
class Request(NamedTuple):
    index: int
    begin: int
    length: int


@_message_tuple(MessageId.PIECE)
class Piece(NamedTuple):
    """One block. From ``WireParser.feed``, ``data`` is a view into the bytes
    fed, valid until the next feed: consume or copy it before then (the
    receive path copies each block once, straight into its piece)."""

    index: int
    begin: int
    data: bytes | memoryview


@_message_tuple(MessageId.CANCEL)
class Cancel(NamedTuple):
    index: int
    begin: int
    length: int


@dataclass(frozen=True, slots=True)
class Port:
    """BEP 5: the UDP port of the peer's DHT node."""

    ID: ClassVar[MessageId] = MessageId.PORT
    port: int


@_message_tuple(MessageId.SUGGEST)
class Suggest(NamedTuple):
    index: int


@dataclass(frozen=True, slots=True)
class HaveAll:
    ID: ClassVar[MessageId] = MessageId.HAVE_ALL


@dataclass(frozen=True, slots=True)
class HaveNone:
    ID: ClassVar[MessageId] = MessageId.HAVE_NONE


@_message_tuple(MessageId.REJECT)
class Reject(NamedTuple):
    index: int
    begin: int
    length: int


@_message_tuple(MessageId.ALLOWED_FAST)
class AllowedFast(NamedTuple):
    index: int


@dataclass(frozen=True, slots=True)
class Extended:
    """BEP 10 message; ``ext_id`` 0 is the handshake, others are ours to assign."""

    ID: ClassVar[MessageId] = MessageId.EXTENDED
    ext_id: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Unknown:
    """A message id we do not speak; BEP 3 says to ignore it, not to fail."""

    msg_id: int
    payload: bytes


Message = (
    KeepAlive
    | Choke
    | Unchoke
    | Interested
    | NotInterested
    | Have
    | Bitfield
    | Request
    | Piece
    | Cancel
    | Port
    | Suggest
    | HaveAll
    | HaveNone
    | Reject
    | AllowedFast
    | Extended
    | Unknown
)
Event = Handshake | Message

# Messages without fields are immutable and equal to any other instance, so
# the parser hands out these instead of allocating one per message.
_KEEPALIVE = KeepAlive()
_NO_PAYLOAD: dict[int, Message] = {
    MessageId.CHOKE: Choke(),
    MessageId.UNCHOKE: Unchoke(),
    MessageId.INTERESTED: Interested(),
    MessageId.NOT_INTERESTED: NotInterested(),
    MessageId.HAVE_ALL: HaveAll(),
    MessageId.HAVE_NONE: HaveNone(),
}
# Messages that share a layout, by id.
_BLOCK_TYPES: dict[int, type[Request | Cancel | Reject]] = {
    MessageId.REQUEST: Request,
    MessageId.CANCEL: Cancel,
    MessageId.REJECT: Reject,
}
_INDEX_TYPES: dict[int, type[Have | Suggest | AllowedFast]] = {
    MessageId.HAVE: Have,
    MessageId.SUGGEST: Suggest,
    MessageId.ALLOWED_FAST: AllowedFast,
}


def validate_bitfield(data: bytes, num_pieces: int) -> None:
    """BEP 3: exactly ceil(num_pieces/8) bytes, spare bits cleared.

    Public so a bitfield received before the metadata (magnet links) can be
    checked once the piece count is known.
    """
    expected = (num_pieces + 7) >> 3
    if len(data) != expected:
        raise BitfieldError(f"bitfield: {len(data)} bytes, expected {expected} for {num_pieces} pieces")
    spare = (expected << 3) - num_pieces
    if spare and data[-1] & ((1 << spare) - 1):
        raise BitfieldError(f"bitfield: spare bits set in last byte 0x{data[-1]:02x} for {num_pieces} pieces")


# ---------------------------------------------------------------- builders

_KEEPALIVE_BYTES = _U32.pack(0)
_CHOKE_BYTES = _HEADER.pack(1, MessageId.CHOKE)
_UNCHOKE_BYTES = _HEADER.pack(1, MessageId.UNCHOKE)
_INTERESTED_BYTES = _HEADER.pack(1, MessageId.INTERESTED)
_NOT_INTERESTED_BYTES = _HEADER.pack(1, MessageId.NOT_INTERESTED)
_HAVE_ALL_BYTES = _HEADER.pack(1, MessageId.HAVE_ALL)
_HAVE_NONE_BYTES = _HEADER.pack(1, MessageId.HAVE_NONE)


def _bad_value(message: str, exc: struct.error, *values: int) -> ValueError:
    args = ", ".join(map(repr, values))
    return ValueError(f"cannot build {message}({args}): {exc}")


def build_keepalive() -> bytes:
    return _KEEPALIVE_BYTES


def build_choke() -> bytes:
    return _CHOKE_BYTES


def build_unchoke() -> bytes:
    return _UNCHOKE_BYTES


def build_interested() -> bytes:
    return _INTERESTED_BYTES


def build_not_interested() -> bytes:
    return _NOT_INTERESTED_BYTES


def build_have_all() -> bytes:
    return _HAVE_ALL_BYTES


def build_have_none() -> bytes:
    return _HAVE_NONE_BYTES


def _build_index(msg_id: MessageId, index: int) -> bytes:
    try:
        return _INDEX_MSG.pack(5, msg_id, index)
    except struct.error as exc:
        raise _bad_value(msg_id.name.lower(), exc, index) from None


def build_have(index: int) -> bytes:
    return _build_index(MessageId.HAVE, index)


def build_suggest(index: int) -> bytes:
    return _build_index(MessageId.SUGGEST, index)


def build_allowed_fast(index: int) -> bytes:
    return _build_index(MessageId.ALLOWED_FAST, index)


def _build_block(msg_id: MessageId, index: int, begin: int, length: int) -> bytes:
    try:
        return _BLOCK_MSG.pack(13, msg_id, index, begin, length)
    except struct.error as exc:
        raise _bad_value(msg_id.name.lower(), exc, index, begin, length) from None


def build_request(index: int, begin: int, length: int) -> bytes:
    return _build_block(MessageId.REQUEST, index, begin, length)


def build_cancel(index: int, begin: int, length: int) -> bytes:
    return _build_block(MessageId.CANCEL, index, begin, length)


def build_reject(index: int, begin: int, length: int) -> bytes:
    return _build_block(MessageId.REJECT, index, begin, length)


def build_bitfield(data: bytes) -> bytes:
    return _HEADER.pack(1 + len(data), MessageId.BITFIELD) + data


def build_piece_header(index: int, begin: int, length: int) -> bytes:
    """The 13 bytes before a block, so a seeder can send the block itself
    (e.g. with ``writelines`` or ``sendmsg``) without copying it into one buffer."""
    try:
        return _PIECE_HEADER.pack(9 + length, MessageId.PIECE, index, begin)
    except struct.error as exc:
        raise _bad_value("piece", exc, index, begin, length) from None


def build_piece(index: int, begin: int, data: bytes) -> bytes:
    """Header and block in one ``bytes`` (one copy of ``data``)."""
    return build_piece_header(index, begin, len(data)) + data


def build_port(port: int) -> bytes:
    try:
        return _PORT_MSG.pack(3, MessageId.PORT, port)
    except struct.error as exc:
        raise _bad_value("port", exc, port) from None


def build_extended(ext_id: int, payload: bytes) -> bytes:
    try:
        return _EXTENDED_HEADER.pack(2 + len(payload), MessageId.EXTENDED, ext_id) + payload
    except struct.error as exc:
        raise _bad_value("extended", exc, ext_id) from None


def build_message(msg_id: int, payload: bytes = b"") -> bytes:
    """Frame any id and payload; for ids this module has no type for."""
    try:
        return _HEADER.pack(1 + len(payload), msg_id) + payload
    except struct.error as exc:
        raise _bad_value("message", exc, msg_id) from None


_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    Handshake: Handshake.to_bytes,
    KeepAlive: lambda m: _KEEPALIVE_BYTES,
    Choke: lambda m: _CHOKE_BYTES,
    Unchoke: lambda m: _UNCHOKE_BYTES,
    Interested: lambda m: _INTERESTED_BYTES,
    NotInterested: lambda m: _NOT_INTERESTED_BYTES,
    HaveAll: lambda m: _HAVE_ALL_BYTES,
    HaveNone: lambda m: _HAVE_NONE_BYTES,
    Have: lambda m: build_have(m.index),
    Suggest: lambda m: build_suggest(m.index),
    AllowedFast: lambda m: build_allowed_fast(m.index),
    Request: lambda m: build_request(m.index, m.begin, m.length),
    Cancel: lambda m: build_cancel(m.index, m.begin, m.length),
    Reject: lambda m: build_reject(m.index, m.begin, m.length),
    Bitfield: lambda m: build_bitfield(m.data),
    Piece: lambda m: build_piece(m.index, m.begin, m.data),
    Port: lambda m: build_port(m.port),
    Extended: lambda m: build_extended(m.ext_id, m.payload),
    Unknown: lambda m: build_message(m.msg_id, m.payload),
}


def encode(msg: Event) -> bytes:
    """Wire bytes for any event type, the inverse of ``WireParser.feed``."""
    try:
        encoder = _ENCODERS[type(msg)]
    except KeyError:
        raise TypeError(f"cannot encode {type(msg).__name__}: not a wire message") from None
    return encoder(msg)


# ---------------------------------------------------- BEP 10 extension handshake


@dataclass(frozen=True, slots=True)
class ExtensionHandshake:
    """A decoded BEP 10 handshake; unknown keys stay in ``raw``.

    ``m`` maps extension names to the ids this peer wants to receive them
    under; an id of 0 means the peer disabled that extension.
    """

    m: dict[str, int]
    v: str | None = None
    p: int | None = None
    reqq: int | None = None
    yourip: bytes | None = None
    ipv4: bytes | None = None
    ipv6: bytes | None = None
    metadata_size: int | None = None
    raw: dict[bytes, Any] = field(default_factory=dict)


def build_extended_handshake(
    m: dict[str, int],
    *,
    v: str | None = None,
    p: int | None = None,
    reqq: int | None = None,
    yourip: bytes | None = None,
    metadata_size: int | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """The whole extended message (ext id 0) carrying our handshake dict.

    ``extra`` adds keys this function has no parameter for (``upload_only``,
    ``ipv4``…); it may not repeat a key given by a parameter.
    """
    for name, ext_id in m.items():
        if not isinstance(ext_id, int) or not 0 <= ext_id <= 255:
            raise ValueError(f"extension {name!r} id must be 0..255, got {ext_id!r}")
    if p is not None and not 0 <= p <= 0xFFFF:
        raise ValueError(f"listen port p must be 0..65535, got {p}")
    if reqq is not None and reqq < 0:
        raise ValueError(f"reqq must not be negative, got {reqq}")
    if metadata_size is not None and metadata_size < 0:
        raise ValueError(f"metadata_size must not be negative, got {metadata_size}")
    if yourip is not None and len(yourip) not in (4, 16):
        raise ValueError(f"yourip must be 4 or 16 bytes, got {len(yourip)}")
    known: dict[bytes, Any] = {b"m": {name.encode(): ext_id for name, ext_id in m.items()}}
    optional = {b"v": v.encode() if v is not None else None, b"p": p, b"reqq": reqq}
    optional |= {b"yourip": yourip, b"metadata_size": metadata_size}
    known |= {key: value for key, value in optional.items() if value is not None}
    d: dict[bytes, Any] = {}
    for key, value in (extra or {}).items():
        bkey = key.encode()
        if bkey in known:
            raise ValueError(f"extra key {key!r} repeats a parameter")
        d[bkey] = value
    d.update(known)
    return build_extended(EXTENDED_HANDSHAKE_ID, bencoding.encode(d))


def _ext_fail(reason: str) -> WireError:
    return WireError("extended handshake", reason)


def _kind(value: object) -> str:
    """Name a decoded value by its bencode type, as the peer sent it."""
    for cls, name in ((bytes, "a string"), (int, "an integer"), (list, "a list"), (dict, "a dict")):
        if isinstance(value, cls):
            return name
    return type(value).__name__


def _optional_int(d: dict[bytes, Any], key: bytes, low: int, high: int | None) -> int | None:
    value = d.get(key)
    if value is None:
        return None
    if type(value) is not int:
        raise _ext_fail(f"{key.decode()} is {_kind(value)}, expected an integer")
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise _ext_fail(f"{key.decode()} is {value}, expected {bound}")
    return value


def _optional_address(d: dict[bytes, Any], key: bytes, sizes: tuple[int, ...]) -> bytes | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise _ext_fail(f"{key.decode()} is {_kind(value)}, expected a string")
    if len(value) not in sizes:
        expected = " or ".join(map(str, sizes))
        raise _ext_fail(f"{key.decode()} is {len(value)} bytes, expected {expected}")
    return value


def parse_extended_handshake(payload: bytes, *, limits: Limits = DEFAULT_LIMITS) -> ExtensionHandshake:
    """Decode and type-check the payload of ``Extended(0, payload)``."""
    try:
        d = bencoding.decode(payload, limits=limits)
    except BencodeError as exc:
        raise _ext_fail(f"payload is not valid bencode ({exc})") from exc
    if not isinstance(d, dict):
        raise _ext_fail(f"payload is {_kind(d)}, expected a dict")

    raw_m = d.get(b"m", {})
    if not isinstance(raw_m, dict):
        raise _ext_fail(f"m is {_kind(raw_m)}, expected a dict")
    m: dict[str, int] = {}
    for raw_name, ext_id in raw_m.items():
        try:
            name = raw_name.decode()
        except UnicodeDecodeError:
            raise _ext_fail(f"extension name {raw_name!r} is not UTF-8") from None
        if type(ext_id) is not int or not 0 <= ext_id <= 255:
            raise _ext_fail(f"m[{name!r}] is {ext_id!r}, expected an id 0..255")
        m[name] = ext_id

    v = d.get(b"v")
    if v is not None:
        if not isinstance(v, bytes):
            raise _ext_fail(f"v is {_kind(v)}, expected a string")
        # Informational only: a client name in a legacy encoding is no reason to disconnect.
        v = v.decode("utf-8", "replace")

    return ExtensionHandshake(
        m=m,
        v=v,
        p=_optional_int(d, b"p", 0, 0xFFFF),
        reqq=_optional_int(d, b"reqq", 0, None),
        yourip=_optional_address(d, b"yourip", (4, 16)),
        ipv4=_optional_address(d, b"ipv4", (4,)),
        ipv6=_optional_address(d, b"ipv6", (16,)),
        metadata_size=_optional_int(d, b"metadata_size", 0, None),
        raw=d,
    )


# ---------------------------------------------------------------- parser


class WireParser:
    """Incremental decoder for one connection's received bytes.

    ``feed`` takes bytes in any fragmentation and returns every complete
    event. A length prefix is checked against the limit as soon as its four
    bytes arrive, and against the message id as soon as that byte does, so
    at most one partial message of at most ``limits.wire_max_message`` bytes
    is ever buffered. The first ``ProtocolError`` kills the parser: the
    connection must be dropped.
    """

    __slots__ = (
        "_max_message",
        "_max_request",
        "_max_extended",
        "_num_pieces",
        "_bitfield_length",
        "_awaiting_handshake",
        "_hold",
        "holding",
        "_buf",
        "_error",
    )

    def __init__(
        self,
        limits: Limits = DEFAULT_LIMITS,
        *,
        expect_handshake: bool = True,
        num_pieces: int | None = None,
        hold_after_handshake: bool = False,
    ) -> None:
        """``hold_after_handshake``: stop at the handshake and keep the bytes after it until ``resume``,
        so that the caller can set ``num_pieces`` (learned from the handshake's info-hash) before the
        messages that came in the same read are checked against it."""
        self._max_message = limits.wire_max_message
        self._max_request = limits.wire_max_request
        self._max_extended = limits.wire_max_extended
        self._num_pieces: int | None = None
        self._bitfield_length = -1
        self.num_pieces = num_pieces
        self._awaiting_handshake = expect_handshake
        self._hold = hold_after_handshake and expect_handshake
        self.holding = False  # the handshake was parsed and what follows waits for ``resume``
        # Holds only the unfinished tail of the last unit fed (see feed).
        self._buf = bytearray()
        self._error: str | None = None

    @property
    def num_pieces(self) -> int | None:
        """Piece count used to check indices and bitfields; None until known."""
        return self._num_pieces

    @num_pieces.setter
    def num_pieces(self, value: int | None) -> None:
        if value is None:
            self._num_pieces, self._bitfield_length = None, -1
            return
        if type(value) is not int or value < 1:
            raise ValueError(f"num_pieces must be a positive int, got {value!r}")
        self._num_pieces, self._bitfield_length = value, (value + 7) >> 3

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete event."""
        return len(self._buf)

    @property
    def failed(self) -> bool:
        """True once a ProtocolError was raised; every later feed raises too."""
        return self._error is not None

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Consume ``data``; return the events it completes, in order.
        ``Piece`` payloads may be views into ``data`` (see ``Piece``)."""
        if self._error is not None:
            raise ProtocolError(f"connection already failed: {self._error}")
        try:
            return self._feed(data)
        except ProtocolError as exc:
            self._error = str(exc)
            raise

    def resume(self) -> list[Event]:
        """The events of the bytes held back after the handshake, checked against ``num_pieces`` as it
        is now."""
        if not self.holding:
            return []
        self.holding = False
        held = bytes(self._buf)
        self._buf.clear()
        return self.feed(held)

    def _feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        events: list[Event] = []
        buf = self._buf
        view = memoryview(data)
        if view.format != "B":
            view = view.cast("B")
        with view as mv:
            total = len(mv)
            off = 0
            if self.holding:
                buf += mv
                return events
            # Complete the buffered unit by topping the buffer up with just
            # the bytes it lacks, then parse the rest of ``data`` in place:
            # message bytes are copied into the buffer only when they
            # straddle two feeds.
            while buf and off < total and not self.holding:
                take = min(self._missing(), total - off)
                buf += mv[off : off + take]
                off += take
                with memoryview(buf) as bmv:
                    used = self._parse(bmv, 0, len(buf), events, True)
                del buf[:used]
            if self.holding:
                buf += mv[off:]
            elif off < total:
                used = self._parse(mv, off, total, events, False)
                buf += mv[used:]
        return events

    def _missing(self) -> int:
        """Bytes that would complete the next step of the buffered unit."""
        have = len(self._buf)
        if self._awaiting_handshake:
            return HANDSHAKE_LENGTH - have
        if have < 4:
            return 4 - have
        if have == 4:
            return 1  # the id, so the header is checked before the body is buffered
        return 4 + _U32.unpack_from(self._buf)[0] - have

    def _parse(self, mv: memoryview, pos: int, end: int, events: list[Event], copy: bool) -> int:
        """Decode complete units in ``mv[pos:end]``; return the offset reached.
        ``copy``: block payloads must outlive ``mv`` (it is our own buffer)."""
        if self._awaiting_handshake:
            _check_protocol_prefix(mv, pos, end - pos)
            if end - pos < HANDSHAKE_LENGTH:
                return pos
            events.append(_handshake_at(mv, pos))
            pos += HANDSHAKE_LENGTH
            self._awaiting_handshake = False
            if self._hold:
                self.holding = True
                return pos

        append = events.append
        unpack_len = _U32.unpack_from
        unpack_piece = _U32X2.unpack_from
        max_message = self._max_message
        max_block = self._max_request + 9
        num_pieces = self._num_pieces
        fixed_length = _FIXED_LENGTH
        no_payload = _NO_PAYLOAD
        new = _new
        while end - pos >= 4:
            length = unpack_len(mv, pos)[0]
            if length == 0:
                append(_KEEPALIVE)
                pos += 4
                continue
            if length > max_message:
                raise WireError("message", f"length prefix {length} exceeds the limit of {max_message} bytes")
            if end - pos < 5:
                break
            msg_id = mv[pos + 4]
            stop = pos + 4 + length
            # Piece first: it is nearly all of the traffic a leecher sees.
            if msg_id == _PIECE:
                if length < 9 or length > max_block:
                    self._bad_piece_length(length)
                if stop > end:
                    break
                index, begin = unpack_piece(mv, pos + 5)
                if num_pieces is not None and index >= num_pieces:
                    raise WireError("piece", f"index {index} out of range for {num_pieces} pieces")
                append(new(Piece, (index, begin, mv[pos + 13 : stop].tobytes() if copy else mv[pos + 13 : stop])))
                pos = stop
                continue
            if length == 1 and msg_id in no_payload:  # choke, interest, have-all/none: one shared event each
                append(no_payload[msg_id])
                pos += 5
                continue
            expected = fixed_length[msg_id]
            if expected >= 0:
                if length != expected:
                    name = _message_name(msg_id)
                    raise WireError(name, f"payload is {length - 1} bytes, expected {expected - 1}")
            else:
                self._check_variable_length(msg_id, length)
            if stop > end:
                break
            append(self._decode(msg_id, mv, pos + 5, stop))
            pos = stop
        return pos

    def _bad_piece_length(self, length: int) -> NoReturn:
        if length < 9:
            raise WireError("piece", f"payload is {length - 1} bytes, expected at least 8")
        raise WireError("piece", f"block of {length - 9} bytes exceeds the limit of {self._max_request}")

    def _check_variable_length(self, msg_id: int, length: int) -> None:
        if msg_id == _BITFIELD:
            if self._num_pieces is not None and length - 1 != self._bitfield_length:
                raise BitfieldError(
                    f"bitfield: {length - 1} bytes, expected {self._bitfield_length} "
                    f"for {self._num_pieces} pieces"
                )
        elif msg_id == _EXTENDED:
            if length < 2:
                raise WireError("extended", "empty payload, no extension id")
            if length - 2 > self._max_extended:
                raise WireError(
                    "extended", f"payload of {length - 2} bytes exceeds the limit of {self._max_extended}"
                )

    def _decode(self, msg_id: int, mv: memoryview, start: int, stop: int) -> Message:
        """Decode a complete non-piece message whose size is already checked."""
        num_pieces = self._num_pieces
        block_type = _BLOCK_TYPES.get(msg_id)
        if block_type is not None:
            index, begin, length = _U32X3.unpack_from(mv, start)
            if length == 0 or length > self._max_request or (num_pieces is not None and index >= num_pieces):
                self._bad_block(msg_id, index, begin, length)
            return _new(block_type, (index, begin, length))
        index_type = _INDEX_TYPES.get(msg_id)
        if index_type is not None:
            index = _U32.unpack_from(mv, start)[0]
            if num_pieces is not None and index >= num_pieces:
                raise WireError(_message_name(msg_id), f"index {index} out of range for {num_pieces} pieces")
            return _new(index_type, (index,))
        no_payload = _NO_PAYLOAD.get(msg_id)
        if no_payload is not None:
            return no_payload
        if msg_id == _BITFIELD:
            data = mv[start:stop].tobytes()
            if num_pieces is not None:
                validate_bitfield(data, num_pieces)
            return Bitfield(data)
        if msg_id == _EXTENDED:
            return Extended(mv[start], mv[start + 1 : stop].tobytes())
        if msg_id == _PORT:
            return Port(_U16.unpack_from(mv, start)[0])
        return Unknown(msg_id, mv[start:stop].tobytes())

    def _bad_block(self, msg_id: int, index: int, begin: int, length: int) -> NoReturn:
        name = _message_name(msg_id)
        if length == 0:
            raise WireError(name, f"zero length (index {index}, begin {begin})")
        if length > self._max_request:
            raise WireError(
                name, f"length {length} exceeds the limit of {self._max_request} (index {index}, begin {begin})"
            )
        raise WireError(
            name, f"index {index} out of range for {self._num_pieces} pieces (begin {begin}, length {length})"
        )
