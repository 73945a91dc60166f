"""Sans-IO uTP (BEP 29): the packet header and one connection's state machine, with LEDBAT.

Every packet starts with a 20-byte header (big-endian)::

    type:4 version:4 | extension:8 | connection_id:16
    timestamp_microseconds:32 | timestamp_difference_microseconds:32 | wnd_size:32
    seq_nr:16 | ack_nr:16

followed by an extension chain (``next_extension:8 len:8 payload``; 1 is the selective ACK) and the
payload. The side that dials picks ``recv_id`` at random, sends its SYN with ``connection_id = recv_id``
and every later packet with ``send_id = recv_id + 1``; the side that accepts does the reverse.

``UtpConnection`` takes datagrams (``receive``) and a clock (``now`` in seconds, passed in) and gives
datagrams (``datagrams_to_send``), in-order bytes (``read_into``) and event flags. Sequence numbers are
kept as unbounded ints inside and masked to 16 bits only on the wire, so wrap-around is one ``& 0xFFFF``
at the edges. Bad input (garbage, acks of unsent packets, huge windows, a SACK past what we sent) drops
the packet; memory is bounded by the send buffer and the receive window we advertise.

Congestion control is LEDBAT (RFC 6817 as BEP 29 applies it): the peer echoes the one-way delay of our
packets in ``timestamp_difference_microseconds``; the base delay is the minimum over two one-minute
buckets. Below the 100 ms queueing delay target the window grows by at most ``MAX_CWND_GAIN`` bytes per
round trip; above it, it shrinks in proportion to itself (LEDBAT++'s multiplicative decrease, at most half
per round trip), where BEP 29 and libtorrent shrink it by the same 3000 bytes: at 16 Mbit/s that handed a
200 KB window back to a TCP flow in over 10 s, and TCP got 54 % of the link where it gets 99 % now.
Loss halves the window; a timeout shrinks it to one packet. Slow start (doubling per round
trip, as libtorrent does) runs until the first loss or a delay past half the target.

Packet size follows libtorrent's search: ordinary packets use the confirmed ``mtu_floor``; one probe at a
time tries a bigger size (the first at ``PACKET_SIZE_START``, near 1 400 bytes); an acked probe raises the
floor, a lost one lowers the ceiling. libtorrent caps the ceiling at an Ethernet MTU even on loopback, and
so do we. SACK bitmasks we send are a multiple of 4 bytes (BEP 29); libtorrent sends any length, so any
length is accepted.

Departures from libtorrent, each for a loss case met in testing: the dialler opens only on the ST_STATE
that answers its SYN (a DATA packet that overtook it cannot tell where the peer's stream starts; the
responder sends that ST_STATE before any data); packets shown lost by SACK or duplicate acks are resent
at once, past the window (what still counts in flight may have arrived beyond the SACK's reach); and at
most ``MAX_BURST`` new packets leave per call, so a slow-start window does not overflow the receiver's
socket buffer in one burst.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections import deque
from typing import NamedTuple

from torrent.core.errors import UtpError

__all__ = [
    "ST_DATA", "ST_FIN", "ST_STATE", "ST_RESET", "ST_SYN",
    "CONNECTED", "DATA", "EOF", "CLOSED", "WRITABLE",
    "Header", "UtpConnection", "build_packet", "parse_header", "looks_like_utp",
]

# ---- BEP 29: packet types and header --------------------------------------------------------------
ST_DATA, ST_FIN, ST_STATE, ST_RESET, ST_SYN = 0, 1, 2, 3, 4
VERSION = 1
HEADER = struct.Struct(">BBHIIIHH")
HEADER_SIZE = 20
EXT_SACK = 1
_MASK16 = 0xFFFF
_MASK32 = 0xFFFFFFFF

# ---- events returned by receive / on_timer (bit flags) ---------------------------------------------
CONNECTED, DATA, EOF, CLOSED, WRITABLE = 1, 2, 4, 8, 16

# ---- timing and congestion constants (BEP 29, RFC 6817, libtorrent's defaults) ----------------------
TARGET_DELAY_US = 100_000  # LEDBAT target queueing delay
MAX_CWND_GAIN = 3000  # bytes per round trip at most (BEP 29 MAX_CWND_INCREASE_BYTES_PER_RTT)
MIN_TIMEOUT = 0.5  # seconds; BEP 29: never retransmit sooner
INITIAL_TIMEOUT = 1.0  # before the first RTT sample
MAX_TIMEOUT = 60.0
SYN_RESENDS = 2  # a SYN is sent 3 times in all before connect fails
DATA_RESENDS = 6  # consecutive timeouts before the connection is given up
FIN_RESENDS = 2
KEEPALIVE = 29.0  # seconds of silence from us before an empty ST_STATE
FIN_LINGER = 10.0  # seconds we wait for the peer's FIN once ours is acked
IDLE_TIMEOUT = 120.0  # seconds of silence from the peer before we give up
DUP_ACK_LIMIT = 3
BASE_DELAY_BUCKET = 60.0  # seconds; base delay = min over this bucket and the one before
# New packets per datagrams_to_send call: a window let out at once overflows the receiver's socket
# buffer (~90 packets at Linux's default 208 KiB) in slow start; the rest goes on the next call.
MAX_BURST = 64
MAX_SACK_BYTES = 64  # 512 packets past the cumulative ack: a loopback window holds ~350
# Payload sizes: a 576-byte path (the IPv4 minimum) and a 1 500-byte Ethernet MTU, less IP/UDP/uTP
# headers (and room for a SACK on the ceiling).
PACKET_SIZE_FLOOR = 576 - 20 - 8 - HEADER_SIZE
PACKET_SIZE_CEILING_V4 = 1500 - 20 - 8 - HEADER_SIZE
PACKET_SIZE_CEILING_V6 = 1500 - 40 - 8 - HEADER_SIZE
PACKET_SIZE_START = 1400

# Connection states.
SYN_SENT, OPEN, DONE = 1, 2, 3

_unpack_from = HEADER.unpack_from
_pack = HEADER.pack


class Header(NamedTuple):
    """A parsed header; ``sack`` is the selective-ACK bitmask (or None), ``offset`` where the payload starts."""

    type: int
    connection_id: int
    timestamp: int
    timestamp_difference: int
    wnd_size: int
    seq_nr: int
    ack_nr: int
    sack: bytes | None
    offset: int


def looks_like_utp(data: bytes) -> bool:
    """The demultiplexer's test: version 1, a known type, at least a header."""
    return len(data) >= HEADER_SIZE and (data[0] & 0x0F) == VERSION and (data[0] >> 4) <= ST_SYN


