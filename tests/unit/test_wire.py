"""Peer wire codec: golden bytes, round trips, any fragmentation, one test per rejected case."""

from __future__ import annotations

import array
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torrent.codec import bencoding, wire
from torrent.core.errors import BencodeError, BitfieldError, ProtocolError, TorrentError
from torrent.core.settings import DEFAULT_LIMITS, Limits
from torrent.codec.wire import (
    AllowedFast,
    Bitfield,
    Cancel,
    Choke,
    Extended,
    ExtensionHandshake,
    Handshake,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    MessageId,
    NotInterested,
    Piece,
    Port,
    Reject,
    Request,
    Suggest,
    Unchoke,
    Unknown,
    WireError,
    WireParser,
)

INFO_HASH = bytes(range(20))
PEER_ID = b"-TO0001-" + b"abcdefghijkl"
HANDSHAKE = Handshake(INFO_HASH, PEER_ID)

# Small limits make the oversize cases cheap and let fuzzing reach them.
SMALL = Limits(wire_max_message=64, wire_max_request=32, wire_max_extended=16)

# (message, builder output, the bytes BEP 3/5/6/10 prescribe, written out by hand)
GOLDEN: list[tuple[Any, bytes, str]] = [
    (KeepAlive(), wire.build_keepalive(), "00000000"),
    (Choke(), wire.build_choke(), "00000001 00"),
    (Unchoke(), wire.build_unchoke(), "00000001 01"),
    (Interested(), wire.build_interested(), "00000001 02"),
    (NotInterested(), wire.build_not_interested(), "00000001 03"),
    (Have(0x0102), wire.build_have(0x0102), "00000005 04 00000102"),
    (Bitfield(b"\xa5\x80"), wire.build_bitfield(b"\xa5\x80"), "00000003 05 a580"),
    (Request(1, 0x4000, 0x4000), wire.build_request(1, 0x4000, 0x4000), "0000000d 06 00000001 00004000 00004000"),
    (Piece(1, 0x4000, b"abc"), wire.build_piece(1, 0x4000, b"abc"), "0000000c 07 00000001 00004000 616263"),
    (Cancel(1, 0x4000, 0x4000), wire.build_cancel(1, 0x4000, 0x4000), "0000000d 08 00000001 00004000 00004000"),
    (Port(6881), wire.build_port(6881), "00000003 09 1ae1"),
    (Suggest(7), wire.build_suggest(7), "00000005 0d 00000007"),
    (HaveAll(), wire.build_have_all(), "00000001 0e"),
    (HaveNone(), wire.build_have_none(), "00000001 0f"),
    (Reject(1, 0, 0x4000), wire.build_reject(1, 0, 0x4000), "0000000d 10 00000001 00000000 00004000"),
    (AllowedFast(9), wire.build_allowed_fast(9), "00000005 11 00000009"),
    (Extended(3, b"d1:xi1ee"), wire.build_extended(3, b"d1:xi1ee"), "0000000a 14 03 64313a78693165 65"),
    (Unknown(21, b"\x01\x02"), wire.build_message(21, b"\x01\x02"), "00000003 15 0102"),
]
MESSAGES = [msg for msg, _, _ in GOLDEN]
IDS = [type(msg).__name__ for msg in MESSAGES]
STREAM = HANDSHAKE.to_bytes() + b"".join(wire.encode(m) for m in MESSAGES)


def parse_all(data: bytes, **kwargs: Any) -> list[Any]:
    return WireParser(**kwargs).feed(data)


def feed_chunks(parser: WireParser, data: bytes, cuts: list[int]) -> list[Any]:
    events: list[Any] = []
    bounds = [0, *sorted(cuts), len(data)]
    for a, b in zip(bounds, bounds[1:]):
        events += parser.feed(data[a:b])
    return events


def reject(data: bytes, fragment: str, error: type[Exception] = ProtocolError, **kwargs: Any) -> ProtocolError:
    kwargs.setdefault("expect_handshake", False)
    parser = WireParser(**kwargs)
    with pytest.raises(error, match=fragment) as info:
        parser.feed(data)
    return info.value


# --- golden bytes and round trips -----------------------------------------------


@pytest.mark.parametrize(("msg", "built", "golden"), GOLDEN, ids=IDS)
def test_builder_writes_spec_bytes(msg: Any, built: bytes, golden: str) -> None:
    assert built == bytes.fromhex(golden)
    assert wire.encode(msg) == built
    if hasattr(msg, "ID"):
        assert built[4] == msg.ID


