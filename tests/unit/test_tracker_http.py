"""HTTP tracker codec: announce/scrape URLs, bencoded responses, and the HTTP/1.1 response parser.

Bytes only: no sockets, no event loop.
"""

from __future__ import annotations

import gzip
import zlib
from urllib.parse import parse_qsl, unquote_to_bytes, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrent.codec.bencoding import encode
from torrent.core.settings import Limits
from torrent.codec.tracker.announce import (
    DEFAULT_INTERVAL,
    MAX_TRACKER_NUMBER,
    AnnounceRequest,
    Event,
    ScrapeStats,
    TrackerError,
    TrackerFailure,
    TrackerResponseError,
    dedup_peers,
    parse_compact_peers,
    parse_compact_peers6,
    parse_dict_peers,
)
from torrent.codec.tracker.http import (
    NEED_DATA,
    HttpResponse,
    HttpResponseParser,
    build_announce_url,
    build_scrape_url,
    parse_announce_response,
    parse_scrape_response,
    scrape_url,
)

HASH = bytes(range(20))
PEER_ID = b"-TO0001-" + b"\xff\x00 %&+/?=#~._-"[:12]
UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


def req(**kw: object) -> AnnounceRequest:
    base: dict[str, object] = dict(info_hash=HASH, peer_id=PEER_ID, port=6881, uploaded=1, downloaded=2, left=3)
    base.update(kw)
    return AnnounceRequest(**base)  # type: ignore[arg-type]


def reference_escape(raw: bytes) -> str:
    """Independent of the code under test: RFC 3986 unreserved bytes stay, the rest is %XX."""
    return "".join(chr(b) if b in UNRESERVED else f"%{b:02X}" for b in raw)


def query_of(url: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in urlsplit(url).query.split("&"))


# ---- URLs ---------------------------------------------------------------------

@pytest.mark.parametrize("start", range(0, 256, 20))
def test_info_hash_and_peer_id_escaped_byte_by_byte(start: int) -> None:
    # 13 hashes of 20 bytes cover every byte value 0..255 (wrapping at the end).
    raw = bytes((start + i) % 256 for i in range(20))
    url = build_announce_url("http://t.example/announce", req(info_hash=raw, peer_id=raw[::-1]))
    q = query_of(url)
    assert q["info_hash"] == reference_escape(raw)
    assert q["peer_id"] == reference_escape(raw[::-1])
    assert unquote_to_bytes(q["info_hash"]) == raw


def test_announce_url_parameters() -> None:
    url = build_announce_url("http://t.example:8080/announce", req())
    assert url.startswith("http://t.example:8080/announce?info_hash=")
    q = query_of(url)
    assert q["port"] == "6881" and q["uploaded"] == "1" and q["downloaded"] == "2" and q["left"] == "3"
    assert q["compact"] == "1"
    assert q["key"] == "00000000"
    assert "event" not in q and "numwant" not in q and "trackerid" not in q and "ip" not in q


def test_announce_url_optional_parameters() -> None:
    url = build_announce_url("http://t/announce", req(event=Event.COMPLETED, numwant=50, key=0xDEADBEEF,
                                                      tracker_id=b"id &1", compact=False, ip="10.0.0.1"))
    q = query_of(url)
    assert q["event"] == "completed" and q["numwant"] == "50" and q["key"] == "DEADBEEF"
    assert q["trackerid"] == "id%20%261" and q["compact"] == "0" and q["ip"] == "10.0.0.1"


@pytest.mark.parametrize("event", [Event.STARTED, Event.COMPLETED, Event.STOPPED])
def test_event_names(event: Event) -> None:
    assert query_of(build_announce_url("http://t/a", req(event=event)))["event"] == event.name.lower()


