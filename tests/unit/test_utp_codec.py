"""The sans-IO uTP codec (torrent.codec.utp): headers, and two connections wired back to back through a
simulated link (loss, reordering, duplication, queueing delay) on a fake clock."""

from __future__ import annotations

import heapq
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrent.codec import utp
from torrent.codec.utp import (
    CLOSED,
    CONNECTED,
    EOF,
    ST_DATA,
    ST_FIN,
    ST_RESET,
    ST_STATE,
    ST_SYN,
    UtpConnection,
    build_packet,
    parse_header,
)
from torrent.core.errors import UtpError

# ---- headers ---------------------------------------------------------------------------------------


@given(st.sampled_from([ST_DATA, ST_FIN, ST_STATE, ST_RESET, ST_SYN]), st.integers(0, 0xFFFF),
       st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF),
       st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.none() | st.binary(min_size=4, max_size=32),
       st.binary(max_size=64))
def test_header_round_trip(typ, cid, ts, tsd, wnd, seq, ack, sack, payload):
    packet = build_packet(typ, cid, ts, tsd, wnd, seq, ack, sack=sack, payload=payload)
    h = parse_header(packet)
    assert (h.type, h.connection_id, h.timestamp, h.timestamp_difference, h.wnd_size, h.seq_nr, h.ack_nr) == \
        (typ, cid, ts, tsd, wnd, seq, ack)
    assert h.sack == sack
    assert packet[h.offset:] == payload


def test_header_layout_matches_bep29():
    packet = build_packet(ST_SYN, 0x1234, 1, 2, 3, 0xABCD, 0x0102)
    assert packet == bytes([0x41, 0, 0x12, 0x34]) + struct.pack(">III", 1, 2, 3) + bytes([0xAB, 0xCD, 1, 2])


@pytest.mark.parametrize("packet, reason", [
    (b"\x21" + bytes(10), "shorter than"),
    (b"\x22" + bytes(19), "version 2"),
    (b"\x51" + bytes(19), "unknown packet type 5"),
    (b"\x01\x01" + bytes(18), "extension header past"),
    (b"\x01\x01" + bytes(18) + b"\x00\x08\xff", "past the end"),
    (b"\x01\x01" + bytes(18) + b"\x01\x04\xff\xff\xff\xff\x00\x04\x00\x00\x00\x00", "two selective-ACK"),
])
def test_header_rejects(packet, reason):
    with pytest.raises(UtpError, match=reason):
        parse_header(packet)


def test_unknown_extensions_are_skipped():
    packet = b"\x01\x02" + bytes(18) + b"\x01\x02ab" + b"\x00\x04\x05\x00\x00\x00" + b"payload"
    h = parse_header(packet)
    assert h.sack == b"\x05\x00\x00\x00" and packet[h.offset:] == b"payload"


@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_garbage_never_raises_out_of_a_connection(data):
    a, b = pair(1000, 0.0)
    a.receive(data, 0.1)
    b.receive(data, 0.1)
    a.datagrams_to_send(0.2)
    b.datagrams_to_send(0.2)


# ---- a simulated link -------------------------------------------------------------------------------