@pytest.mark.parametrize("msg", MESSAGES, ids=IDS)
def test_every_message_round_trips(msg: Any) -> None:
    assert parse_all(wire.encode(msg), expect_handshake=False) == [msg]


@pytest.mark.parametrize("msg", MESSAGES, ids=IDS)
def test_every_message_round_trips_with_num_pieces_known(msg: Any) -> None:
    parser = WireParser(expect_handshake=False, num_pieces=0x0103)
    if isinstance(msg, Bitfield):
        msg = Bitfield(bytes(33))
    assert parser.feed(wire.encode(msg)) == [msg]


def test_handshake_bytes_layout() -> None:
    raw = HANDSHAKE.to_bytes()
    assert len(raw) == wire.HANDSHAKE_LENGTH == 68
    assert raw == b"\x13BitTorrent protocol" + bytes.fromhex("0000000000100004") + INFO_HASH + PEER_ID
    assert wire.encode(HANDSHAKE) == raw


def test_handshake_round_trips() -> None:
    for reserved in (bytes(8), b"\xff" * 8, wire.build_reserved(dht=True)):
        hs = Handshake(INFO_HASH, PEER_ID, reserved)
        assert wire.parse_handshake(hs.to_bytes()) == hs
        assert parse_all(hs.to_bytes()) == [hs]


def test_reserved_bits() -> None:
    assert wire.build_reserved() == bytes.fromhex("0000000000100004")
    assert wire.build_reserved(extensions=False, fast=False) == bytes(8)
    assert wire.build_reserved(extensions=False, fast=False, dht=True) == bytes.fromhex("0000000000000001")
    for ext in (False, True):
        for fast in (False, True):
            for dht in (False, True):
                hs = Handshake(INFO_HASH, PEER_ID, wire.build_reserved(ext, fast, dht))
                assert (hs.supports_extensions, hs.supports_fast, hs.supports_dht) == (ext, fast, dht)


def test_handshake_default_advertises_extensions_and_fast() -> None:
    assert HANDSHAKE.supports_extensions and HANDSHAKE.supports_fast and not HANDSHAKE.supports_dht


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"info_hash": b"x" * 19}, "info_hash must be 20 bytes"),
        ({"peer_id": b"x" * 21}, "peer_id must be 20 bytes"),
        ({"reserved": b"\x00" * 7}, "reserved must be 8 bytes"),
        ({"info_hash": "x" * 20}, "info_hash must be 20 bytes"),
    ],
)
def test_handshake_build_rejects_bad_fields(kwargs: dict[str, Any], fragment: str) -> None:
    fields: dict[str, Any] = {"info_hash": INFO_HASH, "peer_id": PEER_ID, **kwargs}
    with pytest.raises(ValueError, match=fragment):
        Handshake(**fields)


def test_events_are_immutable() -> None:
    with pytest.raises(AttributeError):
        Have(1).index = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        HANDSHAKE.peer_id = b"y" * 20  # type: ignore[misc]


def test_events_of_different_types_are_not_equal() -> None:
    assert Have(1) != Suggest(1) != AllowedFast(1)
    assert Choke() != Unchoke()
    assert Request(1, 2, 3) != Cancel(1, 2, 3)


def test_handshake_then_messages_in_one_chunk() -> None:
    assert parse_all(STREAM) == [HANDSHAKE, *MESSAGES]


def test_without_handshake_messages_parse_at_once() -> None:
    assert parse_all(wire.build_choke(), expect_handshake=False) == [Choke()]


def test_piece_header_plus_data_is_a_piece() -> None:
    data = b"\x07" * 100
    assert wire.build_piece_header(3, 16, len(data)) + data == wire.build_piece(3, 16, data)
    assert len(wire.build_piece_header(3, 16, len(data))) == 13


def test_piece_in_one_feed_is_a_view_of_the_fed_bytes_not_a_copy() -> None:
    chunk = bytearray(wire.build_piece(0, 0, b"abcd") + wire.build_have(1))
    (piece, have) = parse_all(chunk, expect_handshake=False)
    assert isinstance(piece.data, memoryview) and piece.data.obj is chunk
    assert piece.data == b"abcd" and have == Have(1)