@pytest.mark.parametrize(("base", "prefix"), [
    ("http://t/announce?passkey=ab%2Fc", "http://t/announce?passkey=ab%2Fc&info_hash="),
    ("http://t/announce?passkey=x&", "http://t/announce?passkey=x&info_hash="),
    ("http://t/announce?", "http://t/announce?info_hash="),
    ("http://t/announce#frag", "http://t/announce?info_hash="),
    ("http://t/announce.php?a=1&b=2#f", "http://t/announce.php?a=1&b=2&info_hash="),
])
def test_existing_query_kept(base: str, prefix: str) -> None:
    url = build_announce_url(base, req())
    assert url.startswith(prefix)
    assert "#" not in url
    assert url.count("?") == 1


@pytest.mark.parametrize("bad", [
    dict(info_hash=b"short"), dict(peer_id=b"x" * 21), dict(port=70000), dict(left=-1),
    dict(uploaded=1 << 64), dict(key=1 << 32), dict(numwant=-1), dict(event="started"),
])
def test_request_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        req(**bad)


# BEP 48's own table of announce → scrape conversions.
@pytest.mark.parametrize(("announce", "scrape"), [
    ("http://example.com/announce", "http://example.com/scrape"),
    ("http://example.com/x/announce", "http://example.com/x/scrape"),
    ("http://example.com/announce.php", "http://example.com/scrape.php"),
    ("http://example.com/a", None),
    ("http://example.com/announce?x2%0644", "http://example.com/scrape?x2%0644"),
    ("http://example.com/announce?x=2/4", "http://example.com/scrape?x=2/4"),
    ("http://example.com/x%064announce", None),
    ("http://example.com", None),
    ("http://example.com/", None),
    ("http://example.com/announce/", None),
    ("https://example.com:8443/tr/announce?passkey=k#f", "https://example.com:8443/tr/scrape?passkey=k"),
])
def test_scrape_url(announce: str, scrape: str | None) -> None:
    assert scrape_url(announce) == scrape


def test_build_scrape_url_several_hashes() -> None:
    a, b = bytes(20), b"\xff" * 20
    url = build_scrape_url("http://t/scrape?k=1", [a, b])
    assert url == "http://t/scrape?k=1&info_hash=" + "%00" * 20 + "&info_hash=" + "%FF" * 20
    assert [unquote_to_bytes(v) for k, v in (p.split("=") for p in urlsplit(url).query.split("&"))
            if k == "info_hash"] == [a, b]
    with pytest.raises(ValueError):
        build_scrape_url("http://t/scrape", [b"short"])


# ---- peers ----------------------------------------------------------------------

def test_compact_ipv4_peers() -> None:
    data = bytes([10, 0, 0, 1, 0x1A, 0xE1, 192, 168, 1, 2, 0, 80, 1, 2, 3, 4, 0, 0])
    assert parse_compact_peers(data) == [("10.0.0.1", 6881), ("192.168.1.2", 80)]  # port 0 dropped


def test_compact_ipv6_peers() -> None:
    data = bytes(15) + b"\x01" + b"\x1a\xe1" + bytes.fromhex("20010db8000000000000000000000001") + b"\x00\x50"
    assert parse_compact_peers6(data) == [("::1", 6881), ("2001:db8::1", 80)]


@pytest.mark.parametrize("length", [1, 5, 7, 13])
def test_compact_bad_length(length: int) -> None:
    with pytest.raises(TrackerResponseError, match="not a multiple of 6"):
        parse_compact_peers(bytes(length))


def test_compact_ipv6_bad_length() -> None:
    with pytest.raises(TrackerResponseError, match="not a multiple of 18"):
        parse_compact_peers6(bytes(20))


