"""One fuzz target per decoder, each fed bytes the way the client feeds that decoder untrusted input.

A target calls the entry point the client calls, with the client's default limits, and catches only
the error that decoder documents for bad input (``torrent.core.errors`` and its subclasses). Anything
else escaping a target is a crash: an unexpected exception, or a ``CheckFailed`` when a property the
decoder promises does not hold (re-encoding gives the same value back, splitting the input differently
gives the same events). Hangs and memory past the runner's limit are caught by libFuzzer itself.

Some targets read a few leading bytes as settings (how to split a stream, which options to use); the
seeds in ``fuzz/seeds.py`` are written through the same helpers, so the corpus stays valid for them.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from torrent.codec import bencoding, blocklist, krpc, lsd, magnet, metadata, metainfo, mse, pex, utp, wire
from torrent.codec.paths import sanitize_component
from torrent.codec.tracker import http, udp
from torrent.codec.tracker.announce import AnnounceRequest, AnnounceResponse, ScrapeResponse, TrackerError
from torrent.core.errors import (
    BencodeError,
    BlocklistError,
    MagnetError,
    MetainfoError,
    MseError,
    ProtocolError,
    UtpError,
)
from torrent.core.ipfilter import IpFilter
from torrent.core.rc4 import RC4
from torrent.core.settings import DEFAULT_LIMITS, Limits
from torrent.peer.extensions import OUR_IDS
from torrent.storage import resume


class CheckFailed(AssertionError):
    """A decoder accepted its input but broke a property it promises (a logic bug, not bad input)."""


def check(ok: bool, what: str) -> None:
    if not ok:
        raise CheckFailed(what)


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    max_len: int  # libFuzzer's -max_len: the largest input it makes up

    @property
    def doc(self) -> str:
        """The target function's docstring on one line."""
        return " ".join((self.run.__doc__ or "").split())


TARGETS: dict[str, Target] = {}
# Deliberately broken targets that prove the harness catches a crash, a hang and memory growth;
# run only when named (tests/unit/test_fuzz_smoke.py), never by default.
PLANTED: dict[str, Target] = {}


def target(name: str, *, max_len: int = 4096, registry: dict[str, Target] = TARGETS) -> Callable[
        [Callable[[bytes], None]], Callable[[bytes], None]]:
    def register(fn: Callable[[bytes], None]) -> Callable[[bytes], None]:
        registry[name] = Target(name, fn, max_len)
        return fn

    return register


def find(name: str) -> Target:
    """The target called ``name``, planted ones included; KeyError naming the known ones."""
    found = TARGETS.get(name) or PLANTED.get(name)
    if found is None:
        raise KeyError(f"unknown fuzz target {name!r}; known: {', '.join([*TARGETS, *PLANTED])}")
    return found


# ---- framing shared with the seeds -----------------------------------------------------------------


def chunk_sizes(total: int, seed: int) -> list[int]:
    """Split ``total`` bytes into reads of varied sizes, from single bytes to most of the stream."""
    rng = random.Random(seed)
    sizes = []
    while total > 0:
        size = min(total, rng.randint(1, max(1, total >> rng.randint(0, 10))))
        sizes.append(size)
        total -= size
    return sizes