def test_piece_split_over_feeds_is_an_own_copy_that_survives_later_feeds() -> None:
    message = wire.build_piece(2, 16384, bytes(range(200)))
    parser = WireParser(expect_handshake=False)
    assert parser.feed(message[:50]) == []
    (piece,) = parser.feed(message[50:] + wire.build_have(3)[:2])
    parser.feed(wire.build_have(3)[2:] + wire.build_piece(0, 0, b"zz")[:7])
    assert (piece.index, piece.begin) == (2, 16384)
    assert type(piece.data) is bytes and piece.data == bytes(range(200))


def test_feed_accepts_bytearray_and_memoryviews() -> None:
    # The last chunk is a memoryview of 4-byte items; the parser must read its bytes.
    split = 100 + (len(STREAM) - 100) % 4
    parser = WireParser()
    events = parser.feed(bytearray(STREAM[:70]))
    events += parser.feed(memoryview(STREAM)[70:split])
    words = array.array("I")
    words.frombytes(STREAM[split:])
    events += parser.feed(memoryview(words))
    assert events == [HANDSHAKE, *MESSAGES]


def test_unknown_ids_are_events_not_errors() -> None:
    known = {int(m) for m in MessageId}
    for msg_id in range(256):
        if msg_id not in known:
            assert parse_all(wire.build_message(msg_id, b"xy"), expect_handshake=False) == [Unknown(msg_id, b"xy")]


def test_unchecked_bitfield_is_kept_raw_until_piece_count_known() -> None:
    assert parse_all(wire.build_bitfield(b"\xff\xff\xff"), expect_handshake=False) == [Bitfield(b"\xff\xff\xff")]


def test_num_pieces_can_be_set_later() -> None:
    parser = WireParser(expect_handshake=False)
    assert parser.feed(wire.build_have(50)) == [Have(50)]
    parser.num_pieces = 10
    assert parser.num_pieces == 10
    with pytest.raises(ProtocolError, match="have: index 50 out of range for 10 pieces"):
        parser.feed(wire.build_have(50))


@pytest.mark.parametrize("value", [0, -1, "3", 2.0, True])
def test_num_pieces_must_be_a_positive_int(value: Any) -> None:
    with pytest.raises(ValueError, match="num_pieces must be a positive int"):
        WireParser(num_pieces=value)


# --- fragmentation ----------------------------------------------------------------


@pytest.mark.parametrize("msg", MESSAGES, ids=IDS)
def test_every_message_split_at_every_byte(msg: Any) -> None:
    raw = wire.encode(msg)
    for cut in range(len(raw) + 1):
        assert feed_chunks(WireParser(expect_handshake=False), raw, [cut]) == [msg]
    assert feed_chunks(WireParser(expect_handshake=False), raw, list(range(len(raw)))) == [msg]


def test_stream_split_at_every_byte() -> None:
    expected = [HANDSHAKE, *MESSAGES]
    for cut in range(len(STREAM) + 1):
        assert feed_chunks(WireParser(), STREAM, [cut]) == expected, cut


def test_stream_split_at_every_pair_of_bytes_near_the_handshake() -> None:
    expected = [HANDSHAKE, *MESSAGES]
    for a in range(0, 90):
        for b in range(a, 90):
            assert feed_chunks(WireParser(), STREAM, [a, b]) == expected, (a, b)


def test_stream_one_byte_at_a_time() -> None:
    parser = WireParser()
    events: list[Any] = []
    for i in range(len(STREAM)):
        events += parser.feed(STREAM[i : i + 1])
    assert events == [HANDSHAKE, *MESSAGES]
    assert parser.buffered == 0


def test_many_small_messages_in_one_chunk() -> None:
    haves = [Have(i) for i in range(20_000)]
    parser = WireParser(expect_handshake=False)
    assert parser.feed(b"".join(map(wire.encode, haves))) == haves
    assert parser.buffered == 0


def test_only_the_unfinished_tail_stays_buffered() -> None:
    piece = wire.build_piece(1, 0, b"z" * 1000)
    parser = WireParser(expect_handshake=False)
    assert parser.feed(wire.build_have(1) + piece[:500]) == [Have(1)]
    assert parser.buffered == 500
    assert parser.feed(piece[500:] + wire.build_choke()[:2]) == [Piece(1, 0, b"z" * 1000)]
    assert parser.buffered == 2


def test_empty_feed_is_harmless() -> None:
    parser = WireParser()
    assert parser.feed(b"") == []
    assert parser.feed(STREAM) == [HANDSHAKE, *MESSAGES]
    assert parser.feed(b"") == []