def test_dict_peers_drop_bad_entries() -> None:
    entries = [
        {b"ip": b"10.0.0.1", b"port": 6881, b"peer id": b"A" * 20},
        {b"ip": b"2001:db8::2", b"port": 1},
        {b"ip": b"[2001:db8::3]", b"port": 2},
        {b"ip": b"peer.example.org", b"port": 3},
        {b"ip": b"10.0.0.2", b"port": 0},
        {b"ip": b"10.0.0.3", b"port": 65536},
        {b"ip": b"10.0.0.4", b"port": b"80"},
        {b"ip": b"not a host!", b"port": 80},
        {b"ip": b"1.2.3", b"port": 80},
        {b"ip": b"\xff\xfe", b"port": 80},
        {b"port": 80},
        b"not a dict",
        {b"ip": 17, b"port": 80},
    ]
    assert parse_dict_peers(entries) == [("10.0.0.1", 6881), ("2001:db8::2", 1), ("2001:db8::3", 2),
                                         ("peer.example.org", 3)]


def test_dict_peers_must_be_a_list() -> None:
    with pytest.raises(TrackerResponseError):
        parse_dict_peers({b"ip": b"1.2.3.4"})


def test_dedup_keeps_order() -> None:
    assert dedup_peers([("a", 1), ("b", 2), ("a", 1), ("c", 3), ("b", 2)]) == (("a", 1), ("b", 2), ("c", 3))


# ---- announce responses -------------------------------------------------------------

def test_every_announce_field() -> None:
    body = encode({
        b"interval": 1800, b"min interval": 900, b"tracker id": b"TID", b"complete": 5, b"incomplete": 7,
        b"warning message": b"slow down\nplease",
        b"peers": bytes([1, 2, 3, 4, 0, 1, 5, 6, 7, 8, 0, 2, 1, 2, 3, 4, 0, 1]),
        b"peers6": bytes(15) + b"\x01\x00\x03",
        b"external ip": bytes([203, 0, 113, 9]),
    })
    r = parse_announce_response(body)
    assert r.interval == 1800 and r.min_interval == 900 and r.tracker_id == b"TID"
    assert r.complete == 5 and r.incomplete == 7
    assert r.warning == "slow down please"
    assert r.peers == (("1.2.3.4", 1), ("5.6.7.8", 2), ("::1", 3))
    assert r.external_ip == "203.0.113.9"


def test_minimal_announce_defaults() -> None:
    r = parse_announce_response(b"d5:peers0:e")
    assert r.interval == DEFAULT_INTERVAL
    assert r.peers == () and r.min_interval is None and r.tracker_id is None
    assert r.complete is None and r.incomplete is None and r.warning is None and r.external_ip is None


def test_dict_model_peers_in_response() -> None:
    body = encode({b"interval": 60, b"peers": [{b"ip": b"::1", b"port": 5, b"peer id": b"x" * 20},
                                               {b"ip": b"1.1.1.1", b"port": 0}]})
    assert parse_announce_response(body).peers == (("::1", 5),)


def test_external_ip_v6_and_junk() -> None:
    v6 = bytes.fromhex("20010db8000000000000000000000009")
    assert parse_announce_response(encode({b"interval": 1, b"external ip": v6})).external_ip == "2001:db8::9"
    assert parse_announce_response(encode({b"interval": 1, b"external ip": b"abc"})).external_ip is None


def test_optional_counts_of_wrong_type_are_ignored() -> None:
    r = parse_announce_response(encode({b"interval": 5, b"complete": b"5", b"incomplete": -1,
                                        b"min interval": [1], b"tracker id": b""}))
    assert (r.complete, r.incomplete, r.min_interval, r.tracker_id) == (None, None, None, None)


def test_failure_reason() -> None:
    body = encode({b"failure reason": b"torrent not registered\r\nwith this tracker", b"interval": 5})
    with pytest.raises(TrackerFailure) as info:
        parse_announce_response(body)
    assert info.value.failure_reason == "torrent not registered with this tracker"
    assert str(info.value) == "tracker refused the request: torrent not registered with this tracker"
    assert str(info.value.at("http://t/a")) == (
        "tracker http://t/a: tracker refused the request: torrent not registered with this tracker")