def _extensions(data: bytes | memoryview, first: int) -> tuple[bytes | None, int]:
    """Walk the extension chain after the header: the SACK bitmask (if any) and the payload offset."""
    sack = None
    ext = first
    offset = HEADER_SIZE
    size = len(data)
    while ext:
        if offset + 2 > size:
            raise UtpError("extension header past the end of the packet")
        nxt = data[offset]
        length = data[offset + 1]
        offset += 2
        if offset + length > size:
            raise UtpError(f"extension {ext} of {length} bytes past the end of the packet")
        if ext == EXT_SACK:
            if sack is not None:
                raise UtpError("two selective-ACK extensions")
            sack = bytes(data[offset:offset + length])
        offset += length  # unknown extensions (libtorrent's close reason is 2) are skipped
        ext = nxt
    return sack, offset


def parse_header(data: bytes | memoryview) -> Header:
    """Parse a packet's header and extension chain; ``UtpError`` says what is wrong."""
    if len(data) < HEADER_SIZE:
        raise UtpError(f"packet of {len(data)} bytes is shorter than the {HEADER_SIZE}-byte header")
    tv, ext, cid, ts, tsd, wnd, seq, ack = _unpack_from(data, 0)
    if tv & 0x0F != VERSION:
        raise UtpError(f"uTP version {tv & 0x0F}, expected {VERSION}")
    if tv >> 4 > ST_SYN:
        raise UtpError(f"unknown packet type {tv >> 4}")
    sack, offset = _extensions(data, ext) if ext else (None, HEADER_SIZE)
    return Header(tv >> 4, cid, ts, tsd, wnd, seq, ack, sack, offset)


def build_packet(type: int, connection_id: int, timestamp: int, timestamp_difference: int, wnd_size: int,  # noqa: A002
                 seq_nr: int, ack_nr: int, *, sack: bytes | None = None, payload: bytes = b"") -> bytes:
    """One packet; values are masked to their field widths."""
    if sack is None:
        return _pack((type << 4) | VERSION, 0, connection_id & _MASK16, timestamp & _MASK32,
                     timestamp_difference & _MASK32, min(wnd_size, _MASK32), seq_nr & _MASK16,
                     ack_nr & _MASK16) + payload
    if len(sack) > 255:
        raise ValueError("a SACK bitmask has at most 255 bytes")
    return b"".join((_pack((type << 4) | VERSION, EXT_SACK, connection_id & _MASK16, timestamp & _MASK32,
                           timestamp_difference & _MASK32, min(wnd_size, _MASK32), seq_nr & _MASK16,
                           ack_nr & _MASK16), bytes((0, len(sack))), sack, payload))