class Link:
    """Two connections and the packets between them, delivered on a fake clock."""

    def __init__(self, a: UtpConnection, b: UtpConnection, *, seed: int = 1, loss: float = 0.0,
                 dup: float = 0.0, jitter: float = 0.0, delay: float = 0.001, drop=None) -> None:
        self.ends = (a, b)
        self.rng = random.Random(seed)
        self.loss, self.dup, self.jitter, self.delay = loss, dup, jitter, delay
        self.extra_delay = [0.0, 0.0]  # queueing delay added per direction (0: a->b)
        self.drop = drop  # drop(direction, packet) -> bool: a deterministic loss
        self.now = 0.0
        self.queue: list[tuple[float, int, int, bytes]] = []
        self.n = 0
        self.received = [bytearray(), bytearray()]
        self.events = [0, 0]
        self.sent = [[], []]

    def pump(self) -> None:
        for i, conn in enumerate(self.ends):
            for packet in conn.datagrams_to_send(self.now):
                self.sent[i].append(packet)
                if self.drop is not None and self.drop(i, packet):
                    continue
                if self.rng.random() < self.loss:
                    continue
                copies = 2 if self.rng.random() < self.dup else 1
                for _ in range(copies):
                    at = self.now + self.delay + self.extra_delay[i] + self.rng.random() * self.jitter
                    self.n += 1
                    heapq.heappush(self.queue, (at, self.n, 1 - i, packet))

    def step(self) -> bool:
        """Deliver the next packet or fire the next timer; False when nothing is left to do."""
        self.pump()
        timers = [t for t in (c.next_timer() for c in self.ends) if t is not None]
        nxt_packet = self.queue[0][0] if self.queue else None
        nxt_timer = min(timers) if timers else None
        if nxt_packet is None and nxt_timer is None:
            return False
        if nxt_packet is not None and (nxt_timer is None or nxt_packet <= nxt_timer):
            at, _, dst, packet = heapq.heappop(self.queue)
            self.now = max(self.now, at)
            self.events[dst] |= self.ends[dst].receive(packet, self.now)
            # Deliver everything due now before acking: a batch, like one event-loop iteration.
            while self.queue and self.queue[0][0] <= self.now:
                _, _, dst2, packet2 = heapq.heappop(self.queue)
                self.events[dst2] |= self.ends[dst2].receive(packet2, self.now)
        else:
            self.now = max(self.now, nxt_timer)
            for i, conn in enumerate(self.ends):
                self.events[i] |= conn.on_timer(self.now)
        for i, conn in enumerate(self.ends):
            if conn.readable:
                self.received[i] += conn.read()
        return True

    def run(self, until, limit: float = 600.0) -> None:
        while not until():
            assert self.now < limit, "the simulated transfer did not finish"
            if not self.step():
                break


def pair(seq_a: int, now: float, seq_b: int = 30000, **kwargs) -> tuple[UtpConnection, UtpConnection]:
    a = UtpConnection.connect(4321, seq_a, now, **kwargs)
    (syn,) = a.datagrams_to_send(now)
    b = UtpConnection.accept(syn, seq_b, now, **kwargs)
    return a, b


def stream(link: Link, data_a: bytes, data_b: bytes, limit: float = 600.0) -> None:
    """Write both payloads (as the buffers allow), close both sides, run until both are closed."""
    a, b = link.ends
    todo = [memoryview(data_a), memoryview(data_b)]

    def feed() -> bool:
        for i, conn in enumerate(link.ends):
            if todo[i] and conn.connected:
                n = conn.write(todo[i])
                todo[i] = todo[i][n:]
                if not todo[i]:
                    conn.close()
        return a.closed and b.closed

    link.run(feed, limit)