def test_failure_reason_long_text_is_cut() -> None:
    with pytest.raises(TrackerFailure) as info:
        parse_announce_response(encode({b"failure reason": b"x" * 5000}))
    assert len(info.value.failure_reason) <= 300


@pytest.mark.parametrize("body", [
    b"<html><body>502 Bad Gateway</body></html>",
    b"d8:intervali5e",  # truncated
    b"d8:intervali5ee trailing",
    b"",
    b"i42e",
    b"l5:peerse",
    encode({b"interval": -5}),
    encode({b"interval": b"1800"}),
    encode({b"interval": 5, b"peers": b"12345"}),
    encode({b"interval": 5, b"peers": 7}),
    encode({b"interval": 5, b"peers6": [b"x"]}),
    encode({b"interval": 5, b"peers6": bytes(17)}),
])
def test_garbage_is_one_short_error(body: bytes) -> None:
    with pytest.raises(TrackerResponseError) as info:
        parse_announce_response(body)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message and len(message) < 200


def test_html_error_names_what_it_saw() -> None:
    with pytest.raises(TrackerResponseError, match=r"not bencoded .*<html>"):
        parse_announce_response(b"<html>nope</html>")


def test_response_over_bencode_limit() -> None:
    body = encode({b"interval": 5, b"peers": bytes(600)})
    with pytest.raises(TrackerResponseError, match="limit"):
        parse_announce_response(body, Limits(bencode_max_size=100))


def test_error_pickles_with_url() -> None:
    import pickle
    exc = TrackerFailure("nope").at("http://t/a")
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is TrackerFailure and str(copy) == str(exc) and copy.failure_reason == "nope"


# ---- scrape responses ---------------------------------------------------------------

def test_scrape_response() -> None:
    a, b = b"a" * 20, b"b" * 20
    body = encode({b"files": {a: {b"complete": 1, b"downloaded": 2, b"incomplete": 3, b"name": b"x"},
                              b"short": {b"complete": 1},
                              b: {b"complete": 4}},
                   b"flags": {b"min_request_interval": 600}})
    r = parse_scrape_response(body)
    assert dict(r.files) == {a: ScrapeStats(1, 2, 3), b: ScrapeStats(4, 0, 0)}
    assert r.min_request_interval == 600
    with pytest.raises(TypeError):
        r.files[a] = r.files[b]  # type: ignore[index]


def test_scrape_failure_and_garbage() -> None:
    with pytest.raises(TrackerFailure, match="scrape disabled"):
        parse_scrape_response(encode({b"failure reason": b"scrape disabled"}))
    with pytest.raises(TrackerResponseError):
        parse_scrape_response(encode({b"files": [1, 2]}))
    with pytest.raises(TrackerResponseError):
        parse_scrape_response(b"not bencode")
    assert dict(parse_scrape_response(b"de").files) == {}


# ---- HTTP/1.1 response parser --------------------------------------------------------

BODY = encode({b"interval": 1800, b"peers": bytes([127, 0, 0, 1, 0x1A, 0xE1])})


def parse_all(data: bytes, *, eof: bool = True, **kw: int) -> HttpResponse:
    p = HttpResponseParser(**kw)
    result = p.feed(data)
    if result is NEED_DATA:
        assert eof, "parser wanted more data"
        return p.feed_eof()
    assert isinstance(result, HttpResponse)
    return result


