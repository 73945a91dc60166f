"""Types shared by the HTTP and UDP tracker codecs, the client and the tier logic.

Requests and responses are immutable values; peers are ``(host, port)`` tuples
whose host is a normalised IPv4 or IPv6 literal (or, from the dict model of
BEP 3, a DNS name). Nothing here touches a socket or a clock.

Errors: every tracker problem is a ``TrackerError`` carrying a short ``reason``
a user can act on and the ``url`` of the tracker. The codecs do not know the
URL; the client fills it in with ``TrackerError.at(url)`` before the error
leaves it, so ``str(exc)`` is one line: ``tracker <url>: <reason>``.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

from torrent.core.errors import TrackerError

__all__ = [
    "Event",
    "Peer",
    "AnnounceRequest",
    "AnnounceResponse",
    "ScrapeStats",
    "ScrapeResponse",
    "TrackerError",
    "TrackerFailure",
    "TrackerTimeout",
    "TrackerUnreachable",
    "TrackerResponseError",
    "TrackerHTTPError",
    "DEFAULT_INTERVAL",
    "MAX_TRACKER_NUMBER",
    "display_text",
    "parse_compact_peers",
    "parse_compact_peers6",
    "parse_dict_peers",
    "dedup_peers",
    "parse_external_ip",
]

Peer = tuple[str, int]

# A tracker that omits ``interval`` from a successful response still answered;
# we then re-announce after 30 minutes, the value most trackers send
# (opentracker: about 30 min, libtorrent's default for a missing interval).
DEFAULT_INTERVAL = 1800

# The largest number (seconds, peer counts) a tracker's answer is read as: BEP 15
# carries them in signed 32-bit fields, and a bencoded integer has no bound at all
# (``interval`` 10**400 once overflowed the float clock). Larger values are clamped.
MAX_TRACKER_NUMBER = 2**31 - 1

# ---- errors -----------------------------------------------------------------

class TrackerFailure(TrackerError):
    """The tracker answered and refused: BEP 3 ``failure reason``, BEP 15 error action."""

    def __init__(self, failure_reason: str, *, url: str | None = None) -> None:
        super().__init__(f"tracker refused the request: {failure_reason}", url=url)
        self.failure_reason = failure_reason


class TrackerTimeout(TrackerError):
    """No (complete) answer within the allowed time."""

    def __init__(self, seconds: float, *, attempts: int | None = None, url: str | None = None) -> None:
        tries = f" ({attempts} attempt{'s' if attempts != 1 else ''})" if attempts else ""
        super().__init__(f"no answer within {seconds:g} s{tries}", url=url)
        self.seconds = seconds
        self.attempts = attempts


class TrackerUnreachable(TrackerError):
    """DNS failure, connection refused or reset, TLS failure: nothing was exchanged."""


class TrackerResponseError(TrackerError):
    """The tracker answered with something that is not a valid response."""


class TrackerHTTPError(TrackerResponseError):
    """The HTTP tracker answered with an error status (>= 400) or a bad redirect."""

    def __init__(self, status: int, status_reason: str, *, url: str | None = None) -> None:
        text = f"HTTP {status} {status_reason}".rstrip()
        super().__init__(text, url=url)
        self.status = status
        self.status_reason = status_reason


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_MAX_TEXT = 300


def display_text(raw: bytes | str, *, limit: int = _MAX_TEXT) -> str:
    """Tracker-supplied text made safe for one line on a terminal."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- requests and responses -------------------------------------------------

class Event(Enum):
    """BEP 3 ``event``; the value is what HTTP sends (NONE sends nothing)."""

    NONE = ""
    STARTED = "started"
    COMPLETED = "completed"
    STOPPED = "stopped"


_U64 = 1 << 64


