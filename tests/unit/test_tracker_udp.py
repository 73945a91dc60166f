"""UDP tracker codec (BEP 15, BEP 41): packets built by hand from the BEP's tables, and the
retransmission state machine driven with a fake clock. Bytes only."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
)
from torrent.codec.tracker.udp import (
    CONNECTION_ID_LIFETIME,
    MAX_SCRAPE_HASHES,
    ConnectionId,
    UdpTrackerTransaction,
    build_announce_request,
    build_connect_request,
    build_scrape_request,
    build_url_data_options,
    parse_announce_response,
    parse_connect_response,
    parse_scrape_response,
    parse_udp_url,
    retransmit_schedule,
    retransmit_timeout,
)

HASH = bytes(range(1, 21))
PEER = b"-TO0001-abcdefghijkl"
TID = 0x11223344
CID = 0x0102030405060708


def req(**kw: object) -> AnnounceRequest:
    base: dict[str, object] = dict(info_hash=HASH, peer_id=PEER, port=6881, uploaded=3, downloaded=2, left=1)
    base.update(kw)
    return AnnounceRequest(**base)  # type: ignore[arg-type]


def be(n: int, size: int, signed: bool = False) -> bytes:
    return n.to_bytes(size, "big", signed=signed)


# ---- connect --------------------------------------------------------------------

def test_connect_request_bytes() -> None:
    # offset 0: int64 protocol_id 0x41727101980, 8: int32 action 0, 12: int32 transaction_id
    assert build_connect_request(TID) == bytes.fromhex("0000041727101980" "00000000" "11223344")


def test_connect_response() -> None:
    packet = be(0, 4) + be(TID, 4) + be(CID, 8)
    resp = parse_connect_response(packet, TID)
    assert resp is not None and resp.connection_id == CID
    # "Do not expect packets to be exactly of a certain size": extra bytes are fine.
    assert parse_connect_response(packet + b"extra", TID) == resp


def test_wrong_transaction_id_is_ignored() -> None:
    assert parse_connect_response(be(0, 4) + be(TID + 1, 4) + be(CID, 8), TID) is None
    assert parse_announce_response(be(1, 4) + be(TID + 1, 4) + bytes(12), TID) is None
    assert parse_scrape_response(be(2, 4) + be(TID + 1, 4) + bytes(12), TID, [HASH]) is None
    # An error for someone else's transaction is no error of ours.
    assert parse_announce_response(be(3, 4) + be(TID + 1, 4) + b"go away", TID) is None


@pytest.mark.parametrize("size", range(8))
def test_packets_too_short_for_a_transaction_id_are_ignored(size: int) -> None:
    packet = (be(0, 4) + be(TID, 4))[:size]
    assert parse_connect_response(packet, TID) is None
    assert parse_announce_response(packet, TID) is None


def test_short_packet_with_our_transaction_id_is_an_error() -> None:
    with pytest.raises(TrackerResponseError, match="connect response is 12 bytes, shorter than 16"):
        parse_connect_response(be(0, 4) + be(TID, 4) + be(1, 4), TID)
    with pytest.raises(TrackerResponseError, match="announce response is 8 bytes, shorter than 20"):
        parse_announce_response(be(1, 4) + be(TID, 4), TID)


def test_wrong_action_is_an_error() -> None:
    with pytest.raises(TrackerResponseError, match="connect request with action announce"):
        parse_connect_response(be(1, 4) + be(TID, 4) + be(CID, 8), TID)
    with pytest.raises(TrackerResponseError, match="action 77"):
        parse_announce_response(be(77, 4) + be(TID, 4) + bytes(12), TID)


def test_error_action() -> None:
    packet = be(3, 4) + be(TID, 4) + b"Connection ID missmatch.\x00"
    for parse in (lambda p: parse_connect_response(p, TID), lambda p: parse_announce_response(p, TID),
                  lambda p: parse_scrape_response(p, TID, [HASH])):
        with pytest.raises(TrackerFailure) as info:
            parse(packet)
        assert info.value.failure_reason == "Connection ID missmatch."
    with pytest.raises(TrackerFailure, match="no message"):
        parse_connect_response(be(3, 4) + be(TID, 4), TID)


# ---- announce ---------------------------------------------------------------------

def test_announce_request_bytes() -> None:
    r = req(event=Event.STARTED, key=0xCAFEBABE, numwant=None)
    expected = (
        be(CID, 8)            # 0  connection_id
        + be(1, 4)            # 8  action 1
        + be(TID, 4)          # 12 transaction_id
        + HASH                # 16 info_hash
        + PEER                # 36 peer_id
        + be(2, 8)            # 56 downloaded
        + be(1, 8)            # 64 left
        + be(3, 8)            # 72 uploaded
        + be(2, 4)            # 80 event: started = 2
        + be(0, 4)            # 84 IP address: 0 = the sender's
        + be(0xCAFEBABE, 4)   # 88 key
        + be(-1, 4, True)     # 92 num_want: -1 = default
        + be(6881, 2)         # 96 port
    )
    packet = build_announce_request(CID, TID, r)
    assert len(packet) == 98 and packet == expected


@pytest.mark.parametrize(("event", "code"), [(Event.NONE, 0), (Event.COMPLETED, 1), (Event.STARTED, 2),
                                              (Event.STOPPED, 3)])
def test_event_codes(event: Event, code: int) -> None:
    assert build_announce_request(CID, TID, req(event=event))[80:84] == be(code, 4)


def test_announce_request_numwant_and_ip() -> None:
    packet = build_announce_request(CID, TID, req(numwant=50, ip="10.1.2.3"))
    assert packet[84:88] == bytes([10, 1, 2, 3]) and packet[92:96] == be(50, 4)
    assert build_announce_request(CID, TID, req(ip="2001:db8::1"))[84:88] == bytes(4)  # v6 cannot go there


def test_bep41_url_data() -> None:
    packet = build_announce_request(CID, TID, req(), url_data=b"/announce?passkey=x")
    assert packet[98:] == b"\x02\x13/announce?passkey=x"
    long = bytes(range(256)) * 2
    options = build_url_data_options(long)
    assert options == b"\x02\xff" + long[:255] + b"\x02\xff" + long[255:510] + b"\x02\x02" + long[510:]
    assert build_url_data_options(b"") == b""


def test_announce_response_ipv4() -> None:
    packet = (be(1, 4) + be(TID, 4) + be(1800, 4) + be(7, 4) + be(5, 4)   # interval, leechers, seeders
              + bytes([10, 0, 0, 1]) + be(6881, 2) + bytes([10, 0, 0, 2]) + be(0, 2)
              + bytes([10, 0, 0, 1]) + be(6881, 2))
    r = parse_announce_response(packet, TID)
    assert r == AnnounceResponse(interval=1800, peers=(("10.0.0.1", 6881),), complete=5, incomplete=7)


def test_announce_response_ipv6() -> None:
    peer = bytes.fromhex("20010db8000000000000000000000007") + be(51413, 2)
    packet = be(1, 4) + be(TID, 4) + be(60, 4) + be(0, 4) + be(1, 4) + peer
    assert parse_announce_response(packet, TID, ipv6=True).peers == (("2001:db8::7", 51413),)  # type: ignore[union-attr]
    # 18 bytes also read as three IPv4 entries (two with port 0): only the address family tells.
    assert parse_announce_response(packet, TID, ipv6=False).peers == (("0.0.0.7", 51413),)  # type: ignore[union-attr]
    with pytest.raises(TrackerResponseError, match="not a multiple of 18"):
        parse_announce_response(packet + bytes(6), TID, ipv6=True)


def test_announce_response_oddities() -> None:
    base = be(1, 4) + be(TID, 4)
    with pytest.raises(TrackerResponseError, match="not a multiple of 6"):
        parse_announce_response(base + be(60, 4) + bytes(8) + bytes(7), TID)
    with pytest.raises(TrackerResponseError, match="interval"):
        parse_announce_response(base + be(-1, 4, True) + bytes(8), TID)
    r = parse_announce_response(base + be(0, 4) + be(-1, 4, True) + be(-1, 4, True), TID)
    assert r is not None and r.interval == 0 and r.complete is None and r.incomplete is None


# ---- scrape -------------------------------------------------------------------------

def test_scrape_request_and_response() -> None:
    other = b"\xee" * 20
    assert build_scrape_request(CID, TID, [HASH, other]) == be(CID, 8) + be(2, 4) + be(TID, 4) + HASH + other
    packet = be(2, 4) + be(TID, 4) + be(5, 4) + be(10, 4) + be(2, 4) + be(0, 4) + be(1, 4) + be(0, 4)
    r = parse_scrape_response(packet, TID, [HASH, other])
    assert r == ScrapeResponse(files={HASH: ScrapeStats(complete=5, downloaded=10, incomplete=2),
                                      other: ScrapeStats(complete=0, downloaded=1, incomplete=0)})
    with pytest.raises(TrackerResponseError, match="scrape response is 20 bytes, shorter than 32"):
        parse_scrape_response(packet[:20], TID, [HASH, other])


def test_scrape_request_limits() -> None:
    with pytest.raises(ValueError):
        build_scrape_request(CID, TID, [])
    with pytest.raises(ValueError):
        build_scrape_request(CID, TID, [HASH] * (MAX_SCRAPE_HASHES + 1))
    with pytest.raises(ValueError):
        build_scrape_request(CID, TID, [b"short"])
    assert len(build_scrape_request(CID, TID, [HASH] * MAX_SCRAPE_HASHES)) == 16 + 20 * 74


# ---- URLs ---------------------------------------------------------------------------

def test_parse_udp_url() -> None:
    a = parse_udp_url("udp://tracker.example:6969/announce?passkey=k")
    assert (a.host, a.port, a.url_data) == ("tracker.example", 6969, b"/announce?passkey=k")
    b = parse_udp_url("udp://[::1]:80")
    assert (b.host, b.port, b.url_data) == ("::1", 80, b"")
    for bad in ("udp://tracker.example/announce", "udp://:80", "http://t:1/", "udp://t:99999"):
        with pytest.raises(TrackerError) as info:
            parse_udp_url(bad)
        assert info.value.url == bad


# ---- retransmission -----------------------------------------------------------------

def test_retransmission_schedule() -> None:
    assert retransmit_schedule() == (15, 30, 60, 120, 240, 480, 960, 1920, 3840)
    assert retransmit_timeout(0) == 15 and retransmit_timeout(8) == 3840
    assert retransmit_schedule(0.1) == pytest.approx((0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6))
    for n in (-1, 9):
        with pytest.raises(ValueError):
            retransmit_timeout(n)


class Ids:
    """Predictable transaction ids: 100, 101, …"""

    def __init__(self) -> None:
        self.next = 100

    def __call__(self) -> int:
        self.next += 1
        return self.next - 1


def connect_reply(tid: int, cid: int = CID) -> bytes:
    return be(0, 4) + be(tid, 4) + be(cid, 8)


def announce_reply(tid: int) -> bytes:
    return be(1, 4) + be(tid, 4) + be(900, 4) + be(1, 4) + be(2, 4) + bytes([127, 0, 0, 1]) + be(7000, 2)


def tid_of(packet: bytes) -> int:
    return struct.unpack_from(">I", packet, 12)[0]


def test_transaction_happy_path() -> None:
    tx = UdpTrackerTransaction(announce=req(), transaction_ids=Ids())
    first = tx.start(0.0)
    assert first == build_connect_request(100) and tx.connecting and tx.deadline == 15.0
    assert tx.receive(b"junk", 1.0) is None  # ignored
    second = tx.receive(connect_reply(100), 2.0)
    assert second == build_announce_request(CID, 101, req()) and tx.deadline == 17.0
    assert tx.connection == ConnectionId(CID, 2.0)
    assert tx.receive(announce_reply(101), 3.0) is None
    assert tx.done and tx.attempts == 2
    assert isinstance(tx.result, AnnounceResponse) and tx.result.peers == (("127.0.0.1", 7000),)
    assert tx.receive(announce_reply(101), 4.0) is None  # after the end: nothing


def test_transaction_retransmits_same_packet_with_doubling_waits() -> None:
    tx = UdpTrackerTransaction(announce=req(), transaction_ids=Ids(), base_timeout=15)
    packet = tx.start(0.0)
    now, deadlines = 0.0, [tx.deadline]
    for _ in range(8):
        now = tx.deadline
        assert tx.on_timeout(now) == packet  # same transaction id: a late answer still counts
        deadlines.append(tx.deadline)
    waits = [b - a for a, b in zip([0.0] + deadlines, deadlines)]
    assert waits == [15, 30, 60, 120, 240, 480, 960, 1920, 3840]
    with pytest.raises(TrackerTimeout) as info:
        tx.on_timeout(tx.deadline)
    assert info.value.attempts == 9 and info.value.seconds == sum(waits)


def test_transaction_dropped_connect_then_success() -> None:
    tx = UdpTrackerTransaction(announce=req(), transaction_ids=Ids(), base_timeout=1)
    tx.start(0.0)
    assert tx.on_timeout(1.0) == build_connect_request(100) and tx.deadline == 3.0
    announce = tx.receive(connect_reply(100), 1.5)
    assert announce is not None and tid_of(announce) == 101
    assert tx.deadline == 2.5  # a new request starts its own schedule at n = 0
    tx.receive(announce_reply(101), 2.0)
    assert tx.done and tx.attempts == 3


def test_transaction_wrong_transaction_id_ignored_then_timeout() -> None:
    tx = UdpTrackerTransaction(scrape=[HASH], transaction_ids=Ids(), base_timeout=1)
    tx.start(0.0)
    for i in range(8):
        assert tx.receive(connect_reply(999), tx.deadline - 0.5) is None
        tx.on_timeout(tx.deadline)
    with pytest.raises(TrackerTimeout):
        tx.on_timeout(tx.deadline)
    assert not tx.done and tx.connection is None


def test_transaction_reuses_fresh_connection_id() -> None:
    tx = UdpTrackerTransaction(scrape=[HASH], connection=ConnectionId(CID, 100.0), transaction_ids=Ids())
    first = tx.start(100.0 + CONNECTION_ID_LIFETIME - 0.001)
    assert first == build_scrape_request(CID, 100, [HASH]) and not tx.connecting
    tx.receive(be(2, 4) + be(100, 4) + be(1, 4) + be(2, 4) + be(3, 4), 161.0)
    assert tx.result == ScrapeResponse(files={HASH: ScrapeStats(1, 2, 3)})


def test_transaction_expired_connection_id_reconnects() -> None:
    tx = UdpTrackerTransaction(announce=req(), connection=ConnectionId(CID, 0.0), transaction_ids=Ids())
    assert tx.start(CONNECTION_ID_LIFETIME) == build_connect_request(100)  # one minute old: expired


def test_transaction_reconnects_when_id_expires_during_retransmissions() -> None:
    tx = UdpTrackerTransaction(announce=req(), transaction_ids=Ids(), base_timeout=15)
    tx.start(0.0)
    tx.receive(connect_reply(100), 1.0)  # connection id from t=1
    assert tid_of(tx.on_timeout(16.0)) == 101  # t=16: resend the announce
    assert tx.deadline == 46.0
    resend = tx.on_timeout(46.0)  # t=46: still fresh (45 s old)
    assert tid_of(resend) == 101 and resend[8:12] == be(1, 4)
    again = tx.on_timeout(106.0)  # t=106: 105 s old → ask for a new connection id
    assert again == build_connect_request(102) and tx.connecting and tx.connection is None
    assert tx.deadline == 106.0 + 15 * 2**3  # n keeps growing across the reconnect


def test_transaction_error_action_raises() -> None:
    tx = UdpTrackerTransaction(announce=req(), transaction_ids=Ids())
    tx.start(0.0)
    with pytest.raises(TrackerFailure, match="banned"):
        tx.receive(be(3, 4) + be(100, 4) + b"banned", 1.0)


def test_transaction_ipv6_peers_and_url_data() -> None:
    tx = UdpTrackerTransaction(announce=req(), ipv6=True, url_data=b"/ann", transaction_ids=Ids())
    tx.start(0.0)
    announce = tx.receive(connect_reply(100), 0.0)
    assert announce is not None and announce[98:] == b"\x02\x04/ann"
    peer = bytes.fromhex("00000000000000000000000000000001") + be(9, 2)
    tx.receive(be(1, 4) + be(101, 4) + be(60, 4) + bytes(8) + peer, 0.1)
    assert isinstance(tx.result, AnnounceResponse) and tx.result.peers == (("::1", 9),)


def test_transaction_misuse() -> None:
    with pytest.raises(ValueError):
        UdpTrackerTransaction()
    with pytest.raises(ValueError):
        UdpTrackerTransaction(announce=req(), scrape=[HASH])
    with pytest.raises(ValueError):
        UdpTrackerTransaction(scrape=[])
    tx = UdpTrackerTransaction(announce=req())
    assert tx.receive(b"x" * 16, 0.0) is None  # not started
    tx.start(0.0)
    with pytest.raises(RuntimeError):
        tx.start(1.0)


# ---- properties -------------------------------------------------------------------

@given(st.binary(max_size=120), st.booleans())
def test_random_bytes_with_our_tid(tail: bytes, ipv6: bool) -> None:
    for action in range(5):
        packet = be(action, 4) + be(TID, 4) + tail
        for parse in (lambda p: parse_connect_response(p, TID),
                      lambda p: parse_announce_response(p, TID, ipv6=ipv6),
                      lambda p: parse_scrape_response(p, TID, [HASH, HASH[::-1]])):
            try:
                parse(packet)
            except TrackerError:
                pass


@given(st.binary(max_size=120))
def test_random_bytes_into_transaction(data: bytes) -> None:
    tx = UdpTrackerTransaction(announce=req(), transaction_ids=lambda: int.from_bytes(data[4:8] or b"\0", "big"))
    tx.start(0.0)
    try:
        tx.receive(data, 1.0)
        tx.receive(data, 2.0)
    except TrackerError:
        pass


@given(st.lists(st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)),
                min_size=1, max_size=10))
def test_scrape_round_trip(counts: list[tuple[int, int, int]]) -> None:
    hashes = [bytes([i]) * 20 for i in range(len(counts))]
    packet = be(2, 4) + be(TID, 4) + b"".join(be(s, 4) + be(c, 4) + be(lch, 4) for s, c, lch in counts)
    r = parse_scrape_response(packet, TID, hashes)
    assert r is not None
    assert [(x.complete, x.downloaded, x.incomplete) for x in r.files.values()] == counts