def with_length(body: bytes, extra: str = "", status: str = "200 OK") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def chunked(body: bytes, sizes: tuple[int, ...] = (7, 1, 100), extra: str = "") -> bytes:
    out = bytearray(f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n{extra}\r\n".encode())
    pos, i = 0, 0
    while pos < len(body):
        n = sizes[i % len(sizes)]
        piece = body[pos:pos + n]
        out += f"{len(piece):x};ext=1\r\n".encode() + piece + b"\r\n"
        pos += n
        i += 1
    out += b"0\r\nX-Trailer: yes\r\n\r\n"
    return bytes(out)


def test_content_length_body() -> None:
    r = parse_all(with_length(BODY, "Server: t\r\nX-A: 1\r\nx-a: 2\r\n"), eof=False)
    assert r.status == 200 and r.reason == "OK" and r.body == BODY
    assert r.header("X-A") == "2" and r.header("server") == "t" and r.header("missing") is None
    assert not r.is_redirect


def test_bytes_after_complete_response_are_ignored() -> None:
    p = HttpResponseParser()
    r = p.feed(with_length(b"abc") + b"junk")
    assert isinstance(r, HttpResponse) and r.body == b"abc"
    assert p.feed(b"more") is r and p.feed_eof() is r


def test_read_until_close() -> None:
    p = HttpResponseParser()
    assert p.feed(b"HTTP/1.0 200 OK\r\n\r\n" + BODY[:5]) is NEED_DATA
    assert p.feed(BODY[5:]) is NEED_DATA
    assert p.feed_eof().body == BODY


def test_lf_only_line_endings_and_folding() -> None:
    r = parse_all(b"HTTP/1.1 200 OK\nX-Long: a\n  b\nContent-Length: 3\n\nabc", eof=False)
    assert r.body == b"abc" and r.header("x-long") == "a b"


def test_status_line_without_reason() -> None:
    assert parse_all(b"HTTP/1.1 204\r\n\r\n", eof=False).reason == ""


def test_interim_100_continue_skipped() -> None:
    r = parse_all(b"HTTP/1.1 100 Continue\r\n\r\n" + with_length(b"xyz"), eof=False)
    assert r.status == 200 and r.body == b"xyz"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_surfaces_location(status: int) -> None:
    r = parse_all(with_length(b"", "Location: http://other/announce?x=1\r\n", f"{status} Moved"), eof=False)
    assert r.is_redirect and r.location == "http://other/announce?x=1"


def test_no_body_for_204_and_304() -> None:
    assert parse_all(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", eof=False).body == b""


def test_chunked_body() -> None:
    r = parse_all(chunked(BODY), eof=False)
    assert r.body == BODY


def test_chunked_and_gzip() -> None:
    r = parse_all(chunked(gzip.compress(BODY), extra="Content-Encoding: gzip\r\n"), eof=False)
    assert r.body == BODY
    assert parse_announce_response(r.body).peers == (("127.0.0.1", 6881),)


def test_gzip_multi_member_and_deflate() -> None:
    two = gzip.compress(BODY[:10]) + gzip.compress(BODY[10:])
    assert parse_all(with_length(two, "Content-Encoding: gzip\r\n")).body == BODY
    assert parse_all(with_length(zlib.compress(BODY), "Content-Encoding: deflate\r\n")).body == BODY
    raw = zlib.compressobj(wbits=-15)
    raw_deflate = raw.compress(BODY) + raw.flush()
    assert parse_all(with_length(raw_deflate, "Content-Encoding: deflate\r\n")).body == BODY


def test_gzip_bomb_stops_at_cap() -> None:
    bomb = gzip.compress(bytes(64 * 1024 * 1024), compresslevel=9)  # 64 MiB of zeros in ~64 KiB
    assert len(bomb) < 200_000
    with pytest.raises(TrackerResponseError, match="decompressed body larger than 2097152 bytes"):
        parse_all(with_length(bomb, "Content-Encoding: gzip\r\n"))


def test_gzip_exactly_at_cap_is_fine() -> None:
    data = bytes(1000)
    assert parse_all(with_length(gzip.compress(data), "Content-Encoding: gzip\r\n"), max_body_size=1000).body == data
    with pytest.raises(TrackerResponseError, match="larger than 999"):
        parse_all(with_length(gzip.compress(data), "Content-Encoding: gzip\r\n"), max_body_size=999)


@pytest.mark.parametrize(("data", "match"), [
    (with_length(b"not gzip", "Content-Encoding: gzip\r\n"), "gzip body is corrupt"),
    (with_length(gzip.compress(BODY)[:-12], "Content-Encoding: gzip\r\n"), "truncated"),
    (with_length(b"x", "Content-Encoding: br\r\n"), "unsupported Content-Encoding 'br'"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: \xd9\xa3\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size line"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "longer than its size"),
    (b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", "malformed header line"),
    (b"HTTP/2 200\r\n\r\n", "not an HTTP response"),
    (b"<html>hello</html>", "not an HTTP response"),
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP response"),
])
def test_malformed_http(data: bytes, match: str) -> None:
    with pytest.raises(TrackerResponseError, match=match):
        parse_all(data)


@pytest.mark.parametrize(("data", "match"), [
    (b"", "before sending a response"),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "in the middle of the headers"),
    (with_length(b"abcdef")[:-2], "after 4 of 6 body bytes"),
    (chunked(BODY)[:-10], "in the middle of a chunked body"),
])
def test_early_close(data: bytes, match: str) -> None:
    with pytest.raises(TrackerResponseError, match=match):
        parse_all(data)


def test_header_cap() -> None:
    huge = b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * 20_000
    with pytest.raises(TrackerResponseError, match="headers larger than 16384"):
        parse_all(huge, eof=False)
    with pytest.raises(TrackerResponseError, match="headers larger than 100"):
        parse_all(with_length(b"", "X: " + "a" * 200 + "\r\n"), max_header_size=100)


@pytest.mark.parametrize("make", [
    lambda body: with_length(body),
    lambda body: chunked(body, (4096,)),
    lambda body: b"HTTP/1.0 200 OK\r\n\r\n" + body,
])
def test_body_cap(make) -> None:  # type: ignore[no-untyped-def]
    assert parse_all(make(b"x" * 1000), max_body_size=1000).body == b"x" * 1000
    with pytest.raises(TrackerResponseError, match="body larger than 999 bytes"):
        parse_all(make(b"x" * 1000), max_body_size=999)


def test_declared_oversize_fails_before_body_arrives() -> None:
    p = HttpResponseParser()
    with pytest.raises(TrackerResponseError, match="body larger than"):
        p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n")
    with pytest.raises(TrackerResponseError):  # the parser stays dead
        p.feed(b"x")


def test_default_body_cap_is_2_mib() -> None:
    assert HttpResponseParser().max_body_size == 2 * 1024 * 1024


def test_every_split_point_gives_the_same_response() -> None:
    wire = chunked(gzip.compress(BODY), (3, 17), extra="Content-Encoding: gzip\r\nX-A: b\r\n")
    whole = parse_all(wire, eof=False)
    for cut in range(len(wire) + 1):
        p = HttpResponseParser()
        first = p.feed(wire[:cut])
        second = p.feed(wire[cut:]) if first is NEED_DATA else first
        assert second == whole, cut


def test_byte_at_a_time() -> None:
    wire = with_length(BODY, "Content-Type: text/plain\r\n")
    p = HttpResponseParser()
    results = [p.feed(wire[i:i + 1]) for i in range(len(wire))]
    assert all(r is NEED_DATA for r in results[:-1])
    assert isinstance(results[-1], HttpResponse) and results[-1].body == BODY


# ---- properties -------------------------------------------------------------------

@given(st.binary(max_size=300))
def test_random_bytes_announce(data: bytes) -> None:
    try:
        parse_announce_response(data)
    except TrackerError:
        pass


@given(st.binary(max_size=300))
def test_random_bytes_scrape(data: bytes) -> None:
    try:
        parse_scrape_response(data)
    except TrackerError:
        pass


@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=4))
def test_random_bytes_http(data: bytes, cuts: list[int]) -> None:
    p = HttpResponseParser(max_body_size=500, max_header_size=200)
    try:
        pos = 0
        for cut in sorted(cuts) + [len(data)]:
            if p.feed(data[pos:cut]) is not NEED_DATA:
                return
            pos = max(pos, cut)
        p.feed_eof()
    except TrackerError:
        pass


@given(st.binary(max_size=200).map(lambda b: b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + b))
def test_random_gzip_bodies(data: bytes) -> None:
    try:
        parse_all(data)
    except TrackerError:
        pass


peer_v4 = st.tuples(st.ip_addresses(v=4).map(str), st.integers(1, 65535))


@given(st.lists(peer_v4, max_size=20))
def test_compact_round_trip(peers: list[tuple[str, int]]) -> None:
    import ipaddress
    data = b"".join(ipaddress.IPv4Address(h).packed + p.to_bytes(2, "big") for h, p in peers)
    body = encode({b"interval": 10, b"peers": data})
    assert parse_announce_response(body).peers == dedup_peers(peers)


@given(st.dictionaries(st.sampled_from([b"interval", b"min interval", b"complete", b"incomplete", b"peers",
                                        b"peers6", b"tracker id", b"warning message", b"external ip",
                                        b"failure reason"]),
                       st.one_of(st.integers(-5, 1 << 40), st.binary(max_size=40),
                                 st.lists(st.dictionaries(st.sampled_from([b"ip", b"port", b"peer id"]),
                                                          st.one_of(st.integers(-1, 70000), st.binary(max_size=20))),
                                          max_size=3))))
def test_structured_junk_is_result_or_tracker_error(fields: dict[bytes, object]) -> None:
    try:
        r = parse_announce_response(encode(fields))
    except TrackerError:
        return
    assert r.interval >= 0
    assert all(0 < port <= 65535 for _, port in r.peers)
    assert len(set(r.peers)) == len(r.peers)


def test_parse_qsl_sanity_of_built_url() -> None:
    # A standard parser sees exactly our parameters (no stray separators).
    pairs = parse_qsl(urlsplit(build_announce_url("http://t/a?x=1", req(event=Event.STARTED))).query)
    assert [k for k, _ in pairs] == ["x", "info_hash", "peer_id", "port", "uploaded", "downloaded", "left",
                                     "compact", "event", "key"]


def test_absurd_numbers_are_clamped_and_bad_entries_dropped() -> None:
    """Bencoded integers have no bound: 10**400 is read as ``MAX_TRACKER_NUMBER`` (what BEP 15
    could carry), negative counts as absent, peers on port 0 are dropped."""
    huge = 10**400
    r = parse_announce_response(encode({
        b"interval": huge, b"min interval": huge, b"complete": huge, b"incomplete": -5,
        b"peers": [{b"ip": b"10.0.0.1", b"port": 0}, {b"ip": b"10.0.0.2", b"port": 6881},
                   {b"ip": b"10.0.0.3", b"port": huge}, {b"ip": b"10.0.0.4", b"port": -1}],
        b"peers6": bytes(16) + b"\0\0",
    }))
    assert (r.interval, r.min_interval, r.complete, r.incomplete) == (
        MAX_TRACKER_NUMBER, MAX_TRACKER_NUMBER, MAX_TRACKER_NUMBER, None)
    assert r.peers == (("10.0.0.2", 6881),)
    with pytest.raises(TrackerResponseError, match="not a non-negative integer") as info:
        parse_announce_response(encode({b"interval": -huge}))
    assert len(str(info.value)) < 100
    s = parse_scrape_response(encode({b"files": {HASH: {b"complete": huge, b"downloaded": -1, b"incomplete": 2}},
                                      b"flags": {b"min_request_interval": huge}}))
    assert s.files[HASH] == ScrapeStats(complete=MAX_TRACKER_NUMBER, downloaded=0, incomplete=2)
    assert s.min_request_interval == MAX_TRACKER_NUMBER