# --- property tests ---------------------------------------------------------------

u32 = st.integers(0, 2**32 - 1)
block_length = st.integers(1, DEFAULT_LIMITS.wire_max_request)
unknown_id = st.integers(0, 255).filter(lambda i: i not in {int(m) for m in MessageId})
messages = st.one_of(
    st.sampled_from([KeepAlive(), Choke(), Unchoke(), Interested(), NotInterested(), HaveAll(), HaveNone()]),
    st.builds(Have, u32),
    st.builds(Suggest, u32),
    st.builds(AllowedFast, u32),
    st.builds(Bitfield, st.binary(max_size=40)),
    st.builds(Request, u32, u32, block_length),
    st.builds(Cancel, u32, u32, block_length),
    st.builds(Reject, u32, u32, block_length),
    st.builds(Piece, u32, u32, st.binary(max_size=200)),
    st.builds(Port, st.integers(0, 0xFFFF)),
    st.builds(Extended, st.integers(0, 255), st.binary(max_size=60)),
    st.builds(Unknown, unknown_id, st.binary(max_size=30)),
)


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[int]:
    return draw(st.lists(st.integers(0, len(data)), max_size=12))


@settings(max_examples=150, deadline=None)
@given(msgs=st.lists(messages, max_size=25), data=st.data())
def test_random_messages_any_chunking(msgs: list[Any], data: st.DataObject) -> None:
    stream = HANDSHAKE.to_bytes() + b"".join(map(wire.encode, msgs))
    cuts = data.draw(chunked(stream))
    parser = WireParser()
    assert feed_chunks(parser, stream, cuts) == [HANDSHAKE, *msgs]
    assert parser.buffered == 0


def outcome(parser: WireParser, data: bytes, cuts: list[int], bound: int) -> tuple[list[Any], str | None]:
    """Events until the first error, and that error's text; only ProtocolError may escape."""
    events: list[Any] = []
    bounds = [0, *sorted(cuts), len(data)]
    for a, b in zip(bounds, bounds[1:]):
        try:
            events += parser.feed(data[a:b])
        except ProtocolError as exc:
            return events, str(exc)
        assert parser.buffered <= bound
    return events, None


# Frames whose length prefix is usually right for their body, with bodies of
# the sizes fixed messages use, mixed with valid messages: garbage that gets
# past the framing to the per-message checks. Plain random bytes mostly hit
# the length limit.
frame = st.builds(
    lambda msg_id, body, skew: max(0, len(body) + 1 + skew).to_bytes(4, "big") + bytes([msg_id]) + body,
    st.sampled_from([*map(int, MessageId), 10, 21, 255]),
    st.one_of(st.binary(max_size=40), *(st.binary(min_size=n, max_size=n) for n in (2, 4, 8, 12))),
    st.sampled_from([0, 0, 0, 0, 0, -1, 1]) | st.integers(-5, 80),
)
garbage = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(frame, messages.map(wire.encode)), max_size=10).map(b"".join),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tail=garbage,
    num_pieces=st.none() | st.integers(1, 300),
    small=st.booleans(),
    data=st.data(),
)
def test_garbage_after_handshake_gives_events_or_protocol_error(
    tail: bytes, num_pieces: int | None, small: bool, data: st.DataObject
) -> None:
    limits = SMALL if small else DEFAULT_LIMITS
    stream = HANDSHAKE.to_bytes() + tail
    bound = 4 + limits.wire_max_message
    # One byte at a time sees every event before an error; any chunking must
    # see a prefix of them and fail with the same text.
    bytewise = WireParser(limits, num_pieces=num_pieces)
    events, error = outcome(bytewise, stream, list(range(len(stream))), bound)
    chunked_parser = WireParser(limits, num_pieces=num_pieces)
    got, got_error = outcome(chunked_parser, stream, data.draw(chunked(stream)), bound)
    assert got_error == error
    if error is None:
        assert got == events
    else:
        assert got == events[: len(got)]
        with pytest.raises(ProtocolError, match="connection already failed"):
            chunked_parser.feed(wire.build_choke())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100))
