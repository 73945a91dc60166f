"""Peer exchange, ``ut_pex`` (BEP 11), sans-IO: the message both ways, and what to tell one peer next.

A PEX message is a bencoded dictionary of compact address strings: ``added``/``added.f`` (IPv4, with one
flags byte per peer), ``added6``/``added6.f`` (IPv6), ``dropped`` and ``dropped6``. What a peer sends is
untrusted: the payload, each list and each compact string are bounded before anything is decoded, so a
hostile peer cannot make us hold more than ``MAX_PEERS`` addresses per message.

``PexTracker`` keeps, for one connection, the set of peers that peer has heard about from us, and turns
our current peers into the next message's difference, at most ``MAX_ADDED`` and ``MAX_DROPPED`` at a
time and at most one message every ``INTERVAL`` seconds. It never reads a clock: callers pass ``now``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from torrent.codec import bencoding
from torrent.core.errors import BencodeError, ProtocolError
from torrent.core.settings import Limits

# BEP 11 flags, one byte per added peer
PREFERS_ENCRYPTION = 0x01
SEED = 0x02  # upload only: it has every piece, or wants no more
UTP = 0x04  # supports uTP (BEP 29)
HOLEPUNCH = 0x08  # said ut_holepunch (BEP 55) in its extension handshake
REACHABLE = 0x10  # we connected out to it, so it accepts connections

# BEP 11 and the uTorrent/Azureus convention: at most 50 added and 50 dropped per message, at most one
# message a minute. We send within those; we accept up to MAX_PEERS of each, since some clients send
# their first message with everything they know.
MAX_ADDED = 50
MAX_DROPPED = 50
INTERVAL = 60.0  # seconds between two messages to one peer
RECEIVE_GRACE = 10.0  # seconds of slack for a peer whose timer runs a little early
MAX_PEERS = 200  # added (IPv4 and IPv6 together), and dropped, in one received message
MAX_PAYLOAD = 16 * 1024  # bytes: 200 IPv6 peers each way with flags is under 8 KiB
COMPACT4 = 6  # IPv4 address and port
COMPACT6 = 18  # IPv6 address and port
_LIMITS = Limits(bencode_max_depth=4, bencode_max_size=MAX_PAYLOAD, bencode_max_string=MAX_PAYLOAD)

Address = tuple[str, int]


class PexError(ProtocolError):
    """A malformed or oversized ut_pex message."""


class PexPeer(NamedTuple):
    host: str
    port: int
    flags: int = 0


@dataclass(frozen=True, slots=True)
class PexMessage:
    added: tuple[PexPeer, ...] = ()  # IPv4 peers, then IPv6
    dropped: tuple[Address, ...] = ()  # IPv4, then IPv6


# ---- parsing ---------------------------------------------------------------------------------


def parse(payload: bytes) -> PexMessage:
    """One ut_pex payload (after the extended message id); ``PexError`` says why it is refused.

    A flags string of the wrong length is ignored (those peers get no flags); peers with port 0 are
    skipped. Unknown keys are allowed."""
    if len(payload) > MAX_PAYLOAD:
        raise PexError(f"ut_pex message of {len(payload)} bytes is over the {MAX_PAYLOAD}-byte limit")
    try:
        msg = bencoding.decode(payload, limits=_LIMITS)
    except BencodeError as exc:
        raise PexError(f"ut_pex message is not bencode: {exc}") from None
    if not isinstance(msg, dict):
        raise PexError("ut_pex message is not a dictionary")
    added4, added6 = _compact(msg, b"added", COMPACT4), _compact(msg, b"added6", COMPACT6)
    dropped4, dropped6 = _compact(msg, b"dropped", COMPACT4), _compact(msg, b"dropped6", COMPACT6)
    if len(added4) + len(added6) > MAX_PEERS:
        raise PexError(f"ut_pex message adds {len(added4) + len(added6)} peers (at most {MAX_PEERS})")
    if len(dropped4) + len(dropped6) > MAX_PEERS:
        raise PexError(f"ut_pex message drops {len(dropped4) + len(dropped6)} peers (at most {MAX_PEERS})")
    added = _with_flags(added4, msg.get(b"added.f")) + _with_flags(added6, msg.get(b"added6.f"))
    dropped = tuple(a for a in dropped4 + dropped6 if a[1])
    return PexMessage(added, dropped)


def _compact(msg: dict[bytes, Any], key: bytes, size: int) -> list[Address]:
    raw = msg.get(key, b"")
    if not isinstance(raw, bytes):
        raise PexError(f"ut_pex {key.decode()} is not a string")
    if len(raw) % size:
        raise PexError(f"ut_pex {key.decode()} of {len(raw)} bytes is not a multiple of {size}")
    if len(raw) > MAX_PEERS * size:
        raise PexError(f"ut_pex {key.decode()} lists {len(raw) // size} peers (at most {MAX_PEERS})")
    return [decode_address(raw[i:i + size]) for i in range(0, len(raw), size)]


def _with_flags(addresses: list[Address], flags: Any) -> tuple[PexPeer, ...]:
    if not isinstance(flags, bytes) or len(flags) != len(addresses):
        flags = bytes(len(addresses))
    return tuple(PexPeer(host, port, f) for (host, port), f in zip(addresses, flags) if port)


def decode_address(data: bytes) -> Address:
    """6 bytes (IPv4) or 18 (IPv6), then the port, big-endian."""
    return str(ipaddress.ip_address(data[:-2])), int.from_bytes(data[-2:], "big")


def encode_address(host: str, port: int) -> bytes:
    """The compact form; an IPv4-mapped IPv6 address is written as the IPv4 address it maps."""
    ip = ipaddress.ip_address(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.packed + port.to_bytes(2, "big")


# ---- building --------------------------------------------------------------------------------


def build(added: Iterable[tuple[str, int, int]] = (), dropped: Iterable[Address] = ()) -> bytes:
    """The payload adding ``added`` (host, port, flags) and dropping ``dropped`` (host, port).

    IPv4 and IPv6 go to their own keys; ``added``, ``added.f`` and ``dropped`` are always present, since
    some clients read them without checking. ``ValueError`` for more than ``MAX_ADDED`` or
    ``MAX_DROPPED`` peers, or a host that is not an IP address: those are our bugs, not the peer's."""
    a4, f4, a6, f6 = bytearray(), bytearray(), bytearray(), bytearray()
    count = 0
    for host, port, flags in added:
        packed = encode_address(host, port)
        (a4 if len(packed) == COMPACT4 else a6).extend(packed)
        (f4 if len(packed) == COMPACT4 else f6).append(flags)
        count += 1
    if count > MAX_ADDED:
        raise ValueError(f"{count} added peers in one ut_pex message (at most {MAX_ADDED})")
    d4, d6 = bytearray(), bytearray()
    count = 0
    for host, port in dropped:
        packed = encode_address(host, port)
        (d4 if len(packed) == COMPACT4 else d6).extend(packed)
        count += 1
    if count > MAX_DROPPED:
        raise ValueError(f"{count} dropped peers in one ut_pex message (at most {MAX_DROPPED})")
    msg: dict[bytes, bytes] = {b"added": bytes(a4), b"added.f": bytes(f4), b"dropped": bytes(d4)}
    if a6:
        msg[b"added6"], msg[b"added6.f"] = bytes(a6), bytes(f6)
    if d6:
        msg[b"dropped6"] = bytes(d6)
    return bencoding.encode(msg)