@dataclass(frozen=True, slots=True)
class AnnounceRequest:
    """What we tell a tracker. Values are checked: a bad one is our bug (ValueError)."""

    info_hash: bytes
    peer_id: bytes
    port: int
    uploaded: int
    downloaded: int
    left: int
    event: Event = Event.NONE
    numwant: int | None = None
    key: int = 0
    tracker_id: bytes | None = None
    compact: bool = True
    ip: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.info_hash, bytes) or len(self.info_hash) != 20:
            raise ValueError("info_hash must be 20 bytes")
        if not isinstance(self.peer_id, bytes) or len(self.peer_id) != 20:
            raise ValueError("peer_id must be 20 bytes")
        if not 0 <= self.port <= 0xFFFF:
            raise ValueError(f"port {self.port} is out of range 0-65535")
        for name in ("uploaded", "downloaded", "left"):
            if not 0 <= getattr(self, name) < _U64:
                raise ValueError(f"{name} must fit in an unsigned 64-bit integer")
        if not isinstance(self.event, Event):
            raise ValueError(f"event must be an Event, not {self.event!r}")
        if self.numwant is not None and not 0 <= self.numwant < 1 << 31:
            raise ValueError("numwant must be None or a non-negative 32-bit integer")
        if not 0 <= self.key < 1 << 32:
            raise ValueError("key must fit in an unsigned 32-bit integer")


@dataclass(frozen=True, slots=True)
class AnnounceResponse:
    """A successful announce, HTTP or UDP. Counts a tracker did not send are None."""

    interval: int
    peers: tuple[Peer, ...] = ()
    min_interval: int | None = None
    tracker_id: bytes | None = None
    complete: int | None = None
    incomplete: int | None = None
    warning: str | None = None
    external_ip: str | None = None


@dataclass(frozen=True, slots=True)
class ScrapeStats:
    """BEP 48 per-torrent counts: seeders, completed downloads, leechers."""

    complete: int
    downloaded: int
    incomplete: int


@dataclass(frozen=True, slots=True)
class ScrapeResponse:
    """info-hash → counts, for the hashes the tracker knows (read-only mapping)."""

    files: Mapping[bytes, ScrapeStats] = field(default_factory=lambda: MappingProxyType({}))
    min_request_interval: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.files, MappingProxyType):
            object.__setattr__(self, "files", MappingProxyType(dict(self.files)))


# ---- peers ------------------------------------------------------------------

# BEP 23: 6 bytes per peer (IPv4, port, network order); BEP 7: 18 for IPv6.
_V4 = struct.Struct(">4sH")
_V6 = struct.Struct(">16sH")


def _compact(data: bytes, entry: struct.Struct, family: type, what: str) -> list[Peer]:
    size = entry.size
    if len(data) % size:
        raise TrackerResponseError(f"{what} is {len(data)} bytes, not a multiple of {size}")
    peers = []
    for raw_ip, port in entry.iter_unpack(data):
        if port:  # port 0 cannot be dialled
            peers.append((str(family(raw_ip)), port))
    return peers


def parse_compact_peers(data: bytes) -> list[Peer]:
    """BEP 23 compact IPv4 peers; a length not a multiple of 6 is an error."""
    return _compact(data, _V4, ipaddress.IPv4Address, "compact peer list")


def parse_compact_peers6(data: bytes) -> list[Peer]:
    """BEP 7 ``peers6``: 18 bytes each; a length not a multiple of 18 is an error."""
    return _compact(data, _V6, ipaddress.IPv6Address, "compact IPv6 peer list")


_HOSTNAME = re.compile(r"(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                       r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?\Z")


def _peer_host(raw: Any) -> str | None:
    if not isinstance(raw, bytes):
        return None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    return text if _HOSTNAME.match(text) and not text.replace(".", "").isdigit() else None


def parse_dict_peers(entries: Any) -> list[Peer]:
    """BEP 3 dict model: ``ip`` (address or DNS name), ``port``, optional ``peer id``.

    A list of dicts; entries with a bad address, a port outside 1-65535 or the
    wrong type are dropped one by one (one bad peer spoils nothing else).
    """
    if not isinstance(entries, list):
        raise TrackerResponseError("'peers' is neither a compact string nor a list")
    peers = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        host = _peer_host(entry.get(b"ip"))
        port = entry.get(b"port")
        if host is None or type(port) is not int or not 0 < port <= 0xFFFF:
            continue
        peers.append((host, port))
    return peers


def dedup_peers(peers: Iterable[Peer]) -> tuple[Peer, ...]:
    """Each peer once, first occurrence kept in place."""
    return tuple(dict.fromkeys(peers))


def parse_external_ip(raw: Any) -> str | None:
    """BEP 24 ``external ip``: 4 or 16 raw bytes; anything else is ignored."""
    if isinstance(raw, bytes) and len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if isinstance(raw, bytes) and len(raw) == 16:
        return str(ipaddress.IPv6Address(raw))
    return None