class UtpConnection:
    """One uTP connection, either side. Construct with ``connect`` (dialling) or ``accept`` (from a SYN)."""

    __slots__ = (
        "recv_id", "send_id", "state", "error", "stats_retransmits", "stats_timeouts", "stats_sent",
        "_seq", "_acked", "_out", "_flight", "_sendq", "_sendq_off", "_unsent", "_send_cap", "_fin_wanted",
        "_fin_seq", "_fin_acked",
        "_ack", "_ooo", "_ooo_bytes", "_inbox", "_recv_cap", "_max_reorder", "_eof_seq", "_eof_seen",
        "_ack_pending", "_adv_wnd", "_reply_micro", "cwnd", "peer_wnd", "_slow_start", "_cwnd_full", "_ssthresh",
        "mtu_floor", "mtu_ceiling", "_probe_seq", "_rtt", "_rtt_var", "rto", "_timeouts", "_rto_deadline",
        "_last_recv", "_last_send", "_base_prev", "_base_cur", "_bucket_end", "_delays", "_dup_acks",
        "_loss_seq", "_responder", "_syn_seq", "_probe_deadline", "_resend", "_syn_ack", "_sack_sent",
    )

    def __init__(self, recv_id: int, send_id: int, seq_nr: int, now: float, *, recv_window: int = 1 << 20,
                 send_buffer: int = 1 << 20, ipv6: bool = False) -> None:
        self.recv_id = recv_id & _MASK16
        self.send_id = send_id & _MASK16
        self.state = SYN_SENT
        self.error: str | None = None
        self.stats_retransmits = 0
        self.stats_timeouts = 0
        self.stats_sent = 0
        # Send side: ``_seq`` is the next sequence number, ``_acked`` the highest acked cumulatively; in
        # flight are [payload, type, sent_us, transmissions, lost, fast_resent] by sequence number.
        self._seq = seq_nr
        self._acked = seq_nr - 1
        self._out: dict[int, list] = {}
        self._resend: list[int] = []  # sequence numbers marked lost, to send again
        self._flight = 0  # payload bytes in flight and not counted lost
        # Written bytes not yet sent: chunks as written, the first read from ``_sendq_off`` (a bytearray
        # consumed from the front moved the whole buffer on each append: 14 % of the sender's time).
        self._sendq: deque[bytes] = deque()
        self._sendq_off = 0
        self._unsent = 0
        self._send_cap = send_buffer
        self._fin_wanted = False
        self._fin_seq: int | None = None
        self._fin_acked = False
        # Receive side: ``_ack`` is the last sequence number received in order.
        self._ack = 0
        self._ooo: dict[int, bytes | None] = {}  # out of order: payload, or None for the FIN
        self._ooo_bytes = 0
        self._inbox = bytearray()
        self._recv_cap = recv_window
        self._max_reorder = max(16, recv_window // 1100)  # packets past _ack we keep (libtorrent's bound)
        self._eof_seq: int | None = None
        self._eof_seen = False
        self._ack_pending = False
        self._adv_wnd = recv_window
        self._reply_micro = 0
        # Congestion control.
        ceiling = PACKET_SIZE_CEILING_V6 if ipv6 else PACKET_SIZE_CEILING_V4
        self.mtu_floor = PACKET_SIZE_FLOOR
        self.mtu_ceiling = ceiling
        self._probe_seq: int | None = None
        self.cwnd = float(2 * PACKET_SIZE_START)
        self.peer_wnd = 1 << 20
        self._slow_start = True
        self._ssthresh = float("inf")  # slow start ends here (half the window at the last loss), or sooner
        self._cwnd_full = False
        self._rtt = 0.0  # microseconds
        self._rtt_var = 0.0
        self.rto = INITIAL_TIMEOUT
        self._timeouts = 0
        self._rto_deadline: float | None = None
        self._probe_deadline: float | None = None  # zero-window probe
        self._last_recv = now
        self._last_send = now
        self._base_prev: int | None = None
        self._base_cur: int | None = None
        self._bucket_end = now + BASE_DELAY_BUCKET
        self._delays: list[int] = []
        self._dup_acks = 0
        self._loss_seq = seq_nr - 1  # losses at or below this were already answered by a window cut
        self._responder = False
        self._syn_seq = seq_nr
        self._syn_ack = False  # the responder's ST_STATE for the SYN: first out, before any data
        self._sack_sent = False

    # ---- construction ---------------------------------------------------------------------------

    @classmethod
    def connect(cls, recv_id: int, seq_nr: int, now: float, **kwargs: int | bool) -> UtpConnection:
        """The dialling side: queues the SYN (``connection_id = recv_id``, later ``recv_id + 1``)."""
        conn = cls(recv_id, recv_id + 1, seq_nr, now, **kwargs)  # type: ignore[arg-type]
        conn._out[seq_nr] = [b"", ST_SYN, 0, 0, True, False]  # "lost": goes out on the next send
        conn._resend.append(seq_nr)
        conn._seq = seq_nr + 1
        return conn

    @classmethod
    def accept(cls, syn: bytes, seq_nr: int, now: float, **kwargs: int | bool) -> UtpConnection:
        """The accepting side, from a SYN (already checked with ``parse_header``); acks it at once."""
        header = parse_header(syn)
        if header.type != ST_SYN:
            raise UtpError("a connection starts with a SYN")
        conn = cls(header.connection_id + 1, header.connection_id, seq_nr, now, **kwargs)  # type: ignore[arg-type]
        conn.state = OPEN
        conn._responder = True
        conn._ack = header.seq_nr
        conn._syn_seq = header.seq_nr
        conn.peer_wnd = header.wnd_size or conn.peer_wnd
        conn._reply_micro = (int(now * 1e6) - header.timestamp) & _MASK32
        conn._syn_ack = True
        return conn

    # ---- application side -----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.state == OPEN

    @property
    def closed(self) -> bool:
        return self.state == DONE

    @property
    def unsent(self) -> int:
        """Bytes accepted by ``write`` not yet sent."""
        return self._unsent

    @property
    def readable(self) -> int:
        return len(self._inbox)

    @property
    def at_eof(self) -> bool:
        """The peer's FIN has arrived in order and every byte before it has been read."""
        return self._eof_seen and not self._inbox

    @property
    def finished(self) -> bool:
        """Our FIN has been acked: everything we wrote arrived."""
        return self._fin_acked

    def write(self, data: bytes | memoryview) -> int:
        """Queue bytes to send; returns how many fit in the bounded send buffer."""
        if self.state == DONE or self._fin_wanted:
            return 0
        room = self._send_cap - self._unsent
        if room <= 0 or not data:
            return 0
        if len(data) > room:
            data = data[:room]
        self._sendq.append(data if type(data) is bytes else bytes(data))
        self._unsent += len(data)
        return len(data)

    def read_into(self, buf: memoryview) -> int:
        """Move in-order received bytes into ``buf``; returns how many."""
        inbox = self._inbox
        n = min(len(buf), len(inbox))
        if n:
            with memoryview(inbox) as view:
                buf[:n] = view[:n]
            del inbox[:n]
            # A window we advertised as nearly shut has opened: say so (the peer may have stopped).
            if self._adv_wnd < 4 * PACKET_SIZE_START and self.state == OPEN:
                self._ack_pending = True
        return n

    def read(self, n: int = -1) -> bytes:
        """Convenience for tests: up to ``n`` in-order bytes (all with -1)."""
        n = len(self._inbox) if n < 0 else min(n, len(self._inbox))
        buf = bytearray(n)
        self.read_into(memoryview(buf))
        return bytes(buf)

    def close(self) -> None:
        """Send a FIN once everything written has gone out."""
        if self.state != DONE:
            self._fin_wanted = True

    def reset(self, now: float) -> bytes | None:
        """Abort: the ST_RESET to send (None if the connection is already over)."""
        if self.state == DONE:
            return None
        packet = self._packet(ST_RESET, self._state_seq(), now, b"")
        self._die("connection aborted")
        return packet

    def _die(self, reason: str | None) -> None:
        if self.state != DONE:
            self.state = DONE
            self.error = reason
            self._out.clear()
            self._ooo.clear()
            self._sendq.clear()
            self._unsent = self._sendq_off = 0
            self._flight = self._ooo_bytes = 0
            self._rto_deadline = self._probe_deadline = None

    # ---- receiving ----------------------------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> int:
        """Take one datagram for this connection; returns event flags. Bad packets are dropped."""
        if len(data) < HEADER_SIZE:
            return 0
        tv, ext, cid, ts, tsd, wnd, seq, ack = _unpack_from(data, 0)
        typ = tv >> 4
        if tv & 0x0F != VERSION or typ > ST_SYN:
            return 0
        if self.state == DONE:
            if typ == ST_FIN and self.error is None and self._eof_seq is not None:
                self._ack_pending = True  # our last ack was lost: the peer resends its FIN (TIME_WAIT)
            return 0
        sack = None
        offset = HEADER_SIZE
        if ext:
            try:
                sack, offset = _extensions(data, ext)
            except UtpError:
                return 0
        now_us = int(now * 1e6)
        events = 0
        if typ == ST_SYN:
            if self._responder and seq == self._syn_seq & _MASK16:  # our ack was lost: ack again
                self._syn_ack = True
            return 0
        if self.state == SYN_SENT:
            if typ == ST_RESET:
                self._die("connection refused (reset by peer)")
                return CLOSED
            if ack != self._syn_seq & _MASK16 or typ != ST_STATE:
                # Only the SYN's ST_STATE tells where the peer's sequence starts: data that overtook
                # it (or came without it) could be any packet of the stream. It is sent again.
                return 0
            self.state = OPEN
            self._ack = seq - 1  # an ST_STATE carries the next seq_nr
            events = CONNECTED | WRITABLE
        elif typ == ST_RESET:
            self._die("connection reset by peer")
            return CLOSED

        # The acknowledgement. The peer's ack_nr is relative to ``_acked`` (16 bits).
        acked = self._acked
        delta = (ack - acked) & _MASK16
        if delta > self._seq - 1 - acked:
            if delta < 0x8000:
                return events  # acks a packet we never sent: forged or broken, dropped whole
            delta = 0  # an old ack, reordered: nothing new
            sack = None  # its bitmask is relative to that old ack_nr
        self._last_recv = now
        self._reply_micro = (now_us - ts) & _MASK32
        self.peer_wnd = wnd
        flight_before = self._flight
        acked_bytes = 0
        if delta:
            acked_bytes = self._ack_upto(acked + delta, now_us)
            events |= WRITABLE
            self._dup_acks = 0
        elif typ == ST_STATE and self._out and not sack:
            self._dup_acks += 1
            if self._dup_acks == DUP_ACK_LIMIT:
                self._lost(self._acked + 1, now_us)
        if sack:
            acked_bytes += self._on_sack(sack, now_us)
        if acked_bytes:
            self._timeouts = 0
            self._rto_deadline = now + self.rto if self._out else None
            if tsd and flight_before:
                self._ledbat(acked_bytes, tsd, flight_before, now)
        if self._rto_deadline is None and self._out:
            self._rto_deadline = now + self.rto
        if typ == ST_DATA:
            events |= self._on_data(seq, data, offset)
        elif typ == ST_FIN:
            events |= self._on_fin(seq)
        return events

    def _on_data(self, seq: int, data: bytes, offset: int) -> int:
        self._ack_pending = True
        diff = (seq - self._ack) & _MASK16
        if diff >= 0x8000 or diff == 0:
            return 0  # a duplicate: the ack we send tells the peer where we are
        n = len(data) - offset
        if n <= 0:
            return 0
        if self._eof_seq is not None and self._ack + diff > self._eof_seq:
            return 0
        if len(self._inbox) + self._ooo_bytes + n > self._recv_cap + PACKET_SIZE_CEILING_V4:
            return 0  # past the window we advertised
        if diff == 1:
            if offset == HEADER_SIZE:
                self._inbox += memoryview(data)[HEADER_SIZE:]
            else:
                self._inbox += memoryview(data)[offset:]
            self._ack += 1
            if self._ooo:
                self._drain_ooo()
            return DATA | (EOF if self._eof_seen else 0)
        if diff > self._max_reorder:
            return 0
        at = self._ack + diff
        if at not in self._ooo:
            self._ooo[at] = bytes(memoryview(data)[offset:])
            self._ooo_bytes += n
        return 0

    def _drain_ooo(self) -> None:
        ooo = self._ooo
        nxt = self._ack + 1
        while nxt in ooo:
            payload = ooo.pop(nxt)
            self._ack = nxt
            if payload is None:
                self._eof_seen = True
                break
            self._ooo_bytes -= len(payload)
            self._inbox += payload
            nxt += 1

    def _on_fin(self, seq: int) -> int:
        self._ack_pending = True
        diff = (seq - self._ack) & _MASK16
        if diff >= 0x8000 or diff == 0 or diff > self._max_reorder or self._eof_seq is not None:
            return 0
        self._eof_seq = self._ack + diff
        if diff == 1:
            self._ack += 1
            self._eof_seen = True
            return EOF
        self._ooo[self._eof_seq] = None
        return 0

    def _ack_upto(self, new_acked: int, now_us: int) -> int:
        """Drop packets up to ``new_acked`` from the send window: the payload bytes acked."""
        out = self._out
        acked_bytes = 0
        sample_us = -1
        for s in range(self._acked + 1, new_acked + 1):
            entry = out.pop(s, None)
            if entry is None:
                continue
            size = len(entry[0])
            if not entry[4]:
                self._flight -= size
            acked_bytes += size or 1  # a SYN or FIN acked is progress too
            if entry[3] == 1:
                sample_us = now_us - entry[2]
            if s == self._probe_seq:
                self.mtu_floor = max(self.mtu_floor, size)
                self._probe_seq = None
        self._acked = new_acked
        if self._fin_seq is not None and new_acked >= self._fin_seq:
            self._fin_acked = True  # only a cumulative ack says everything before the FIN arrived
        if self._loss_seq < self._acked - 0x4000:
            self._loss_seq = self._acked - 0x4000
        if sample_us >= 0:
            self._rtt_sample(sample_us)
        return acked_bytes

    def _rtt_sample(self, sample_us: int) -> None:
        # BEP 29: rtt_var += (|rtt - sample| - rtt_var) / 4; rtt += (sample - rtt) / 8.
        if self._rtt == 0.0:
            self._rtt = float(sample_us)
            self._rtt_var = sample_us / 2
        else:
            self._rtt_var += (abs(self._rtt - sample_us) - self._rtt_var) / 4
            self._rtt += (sample_us - self._rtt) / 8
        self.rto = max(MIN_TIMEOUT, (self._rtt + 4 * self._rtt_var) / 1e6)

    def _on_sack(self, sack: bytes, now_us: int) -> int:
        """Selective acks: bit i of the mask (LSB first per byte) is ``ack_nr + 2 + i``."""
        out = self._out
        base = self._acked + 2
        last = self._seq - 1
        sacked: list[int] = []
        acked_bytes = 0
        for i, byte in enumerate(sack):
            if not byte:
                continue
            for bit in range(8):
                if byte >> bit & 1:
                    s = base + i * 8 + bit
                    if s > last:
                        break  # past what we sent: ignored
                    sacked.append(s)
                    entry = out.pop(s, None)
                    if entry is not None:
                        size = len(entry[0])
                        if not entry[4]:
                            self._flight -= size
                        acked_bytes += size or 1
                        if s == self._probe_seq:
                            self.mtu_floor = max(self.mtu_floor, size)
                            self._probe_seq = None
        if len(sacked) >= DUP_ACK_LIMIT:
            # A packet with DUP_ACK_LIMIT or more packets acked after it is lost: resend it, and again if
            # SACKs still show it missing a round trip and a half after (the resent copy was lost too).
            refast = max(1.5 * self._rtt, 5000.0)
            for s in range(self._acked + 1, sacked[-DUP_ACK_LIMIT]):
                entry = out.get(s)
                if entry is not None and not entry[4] and (not entry[5] or now_us - entry[5] > refast) \
                        and len(sacked) - bisect_right(sacked, s) >= DUP_ACK_LIMIT:
                    self._lost(s, now_us)
        return acked_bytes

    def _lost(self, s: int, now_us: int) -> None:
        """Packet ``s`` is lost (a SACK or duplicate acks say so): resend it next, at once; cut the window
        once per window of data."""
        entry = self._out.get(s)
        if entry is None or entry[4]:
            return
        entry[4] = True
        entry[5] = now_us or 1  # fast-resent at (µs): see _on_sack and datagrams_to_send
        self._resend.append(s)
        self._flight -= len(entry[0])
        if s == self._probe_seq:  # a lost probe says the path is smaller, not congested
            self.mtu_ceiling = max(self.mtu_floor, len(entry[0]) - 1)
            self._probe_seq = None
            return
        if s > self._loss_seq:
            self._loss_seq = self._seq - 1
            self._slow_start = False
            self.cwnd = max(self.cwnd / 2, float(self.mtu_floor))
            self._ssthresh = self.cwnd

    def _ledbat(self, acked_bytes: int, sample: int, flight_before: int, now: float) -> None:
        # Base delay: the minimum over this minute's bucket and the last one (32-bit wrap-aware).
        if now >= self._bucket_end:
            self._base_prev = self._base_cur
            self._base_cur = None
            self._bucket_end = now + BASE_DELAY_BUCKET
        if self._base_cur is None or ((sample - self._base_cur) & _MASK32) >= 0x80000000:
            self._base_cur = sample
        base = self._base_cur
        if self._base_prev is not None and ((self._base_prev - base) & _MASK32) >= 0x80000000:
            base = self._base_prev
        delay = (sample - base) & _MASK32
        delays = self._delays
        delays.append(delay)
        if len(delays) > 3:
            del delays[0]
        delay = min(delays)  # libtorrent: the least of the last three samples
        cwnd = self.cwnd
        if self._slow_start:
            if delay > TARGET_DELAY_US // 2 or cwnd >= self._ssthresh:
                self._slow_start = False
            elif self._cwnd_full:
                self.cwnd = cwnd + acked_bytes
                self._cwnd_full = False
                return
        window_factor = min(acked_bytes, flight_before) / max(cwnd, flight_before)
        if delay > TARGET_DELAY_US:  # past the target: give back in proportion to the window
            gain = -cwnd * min((delay - TARGET_DELAY_US) / TARGET_DELAY_US, 0.5) * window_factor
        elif self._cwnd_full:
            gain = MAX_CWND_GAIN * (TARGET_DELAY_US - delay) / TARGET_DELAY_US * window_factor
        else:
            gain = 0.0  # not using the window: no reason to grow it
        self.cwnd = max(float(self.mtu_floor), cwnd + gain)
        self._cwnd_full = False

    # ---- sending --------------------------------------------------------------------------------

    def _state_seq(self) -> int:
        # ST_STATE carries the next sequence number; after our FIN, the FIN's (libtorrent ignores
        # packets past the FIN it has seen).
        return self._fin_seq if self._fin_seq is not None else self._seq

    def _window(self) -> int:
        return self._recv_cap - len(self._inbox) - self._ooo_bytes

    def _packet(self, typ: int, seq: int, now: float, payload: bytes) -> bytes:
        wnd = self._window()
        if wnd < 0:
            wnd = 0
        self._adv_wnd = wnd
        ts = int(now * 1e6) & _MASK32
        cid = self.recv_id if typ == ST_SYN else self.send_id
        ack = self._ack & _MASK16
        if self._ooo:
            sack = self._sack_mask()
            # A SACK rides on data only where it keeps the packet within the path's size; else an
            # ST_STATE carries it (datagrams_to_send).
            if len(payload) + 2 + len(sack) <= self.mtu_ceiling:
                self._sack_sent = True
                return build_packet(typ, cid, ts, self._reply_micro, wnd, seq, ack, sack=sack, payload=payload)
        return _pack((typ << 4) | VERSION, 0, cid, ts, self._reply_micro, wnd, seq & _MASK16, ack) + payload

    def _sack_mask(self) -> bytes:
        base = self._ack + 2
        top = max(self._ooo) - base
        size = min(MAX_SACK_BYTES, (top // 32 + 1) * 4)
        mask = bytearray(size)
        limit = size * 8
        for s in self._ooo:
            i = s - base
            if 0 <= i < limit:
                mask[i >> 3] |= 1 << (i & 7)
        return bytes(mask)

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """Everything the connection may send now: retransmissions, new data, a FIN, an ack."""
        if self.state == DONE:
            if self._ack_pending and self.error is None and self._eof_seq is not None:
                self._ack_pending = False
                return [self._packet(ST_STATE, self._state_seq(), now, b"")]
            return []
        packets: list[bytes] = []
        out = self._out
        if self._syn_ack:
            # Its seq_nr is where our stream starts (the first packet not yet acked), even if data
            # went before it: the initiator starts counting there.
            self._syn_ack = False
            packets.append(self._packet(ST_STATE, self._acked + 1, now, b""))
        # Retransmissions first, in order (a SYN lives here too until acked).
        self._sack_sent = False
        if self._resend:
            resend = sorted(set(self._resend))
            self._resend = []
            for i, s in enumerate(resend):
                entry = out.get(s)
                if entry is None or not entry[4]:
                    continue
                size = len(entry[0])
                # Packets that SACKs or duplicate acks showed lost go at once, as TCP's fast retransmit:
                # what is still counted in flight may have arrived past the SACK's reach, and waiting
                # for it to be acked would wait for a timeout. After a timeout, the window rules.
                if self._flight and self._flight + size > self.cwnd and not entry[5]:
                    self._cwnd_full = True
                    self._resend = resend[i:]
                    break
                entry[2] = int(now * 1e6)
                entry[3] += 1
                entry[4] = False
                self._flight += size
                if entry[3] > 1:
                    self.stats_retransmits += 1
                packets.append(self._packet(entry[1], s, now, entry[0]))
        if self.state == OPEN:
            packets += self._new_data(now)
        if self._ack_pending and self.state == OPEN and (not packets or self._ooo and not self._sack_sent):
            packets.append(self._packet(ST_STATE, self._state_seq(), now, b""))
        if packets:
            self._ack_pending = False
            self._last_send = now
            self.stats_sent += len(packets)
            if self._rto_deadline is None and out:
                self._rto_deadline = now + self.rto
        if self._fin_acked and self._eof_seen:
            self._die(None)  # both FINs acked (ours) and acknowledged (theirs, just above): done
        return packets

    def _new_data(self, now: float) -> list[bytes]:
        packets: list[bytes] = []
        out = self._out
        window = min(self.cwnd, self.peer_wnd, self._send_cap)  # in flight: at most one send buffer more
        now_us = int(now * 1e6)
        burst = MAX_BURST
        while self._unsent:
            if not burst:
                break
            burst -= 1
            size = self.mtu_floor
            probe = False
            if self._probe_seq is None and size < self.mtu_ceiling:
                trial = min(PACKET_SIZE_START, self.mtu_ceiling) if size < PACKET_SIZE_START \
                    else (size + self.mtu_ceiling + 1) // 2
                if self._unsent >= trial:
                    size = trial
                    probe = True
            n = min(size, self._unsent)
            if self._flight + n > window:
                if self._flight + n > self.cwnd:
                    self._cwnd_full = True
                if self._flight or self.peer_wnd >= n:
                    break
                # The peer's window is shut and nothing is in flight: probe it now and then.
                if self._probe_deadline is None:
                    self._probe_deadline = now + self.rto
                    break
                if now < self._probe_deadline:
                    break
                self._probe_deadline = None
            if self._seq - self._acked >= 0x4000:
                break  # half the sequence space would make acks ambiguous
            payload = self._take(n)
            seq = self._seq
            self._seq = seq + 1
            out[seq] = [payload, ST_DATA, now_us, 1, False, False]
            if probe:
                self._probe_seq = seq
            self._flight += n
            packets.append(self._packet(ST_DATA, seq, now, payload))
        if not self._unsent and self._fin_wanted and self._fin_seq is None and self.state == OPEN:
            seq = self._fin_seq = self._seq
            self._seq = seq + 1
            out[seq] = [b"", ST_FIN, now_us, 1, False, False]
            packets.append(self._packet(ST_FIN, seq, now, b""))
        return packets

    @property
    def blocked_by_burst(self) -> bool:
        """``datagrams_to_send`` stopped at MAX_BURST with window left: call it again soon."""
        return self._unsent > 0 and self.state == OPEN and \
            self._flight + self.mtu_floor <= min(self.cwnd, self.peer_wnd, self._send_cap)

    def _take(self, n: int) -> bytes:
        """The next ``n`` unsent bytes (at most ``_unsent``)."""
        self._unsent -= n
        queue = self._sendq
        first = queue[0]
        off = self._sendq_off
        end = off + n
        if end < len(first):
            self._sendq_off = end
            return first[off:end]
        if end == len(first):
            queue.popleft()
            self._sendq_off = 0
            return first if not off else first[off:]
        parts = []
        while n:
            first = queue[0]
            piece = first[off:off + n]
            parts.append(piece)
            n -= len(piece)
            if off + len(piece) == len(first):
                queue.popleft()
                off = 0
            else:
                off += len(piece)
        self._sendq_off = off
        return b"".join(parts)

    # ---- timers ---------------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        """When ``on_timer`` must run next (seconds, the clock of ``now``), or None."""
        if self.state == DONE:
            return None
        t = self._last_recv + (FIN_LINGER if self._fin_acked else IDLE_TIMEOUT)
        if self.state == OPEN:
            t = min(t, self._last_send + KEEPALIVE)
        if self._rto_deadline is not None:
            t = min(t, self._rto_deadline)
        if self._probe_deadline is not None:
            t = min(t, self._probe_deadline)
        return t

    def on_timer(self, now: float) -> int:
        """Retransmission timeout, keep-alive, idle timeout. Returns CLOSED if the connection gave up."""
        if self.state == DONE:
            return 0
        if self._fin_acked and now >= self._last_recv + FIN_LINGER:
            self._die(None)  # everything we sent arrived; the peer's FIN is not worth waiting longer for
            return CLOSED
        if now >= self._last_recv + IDLE_TIMEOUT:
            self._die(f"no packet from the peer in {IDLE_TIMEOUT:g} s")
            return CLOSED
        if self._rto_deadline is not None and now >= self._rto_deadline:
            if not self._out:
                self._rto_deadline = None
            else:
                return self._timeout(now)
        if self.state == OPEN and now >= self._last_send + KEEPALIVE:
            self._ack_pending = True
        return 0

    def _timeout(self, now: float) -> int:
        self._timeouts += 1
        self.stats_timeouts += 1
        first = self._out.get(self._acked + 1) or self._out[min(self._out)]
        limit = SYN_RESENDS if self.state == SYN_SENT else FIN_RESENDS if self._fin_seq is not None \
            else DATA_RESENDS
        if first[3] > limit:
            if self.state == SYN_SENT:
                self._die("connection timed out (no answer to the SYN)")
            else:
                self._die(f"connection timed out ({self._timeouts} retransmissions unanswered)")
            return CLOSED
        # Every packet in flight counts as lost; the window drops to one packet (BEP 29).
        for s, entry in self._out.items():
            if not entry[4]:
                entry[4] = True
                self._flight -= len(entry[0])
                self._resend.append(s)
            if s == self._probe_seq:
                self.mtu_ceiling = max(self.mtu_floor, len(entry[0]) - 1)
                self._probe_seq = None
        self._ssthresh = max(self.cwnd / 2, 2.0 * self.mtu_floor)
        self.cwnd = float(self.mtu_floor)
        self._loss_seq = self._seq - 1
        self._slow_start = True  # back to the window we had, quickly, as libtorrent does
        self.rto = min(MAX_TIMEOUT, self.rto * 2)
        self._rto_deadline = now + self.rto
        return 0