def test_garbage_instead_of_handshake_gives_events_or_protocol_error(data: bytes) -> None:
    outcome(WireParser(), data, [], 4 + DEFAULT_LIMITS.wire_max_message)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=80),
        st.dictionaries(st.binary(max_size=8), st.integers() | st.binary(max_size=20), max_size=6).map(
            bencoding.encode
        ),
    )
)
def test_garbage_extended_handshake_gives_result_or_protocol_error(payload: bytes) -> None:
    try:
        result = wire.parse_extended_handshake(payload)
    except ProtocolError:
        return
    assert isinstance(result, ExtensionHandshake)


# --- rejected cases -----------------------------------------------------------------


def test_oversized_length_prefix_rejected_before_body() -> None:
    prefix = (DEFAULT_LIMITS.wire_max_message + 1).to_bytes(4, "big")
    parser = WireParser(expect_handshake=False)
    assert parser.feed(prefix[:3]) == []
    with pytest.raises(WireError, match=f"length prefix {DEFAULT_LIMITS.wire_max_message + 1} exceeds the limit"):
        parser.feed(prefix[3:])


def test_length_prefix_limit_comes_from_limits() -> None:
    reject(b"\x00\x00\x00\x41", "length prefix 65 exceeds the limit of 64 bytes", limits=SMALL)
    largest = wire.build_message(99, b"x" * 63)
    assert parse_all(largest, limits=SMALL, expect_handshake=False) == [Unknown(99, b"x" * 63)]


def test_receive_buffer_stays_bounded() -> None:
    parser = WireParser(SMALL, expect_handshake=False)
    big = wire.build_message(99, b"x" * 63)
    for i in range(len(big) - 1):
        assert parser.feed(big[i : i + 1]) == []
        assert parser.buffered == i + 1 <= 4 + SMALL.wire_max_message
    assert parser.feed(big[-1:]) == [Unknown(99, b"x" * 63)]
    assert parser.buffered == 0


FIXED = [
    (MessageId.CHOKE, 0),
    (MessageId.UNCHOKE, 0),
    (MessageId.INTERESTED, 0),
    (MessageId.NOT_INTERESTED, 0),
    (MessageId.HAVE, 4),
    (MessageId.REQUEST, 12),
    (MessageId.CANCEL, 12),
    (MessageId.PORT, 2),
    (MessageId.SUGGEST, 4),
    (MessageId.HAVE_ALL, 0),
    (MessageId.HAVE_NONE, 0),
    (MessageId.REJECT, 12),
    (MessageId.ALLOWED_FAST, 4),
]


WRONG_SIZES = [(msg_id, size, size + delta) for msg_id, size in FIXED for delta in (-1, 1, 7) if size + delta >= 0]


@pytest.mark.parametrize(
    ("msg_id", "size", "wrong"), WRONG_SIZES, ids=[f"{m.name.lower()}-{w}" for m, _, w in WRONG_SIZES]
)
def test_wrong_payload_size_rejected_from_the_header(msg_id: MessageId, size: int, wrong: int) -> None:
    header = (1 + wrong).to_bytes(4, "big") + bytes([msg_id])
    err = reject(header, f"^{msg_id.name.lower()}: payload is {wrong} bytes, expected {size}$")
    assert isinstance(err, WireError) and err.kind == msg_id.name.lower()


def test_piece_shorter_than_its_header() -> None:
    reject(b"\x00\x00\x00\x08\x07", "piece: payload is 7 bytes, expected at least 8")


def test_piece_block_over_request_limit() -> None:
    header = wire.build_piece_header(0, 0, SMALL.wire_max_request + 1)
    reject(header, "piece: block of 33 bytes exceeds the limit of 32", limits=SMALL)
    largest = wire.build_piece(0, 0, b"x" * 32)
    assert parse_all(largest, limits=SMALL, expect_handshake=False) == [Piece(0, 0, b"x" * 32)]


@pytest.mark.parametrize("build", [wire.build_request, wire.build_cancel, wire.build_reject])
def test_zero_length_block_request(build: Any) -> None:
    name = build.__name__.removeprefix("build_")
    reject(build(1, 2, 0), rf"^{name}: zero length \(index 1, begin 2\)$")


@pytest.mark.parametrize("build", [wire.build_request, wire.build_cancel, wire.build_reject])
def test_oversized_block_request(build: Any) -> None:
    name = build.__name__.removeprefix("build_")
    too_big = DEFAULT_LIMITS.wire_max_request + 1
    limit = DEFAULT_LIMITS.wire_max_request
    reject(build(1, 2, too_big), rf"^{name}: length {too_big} exceeds the limit of {limit} \(index 1, begin 2\)$")
    assert parse_all(build(1, 2, too_big - 1), expect_handshake=False)[0].length == too_big - 1


