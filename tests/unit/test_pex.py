"""ut_pex (BEP 11): messages byte for byte both ways, IPv6, every malformed or oversized form refused with
PexError, and PexTracker's differences, caps, recipient exclusion and once-a-minute rule.

A ut_pex payload always arrives whole (the wire codec frames extension messages), so these tests are
on complete payloads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrent.codec import pex
from torrent.codec.pex import (
    HOLEPUNCH,
    MAX_ADDED,
    MAX_DROPPED,
    MAX_PAYLOAD,
    MAX_PEERS,
    PREFERS_ENCRYPTION,
    REACHABLE,
    SEED,
    UTP,
    PexError,
    PexMessage,
    PexPeer,
    PexTracker,
)

# 10.0.0.1:6881 and 10.0.0.2:51413 in compact form
A4 = b"\x0a\x00\x00\x01\x1a\xe1"
B4 = b"\x0a\x00\x00\x02\xc8\xd5"
# [2001:db8::1]:6881
A6 = bytes.fromhex("20010db8000000000000000000000001") + b"\x1a\xe1"


def test_the_flags_are_bep11s() -> None:
    assert (PREFERS_ENCRYPTION, SEED, UTP, HOLEPUNCH, REACHABLE) == (0x01, 0x02, 0x04, 0x08, 0x10)


def test_a_message_byte_for_byte() -> None:
    payload = pex.build([("10.0.0.1", 6881, SEED | REACHABLE)], [("10.0.0.2", 51413)])
    assert payload == b"d5:added6:" + A4 + b"7:added.f1:\x127:dropped6:" + B4 + b"e"
    assert pex.parse(payload) == PexMessage((PexPeer("10.0.0.1", 6881, 0x12),), (("10.0.0.2", 51413),))


def test_an_empty_message_keeps_the_ipv4_keys() -> None:
    assert pex.build() == b"d5:added0:7:added.f0:7:dropped0:e"
    assert pex.parse(pex.build()) == PexMessage()
    assert pex.parse(b"de") == PexMessage()


def test_ipv6_byte_for_byte() -> None:
    payload = pex.build([("2001:db8::1", 6881, UTP)], [("2001:db8::1", 6881)])
    assert payload == (b"d5:added0:7:added.f0:6:added618:" + A6 + b"8:added6.f1:\x047:dropped0:8:dropped618:"
                       + A6 + b"e")
    assert pex.parse(payload) == PexMessage((PexPeer("2001:db8::1", 6881, UTP),), (("2001:db8::1", 6881),))


def test_both_families_round_trip_with_their_flags() -> None:
    added = [PexPeer("10.0.0.1", 6881, SEED), PexPeer("2001:db8::2", 1, UTP | HOLEPUNCH),
             PexPeer("192.168.1.9", 65535, 0), PexPeer("::1", 80, REACHABLE | PREFERS_ENCRYPTION)]
    dropped = [("10.0.0.2", 51413), ("fe80::1", 6881)]
    message = pex.parse(pex.build(added, dropped))
    assert message.added == (added[0], added[2], added[1], added[3])  # IPv4 first, then IPv6
    assert message.dropped == tuple(dropped)
    assert message.added[0] == ("10.0.0.1", 6881, SEED)  # a plain tuple compares equal


def test_an_ipv4_mapped_address_is_sent_as_ipv4() -> None:
    assert pex.build([("::ffff:10.0.0.1", 6881, 0)]) == pex.build([("10.0.0.1", 6881, 0)])


@pytest.mark.parametrize("flags", [b"", b"\x01", b"\x01\x02\x03", b"i5e"])
def test_a_flags_string_of_the_wrong_length_or_type_is_ignored(flags: bytes) -> None:
    raw = flags if flags == b"i5e" else b"%d:%s" % (len(flags), flags)
    payload = b"d5:added12:" + A4 + B4 + b"7:added.f" + raw + b"e"
    assert pex.parse(payload).added == (PexPeer("10.0.0.1", 6881, 0), PexPeer("10.0.0.2", 51413, 0))


def test_port_zero_is_skipped_and_unknown_keys_are_allowed() -> None:
    zero = b"\x0a\x00\x00\x03\x00\x00"
    payload = b"d5:added12:" + A4 + zero + b"7:added.f2:\x02\x047:dropped6:" + zero + b"5:otherli1eee"
    assert pex.parse(payload) == PexMessage((PexPeer("10.0.0.1", 6881, SEED),), ())


@pytest.mark.parametrize("payload", [
    b"", b"d", b"xyz", b"le", b"i1e", b"4:spam",
    b"de" + b"x",  # trailing bytes
    b"d5:addedi1ee",  # not a string
    b"d6:added6li1eee",
    b"d5:added7:" + A4 + b"xe",  # not a multiple of 6
    b"d5:added5:" + A4[:5] + b"e",
    b"d6:added617:" + A6[:17] + b"e",  # not a multiple of 18
    b"d7:dropped5:" + B4[:5] + b"e",
    b"d8:dropped619:" + A6 + b"xe",
    b"d5:added6:" + A4 + b"5:added6:" + A4 + b"e",  # duplicate key
])
def test_malformed_messages_are_refused(payload: bytes) -> None:
    with pytest.raises(PexError):
        pex.parse(payload)


def _compact_list(key: bytes, entry: bytes, count: int) -> bytes:
    return b"%d:%s%d:%s" % (len(key), key, count * len(entry), entry * count)


@pytest.mark.parametrize("payload", [
    b"d" + _compact_list(b"added", A4, MAX_PEERS + 1) + b"e",
    b"d" + _compact_list(b"dropped6", A6, MAX_PEERS + 1) + b"e",
    # within the cap one family at a time, over it together
    b"d" + _compact_list(b"added", A4, MAX_PEERS) + _compact_list(b"added6", A6, 1) + b"e",
    b"d" + _compact_list(b"dropped", B4, 150) + _compact_list(b"dropped6", A6, 51) + b"e",
    b"d5:added0:5:other" + b"%d:" % MAX_PAYLOAD + bytes(MAX_PAYLOAD) + b"e",  # over the payload limit
    b"d5:added0:5:otherl" + b"l" * 10 + b"e" * 11 + b"e",  # nested too deep
])
def test_oversized_messages_are_refused(payload: bytes) -> None:
    with pytest.raises(PexError):
        pex.parse(payload)


def test_the_largest_accepted_message() -> None:
    payload = (b"d" + _compact_list(b"added", A4, 100) + _compact_list(b"added6", A6, 100)
               + _compact_list(b"dropped", B4, 100) + _compact_list(b"dropped6", A6, 100) + b"e")
    assert len(payload) <= MAX_PAYLOAD
    message = pex.parse(payload)
    assert len(message.added) == len(message.dropped) == MAX_PEERS


def test_build_refuses_more_than_bep11_allows_and_hostnames() -> None:
    many = [(f"10.0.{i // 256}.{i % 256}", 6881, 0) for i in range(MAX_ADDED + 1)]
    with pytest.raises(ValueError):
        pex.build(many)
    with pytest.raises(ValueError):
        pex.build([], [(h, p) for h, p, _ in many[:MAX_DROPPED + 1]])
    with pytest.raises(ValueError):
        pex.build([("example.org", 6881, 0)])
    assert len(pex.parse(pex.build(many[:MAX_ADDED])).added) == MAX_ADDED


@given(st.binary(max_size=300))
def test_garbage_is_a_pex_error_or_a_message(payload: bytes) -> None:
    try:
        pex.parse(payload)
    except PexError:
        pass


_v4 = st.builds(lambda n: str(__import__("ipaddress").IPv4Address(n)), st.integers(0, 2**32 - 1))
# IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are left out: they go out as the IPv4 address they are
# (test_a_mapped_address_goes_out_as_ipv4), so they do not come back as written.
_v6 = st.builds(lambda n: str(__import__("ipaddress").IPv6Address(n)),
                st.integers(2**32, 2**128 - 1).filter(lambda n: n >> 32 != 0xFFFF))
_peers = st.lists(st.tuples(st.one_of(_v4, _v6), st.integers(1, 65535), st.integers(0, 255)), max_size=MAX_ADDED,
                  unique_by=lambda p: (p[0], p[1]))


def test_a_mapped_address_goes_out_as_ipv4() -> None:
    message = pex.parse(pex.build([("::ffff:10.0.0.1", 6881, 0)], [("::ffff:0:0", 1)]))
    assert message.added == (("10.0.0.1", 6881, 0),) and message.dropped == (("0.0.0.0", 1),)


@given(_peers, _peers)
def test_any_message_round_trips(added: list[tuple[str, int, int]], dropped: list[tuple[str, int, int]]) -> None:
    message = pex.parse(pex.build(added, [(h, p) for h, p, _ in dropped]))
    v4_first = sorted(added, key=lambda p: ":" in p[0])
    assert message.added == tuple(v4_first)
    assert message.dropped == tuple((h, p) for h, p, _ in sorted(dropped, key=lambda p: ":" in p[0]))


# ---- PexTracker ------------------------------------------------------------------------------


def peers(n: int, start: int = 0, flags: int = 0) -> list[tuple[str, int, int]]:
    return [(f"10.1.{i // 256}.{i % 256}", 6881, flags) for i in range(start, start + n)]


def test_the_first_message_is_the_whole_set() -> None:
    tracker = PexTracker(("10.9.9.9", 6881))
    current = peers(3) + [("2001:db8::5", 7000, SEED)]
    payload = tracker.poll(current, now=0.0)
    assert payload is not None
    assert pex.parse(payload) == PexMessage(tuple(PexPeer(*p) for p in current), ())


def test_later_messages_carry_the_difference() -> None:
    tracker = PexTracker(("10.9.9.9", 6881))
    tracker.poll(peers(3), now=0.0)
    assert tracker.diff(peers(3)) == ((), ())
    current = peers(2) + peers(2, start=10, flags=REACHABLE)
    added, dropped = tracker.diff(current)
    assert added == tuple(PexPeer(*p) for p in peers(2, start=10, flags=REACHABLE))
    assert dropped == (("10.1.0.2", 6881),)
    payload = tracker.poll(current, now=60.0)
    assert payload is not None and pex.parse(payload) == PexMessage(added, dropped)
    assert tracker.diff(current) == ((), ())


def test_at_most_fifty_each_way_and_the_rest_wait() -> None:
    tracker = PexTracker(("10.9.9.9", 6881))
    first = pex.parse(tracker.poll(peers(120), now=0.0) or b"")
    assert first.added == tuple(PexPeer(*p) for p in peers(50))
    second = pex.parse(tracker.poll(peers(120), now=60.0) or b"")
    assert second.added == tuple(PexPeer(*p) for p in peers(50, start=50))
    # 70 of the 100 sent go away: 50 drops now, 20 next time, beside the last 20 adds
    third = pex.parse(tracker.poll(peers(30) + peers(20, start=100), now=120.0) or b"")
    assert third.added == tuple(PexPeer(*p) for p in peers(20, start=100))
    assert third.dropped == tuple((h, p) for h, p, _ in peers(50, start=30))
    fourth = pex.parse(tracker.poll(peers(30) + peers(20, start=100), now=180.0) or b"")
    assert fourth == PexMessage((), tuple((h, p) for h, p, _ in peers(20, start=80)))
    assert tracker.poll(peers(30) + peers(20, start=100), now=240.0) is None


def test_a_peer_that_comes_back_before_its_drop_was_sent_is_no_news() -> None:
    tracker = PexTracker(("10.9.9.9", 6881))
    tracker.poll(peers(60), now=0.0)  # 50 sent
    tracker.poll(peers(10, start=60), now=60.0)  # 10 added, 50 dropped
    assert tracker.diff(peers(10, start=60)) == ((), ())


def test_a_changed_flag_is_sent_again() -> None:
    tracker = PexTracker(("10.9.9.9", 6881))
    tracker.poll(peers(2), now=0.0)
    became_seed = [peers(1)[0], ("10.1.0.1", 6881, SEED)]
    assert tracker.diff(became_seed) == ((PexPeer("10.1.0.1", 6881, SEED),), ())


def test_never_the_recipients_own_address() -> None:
    current = peers(2) + [("10.9.9.9", 6881, 0), ("10.9.9.9", 7000, 0)]
    known = PexTracker(("10.9.9.9", 6881))
    assert [p.port for p in known.diff(current)[0]] == [6881, 6881, 7000]  # its other port is another peer
    unknown_port = PexTracker(("10.9.9.9", None))
    assert unknown_port.diff(current)[0] == tuple(PexPeer(*p) for p in peers(2))
    mapped = PexTracker(("::ffff:10.9.9.9", 6881))
    assert len(mapped.diff(current)[0]) == 3
    assert PexTracker(("10.9.9.9", 6881)).diff([("::ffff:10.9.9.9", 6881, 0)]) == ((), ())


def test_one_message_a_minute() -> None:
    tracker = PexTracker(("10.9.9.9", 6881))
    assert tracker.due(0.0)
    assert tracker.poll(peers(1), now=100.0) is not None
    assert not tracker.due(159.9)
    assert tracker.poll(peers(2), now=159.9) is None  # too soon, though there is news
    assert tracker.due(160.0)
    assert tracker.poll(peers(2), now=160.0) is not None


def test_nothing_new_sends_nothing_and_keeps_the_clock() -> None:
    tracker = PexTracker(("10.9.9.9", 6881))
    assert tracker.poll([], now=0.0) is None  # no peers yet: no first message either
    assert tracker.last_sent is None
    assert tracker.poll(peers(1), now=5.0) is not None
    assert tracker.poll(peers(1), now=70.0) is None
    assert tracker.last_sent == 5.0


def test_a_peer_sending_too_often_is_noticed() -> None:
    tracker = PexTracker(("10.9.9.9", 6881))
    assert tracker.received(0.0)
    assert tracker.received(55.0)  # a little early is tolerated
    assert not tracker.received(60.0)  # 5 s after the last one
    assert tracker.received(110.0)
