"""Local Service Discovery (BEP 14) announces, sans-IO: build one, parse one.

An announce is an HTTP-like request in one multicast datagram::

    BT-SEARCH * HTTP/1.1\\r\\n
    Host: 239.192.152.143:6771\\r\\n
    Port: <our listen port>\\r\\n
    Infohash: <40 hex digits>\\r\\n      (one or more, consecutive)
    cookie: <opaque token>\\r\\n          (optional: lets a sender spot its own announces)
    \\r\\n
    \\r\\n

Anyone on the LAN can send one, so ``parse`` takes at most ``MAX_MESSAGE`` bytes and refuses, with an
``LsdError`` naming the fault, any datagram that is not an announce or carries a bad port or info-hash:
one malformed Infohash header refuses the whole datagram. It is tolerant of what clients vary in: header
case, LF or CRLF line ends, spaces around values, upper-case hex, missing trailing blank lines, a
malformed cookie (taken as none), unknown headers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torrent.core.errors import ProtocolError

# BEP 14: the multicast groups and port
LSD_PORT = 6771
IPV4_GROUP = "239.192.152.143"  # organisation-local scope
IPV6_GROUP = "ff15::efc0:988f"  # site-local scope
# BEP 14: "the packet length should not exceed 1400 bytes to avoid MTU/fragmentation problems"
MAX_MESSAGE = 1400
MAX_COOKIE = 64  # characters; libtorrent sends 8 hex digits
MAX_HOST = 64  # "[ffff:...:ffff]:65535" is 47
REQUEST_LINE = "BT-SEARCH * HTTP/1.1"
_HEX = frozenset("0123456789abcdefABCDEF")


class LsdError(ProtocolError):
    """A datagram that is not a valid LSD announce; it is dropped."""


@dataclass(frozen=True, slots=True)
class Announce:
    port: int  # the sender's BitTorrent listen port
    info_hashes: tuple[bytes, ...]  # 20 bytes each, in the order sent, without repeats
    cookie: str | None = None
    host: str | None = None  # the Host header, as sent


def host_header(group: str = IPV4_GROUP, port: int = LSD_PORT) -> str:
    """``group:port``, with an IPv6 group in brackets (RFC 2732)."""
    return f"[{group}]:{port}" if ":" in group else f"{group}:{port}"


# ---- building --------------------------------------------------------------------------------


def build(port: int, info_hashes: Sequence[bytes], *, group: str = IPV4_GROUP, group_port: int = LSD_PORT,
          cookie: str | None = None) -> bytes:
    """One announce of ``info_hashes`` (20 bytes each) for listen port ``port``.

    ``ValueError`` (our bug, not a peer's) for no info-hash, a bad port, hash or cookie, or a datagram
    over ``MAX_MESSAGE`` bytes: ``capacity`` says how many info-hashes fit."""
    if not info_hashes:
        raise ValueError("an LSD announce needs at least one info-hash")
    if not 0 < port < 65536:
        raise ValueError(f"listen port {port} is out of range")
    if cookie is not None and not _valid_cookie(cookie):
        raise ValueError(f"LSD cookie {cookie!r} is not 1 to {MAX_COOKIE} printable characters without spaces")
    lines = [REQUEST_LINE, f"Host: {host_header(group, group_port)}", f"Port: {port}"]
    for info_hash in info_hashes:
        if len(info_hash) != 20:
            raise ValueError(f"info-hash of {len(info_hash)} bytes, not 20")
        lines.append(f"Infohash: {info_hash.hex()}")
    if cookie is not None:
        lines.append(f"cookie: {cookie}")
    data = ("\r\n".join(lines) + "\r\n\r\n\r\n").encode("ascii")
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"LSD announce of {len(data)} bytes is over the {MAX_MESSAGE}-byte limit")
    return data


def capacity(port: int, *, group: str = IPV4_GROUP, group_port: int = LSD_PORT, cookie: str | None = None,
             limit: int = MAX_MESSAGE) -> int:
    """How many info-hashes one announce with these fields can carry within ``limit`` bytes."""
    fixed = len(build(port, [bytes(20)], group=group, group_port=group_port, cookie=cookie)) - _PER_HASH
    return max(0, (limit - fixed) // _PER_HASH)


_PER_HASH = len("Infohash: \r\n") + 40


def pack(port: int, info_hashes: Iterable[bytes], *, group: str = IPV4_GROUP, group_port: int = LSD_PORT,
         cookie: str | None = None) -> list[bytes]:
    """Announces carrying all of ``info_hashes``, as few datagrams as fit."""
    hashes = list(info_hashes)
    per = capacity(port, group=group, group_port=group_port, cookie=cookie)
    return [build(port, hashes[i:i + per], group=group, group_port=group_port, cookie=cookie)
            for i in range(0, len(hashes), per)]


def _valid_cookie(cookie: str) -> bool:
    return 0 < len(cookie) <= MAX_COOKIE and cookie.isascii() and cookie.isprintable() and " " not in cookie


# ---- parsing ---------------------------------------------------------------------------------


def parse(data: bytes) -> Announce:
    """One datagram as an announce; ``LsdError`` says why it is not one."""
    if len(data) > MAX_MESSAGE:
        raise LsdError(f"LSD datagram of {len(data)} bytes is over the {MAX_MESSAGE}-byte limit")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise LsdError("LSD datagram is not ASCII") from None
    lines = text.replace("\r\n", "\n").split("\n")
    if lines[0].strip() != REQUEST_LINE:
        raise LsdError(f"not an LSD announce: request line {lines[0][:40]!r}")
    port: int | None = None
    hashes: dict[bytes, None] = {}
    cookie = host = None
    for line in lines[1:]:
        if not line.strip():
            break  # the blank line ends the headers
        name, colon, value = line.partition(":")
        if not colon:
            raise LsdError(f"LSD header line without a colon: {line[:40]!r}")
        name, value = name.strip().lower(), value.strip()
        if name == "port":
            if port is not None:
                raise LsdError("LSD announce with two Port headers")
            port = _port(value)
        elif name == "infohash":
            hashes[_info_hash(value)] = None
        elif name == "cookie":
            # optional and opaque: one too long or with control characters is no cookie
            cookie = value if 0 < len(value) <= MAX_COOKIE and value.isprintable() else None
        elif name == "host":
            host = value[:MAX_HOST]
    if port is None:
        raise LsdError("LSD announce without a Port header")
    if not hashes:
        raise LsdError("LSD announce without an Infohash header")
    return Announce(port, tuple(hashes), cookie, host)


def _port(value: str) -> int:
    if not value.isdigit() or len(value) > 5 or not 0 < int(value) < 65536:
        raise LsdError(f"LSD announce with port {value[:40]!r}")
    return int(value)


def _info_hash(value: str) -> bytes:
    if len(value) != 40 or not _HEX.issuperset(value):
        raise LsdError(f"LSD info-hash {value[:48]!r} is not 40 hex digits")
    return bytes.fromhex(value)