def blob(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


# ---- transfers -----------------------------------------------------------------------------------


def test_clean_transfer_both_ways():
    a, b = pair(1, 0.0)
    link = Link(a, b)
    data_a, data_b = blob(3 << 20, 1), blob(2 << 20, 2)
    stream(link, data_a, data_b)
    assert link.received[1] == data_a and link.received[0] == data_b
    assert a.error is None and b.error is None
    assert link.events[0] & CONNECTED and link.events[1] & EOF and link.events[0] & EOF
    # Acks are coalesced: one per batch of received packets, far fewer than the data packets.
    acks = sum(1 for p in link.sent[1] if p[0] >> 4 == ST_STATE)
    data = sum(1 for p in link.sent[0] if p[0] >> 4 == ST_DATA)
    assert data > 2000 and acks < data / 2


@pytest.mark.parametrize("seed", [3, 4])
def test_lossy_reordering_duplicating_link(seed):
    a, b = pair(65500, 0.0, seq_b=65530)  # both sequence spaces wrap during the transfer
    link = Link(a, b, seed=seed, loss=0.05, dup=0.05, jitter=0.004)
    data_a, data_b = blob(2 << 20, seed), blob(1 << 20, seed + 10)
    stream(link, data_a, data_b)
    assert link.received[1] == data_a and link.received[0] == data_b
    assert a.error is None and b.error is None
    assert a.stats_retransmits > 0
    seqs = {parse_header(p).seq_nr for p in link.sent[0] if p[0] >> 4 == ST_DATA}
    assert 0 in seqs and 65535 in seqs  # wrapped


def test_sequence_wraps_around_from_65535():
    a, b = pair(0xFFFF, 0.0, seq_b=0xFFFE)
    link = Link(a, b)
    data = blob(300_000, 5)
    stream(link, data, data[::-1])
    assert link.received[1] == data and link.received[0] == data[::-1]


def test_sack_resends_exactly_the_lost_packets():
    """Data packets 5 and 9 of the stream are lost once; the SACKs that follow make the sender resend
    those two and nothing else, before any timeout."""
    a, b = pair(100, 0.0)
    lost = {105 + 1, 109 + 1}  # a's SYN is 100, its data starts at 101

    def drop(direction, packet):
        if direction == 0 and packet[0] >> 4 == ST_DATA:
            seq = parse_header(packet).seq_nr
            if seq in lost:
                lost.discard(seq)
                return True
        return False

    link = Link(a, b, drop=drop)
    a.cwnd = 40 * 1500.0  # room for the packets after the losses to carry SACKs back
    data = blob(200_000, 6)
    stream(link, data, b"")
    assert link.received[1] == data
    data_seqs = [parse_header(p).seq_nr for p in link.sent[0] if p[0] >> 4 == ST_DATA]
    resent = sorted(s for s in set(data_seqs) if data_seqs.count(s) > 1)
    assert resent == [106, 110]
    assert a.stats_timeouts == 0
    assert any(parse_header(p).sack for p in link.sent[1])


def test_fast_retransmit_on_three_duplicate_acks():
    """Without SACK (a peer that does not send it), three duplicate ST_STATE acks resend the packet."""
    a, b = pair(7, 0.0)
    link = Link(a, b)
    link.run(lambda: a.connected and b.connected)
    link.run(lambda: not link.queue)
    a.write(blob(1400 * 6, 7))
    first, *rest = a.datagrams_to_send(link.now)
    assert len(rest) >= 1
    for _ in range(3):  # dup acks of the packet before ``first``
        dup = build_packet(ST_STATE, a.recv_id, 0, 0, 1 << 20, b._seq, a._acked)
        a.receive(dup, link.now)
    again = a.datagrams_to_send(link.now)
    assert again and again[0][20:] == first[20:] and parse_header(again[0]).seq_nr == parse_header(first).seq_nr
    assert a.stats_timeouts == 0


def test_timeout_retransmits_then_gives_up():
    a, b = pair(1, 0.0)
    link = Link(a, b)
    link.run(lambda: a.connected)
    link.run(lambda: not link.queue)
    link.loss = 1.0  # the peer is gone
    a.write(b"x" * 5000)
    link.run(lambda: a.closed, limit=1000)
    assert a.error is not None and "timed out" in a.error
    assert a.stats_timeouts == utp.DATA_RESENDS + 1
    assert a.cwnd <= a.mtu_floor


def test_syn_timeout():
    a = UtpConnection.connect(9, 1, 0.0)
    now, sent = 0.0, 0
    while not a.closed:
        sent += len(a.datagrams_to_send(now))
        now = a.next_timer()
        a.on_timer(now)
    assert sent == utp.SYN_RESENDS + 1
    assert "SYN" in a.error and now < 10


def test_reset_closes_both_ways():
    a, b = pair(1, 0.0)
    link = Link(a, b)
    link.run(lambda: a.connected and not link.queue)
    packet = b.reset(link.now)
    assert b.closed and parse_header(packet).type == ST_RESET
    assert a.receive(packet, link.now) & CLOSED
    assert "reset" in a.error


def test_refused_connect():
    a = UtpConnection.connect(9, 1, 0.0)
    (syn,) = a.datagrams_to_send(0.0)
    reset = build_packet(ST_RESET, parse_header(syn).connection_id, 0, 0, 0, 77, 1)
    assert a.receive(reset, 0.01) == CLOSED and "refused" in a.error


def test_fin_carries_eof_after_all_data():
    a, b = pair(1, 0.0)
    link = Link(a, b, jitter=0.003, seed=9)
    data = blob(100_000, 8)
    stream(link, data, b"")
    fins = [p for p in link.sent[0] if p[0] >> 4 == ST_FIN]
    assert fins and link.received[1] == data and b.at_eof


# ---- LEDBAT -------------------------------------------------------------------------------------


def ledbat_run(extra: float, seconds: float) -> tuple[UtpConnection, list[tuple[float, float]]]:
    a, b = pair(1, 0.0)
    link = Link(a, b, delay=0.01)
    link.run(lambda: a.connected and not link.queue)
    trace = []
    # Measure the base delay first, then add a queueing delay on a->b.
    a.write(blob(200_000, 1))
    link.run(lambda: not a.unsent and not a._out)
    link.extra_delay[0] = extra
    a._slow_start = False
    payload = blob(1 << 20, 2)
    start = a.cwnd
    trace.append((link.now, start))
    end = link.now + seconds
    while link.now < end:
        a.write(payload[: (1 << 20) - a.unsent])
        link.step()
        trace.append((link.now, a.cwnd))
    return a, trace


def test_ledbat_window_shrinks_above_target():
    a, trace = ledbat_run(0.2, 10.0)  # 200 ms queueing: twice the target
    assert trace[-1][1] < trace[0][1] / 2
    assert a.cwnd >= a.mtu_floor


def test_ledbat_gives_a_large_window_back_within_seconds():
    """LEDBAT++'s multiplicative decrease: 150 ms of queueing takes a 200 KB window under 20 KB in about
    2 s (BEP 29's 3000 bytes per round trip would take some 40 s), but never more than half per round trip."""
    a, b = pair(1, 0.0)
    link = Link(a, b, delay=0.01)
    link.run(lambda: a.connected and not link.queue)
    a.write(blob(200_000, 1))
    link.run(lambda: not a.unsent and not a._out)
    link.extra_delay[0] = 0.15
    a._slow_start = False
    a.cwnd = 200_000.0
    payload = blob(1 << 20, 2)
    trace = [(link.now, a.cwnd)]
    end = link.now + 2.5
    while link.now < end:
        a.write(payload[: (1 << 20) - a.unsent])
        link.step()
        trace.append((link.now, a.cwnd))
    assert a.cwnd < 20_000
    rtt = 2 * 0.01 + 0.15
    for i, (t0, w0) in enumerate(trace):
        for t1, w1 in trace[i:]:
            if t1 - t0 > rtt:
                break
            assert w1 >= w0 / 2 * 0.99


def test_ledbat_window_grows_below_target_capped_per_rtt():
    a, trace = ledbat_run(0.02, 10.0)  # 20 ms queueing: under the target
    assert trace[-1][1] > trace[0][1] + 3000
    # Round trip ~ 2 x 10 ms + 20 ms: within any 40 ms the window grows by at most MAX_CWND_GAIN (+1 %).
    rtt = 0.04
    for i, (t0, w0) in enumerate(trace):
        for t1, w1 in trace[i:]:
            if t1 - t0 > rtt:
                break
            assert w1 - w0 <= utp.MAX_CWND_GAIN * 1.01


def test_loss_halves_the_window():
    a, b = pair(1, 0.0)
    link = Link(a, b)
    link.run(lambda: a.connected and not link.queue)
    a._slow_start = False
    a.cwnd = 100_000.0
    a.write(blob(50_000, 3))
    sent = a.datagrams_to_send(1.0)
    first = parse_header(sent[0]).seq_nr  # an MTU probe: its loss lowers the size ceiling, not the window
    a._lost(first, 1)
    assert a.cwnd == 100_000.0 and a.mtu_ceiling == len(sent[0]) - 21
    a._lost(first + 1, 1)
    assert a.cwnd == 50_000.0
    a._lost(first + 2, 1)  # the same window of data: no second cut
    assert a.cwnd == 50_000.0


# ---- bad input, bounded memory --------------------------------------------------------------------


def test_ack_of_unsent_data_is_dropped():
    a, b = pair(1, 0.0)
    link = Link(a, b)
    link.run(lambda: a.connected and not link.queue)
    forged = build_packet(ST_STATE, a.recv_id, 0, 0, 1 << 20, 0, a._seq + 50)
    acked = a._acked
    assert a.receive(forged, link.now) == 0
    assert a._acked == acked and not a.closed


def test_sack_past_send_window_and_huge_window_are_harmless():
    a, b = pair(1, 0.0)
    link = Link(a, b)
    link.run(lambda: a.connected and not link.queue)
    a.write(blob(10_000, 4))
    a.datagrams_to_send(link.now)
    flight = a._flight
    forged = build_packet(ST_STATE, a.recv_id, 0, 0, 0xFFFFFFFF, 0, a._acked, sack=b"\xff" * 32)
    a.receive(forged, link.now)
    assert a._flight <= flight and a._flight >= 0
    a.write(blob(5 << 20, 5))
    sent = a.datagrams_to_send(link.now)
    assert sum(len(p) for p in sent) <= (1 << 20) + 100_000  # bounded by the send buffer, not the window


def test_peer_that_never_acks_bounds_memory():
    a, b = pair(1, 0.0, send_buffer=1 << 18)
    link = Link(a, b)
    link.run(lambda: a.connected and not link.queue)
    accepted = sum(a.write(blob(1 << 16, i)) for i in range(40))
    assert accepted <= 1 << 18
    for t in range(200):
        a.datagrams_to_send(link.now + t * 0.01)  # nothing comes back
    assert sum(len(e[0]) for e in a._out.values()) + a.unsent <= 2 * (1 << 18)


def test_receiver_bounds_out_of_order_data():
    a, b = pair(1, 0.0, recv_window=64 * 1024)
    link = Link(a, b)
    link.run(lambda: b.connected and a.connected and not link.queue)
    # A flood of out-of-order data packets far and near: kept only within the advertised window.
    for i in range(2, 2000):
        packet = build_packet(ST_DATA, b.recv_id, 0, 0, 1 << 20, b._ack + i, b._seq - 1, payload=bytes(1400))
        b.receive(packet, link.now)
    assert b._ooo_bytes <= 64 * 1024 + 1500
    assert len(b._ooo) <= b._max_reorder


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([ST_DATA, ST_FIN, ST_STATE, ST_RESET, ST_SYN]), st.integers(0, 0xFFFF),
                          st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF),
                          st.none() | st.binary(min_size=1, max_size=64), st.binary(max_size=1500)),
                max_size=30))
def test_forged_packets_with_the_right_connection_id(forged):
    """Well-formed packets with any seq_nr, ack_nr, window, SACK and payload, injected mid-transfer: nothing
    raises and memory stays within the buffers (uTP has no authentication: a forged in-order packet is
    data like any other, as in TCP)."""
    a, b = pair(65000, 0.0, recv_window=128 * 1024, send_buffer=128 * 1024)
    link = Link(a, b)
    data = blob(300_000, 1)
    a.write(data)
    for typ, seq, ack, wnd, sack, payload in forged:
        link.step()
        b.receive(build_packet(typ, b.recv_id, 0, 0, wnd, seq, ack, sack=sack, payload=payload), link.now)
        a.receive(build_packet(typ, a.recv_id, 0, 0, wnd, seq, ack, sack=sack, payload=payload), link.now)
        assert len(b._inbox) + b._ooo_bytes <= 128 * 1024 + 2 * 1500
        assert a.unsent + sum(len(e[0]) for e in a._out.values()) <= 2 * 128 * 1024
