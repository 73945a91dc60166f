"""Sans-IO UDP tracker codec (BEP 15), with the BEP 41 URL-data option.

Packets are built and parsed by plain functions; ``UdpTrackerTransaction``
is the small state machine for one announce or scrape: connect (unless a
fresh connection id is at hand), then the request, retransmitting after
``base_timeout * 2**n`` seconds (n = 0..8) and asking for a new connection id
once the old one is a minute old. Every time is passed in by the caller; the
machine never reads a clock and never touches a socket
(``torrent.tracker.client`` does both).

Remote problems: a datagram too short to carry a transaction id, or carrying
someone else's, is *ignored* (BEP 15: "check whether the transaction ID is
equal to the one you chose" — it may be a late answer to an earlier request,
or spoofed). A datagram with our transaction id but a bad shape is the
tracker's error (``TrackerResponseError``); the error action (3) raises
``TrackerFailure`` with the tracker's message.
"""

from __future__ import annotations

import ipaddress
import secrets
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final
from urllib.parse import urlsplit

from torrent.codec.tracker.announce import (
    AnnounceRequest,
    AnnounceResponse,
    Event,
    ScrapeResponse,
    ScrapeStats,
    TrackerError,
    TrackerFailure,
    TrackerResponseError,
    TrackerTimeout,
    dedup_peers,
    display_text,
    parse_compact_peers,
    parse_compact_peers6,
)

__all__ = [
    "PROTOCOL_ID",
    "Action",
    "EVENT_CODES",
    "BASE_TIMEOUT",
    "MAX_RETRANSMITS",
    "CONNECTION_ID_LIFETIME",
    "MAX_SCRAPE_HASHES",
    "UdpTrackerAddress",
    "parse_udp_url",
    "retransmit_timeout",
    "retransmit_schedule",
    "ConnectResponse",
    "build_connect_request",
    "build_announce_request",
    "build_scrape_request",
    "build_url_data_options",
    "parse_connect_response",
    "parse_announce_response",
    "parse_scrape_response",
    "ConnectionId",
    "UdpTrackerTransaction",
]

# BEP 15 "connect": the magic constant that identifies the protocol.
PROTOCOL_ID: Final = 0x41727101980


# BEP 15 "actions".
class Action(IntEnum):
    CONNECT = 0
    ANNOUNCE = 1
    SCRAPE = 2
    ERROR = 3


# BEP 15 "announce": event codes differ from their order in BEP 3.
EVENT_CODES: Final = {Event.NONE: 0, Event.COMPLETED: 1, Event.STARTED: 2, Event.STOPPED: 3}

# BEP 15 "time outs": "If a response is not received after 15 * 2 ^ n seconds,
# the client should retransmit the request, where n starts at 0 and is
# increased up to 8 (3840 seconds) after every retransmission."
BASE_TIMEOUT: Final = 15.0
MAX_RETRANSMITS: Final = 8
# BEP 15: "A client can use a connection ID until one minute after it has received it."
CONNECTION_ID_LIFETIME: Final = 60.0
# BEP 15 "scrape": "Up to about 74 torrents can be scraped at once."
MAX_SCRAPE_HASHES: Final = 74

# Offset | size | name, in network order (BEP 15 tables).
_CONNECT_REQ = struct.Struct(">QII")          # protocol_id, action 0, transaction_id   (16)
_CONNECT_RESP = struct.Struct(">IIQ")         # action 0, transaction_id, connection_id (16)
_ANNOUNCE_REQ = struct.Struct(">QII20s20sQQQIIIiH")  # ... see build_announce_request    (98)
_ANNOUNCE_RESP = struct.Struct(">IIiii")      # action 1, tid, interval, leechers, seeders (20)
_SCRAPE_REQ = struct.Struct(">QII")          # connection_id, action 2, tid, then hashes
_HEADER = struct.Struct(">II")                # action, transaction_id                  (8)
_SCRAPE_ENTRY = struct.Struct(">iii")         # seeders, completed, leechers            (12)

# BEP 41 option types.
_OPT_END, _OPT_NOP, _OPT_URL_DATA = 0, 1, 2


def retransmit_timeout(n: int, base: float = BASE_TIMEOUT) -> float:
    """Seconds to wait after the (n+1)-th transmission: ``base * 2**n``, n in 0..8."""
    if not 0 <= n <= MAX_RETRANSMITS:
        raise ValueError(f"retransmission number {n} is outside 0..{MAX_RETRANSMITS}")
    return base * 2**n


def retransmit_schedule(base: float = BASE_TIMEOUT) -> tuple[float, ...]:
    """Every wait in order: 15, 30, 60 … 3840 s for the BEP's base of 15 s."""
    return tuple(retransmit_timeout(n, base) for n in range(MAX_RETRANSMITS + 1))


# ---- URLs -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class UdpTrackerAddress:
    host: str
    port: int
    url_data: bytes  # BEP 41: path and query, sent as the URLData option


