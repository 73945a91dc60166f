"""Bencode codec: round trips, raw spans, and one precise error per rejected input.

Expected byte strings and error positions are worked out by hand from BEP 3,
never copied from the codec's own output.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrent.codec import bencoding
from torrent.core.errors import BencodeError, TorrentError
from torrent.core.settings import Limits

# --- strategies --------------------------------------------------------------------

values = st.recursive(
    st.integers() | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.binary(max_size=12), children, max_size=6),
    max_leaves=20,
)
small_values = st.recursive(
    st.integers() | st.binary(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.binary(max_size=4), children, max_size=3),
    max_leaves=6,
)


def reference_encode(obj: object) -> bytes:
    """An independent encoder written from BEP 3, for cross-checking ``encode``."""
    if isinstance(obj, int):
        return b"i%de" % obj
    if isinstance(obj, bytes):
        return b"%d:%s" % (len(obj), obj)
    if isinstance(obj, list):
        return b"l" + b"".join(reference_encode(v) for v in obj) + b"e"
    if isinstance(obj, dict):
        return b"d" + b"".join(reference_encode(k) + reference_encode(obj[k]) for k in sorted(obj)) + b"e"
    raise TypeError(type(obj))


# --- encoding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, b"i0e"),
        (-42, b"i-42e"),
        (2**70, b"i1180591620717411303424e"),
        (b"", b"0:"),
        (b"spam", b"4:spam"),
        ("é", b"2:\xc3\xa9"),  # str is written as UTF-8
        ([], b"le"),
        ([b"a", 1, [b"b"]], b"l1:ai1el1:bee"),
        ({}, b"de"),
        ({b"b": 1, b"a": 2}, b"d1:ai2e1:bi1ee"),  # keys sorted as raw bytes
        ({"z": b"", b"ab": []}, b"d2:able1:z0:e"),
    ],
)
def test_encode_known_values(value: object, expected: bytes) -> None:
    assert bencoding.encode(value) == expected


@given(values)
def test_encode_matches_reference_encoder(value: object) -> None:
    assert bencoding.encode(value) == reference_encode(value)


@given(values)
def test_round_trip(value: object) -> None:
    data = bencoding.encode(value)
    assert bencoding.decode(data) == value
    assert bencoding.decode(memoryview(data)) == value
    decoded, end = bencoding.decode_prefix(data + b"trailing raw bytes")
    assert decoded == value
    assert end == len(data)


@pytest.mark.parametrize(
    "value",
    [1.5, None, object(), bytearray(b"x"), {b"k": None}, [b"ok", 2.0], {1: b"x"}],
    ids=["float", "none", "object", "bytearray", "none-in-dict", "float-in-list", "int-key"],
)
def test_encode_unsupported_type_raises_bencode_error(value: object) -> None:
    with pytest.raises(BencodeError):
        bencoding.encode(value)


def test_encode_refuses_str_and_bytes_keys_that_collide() -> None:
    # {"a": 1, b"a": 2} would be written as two identical keys, which decode rejects.
    try:
        data = bencoding.encode({"a": 1, b"a": 2})
    except BencodeError:
        return
    bencoding.decode(data)  # if encode accepts it, its output must at least be valid bencode


# --- decoding: accepted forms ------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"i0e", 0),
        (b"i-1e", -1),
        (b"i1234567890123456789012345e", 1234567890123456789012345),
        (b"0:", b""),
        (b"3:a:e", b"a:e"),
        (b"le", []),
        (b"de", {}),
        (b"d3:cow3:moo4:spaml1:a1:bee", {b"cow": b"moo", b"spam": [b"a", b"b"]}),
        (b"d1:bi1e1:ai2ee", {b"b": 1, b"a": 2}),  # unsorted keys are accepted (real torrents have them)
    ],
)
def test_decode_known_values(data: bytes, expected: object) -> None:
    assert bencoding.decode(data) == expected


def test_decode_keeps_strings_as_bytes() -> None:
    value = bencoding.decode(b"d4:name4:\xff\xfe\x00ae")
    assert value == {b"name": b"\xff\xfe\x00a"}
    assert all(type(k) is bytes for k in value)


@pytest.mark.parametrize("kind", [bytearray, memoryview], ids=["bytearray", "memoryview"])
def test_decode_accepts_buffers_with_dict_keys(kind: type) -> None:
    # Wire messages (BEP 9/10) arrive in bytearray receive buffers.
    data = b"d4:infod1:ai1ee1:zl1:qee"
    assert bencoding.decode(kind(data)) == {b"info": {b"a": 1}, b"z": [b"q"]}
    value, spans = bencoding.decode_with_spans(kind(data))
    assert value == {b"info": {b"a": 1}, b"z": [b"q"]}
    assert spans == {b"info": (7, 15), b"z": (18, 23)}
    assert all(type(k) is bytes for k in spans)  # no views pinning the caller's buffer
    assert bencoding.decode_prefix(kind(data + b"xyz")) == (value, len(data))


def test_decode_prefix_returns_end_offset() -> None:
    data = b"d8:msg_typei1e5:piecei0ee" + b"\x00" * 16
    value, end = bencoding.decode_prefix(data)
    assert value == {b"msg_type": 1, b"piece": 0}
    assert end == len(data) - 16
    assert data[end:] == b"\x00" * 16


def test_decode_prefix_still_rejects_bad_value() -> None:
    with pytest.raises(BencodeError) as info:
        bencoding.decode_prefix(b"d1:ai1e1:ai2eerest")
    assert info.value.position == 7


# --- spans ---------------------------------------------------------------------------


def test_spans_of_top_level_dict_values() -> None:
    data = b"d1:ai1e1:bl2:xye1:cd1:ki-5eee"
    value, spans = bencoding.decode_with_spans(data)
    assert set(spans) == {b"a", b"b", b"c"}
    # Positions counted by hand: 'd' 0, "1:a" 1-3, "i1e" 4-6, "1:b" 7-9, "l2:xye" 10-15 ...
    assert spans[b"a"] == (4, 7)
    assert spans[b"b"] == (10, 16)
    assert spans[b"c"] == (19, len(data) - 1)
    for key, (begin, end) in spans.items():
        assert bencoding.decode(data[begin:end]) == value[key]


@settings(max_examples=60)
@given(st.dictionaries(st.binary(max_size=8), small_values, max_size=5))
def test_spans_re_decode_to_values(top: dict[bytes, object]) -> None:
    data = bencoding.encode(top)
    value, spans = bencoding.decode_with_spans(data)
    assert value == top
    assert set(spans) == set(top)
    for key, (begin, end) in spans.items():
        assert bencoding.decode(data[begin:end]) == top[key]


def test_info_span_of_hand_built_torrent_is_exact() -> None:
    # The info dict has its keys out of order: re-encoding it would change the hash.
    info = b"d4:name3:abc6:lengthi5e12:piece lengthi16384e6:pieces20:" + b"\x11" * 20 + b"e"
    data = b"d8:announce10:http://t/a4:info" + info + b"e"
    value, spans = bencoding.decode_with_spans(data)
    begin, end = spans[b"info"]
    assert data[begin:end] == info
    assert begin == data.index(b"4:info") + len(b"4:info")
    assert hashlib.sha1(data[begin:end]).digest() == hashlib.sha1(info).digest()
    assert value[b"info"][b"name"] == b"abc"


def test_spans_are_only_for_a_top_level_dict() -> None:
    _, spans = bencoding.decode_with_spans(b"ld1:ai1eee")
    assert spans == {}


# --- decoding: rejections, each with its byte position -----------------------------


@pytest.mark.parametrize(
    ("data", "position", "words"),
    [
        (b"i03e", 0, "integer"),
        (b"i-0e", 0, "integer"),
        (b"i-e", 0, "integer"),
        (b"ie", 0, "integer"),
        (b"i12", 0, "integer"),
        (b"li1ei01ee", 4, "integer"),
        (b"5:abc", 0, "past the end"),
        (b"l1:a9:xe", 4, "past the end"),
        (b"-1:a", 0, "unexpected byte"),
        (b"l-3:abce", 1, "unexpected byte"),
        (b"03:abc", 0, "string length"),
        (b"di1ei2ee", 1, "key must be a string"),
        (b"dlee", 1, "key must be a string"),
        (b"d1:ad1:bi1eei1ee", 12, "key must be a string"),
        (b"d1:ai1e1:ai2ee", 7, "duplicate"),
        (b"d1:xd1:ai1e1:ai2eee", 11, "duplicate"),
        (b"d1:ae", 4, "no value"),
        (b"d3:onei1e3:twoe", 14, "no value"),
        (b"i1ex", 3, "trailing"),
        (b"lei0e", 2, "trailing"),
        (b"e", 0, "end marker"),
        (b"x", 0, "unexpected byte"),
        (b"li1ez", 4, "unexpected byte"),
        (b"", 0, "end of data"),
        (b"l", 1, "end of data"),
        (b"d1:a", 4, "end of data"),
        (b"li1e", 4, "end of data"),
    ],
)
def test_rejections_name_the_byte(data: bytes, position: int, words: str) -> None:
    with pytest.raises(BencodeError) as info:
        bencoding.decode(data)
    assert info.value.position == position
    assert words in info.value.reason
    assert f"at byte {position}" in str(info.value)


def test_decode_with_spans_rejects_like_decode() -> None:
    with pytest.raises(BencodeError) as info:
        bencoding.decode_with_spans(b"d1:ai1eextra")
    assert info.value.position == 8


# --- .torrent files: bytes after the top-level dictionary ------------------------------


@pytest.mark.parametrize("tail", [b"\n", b"\r\n", b"\x00" * 7, b"garbage after the end", b"d1:ai1ee", b"e"],
                         ids=["newline", "crlf", "zeros", "text", "another-dict", "end-marker"])
def test_decode_torrent_ignores_bytes_after_a_complete_dict(tail: bytes) -> None:
    # Some tools append a newline or junk to a .torrent; libtorrent loads such files.
    body = b"d4:infod1:ai1ee1:zl1:qee"
    value, spans, end = bencoding.decode_torrent(body + tail)
    assert value == {b"info": {b"a": 1}, b"z": [b"q"]}
    assert spans == {b"info": (7, 15), b"z": (18, 23)}  # positions are unchanged by the tail
    assert end == len(body)


def test_decode_torrent_without_trailing_bytes_ends_at_the_end() -> None:
    data = b"d1:ai1ee"
    assert bencoding.decode_torrent(data) == ({b"a": 1}, {b"a": (4, 7)}, len(data))
    assert bencoding.decode_torrent(memoryview(data))[0] == {b"a": 1}


@pytest.mark.parametrize(
    ("data", "position", "words"),
    [
        (b"i1e\n", 3, "trailing"),  # only after a dictionary
        (b"le\n", 2, "trailing"),
        (b"4:spam\n", 6, "trailing"),
        (b"d1:ai1e\n", 7, "unexpected byte"),  # an incomplete dictionary is still an error
        (b"d1:ai1e", 7, "end of data"),
        (b"d1:ai1e1:ai2ee\n", 7, "duplicate"),  # and so is anything wrong inside it
        (b"\nd1:ai1ee", 0, "unexpected byte"),  # bytes before it are not skipped
    ],
)
def test_decode_torrent_stays_strict_elsewhere(data: bytes, position: int, words: str) -> None:
    with pytest.raises(BencodeError) as info:
        bencoding.decode_torrent(data)
    assert info.value.position == position
    assert words in info.value.reason


def test_decode_torrent_obeys_the_size_limit_including_the_tail() -> None:
    with pytest.raises(BencodeError, match="limit"):
        bencoding.decode_torrent(b"de" + b"\n" * 100, limits=Limits(bencode_max_size=64))


@pytest.mark.parametrize("decode", [bencoding.decode, lambda d: bencoding.decode_with_spans(d)],
                         ids=["decode", "decode_with_spans"])
def test_other_decoders_still_refuse_bytes_after_a_dict(decode: object) -> None:
    # Wire, KRPC and tracker messages go through these: a dict followed by junk stays an error there.
    with pytest.raises(BencodeError, match="trailing"):
        decode(b"d1:ai1ee\n")  # type: ignore[operator]


def test_bencode_error_is_a_torrent_error() -> None:
    with pytest.raises(TorrentError):
        bencoding.decode(b"i")


# --- limits ----------------------------------------------------------------------------


def test_depth_limit() -> None:
    limits = Limits(bencode_max_depth=3)
    assert bencoding.decode(b"llleee", limits=limits) == [[[]]]
    with pytest.raises(BencodeError) as info:
        bencoding.decode(b"lllleeee", limits=limits)
    assert info.value.position == 3
    assert "3" in info.value.reason
    with pytest.raises(BencodeError) as info:
        bencoding.decode(b"d1:ad1:bd1:cd1:di1eeeee", limits=limits)
    assert info.value.position == 12


def test_default_depth_limit_stops_deep_nesting_without_recursion_error() -> None:
    data = b"l" * 100_000 + b"e" * 100_000
    with pytest.raises(BencodeError) as info:
        bencoding.decode(data)
    assert info.value.position == Limits().bencode_max_depth


def test_raised_depth_limit_is_honoured() -> None:
    # Limits is the one place for the bound: raising it must let deeper data through.
    limits = Limits(bencode_max_depth=200)
    depth = 150
    value = bencoding.decode(b"l" * depth + b"e" * depth, limits=limits)
    for _ in range(depth - 1):
        assert len(value) == 1
        value = value[0]
    assert value == []


def test_max_size_limit() -> None:
    limits = Limits(bencode_max_size=10)
    assert bencoding.decode(b"6:abcdef", limits=limits) == b"abcdef"  # 8 bytes
    assert bencoding.decode(b"8:abcdefgh", limits=limits) == b"abcdefgh"  # exactly 10
    with pytest.raises(BencodeError) as info:
        bencoding.decode(b"9:abcdefghi", limits=limits)  # 11
    assert "10" in info.value.reason


def test_max_string_limit() -> None:
    limits = Limits(bencode_max_string=4)
    assert bencoding.decode(b"l4:abcde", limits=limits) == [b"abcd"]
    with pytest.raises(BencodeError) as info:
        bencoding.decode(b"l5:abcdee", limits=limits)
    assert info.value.position == 1
    assert "limit" in info.value.reason


def test_huge_string_length_is_a_bencode_error() -> None:
    # Thousands of length digits must be refused by the codec, not leak ValueError from int().
    with pytest.raises(BencodeError) as info:
        bencoding.decode(b"9" * 5000 + b":x")
    assert info.value.position == 0


def test_huge_integer_is_a_bencode_error_or_decodes() -> None:
    data = b"i" + b"9" * 5000 + b"e"
    try:
        value = bencoding.decode(data)
    except BencodeError:
        return
    assert value == 10**5000 - 1


# --- garbage and truncation ---------------------------------------------------------


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_bencode_error(data: bytes) -> None:
    try:
        value = bencoding.decode(data)
    except BencodeError as exc:
        assert exc.position is None or 0 <= exc.position <= len(data)
    else:
        assert bencoding.decode(bencoding.encode(value)) == value


@settings(max_examples=60)
@given(values, st.data())
def test_truncated_or_mutated_encoding_never_escapes(value: object, data: st.DataObject) -> None:
    encoded = bencoding.encode(value)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(BencodeError):
        bencoding.decode(encoded[:cut])
    index = data.draw(st.integers(0, len(encoded) - 1))
    byte = data.draw(st.integers(0, 255))
    mutated = encoded[:index] + bytes([byte]) + encoded[index + 1:]
    try:
        bencoding.decode(mutated)
    except BencodeError:
        pass


@settings(max_examples=60)
@given(values, st.binary(min_size=1, max_size=20))
def test_trailing_bytes_are_rejected_at_the_end_of_the_value(value: object, tail: bytes) -> None:
    encoded = bencoding.encode(value)
    with pytest.raises(BencodeError) as info:
        bencoding.decode(encoded + tail)
    assert info.value.position == len(encoded)