# ---- what to tell one peer -------------------------------------------------------------------


def _normal(host: str) -> str:
    """One spelling per address, so ``::ffff:10.0.0.1`` and ``10.0.0.1`` are one peer."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class PexTracker:
    """What one connected peer has heard from us, and when.

    ``recipient`` is that peer's address: its host, and its listen port once its extension handshake
    gave one (``p``). It is never sent to itself; while its port is unknown, no address on its host is.
    """

    def __init__(self, recipient: tuple[str, int | None], *, interval: float = INTERVAL,
                 max_added: int = MAX_ADDED, max_dropped: int = MAX_DROPPED) -> None:
        self.recipient = recipient
        self.interval = interval
        self.max_added = min(max_added, MAX_ADDED)
        self.max_dropped = min(max_dropped, MAX_DROPPED)
        self.sent: dict[Address, int] = {}  # what the peer believes we are connected to → flags
        self.last_sent: float | None = None
        self.last_received: float | None = None

    def _is_recipient(self, host: str, port: int) -> bool:
        r_host, r_port = self.recipient
        return host == _normal(r_host) and (r_port is None or port == r_port)

    def diff(self, current: Iterable[tuple[str, int, int]]) -> tuple[tuple[PexPeer, ...], tuple[Address, ...]]:
        """The next message's (added, dropped) for ``current`` (our peers' listen addresses and flags),
        without recording it. New peers come first in the order given, then peers whose flags
        changed; at most ``max_added`` and ``max_dropped``: the rest wait for a later message."""
        now: dict[Address, int] = {}
        for host, port, flags in current:
            host = _normal(host)
            if port and not self._is_recipient(host, port):
                now.setdefault((host, port), flags)
        new = [PexPeer(h, p, f) for (h, p), f in now.items() if (h, p) not in self.sent]
        changed = [PexPeer(h, p, f) for (h, p), f in now.items() if self.sent.get((h, p), f) != f]
        gone = [a for a in self.sent if a not in now]
        return tuple((new + changed)[:self.max_added]), tuple(gone[:self.max_dropped])

    def commit(self, added: Iterable[tuple[str, int, int]], dropped: Iterable[Address], now: float) -> None:
        """Record that a message with ``added`` and ``dropped`` went out at ``now``."""
        for host, port, flags in added:
            self.sent[(_normal(host), port)] = flags
        for host, port in dropped:
            self.sent.pop((_normal(host), port), None)
        self.last_sent = now

    def due(self, now: float) -> bool:
        """Whether a message may go out at ``now``: the first at once, then one per ``interval``."""
        return self.last_sent is None or now - self.last_sent >= self.interval

    def poll(self, current: Iterable[tuple[str, int, int]], now: float) -> bytes | None:
        """The payload to send now, recorded as sent; None when it is too soon or nothing changed."""
        if not self.due(now):
            return None
        added, dropped = self.diff(current)
        if not added and not dropped:
            return None
        payload = build(added, dropped)
        self.commit(added, dropped, now)
        return payload

    def received(self, now: float) -> bool:
        """Note a message from the peer at ``now``; False when it came sooner than BEP 11 allows (less
        ``RECEIVE_GRACE``), and the caller should ignore it."""
        early = self.last_received is not None and now - self.last_received < self.interval - RECEIVE_GRACE
        if not early:
            self.last_received = now
        return not early