def parse_udp_url(url: str) -> UdpTrackerAddress:
    """``udp://host:port[/path][?query]``; the port is required (BEP 15 has no default)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TrackerError(f"bad UDP tracker URL ({exc})", url=url) from None
    if parts.scheme.lower() != "udp":
        raise TrackerError("not a udp:// URL", url=url)
    if not parts.hostname:
        raise TrackerError("UDP tracker URL has no host", url=url)
    if not port:
        raise TrackerError("UDP tracker URL has no port", url=url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return UdpTrackerAddress(parts.hostname, port, path.encode("utf-8", "surrogateescape"))


# ---- building -----------------------------------------------------------------

def build_connect_request(transaction_id: int) -> bytes:
    return _CONNECT_REQ.pack(PROTOCOL_ID, Action.CONNECT, transaction_id)


def build_url_data_options(url_data: bytes) -> bytes:
    """BEP 41: URLData options of up to 255 bytes each; nothing for an empty path."""
    out = bytearray()
    for i in range(0, len(url_data), 255):
        chunk = url_data[i:i + 255]
        out += bytes((_OPT_URL_DATA, len(chunk))) + chunk
    return bytes(out)


def build_announce_request(connection_id: int, transaction_id: int, req: AnnounceRequest, *,
                           url_data: bytes = b"") -> bytes:
    """BEP 15 announce request (98 bytes), plus BEP 41 options when ``url_data`` is given.

    ``ip`` is sent only when ``req.ip`` is an IPv4 literal (0 = "the sender's
    address"); ``num_want`` is -1 ("default") when ``req.numwant`` is None.
    """
    ip = 0
    if req.ip is not None:
        try:
            ip = int(ipaddress.IPv4Address(req.ip))
        except ValueError:
            ip = 0
    packet = _ANNOUNCE_REQ.pack(
        connection_id, Action.ANNOUNCE, transaction_id,
        req.info_hash, req.peer_id,
        req.downloaded, req.left, req.uploaded,
        EVENT_CODES[req.event], ip, req.key,
        -1 if req.numwant is None else req.numwant,
        req.port,
    )
    return packet + build_url_data_options(url_data)


def build_scrape_request(connection_id: int, transaction_id: int, info_hashes: Sequence[bytes]) -> bytes:
    if not 1 <= len(info_hashes) <= MAX_SCRAPE_HASHES:
        raise ValueError(f"a UDP scrape asks for 1 to {MAX_SCRAPE_HASHES} info-hashes, not {len(info_hashes)}")
    for h in info_hashes:
        if not isinstance(h, bytes) or len(h) != 20:
            raise ValueError("info-hashes must be 20 bytes each")
    return _SCRAPE_REQ.pack(connection_id, Action.SCRAPE, transaction_id) + b"".join(info_hashes)


# ---- parsing ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ConnectResponse:
    connection_id: int


def _check(data: bytes, transaction_id: int, action: Action, min_size: int) -> bool:
    """True if ``data`` answers our request; False if it is to be ignored; raise if it is broken."""
    if len(data) < _HEADER.size:
        return False
    got_action, got_tid = _HEADER.unpack_from(data)
    if got_tid != transaction_id:
        return False
    if got_action == Action.ERROR:
        raise TrackerFailure(display_text(data[8:]) or "(no message)")
    if got_action != action:
        name = Action(got_action).name.lower() if got_action in Action._value2member_map_ else str(got_action)
        raise TrackerResponseError(f"UDP tracker answered a {action.name.lower()} request with action {name}")
    if len(data) < min_size:
        raise TrackerResponseError(
            f"UDP {action.name.lower()} response is {len(data)} bytes, shorter than {min_size}")
    return True


def parse_connect_response(data: bytes, transaction_id: int) -> ConnectResponse | None:
    """None for a datagram that is not ours (ignore it)."""
    if not _check(data, transaction_id, Action.CONNECT, _CONNECT_RESP.size):
        return None
    return ConnectResponse(_CONNECT_RESP.unpack_from(data)[2])


def parse_announce_response(data: bytes, transaction_id: int, *, ipv6: bool = False) -> AnnounceResponse | None:
    """BEP 15 announce response; peers are 6-byte IPv4 entries, or 18-byte IPv6
    entries when the request went to the tracker over IPv6 (``ipv6=True``)."""
    if not _check(data, transaction_id, Action.ANNOUNCE, _ANNOUNCE_RESP.size):
        return None
    _, _, interval, leechers, seeders = _ANNOUNCE_RESP.unpack_from(data)
    if interval < 0:
        raise TrackerResponseError(f"'interval' is {interval}, not a non-negative integer")
    raw = data[_ANNOUNCE_RESP.size:]
    peers = parse_compact_peers6(raw) if ipv6 else parse_compact_peers(raw)
    return AnnounceResponse(
        interval=interval,
        peers=dedup_peers(peers),
        complete=seeders if seeders >= 0 else None,
        incomplete=leechers if leechers >= 0 else None,
    )


def parse_scrape_response(data: bytes, transaction_id: int, info_hashes: Sequence[bytes]) -> ScrapeResponse | None:
    """BEP 15 scrape response: one 12-byte entry per requested hash, in request order."""
    need = _HEADER.size + _SCRAPE_ENTRY.size * len(info_hashes)
    if not _check(data, transaction_id, Action.SCRAPE, need):
        return None
    files = {}
    for i, h in enumerate(info_hashes):
        seeders, completed, leechers = _SCRAPE_ENTRY.unpack_from(data, _HEADER.size + i * _SCRAPE_ENTRY.size)
        files[h] = ScrapeStats(complete=max(seeders, 0), downloaded=max(completed, 0), incomplete=max(leechers, 0))
    return ScrapeResponse(files=files)


# ---- the transaction state machine ------------------------------------------------

@dataclass(frozen=True, slots=True)
class ConnectionId:
    """A connection id and when we received it; reusable for ``CONNECTION_ID_LIFETIME``."""

    value: int
    received_at: float

    def valid_at(self, now: float) -> bool:
        return now - self.received_at < CONNECTION_ID_LIFETIME


class UdpTrackerTransaction:
    """One announce or scrape against one UDP tracker address.

    Drive it with::

        datagram = tx.start(now)             # send it
        tx.receive(datagram, now)            # for each datagram from the tracker:
                                             #   bytes → send them; None → keep waiting
        tx.on_timeout(now)                   # when now >= tx.deadline: bytes to resend
        tx.done, tx.result, tx.connection    # result; connection id to reuse

    ``TrackerFailure`` / ``TrackerResponseError`` come out of ``receive``,
    ``TrackerTimeout`` out of ``on_timeout`` after the ninth wait (n = 8).
    Each packet keeps its transaction id over retransmissions, so a late answer
    to an earlier copy is still accepted.
    """

    def __init__(self, *, announce: AnnounceRequest | None = None, scrape: Sequence[bytes] | None = None,
                 ipv6: bool = False, url_data: bytes = b"", connection: ConnectionId | None = None,
                 base_timeout: float = BASE_TIMEOUT,
                 transaction_ids: Callable[[], int] = lambda: secrets.randbits(32)) -> None:
        if (announce is None) == (scrape is None):
            raise ValueError("give exactly one of announce= and scrape=")
        if scrape is not None:
            scrape = tuple(scrape)
            build_scrape_request(0, 0, scrape)  # validate now, not after connecting
        if base_timeout <= 0:
            raise ValueError("base_timeout must be positive")
        self._announce = announce
        self._scrape = scrape
        self._ipv6 = ipv6
        self._url_data = url_data
        self._base = base_timeout
        self._new_tid = transaction_ids
        self.connection = connection
        self._n = 0
        self._tid = 0
        self._connecting = False
        self._packet = b""
        self._started_at = 0.0
        self.attempts = 0  # datagrams sent, retransmissions included
        self.deadline = float("inf")
        self.done = False
        self.result: AnnounceResponse | ScrapeResponse | None = None

    @property
    def transaction_id(self) -> int:
        return self._tid

    @property
    def connecting(self) -> bool:
        return self._connecting

    def start(self, now: float) -> bytes:
        if self.attempts:
            raise RuntimeError("transaction already started")
        self._started_at = now
        return self._next_request(now)

    def _next_request(self, now: float) -> bytes:
        self._tid = self._new_tid() & 0xFFFFFFFF
        if self.connection is not None and self.connection.valid_at(now):
            self._connecting = False
            cid = self.connection.value
            if self._announce is not None:
                self._packet = build_announce_request(cid, self._tid, self._announce, url_data=self._url_data)
            else:
                assert self._scrape is not None
                self._packet = build_scrape_request(cid, self._tid, self._scrape)
        else:
            self.connection = None
            self._connecting = True
            self._packet = build_connect_request(self._tid)
        return self._send(now)

    def _send(self, now: float) -> bytes:
        self.attempts += 1
        self.deadline = now + retransmit_timeout(self._n, self._base)
        return self._packet

    def receive(self, data: bytes, now: float) -> bytes | None:
        """Handle a datagram from the tracker: bytes to send next, or None."""
        if self.done or not self.attempts:
            return None
        if self._connecting:
            resp = parse_connect_response(data, self._tid)
            if resp is None:
                return None
            self.connection = ConnectionId(resp.connection_id, now)
            self._n = 0  # a fresh request: its own retransmission count
            return self._next_request(now)
        if self._announce is not None:
            result: AnnounceResponse | ScrapeResponse | None = parse_announce_response(data, self._tid, ipv6=self._ipv6)
        else:
            assert self._scrape is not None
            result = parse_scrape_response(data, self._tid, self._scrape)
        if result is None:
            return None
        self.result, self.done, self.deadline = result, True, float("inf")
        return None

    def on_timeout(self, now: float) -> bytes:
        """No answer by ``deadline``: the datagram to send again (a new connect if the id expired)."""
        if self.done:
            raise RuntimeError("transaction is finished")
        if self._n >= MAX_RETRANSMITS:
            raise TrackerTimeout(now - self._started_at, attempts=self.attempts)
        self._n += 1
        if not self._connecting and self.connection is not None and not self.connection.valid_at(now):
            return self._next_request(now)  # BEP 15: re-request an expired connection id
        return self._send(now)