def split(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    pos = 0
    for size in sizes:
        yield data[pos:pos + size]
        pos += size


def frame_datagrams(datagrams: list[bytes]) -> bytes:
    """Datagrams as one input: each behind a two-byte big-endian length."""
    return b"".join(len(d).to_bytes(2, "big") + d for d in datagrams)


def datagrams(data: bytes) -> Iterator[bytes]:
    pos = 0
    while pos + 2 <= len(data):
        size = int.from_bytes(data[pos:pos + 2], "big")
        yield data[pos + 2:pos + 2 + size]
        pos += 2 + size


# ---- bencode ----------------------------------------------------------------------------------------


@target("bencode")
def fuzz_bencode(data: bytes) -> None:
    """bencoding.decode / decode_prefix / decode_with_spans agree, and encode gives the value back."""
    try:
        end, _ = bencoding.scan(data)
    except BencodeError:
        return
    # The scanner accepted data[:end]: bencode.py must agree with it, and every entry point give one value.
    value, prefix_end = bencoding.decode_prefix(data)
    check(prefix_end == end, f"decode_prefix ends at {prefix_end}, scan at {end}")
    whole = data[:end]
    spanned, spans = bencoding.decode_with_spans(whole)
    check(spanned == value, "decode_with_spans and decode_prefix differ")
    if end == len(data):
        check(bencoding.decode(data) == value, "decode and decode_prefix differ")
    else:
        try:
            bencoding.decode(data)
        except BencodeError:
            pass
        else:
            raise CheckFailed("decode accepted trailing data")
    for key, (begin, stop) in spans.items():
        check(bencoding.decode(whole[begin:stop]) == value[key], f"span of {key!r} does not hold its value")
    encoded = bencoding.encode(value)
    check(bencoding.decode(encoded, limits=_UNLIMITED) == value, "decode(encode(value)) != value")
    check(bencoding.encode(bencoding.decode(encoded, limits=_UNLIMITED)) == encoded, "encode is not canonical")


_UNLIMITED = Limits(bencode_max_depth=10_000)


# ---- metainfo and magnet ------------------------------------------------------------------------------


@target("metainfo", max_len=16384)
def fuzz_metainfo(data: bytes) -> None:
    """metainfo.parse of a .torrent file's bytes: geometry, sanitized paths and its magnet link hold."""
    try:
        meta = metainfo.parse(data)
    except MetainfoError:
        return
    check(meta.info_hash == hashlib.sha1(meta.info_bytes).digest(), "info-hash is not the SHA-1 of info")
    check(meta.info_bytes in data, "info bytes are not the file's own")
    geometry = meta.geometry
    check(geometry.num_pieces == meta.num_pieces, "geometry and 'pieces' disagree on the piece count")
    check(meta.total_length == sum(f.length for f in meta.files), "total length is not the sum of the files")
    for index, entry in enumerate(meta.files):
        check(bool(entry.path) and entry.path[0] == meta.name, f"file {index} is not under the torrent's name")
        for part in entry.path + (entry.symlink or ()):
            check(part == sanitize_component(part) != "", f"file {index} has an unsanitized component {part!r}")
        pieces = geometry.file_pieces(index)
        check(0 <= pieces.start and pieces.stop <= meta.num_pieces, f"file {index} maps outside the pieces")
    for piece in {0, meta.num_pieces - 1}:
        covered = sum(s.length for s in geometry.piece_slices(piece))
        check(covered == geometry.piece_size(piece), f"piece {piece} slices cover {covered} bytes")
        check(len(meta.piece_hash(piece)) == metainfo.DIGEST_SIZE, "short piece hash")
    uri = meta.magnet()
    if len(uri) <= magnet.MAX_URI_LENGTH:
        link = magnet.parse_magnet(uri)
        check(link.info_hash == meta.info_hash, "the magnet link names another info-hash")
        check(link.exact_length == meta.payload_length, "the magnet link gives another length")


@target("magnet")
def fuzz_magnet(data: bytes) -> None:
    """magnet.parse_magnet of text as typed or passed on the command line; parse(m.to_uri()) == m."""
    text = data.decode("utf-8", "surrogateescape")  # how Python hands over a non-UTF-8 argv
    try:
        link = magnet.parse_magnet(text)
    except MagnetError:
        return
    uri = link.to_uri()
    check(magnet.parse_magnet(uri) == link, f"parse_magnet(to_uri()) differs for {uri[:200]!r}")
    check(len(link.info_hash_hex) in (40, 64), "info_hash_hex is not a whole digest")


# ---- peer wire and its extensions -----------------------------------------------------------------------


WIRE_HANDSHAKE, WIRE_PIECES_KNOWN, WIRE_HOLD = 1, 2, 4


def wire_input(stream: bytes, *, handshake: bool, num_pieces: int | None = None, hold: bool = False,
               seed: int = 0) -> bytes:
    """A wire target input: flags, piece count (1..65536), chunking seed, then the bytes a peer sends."""
    flags = (WIRE_HANDSHAKE if handshake else 0) | (WIRE_PIECES_KNOWN if num_pieces else 0) | \
        (WIRE_HOLD if hold else 0)
    count = (num_pieces or 1) - 1
    return bytes((flags, count >> 8, count & 0xFF, seed)) + stream


def _comparable(event: wire.Event) -> wire.Event:
    if type(event) is wire.Piece and isinstance(event.data, memoryview):
        return wire.Piece(event.index, event.begin, event.data.tobytes())  # views die with the next feed
    return event


def _wire_session(stream: bytes, sizes: list[int], handshake: bool, num_pieces: int | None,
                  hold: bool) -> tuple[list[wire.Event], str | None, int]:
    """Feed ``stream`` in reads of ``sizes`` as PeerConnection does: the events, the error, bytes buffered."""
    # An incoming connection learns the piece count from the handshake (held until then); an outgoing
    # one knows it from the start.
    hold = hold and handshake
    parser = wire.WireParser(DEFAULT_LIMITS, expect_handshake=handshake,
                             num_pieces=None if hold else num_pieces, hold_after_handshake=hold)
    events: list[wire.Event] = []
    try:
        for chunk in split(stream, sizes):
            got = parser.feed(chunk)
            if parser.holding:
                events += map(_comparable, got)
                parser.num_pieces = num_pieces
                got = parser.resume()
            events += map(_comparable, got)
    except ProtocolError as exc:
        check(parser.failed, "the parser raised but is not dead")
        return events, f"{type(exc).__name__}: {exc}", parser.buffered
    return events, None, parser.buffered


def _extension_message(event: wire.Extended) -> None:
    """What PeerConnection does with an extended message: our ids route to the extension's parser."""
    try:
        if event.ext_id == wire.EXTENDED_HANDSHAKE_ID:
            wire.parse_extended_handshake(event.payload, limits=DEFAULT_LIMITS)
        elif event.ext_id == OUR_IDS["ut_pex"]:
            pex.parse(event.payload)
        elif event.ext_id == OUR_IDS["ut_metadata"]:
            metadata.parse(event.payload)
    except ProtocolError:
        pass


@target("wire")
def fuzz_wire(data: bytes) -> None:
    """WireParser fed in reads of random sizes, with and without a handshake first; any split gives the
    same events and error as one read, and the events re-encode to the bytes consumed."""
    if len(data) < 4:
        return
    flags, high, low, seed = data[:4]
    stream = data[4:]
    handshake, hold = bool(flags & WIRE_HANDSHAKE), bool(flags & WIRE_HOLD)
    num_pieces = ((high << 8) | low) + 1 if flags & WIRE_PIECES_KNOWN else None
    events, error, buffered = _wire_session(stream, [len(stream)], handshake, num_pieces, hold)
    split_events, split_error, split_buffered = _wire_session(stream, chunk_sizes(len(stream), seed),
                                                              handshake, num_pieces, hold)
    check(error == split_error, f"one read fails with {error!r}, split reads with {split_error!r}")
    if error is None:
        check(events == split_events, "split reads give other events than one read")
        check(buffered == split_buffered, "split reads leave another number of bytes buffered")
        encoded = b"".join(wire.encode(e) for e in events)
        check(encoded == stream[:len(stream) - buffered], "the events do not re-encode to the bytes consumed")
    else:  # one read raises before returning any event after the handshake; split reads return some
        check(split_events[:len(events)] == events, "split reads give other events than one read")
    for event in split_events:
        _check_limits(event, num_pieces)
        if type(event) is wire.Extended:
            _extension_message(event)


def _check_limits(event: wire.Event, num_pieces: int | None) -> None:
    """What the parser promises about each message it lets through."""
    index = getattr(event, "index", None)
    if num_pieces is not None and index is not None:
        check(0 <= index < num_pieces, f"{event!r} names a piece out of range")
    if type(event) in (wire.Request, wire.Cancel, wire.Reject):
        check(0 < event.length <= DEFAULT_LIMITS.wire_max_request, f"{event!r} asks for a bad length")
    if type(event) is wire.Bitfield and num_pieces is not None:
        wire.validate_bitfield(event.data, num_pieces)


@target("ext_handshake")
def fuzz_ext_handshake(data: bytes) -> None:
    """wire.parse_extended_handshake (BEP 10) of a peer's payload; the fields we send back round-trip."""
    try:
        hs = wire.parse_extended_handshake(data, limits=DEFAULT_LIMITS)
    except wire.WireError:
        return
    rebuilt = wire.build_extended_handshake(hs.m, p=hs.p, reqq=hs.reqq, yourip=hs.yourip,
                                            metadata_size=hs.metadata_size)
    events = wire.WireParser(expect_handshake=False).feed(rebuilt)
    check(len(events) == 1 and type(events[0]) is wire.Extended, "the rebuilt handshake is not one message")
    again = wire.parse_extended_handshake(events[0].payload)
    check((again.m, again.p, again.reqq, again.yourip, again.metadata_size)
          == (hs.m, hs.p, hs.reqq, hs.yourip, hs.metadata_size), "the extended handshake does not round-trip")


@target("ut_metadata", max_len=20000)
def fuzz_ut_metadata(data: bytes) -> None:
    """metadata.parse (BEP 9) of a peer's payload; messages re-encode; a DATA piece goes to an Assembly."""
    try:
        message = metadata.parse(data)
    except metadata.MetadataError:
        return
    if message.kind == metadata.REQUEST:
        check(metadata.parse(metadata.request(message.piece)) == message, "request does not round-trip")
    elif message.kind == metadata.REJECT:
        check(metadata.parse(metadata.reject(message.piece)) == message, "reject does not round-trip")
    else:
        assert message.total_size is not None
        assembly = metadata.Assembly(hashlib.sha1(message.data).digest(), message.total_size)
        try:
            info = assembly.received("peer", message)
        except metadata.MetadataError:
            return
        check(info is None or info == message.data, "an assembly of one piece gave other bytes")


@target("ut_pex")
def fuzz_ut_pex(data: bytes) -> None:
    """pex.parse (BEP 11) of a peer's payload; what it adds and drops survives pex.build and parse."""
    try:
        message = pex.parse(data)
    except pex.PexError:
        return
    for peer in message.added:
        check(0 < peer.port < 65536 and 0 <= peer.flags < 256, f"bad added peer {peer!r}")
    added, dropped = message.added[:pex.MAX_ADDED], message.dropped[:pex.MAX_DROPPED]
    again = pex.parse(pex.build(added, dropped))
    check(Counter(_canonical(p.host, p.port, p.flags) for p in again.added)
          == Counter(_canonical(p.host, p.port, p.flags) for p in added), "added peers do not round-trip")
    check(Counter(_canonical(h, p) for h, p in again.dropped) == Counter(_canonical(h, p) for h, p in dropped),
          "dropped peers do not round-trip")


def _canonical(host: str, port: int, flags: int = 0) -> tuple[bytes, int, int]:
    return pex.encode_address(host, port), port, flags


# ---- trackers ---------------------------------------------------------------------------------------------


def _http_session(stream: bytes, sizes: list[int]) -> http.HttpResponse | str:
    """Feed a tracker's reply as the client reads it: the response, or the error's type."""
    parser = http.HttpResponseParser(max_header_size=DEFAULT_LIMITS.tracker_max_header,
                                     max_body_size=DEFAULT_LIMITS.tracker_max_response)
    try:
        for chunk in split(stream, sizes):
            result = parser.feed(chunk)
            if result is not http.NEED_DATA:
                assert isinstance(result, http.HttpResponse)
                return result
        return parser.feed_eof()
    except TrackerError as exc:
        return type(exc).__name__


@target("http_response", max_len=8192)
def fuzz_http_response(data: bytes) -> None:
    """HttpResponseParser fed a tracker's reply in reads of random sizes (any split gives the same result),
    then its body as an announce and as a scrape response."""
    if not data:
        return
    stream = data[1:]
    whole = _http_session(stream, [len(stream)])
    check(whole == _http_session(stream, chunk_sizes(len(stream), data[0])),
          "split reads give another response than one read")
    if isinstance(whole, http.HttpResponse):
        check(len(whole.body) <= DEFAULT_LIMITS.tracker_max_response, "body over the limit")
        _tracker_body(whole.body)


def _tracker_body(body: bytes) -> None:
    try:
        announced = http.parse_announce_response(body, DEFAULT_LIMITS)
    except TrackerError:
        pass
    else:
        _check_announce(announced)
    try:
        scraped = http.parse_scrape_response(body, DEFAULT_LIMITS)
    except TrackerError:
        pass
    else:
        _check_scrape(scraped)


def _check_announce(resp: AnnounceResponse) -> None:
    check(0 <= resp.interval <= 2**31 - 1, f"interval {resp.interval}")
    check(len(set(resp.peers)) == len(resp.peers), "duplicate peers")
    for host, port in resp.peers:
        check(isinstance(host, str) and bool(host) and 0 < port < 65536, f"bad peer {(host, port)!r}")


def _check_scrape(resp: ScrapeResponse) -> None:
    for info_hash, stats in resp.files.items():
        check(len(info_hash) == 20, "scrape entry without a 20-byte info-hash")
        check(min(stats.complete, stats.downloaded, stats.incomplete) >= 0, "negative scrape count")


@target("http_body")
def fuzz_http_body(data: bytes) -> None:
    """http.parse_announce_response and parse_scrape_response of a bencoded tracker body."""
    _tracker_body(data)


UDP_SCRAPE, UDP_IPV6 = 1, 2
UDP_TID = 0x5EED1D01  # every transaction id the fuzzed transaction picks, so replies can match it
_REQUEST = AnnounceRequest(info_hash=bytes(range(20)), peer_id=b"-TR0001-fuzzfuzzfuzz", port=6881,
                           uploaded=0, downloaded=0, left=1 << 20)


def udp_input(replies: list[bytes], *, scrape: bool = False, ipv6: bool = False, hashes: int = 1) -> bytes:
    """A udp target input: mode byte (scrape, IPv6, how many hashes to scrape), then framed datagrams."""
    mode = (UDP_SCRAPE if scrape else 0) | (UDP_IPV6 if ipv6 else 0) | ((hashes - 1) << 2)
    return bytes((mode,)) + frame_datagrams(replies)


@target("udp")
def fuzz_udp(data: bytes) -> None:
    """A BEP 15 UdpTrackerTransaction (announce or scrape) receiving the tracker's datagrams, and each
    datagram through parse_connect_response / parse_announce_response / parse_scrape_response."""
    if not data:
        return
    mode = data[0]
    hashes = [bytes([i]) * 20 for i in range(1 + (mode >> 2) % udp.MAX_SCRAPE_HASHES)]
    ipv6 = bool(mode & UDP_IPV6)
    kind: dict[str, Any] = {"scrape": hashes} if mode & UDP_SCRAPE else {"announce": _REQUEST}
    tx = udp.UdpTrackerTransaction(ipv6=ipv6, transaction_ids=lambda: UDP_TID, **kind)
    tx.start(0.0)
    for now, datagram in enumerate(datagrams(data[1:])):
        for parse in (lambda d: udp.parse_connect_response(d, UDP_TID),
                      lambda d: udp.parse_announce_response(d, UDP_TID, ipv6=ipv6),
                      lambda d: udp.parse_scrape_response(d, UDP_TID, hashes)):
            try:
                parse(datagram)
            except TrackerError:
                pass
        if tx.done:
            continue
        try:
            reply = tx.receive(datagram, float(now))
        except TrackerError:
            return
        check(reply is None or len(reply) >= 16, "the transaction answered with a short datagram")
        if tx.done:
            if isinstance(tx.result, AnnounceResponse):
                _check_announce(tx.result)
            else:
                assert isinstance(tx.result, ScrapeResponse)
                check(set(tx.result.files) == set(hashes), "the scrape result names other hashes")
                _check_scrape(tx.result)


# ---- DHT, local discovery, resume data --------------------------------------------------------------------

_KRPC_LIMITS = Limits(bencode_max_depth=krpc.MAX_DEPTH, bencode_max_size=krpc.MAX_MESSAGE)


@target("krpc", max_len=krpc.MAX_MESSAGE + 64)
def fuzz_krpc(data: bytes) -> None:
    """krpc.parse of a DHT datagram; its bencode decoder agrees with bencoding.decode, replies round-trip."""
    try:
        mine: Any = krpc.decode_bencode(data)
    except krpc.KrpcError:
        mine = None
    try:
        general: Any = bencoding.decode(data, limits=_KRPC_LIMITS)
    except BencodeError:
        general = None
    if len(data) <= krpc.MAX_MESSAGE:
        check(mine == general, "krpc.decode_bencode and bencoding.decode disagree")
    try:
        message = krpc.parse(data)
    except krpc.KrpcError:
        return
    if isinstance(message, krpc.Response):
        rebuilt = krpc.response(message.tid, message.node_id, nodes=message.nodes, values=message.values,
                                token=message.token, ip=message.ip)
        if len(rebuilt) <= krpc.MAX_MESSAGE:
            check(krpc.parse(rebuilt) == message, "a response does not round-trip")


@target("lsd", max_len=lsd.MAX_MESSAGE + 64)
def fuzz_lsd(data: bytes) -> None:
    """lsd.parse of a multicast datagram (BEP 14); what it reads survives lsd.build and parse."""
    try:
        announce = lsd.parse(data)
    except lsd.LsdError:
        return
    cookie = announce.cookie if announce.cookie is not None and lsd._valid_cookie(announce.cookie) else None
    if len(announce.info_hashes) <= lsd.capacity(announce.port, cookie=cookie):
        again = lsd.parse(lsd.build(announce.port, announce.info_hashes, cookie=cookie))
        check((again.port, again.info_hashes, again.cookie) == (announce.port, announce.info_hashes, cookie),
              "an announce does not round-trip")


def _resume_torrent() -> metainfo.Metainfo:
    """A three-file torrent (one empty, one padding) for resume data to be checked against."""
    files = [{b"length": 40000, b"path": [b"a.bin"]}, {b"length": 0, b"path": [b"empty"]},
             {b"length": 9152, b"path": [b".pad", b"9152"], b"attr": b"p"},
             {b"length": 100000, b"path": [b"dir", b"b.bin"]}]
    info = {b"name": b"fuzz", b"piece length": 16384, b"pieces": bytes(20 * 10), b"files": files}
    return metainfo.parse(bencoding.encode({b"info": info}))


RESUME_TORRENT = _resume_torrent()


@target("resume", max_len=8192)
def fuzz_resume(data: bytes) -> None:
    """resume.decode of a resume file's bytes, alone and against a torrent; encode(decode(x)) round-trips
    and trusted_pieces accepts what decode accepted."""
    for torrent in (None, RESUME_TORRENT):
        try:
            loaded = resume.decode(data, metainfo=torrent)
        except resume.ResumeError:
            continue
        check(resume.decode(resume.encode(loaded), metainfo=torrent) == loaded, "resume data does not round-trip")
        check(len(loaded.bitfield()) == loaded.num_pieces, "the bitfield has another length")
        if torrent is not None:
            states = [None] * len(torrent.files)
            plan = resume.trusted_pieces(loaded, torrent, states, journal=None)
            check(plan is None or plan.trusted.and_(plan.recheck).none(), "a piece both trusted and rechecked")


# ---- IP blocklists ---------------------------------------------------------------------------------------


def _blocklist(parts: Iterator[bytes]) -> tuple[Any, ...] | str:
    """What a reader makes of a file, comparably: its ranges, counts and problems, or its error."""
    parser = blocklist.BlocklistParser(DEFAULT_LIMITS.blocklist_max_size)
    try:
        for part in parts:
            parser.feed(part)
        found = parser.finish()
    except BlocklistError as exc:
        return str(exc)
    return found.filter.ranges(), found.entries, found.allowed, found.problems, found.problem_count


@target("blocklist", max_len=8192)
def fuzz_blocklist(data: bytes) -> None:
    """A blocklist file's bytes (eMule .dat, PeerGuardian .p2p, gzip), read whole and in reads of any size
    (the same result), and gzipped (the same result as plain); the ranges come out merged and in force."""
    if not data:
        return
    seed, text = data[0], data[1:]
    whole = _blocklist(iter([text]))
    check(whole == _blocklist(split(text, chunk_sizes(len(text), seed))),
          "split reads give another result than one read")
    if not text.startswith(b"\x1f\x8b"):  # plain text: gzipping it changes nothing
        check(whole == _blocklist(iter([gzip.compress(text, mtime=0)])), "the gzipped file reads otherwise")
    if isinstance(whole, str):
        return
    ranges, _, _, problems, problem_count = whole
    in_force = IpFilter.from_ranges(ranges)
    for (version, first, last), following in zip(ranges, ranges[1:] + [(0, 0, 0)]):
        check(first <= last, "a range ends before it starts")
        check(following[0] != version or following[1] > last + 1, "ranges overlap or touch after merging")
        inside = in_force.contains_v4 if version == 4 else in_force.contains_v6
        check(inside(first) and inside(last), "a range's own ends are not blocked")
    check(problem_count >= len(problems), "more problems listed than counted")


# ---- MSE/PE encrypted handshake --------------------------------------------------------------------------

MSE_HASH = hashlib.sha1(b"fuzz mse").digest()
MSE_RESPONDER, MSE_RAW = 0x01, 0x02  # mode bits; the other six are the chunking seed
_MSE_KEY = random.Random(1).getrandbits(160) | 1  # the harness peer's private key


def mse_side(mode: int) -> mse.Initiator | mse.Responder:
    """The side under test, with a fixed random source: its key and padding are the same every run."""
    rng = random.Random(mode & MSE_RESPONDER).randbytes
    if mode & MSE_RESPONDER:
        return mse.Responder({mse.req2_key(MSE_HASH): MSE_HASH}.get, rng=rng)
    return mse.Initiator(MSE_HASH, initial_payload=b"IA", rng=rng)


@functools.cache
def _mse_peer(responder: bool) -> tuple[bytes, bytes]:
    """The harness peer's public key, and the secret it shares with the side under test."""
    ours = pow(2, _MSE_KEY, mse.P).to_bytes(96, "big")
    side = mse_side(MSE_RESPONDER if responder else 0)
    if responder:
        side.receive(ours)  # a responder sends its key once it has the peer's
    theirs = int.from_bytes(side.data_to_send()[:96], "big")
    return ours, pow(theirs, _MSE_KEY, mse.P).to_bytes(96, "big")


def mse_input(body: bytes, *, responder: bool, pad: int = 0, raw: bool = False, seed: int = 0) -> bytes:
    """An mse target input: mode byte, the peer's padding length (two bytes), then the handshake fields
    the peer encrypts (VC, crypto field, pad length...) or, with ``raw``, the bytes it sends as they are."""
    mode = (MSE_RESPONDER if responder else 0) | (MSE_RAW if raw else 0) | (seed << 2 & 0xFF)
    return bytes((mode,)) + pad.to_bytes(2, "big") + body


def _mse_stream(mode: int, pad: int, body: bytes) -> bytes:
    """What the harness peer sends: its key, padding, [the req hashes,] then ``body`` under its RC4 key."""
    if mode & MSE_RAW:
        return body
    ours, secret = _mse_peer(bool(mode & MSE_RESPONDER))
    head = ours + bytes(pad)
    if mode & MSE_RESPONDER:
        head += hashlib.sha1(b"req1" + secret).digest() + bytes(
            a ^ b for a, b in zip(mse.req2_key(MSE_HASH), hashlib.sha1(b"req3" + secret).digest()))
    key = hashlib.sha1((b"keyA" if mode & MSE_RESPONDER else b"keyB") + secret + MSE_HASH).digest()
    return head + RC4(key, drop=1024).process(body)


def _mse_run(mode: int, parts: Iterator[bytes]) -> tuple[Any, ...]:
    """What the side under test makes of a stream, comparably: its Done (with every later byte
    decrypted) or its error, and everything it sent."""
    side = mse_side(mode)
    sent, done, after = bytearray(side.data_to_send()), None, bytearray()
    try:
        for part in parts:
            if done is not None:
                after += done.decrypt.process(part) if done.decrypt else part
                continue
            events = side.receive(part)
            check(side.buffered <= max(mse.MAX_PAD + 20, mse.DEFAULT_MAX_INITIAL_PAYLOAD),
                  "more buffered than the largest handshake step (the sync window, or the IA's limit)")
            sent += side.data_to_send()
            if events:
                done = events[0]
                after += done.rest
    except MseError as exc:
        sent += side.data_to_send()  # Yb may have been queued by the read that failed
        check(side.consumed <= 96 + mse.MAX_PAD + 20 + 20 + 14 + mse.MAX_PAD + 2 + mse.DEFAULT_MAX_INITIAL_PAYLOAD,
              "an error after more bytes than any valid handshake holds")
        return "error", str(exc), bytes(sent)
    if done is None:
        return "pending", bytes(sent)
    return "done", done.method, done.info_hash, done.initial_payload, bytes(after), bytes(sent)


@target("mse")
def fuzz_mse(data: bytes) -> None:
    """An MSE/PE Initiator or Responder fed a peer's handshake: a real key and sync hashes from a harness
    peer, then fields the fuzzer writes, encrypted as the spec says (or raw bytes); in reads of any size
    (the same result and the same bytes sent); the bytes after Done are the fields' tail, decrypted."""
    if len(data) < 3:
        return
    mode, pad, body = data[0], int.from_bytes(data[1:3], "big") % 1024, data[3:]
    stream = _mse_stream(mode, pad, body)
    whole = _mse_run(mode, iter([stream]))
    check(whole == _mse_run(mode, split(stream, chunk_sizes(len(stream), mode >> 2))),
          "split reads give another result than one read")
    if whole[0] == "done" and whole[1] == mse.Crypto.RC4 and not mode & MSE_RAW:
        fields = 8 + 4 + 2 + int.from_bytes(body[12:14], "big")
        if mode & MSE_RESPONDER:
            fields += 2 + len(whole[3])
        check(whole[4] == body[fields:], "the stream after Done is not the peer's tail")


# ---- planted bugs: the harness must report each --------------------------------------------------------------


@target("planted-crash", registry=PLANTED)
def planted_crash(data: bytes) -> None:
    """A decoder with a planted bug: input starting CRASH raises an error no decoder documents."""
    if data.startswith(b"CRASH"):
        raise RuntimeError("planted crash")


@target("planted-hang", registry=PLANTED)
def planted_hang(data: bytes) -> None:
    """A decoder with a planted hang: input starting HANG never returns."""
    while data.startswith(b"HANG"):
        time.sleep(0.01)


@target("planted-oom", registry=PLANTED)
def planted_oom(data: bytes) -> None:
    """A decoder with planted memory growth: input starting OOM holds 640 MiB until libFuzzer stops it."""
    if data.startswith(b"OOM"):
        held = b"x" * (640 << 20)  # written, so resident
        while held:
            time.sleep(0.01)


# ---- uTP ------------------------------------------------------------------------------------------------

UTP_ACCEPT = 0x01  # mode bit: the first datagram is a SYN we accept (else we dialled, connection id UTP_ID)
UTP_ID = 0x1234
UTP_WINDOW = 64 * 1024  # a small receive window, so the bound is reached


def utp_input(datagrams_in: list[bytes], *, accept: bool, step_ms: int = 10) -> bytes:
    """A utp target input: mode byte, milliseconds between datagrams, then the peer's datagrams framed."""
    return bytes((UTP_ACCEPT if accept else 0, step_ms & 0xFF)) + frame_datagrams(datagrams_in)


@target("utp", max_len=16384)
def fuzz_utp(data: bytes) -> None:
    """A uTP connection (``UtpConnection``, either side) fed a peer's datagrams with its timers run between
    them: nothing but ``UtpError`` from ``parse_header``, nothing at all from ``receive``/``on_timer``/
    ``datagrams_to_send``; what it holds stays within its receive window and what it sends parses."""
    if len(data) < 2:
        return
    mode, step = data[0], data[1] / 1000
    packets = list(datagrams(data[2:]))
    now = 1000.0
    if mode & UTP_ACCEPT:
        if not packets:
            return
        try:
            header = utp.parse_header(packets[0])
            conn = utp.UtpConnection.accept(packets[0], 7, now, recv_window=UTP_WINDOW, send_buffer=UTP_WINDOW)
        except UtpError:
            return
        check(header.type == utp.ST_SYN, "accept() took a packet that is not a SYN")
        packets = packets[1:]
    else:
        conn = utp.UtpConnection.connect(UTP_ID, 100, now, recv_window=UTP_WINDOW, send_buffer=UTP_WINDOW)
    conn.write(bytes(range(256)) * 8)
    sink = memoryview(bytearray(4096))
    for packet in packets:
        try:
            utp.parse_header(packet)
        except UtpError:
            pass
        conn.receive(packet, now)
        for out in conn.datagrams_to_send(now):
            header = utp.parse_header(out)  # a packet we send that does not parse is a crash
            check(len(out) <= utp.HEADER_SIZE + utp.PACKET_SIZE_CEILING_V4, "a packet over a 1500-byte MTU")
        check(conn.readable + conn._ooo_bytes <= UTP_WINDOW + utp.PACKET_SIZE_CEILING_V4,
              "more held than the receive window")
        if packet[:1] == b"\x00":  # now and then the application reads
            conn.read_into(sink)
        now += step
        deadline = conn.next_timer()
        if deadline is not None and deadline <= now:
            conn.on_timer(now)