def test_bitfield_with_spare_bits_set() -> None:
    fragment = "bitfield: spare bits set in last byte 0xc1 for 10 pieces"
    err = reject(wire.build_bitfield(b"\xff\xc1"), fragment, BitfieldError, num_pieces=10)
    assert isinstance(err, ProtocolError)
    assert parse_all(wire.build_bitfield(b"\xff\xc0"), num_pieces=10, expect_handshake=False) == [Bitfield(b"\xff\xc0")]


@pytest.mark.parametrize("data", [b"\xff", b"\xff\xc0\x00", b""])
def test_bitfield_of_wrong_length_rejected_from_the_header(data: bytes) -> None:
    header = wire.build_bitfield(data)[:5]
    reject(header, f"bitfield: {len(data)} bytes, expected 2 for 10 pieces", BitfieldError, num_pieces=10)


def test_bitfield_exact_multiple_of_eight_has_no_spare_bits() -> None:
    assert parse_all(wire.build_bitfield(b"\xff"), num_pieces=8, expect_handshake=False) == [Bitfield(b"\xff")]


def test_validate_bitfield_for_late_metadata() -> None:
    wire.validate_bitfield(b"\xff\xc0", 10)
    with pytest.raises(BitfieldError, match="spare bits"):
        wire.validate_bitfield(b"\xff\xe0", 10)
    with pytest.raises(BitfieldError, match="1 bytes, expected 2"):
        wire.validate_bitfield(b"\xff", 10)


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (wire.build_have(10), "have"),
        (wire.build_suggest(10), "suggest"),
        (wire.build_allowed_fast(10), "allowed_fast"),
    ],
)
def test_index_out_of_range(raw: bytes, name: str) -> None:
    reject(raw, f"^{name}: index 10 out of range for 10 pieces$", num_pieces=10)
    assert len(parse_all(raw, num_pieces=11, expect_handshake=False)) == 1


@pytest.mark.parametrize("build", [wire.build_request, wire.build_cancel, wire.build_reject])
def test_block_index_out_of_range(build: Any) -> None:
    name = build.__name__.removeprefix("build_")
    fragment = rf"^{name}: index 10 out of range for 10 pieces \(begin 0, length 16384\)$"
    reject(build(10, 0, 16384), fragment, num_pieces=10)


def test_piece_index_out_of_range() -> None:
    reject(wire.build_piece(10, 0, b"x"), "piece: index 10 out of range for 10 pieces", num_pieces=10)


def test_extended_without_extension_id() -> None:
    reject(b"\x00\x00\x00\x01\x14", "extended: empty payload, no extension id")


def test_extended_payload_over_limit() -> None:
    reject(wire.build_extended(1, b"x" * 17)[:6], "extended: payload of 17 bytes exceeds the limit of 16", limits=SMALL)
    largest = wire.build_extended(1, b"x" * 16)
    assert parse_all(largest, limits=SMALL, expect_handshake=False) == [Extended(1, b"x" * 16)]


def test_bad_protocol_length_fails_on_first_byte() -> None:
    reject(b"\x05", "handshake: protocol string length is 5, expected 19", expect_handshake=True)


def test_bad_protocol_string_fails_at_first_wrong_byte() -> None:
    parser = WireParser()
    assert parser.feed(b"\x13BitTorrent") == []
    expected = r"^handshake: protocol string starts b'BitTorrent pX', expected b'BitTorrent protocol'$"
    with pytest.raises(WireError, match=expected):
        parser.feed(b" pXo")


def test_bad_protocol_string_same_text_whole_or_split() -> None:
    raw = b"\x13BitTorrent Protocol" + bytes(48)
    whole = reject(raw, "protocol string starts b'BitTorrent P'", expect_handshake=True)
    split = WireParser()
    assert split.feed(raw[:12]) == []
    with pytest.raises(ProtocolError) as info:
        split.feed(raw[12:])
    assert str(info.value) == str(whole)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (HANDSHAKE.to_bytes()[:67], "67 bytes, expected 68"),
        (HANDSHAKE.to_bytes() + b"x", "69 bytes, expected 68"),
        (b"\x14" + HANDSHAKE.to_bytes()[1:], "protocol string length is 20"),
        (b"\x13bittorrent protocol" + bytes(48), "protocol string starts b'b'"),
    ],
)
def test_parse_handshake_rejects(raw: bytes, fragment: str) -> None:
    with pytest.raises(WireError, match=fragment):
        wire.parse_handshake(raw)


def test_parser_is_dead_after_an_error() -> None:
    parser = WireParser(expect_handshake=False, num_pieces=4)
    with pytest.raises(ProtocolError):
        parser.feed(wire.build_choke() + wire.build_have(4))
    assert parser.failed
    for _ in range(2):
        with pytest.raises(ProtocolError, match="^connection already failed: have: index 4 out of range for 4 pieces$"):
            parser.feed(wire.build_choke())


def test_errors_are_torrent_errors() -> None:
    err = reject(wire.build_have(9), "out of range", num_pieces=1)
    assert isinstance(err, TorrentError)
    assert (err.kind, err.reason) == ("have", "index 9 out of range for 1 pieces")


# --- builders: local errors -----------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: wire.build_have(-1), r"cannot build have\(-1\)"),
        (lambda: wire.build_have(2**32), r"cannot build have"),
        (lambda: wire.build_request(0, 0, 2**32), r"cannot build request\(0, 0, 4294967296\)"),
        (lambda: wire.build_port(70000), r"cannot build port\(70000\)"),
        (lambda: wire.build_extended(256, b""), r"cannot build extended\(256\)"),
        (lambda: wire.build_piece_header(-1, 0, 1), r"cannot build piece"),
        (lambda: wire.build_message(300), r"cannot build message"),
    ],
)
def test_builders_reject_out_of_range_values(call: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        call()


def test_encode_rejects_non_messages() -> None:
    with pytest.raises(TypeError, match="cannot encode str"):
        wire.encode("choke")  # type: ignore[arg-type]


# --- BEP 10 extension handshake ------------------------------------------------------


def ext_payload(raw: bytes) -> bytes:
    """The bencoded dict inside a built extended handshake message."""
    (event,) = parse_all(raw, expect_handshake=False)
    assert isinstance(event, Extended) and event.ext_id == wire.EXTENDED_HANDSHAKE_ID == 0
    return event.payload


def test_extended_handshake_round_trip_ipv4() -> None:
    raw = wire.build_extended_handshake(
        {"ut_metadata": 3, "ut_pex": 1, "lt_donthave": 0},
        v="torrent 0.1.0",
        p=6881,
        reqq=500,
        yourip=bytes([192, 168, 1, 2]),
        metadata_size=31_235,
    )
    hs = wire.parse_extended_handshake(ext_payload(raw))
    assert hs.m == {"ut_metadata": 3, "ut_pex": 1, "lt_donthave": 0}
    assert (hs.v, hs.p, hs.reqq, hs.metadata_size) == ("torrent 0.1.0", 6881, 500, 31_235)
    assert hs.yourip == bytes([192, 168, 1, 2])
    assert hs.ipv4 is None and hs.ipv6 is None
    assert hs.raw[b"m"][b"lt_donthave"] == 0


def test_extended_handshake_round_trip_ipv6() -> None:
    ip6 = bytes.fromhex("20010db8000000000000000000000001")
    hs = wire.parse_extended_handshake(ext_payload(wire.build_extended_handshake({}, yourip=ip6)))
    assert hs.yourip == ip6 and hs.m == {}
    assert (hs.v, hs.p, hs.reqq, hs.metadata_size) == (None, None, None, None)


def test_extended_handshake_spec_bytes() -> None:
    raw = wire.build_extended_handshake({"ut_pex": 1}, p=6881)
    payload = b"d1:md6:ut_pexi1ee1:pi6881ee"
    assert raw == (2 + len(payload)).to_bytes(4, "big") + b"\x14\x00" + payload


def test_extended_handshake_extra_and_unknown_keys() -> None:
    ip6 = b"\x00" * 15 + b"\x01"
    extra = {"upload_only": 1, "ipv4": b"\x7f\x00\x00\x01", "ipv6": ip6}
    raw = wire.build_extended_handshake({"ut_metadata": 2}, extra=extra)
    hs = wire.parse_extended_handshake(ext_payload(raw))
    assert hs.raw[b"upload_only"] == 1
    assert hs.ipv4 == b"\x7f\x00\x00\x01" and hs.ipv6 == ip6


def test_extended_handshake_without_m_has_no_extensions() -> None:
    assert wire.parse_extended_handshake(b"d1:v3:abce").m == {}


def test_extended_handshake_odd_client_name_is_not_an_error() -> None:
    assert wire.parse_extended_handshake(b"d1:v2:\xb5Te").v == "\ufffdT"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"m": {"ut_pex": 256}}, "extension 'ut_pex' id must be 0..255"),
        ({"m": {"ut_pex": -1}}, "extension 'ut_pex' id must be 0..255"),
        ({"m": {}, "p": 65536}, "listen port p must be 0..65535"),
        ({"m": {}, "reqq": -1}, "reqq must not be negative"),
        ({"m": {}, "metadata_size": -1}, "metadata_size must not be negative"),
        ({"m": {}, "yourip": b"\x01\x02\x03"}, "yourip must be 4 or 16 bytes"),
        ({"m": {}, "v": "x", "extra": {"v": "y"}}, "extra key 'v' repeats a parameter"),
    ],
)
def test_extended_handshake_builder_rejects(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        wire.build_extended_handshake(**kwargs)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"d1:m", "payload is not valid bencode"),
        (b"not bencode", "payload is not valid bencode"),
        (b"li1ee", "payload is a list, expected a dict"),
        (b"i42e", "payload is an integer, expected a dict"),
        (b"d1:mi1ee", "m is an integer, expected a dict"),
        (b"d1:mli1eee", "m is a list, expected a dict"),
        (b"d1:md6:ut_pex3:oneee", r"m\['ut_pex'\] is b'one', expected an id 0..255"),
        (b"d1:md6:ut_pexi256eee", r"m\['ut_pex'\] is 256, expected an id 0..255"),
        (b"d1:md6:ut_pexi-1eee", r"m\['ut_pex'\] is -1, expected an id 0..255"),
        (b"d1:md2:\xff\xfei1eee", r"extension name b'\\xff\\xfe' is not UTF-8"),
        (b"d1:vi1ee", "v is an integer, expected a string"),
        (b"d1:p4:6881e", "p is a string, expected an integer"),
        (b"d1:pi65536ee", r"p is 65536, expected 0..65535"),
        (b"d1:pi-1ee", r"p is -1, expected 0..65535"),
        (b"d4:reqq3:lote", "reqq is a string, expected an integer"),
        (b"d4:reqqi-5ee", "reqq is -5, expected >= 0"),
        (b"d6:youripi1ee", "yourip is an integer, expected a string"),
        (b"d6:yourip5:12345e", "yourip is 5 bytes, expected 4 or 16"),
        (b"d4:ipv416:0123456789abcdefe", "ipv4 is 16 bytes, expected 4"),
        (b"d4:ipv64:1234e", "ipv6 is 4 bytes, expected 16"),
        (b"d13:metadata_size2:10e", "metadata_size is a string, expected an integer"),
        (b"d13:metadata_sizei-1ee", "metadata_size is -1, expected >= 0"),
    ],
)
def test_bad_extended_handshake(payload: bytes, fragment: str) -> None:
    with pytest.raises(WireError, match=f"^extended handshake: .*{fragment}") as info:
        wire.parse_extended_handshake(payload)
    assert info.value.kind == "extended handshake"


def test_bencode_error_is_chained() -> None:
    with pytest.raises(ProtocolError) as info:
        wire.parse_extended_handshake(b"d1:m")
    assert isinstance(info.value.__cause__, BencodeError)


def test_held_after_the_handshake_until_the_piece_count_is_known() -> None:
    stream = HANDSHAKE.to_bytes() + wire.build_have(7) + wire.build_have(12) + wire.build_keepalive()
    for cut in (10, 68, 70, len(stream)):  # the handshake split or whole, the rest in the same read or not
        parser = WireParser(hold_after_handshake=True)
        events = parser.feed(stream[:cut]) + (parser.feed(stream[cut:]) if cut < len(stream) else [])
        assert events == [HANDSHAKE] and parser.holding
        assert parser.feed(b"") == []  # still held
        parser.num_pieces = 10
        with pytest.raises(WireError, match="index 12 out of range for 10 pieces"):
            parser.resume()
    parser = WireParser(hold_after_handshake=True)
    parser.feed(stream)
    parser.num_pieces = 20
    assert parser.resume() == [Have(7), Have(12), KeepAlive()] and not parser.holding
    assert parser.feed(wire.build_have(19)) == [Have(19)]
