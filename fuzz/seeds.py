"""The seed corpus: valid inputs for each target, made with the project's own encoders.

``python -m fuzz.seeds`` rewrites ``fuzz/corpus/<target>/`` from ``SEEDS``, so a change to a format
or to a target's framing (``fuzz.targets.wire_input``, ``udp_input``) is one command away from a
matching corpus. Seeds are small (a few KB at most) and named after what they show.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fuzz.targets import RESUME_TORRENT, TARGETS, UDP_TID, UTP_ID, mse_input, udp_input, utp_input, wire_input
from torrent.codec import bencoding, krpc, lsd, metadata, pex, utp, wire
from torrent.codec.magnet import Magnet
from torrent.storage.files import FileState
from torrent.storage.resume import ResumeData
from torrent.storage.resume import encode as encode_resume

CORPUS = Path(__file__).parent / "corpus"
HASH = hashlib.sha1(b"fuzz").digest()
PEER_ID = b"-TR4050-fuzzfuzzfuzz"
NODE_A = b"abcdefghij0123456789"
NODE_B = b"mnopqrstuvwxyz123456"

Seeds = dict[str, bytes]


def _torrent(info: dict[bytes, Any], **top: Any) -> bytes:
    return bencoding.encode({b"info": info, **{k.replace("_", " ").encode(): v for k, v in top.items()}})


def _pieces(total: int, piece_length: int) -> bytes:
    return bytes(range(20)) * -(-total // piece_length)


def metainfo_seeds() -> Seeds:
    single = {b"name": b"file.bin", b"piece length": 16384, b"length": 40000, b"pieces": _pieces(40000, 16384)}
    files = [{b"length": 1000, b"path": [b"a", b"b.txt"]}, {b"length": 0, b"path": [b"empty"]},
             {b"length": 15384, b"path": [b".pad", b"15384"], b"attr": b"p"},
             {b"length": 5000, b"path": [b"x.sh"], b"attr": b"x"},
             {b"length": 0, b"path": [b"link"], b"attr": b"l", b"symlink path": [b"a", b"b.txt"]}]
    multi = {b"name": b"album", b"piece length": 16384, b"files": files, b"pieces": _pieces(21384, 16384)}
    odd = {b"name": b"\xff\xfe latin", b"name.utf-8": "caf\u00e9 \u2603".encode(), b"piece length": 3,
           b"length": 10, b"pieces": _pieces(10, 3), b"private": 1, b"source": b"FUZZ"}
    hostile = {b"name": b"../..", b"piece length": 1 << 20, b"pieces": _pieces(1, 1 << 20),
               b"files": [{b"length": 1, b"path": [b"..", b"CON", b"/etc/passwd", b"a\x00b"]}]}
    long = {b"name": b"n" * 300 + b".iso", b"piece length": 16384, b"pieces": _pieces(2, 16384),
            b"files": [{b"length": 1, b"path": [b"d" * 300, "\u00e9".encode() * 200]},
                       {b"length": 1, b"path": [b"f" * 250 + b" " + b"g" * 20 + b".tar.gz"]}]}
    return {
        "long-names": _torrent(long),
        "single": _torrent(single, announce=b"http://tracker.example/announce", creation_date=1700000000,
                           comment=b"a comment", created_by=b"fuzz seeds"),
        "multi": _torrent(multi, announce_list=[[b"udp://t1.example:6969/announce", b"http://t2.example/a"],
                                                [b"wss://t3.example"]], url_list=[b"http://seed.example/"]),
        "odd-names-private": _torrent(odd, url_list=b"http://one.example/file", creation_date=-5),
        "hostile-paths": _torrent(hostile),
        "v2-only": _torrent({b"name": b"v2", b"piece length": 16384, b"meta version": 2, b"file tree": {}}),
    }


def magnet_seeds() -> Seeds:
    full = Magnet.from_info_hash(HASH, hashlib.sha256(b"fuzz").digest(), display_name="a name & more",
                                 trackers=["udp://t.example:6969", "http://t2.example/announce?x=1"],
                                 peers=[("10.0.0.1", 6881), ("::1", 51413), ("peer.example", 1)],
                                 web_seeds=["http://ws.example/"], select_only=[0, 2, 3, 4, 9], exact_length=1 << 40)
    return {
        "full": full.to_uri().encode(),
        "hex-only": Magnet(HASH).to_uri().encode(),
        "base32-numbered": b"magnet:?xt=urn:btih:WRN7ZT6NKMA6SSXYKAFRUGDDIFJUNKI2&tr.1=udp%3A%2F%2Fa%3A1&tr.2=b&dn=x+y",
        "v2-only": b"magnet:?xt=urn:btmh:1220" + hashlib.sha256(b"v2").hexdigest().encode() + b"&so=0-3,7",
        "not-utf8": b"magnet:?xt=urn:btih:" + HASH.hex().encode() + b"&dn=\xff\xfe",
    }


def _messages() -> list[bytes]:
    return [wire.build_keepalive(), wire.build_choke(), wire.build_unchoke(), wire.build_interested(),
            wire.build_not_interested(), wire.build_have(3), wire.build_bitfield(b"\xff\xf0"),
            wire.build_request(1, 16384, 16384), wire.build_piece(1, 0, b"block" * 7), wire.build_cancel(1, 0, 16384),
            wire.build_port(6881), wire.build_suggest(2), wire.build_have_all(), wire.build_have_none(),
            wire.build_reject(1, 0, 16384), wire.build_allowed_fast(4), wire.build_message(42, b"unknown")]


def _extensions() -> list[bytes]:
    return [wire.build_extended_handshake({"ut_metadata": 2, "ut_pex": 1}, v="fuzz 1.0", p=6881, reqq=250,
                                          metadata_size=20000, yourip=b"\x7f\x00\x00\x01"),
            wire.build_extended(2, metadata.request(0)), wire.build_extended(2, metadata.data(0, b"d" * 100)),
            wire.build_extended(1, pex.build([("10.0.0.2", 6881, pex.SEED)], [("10.0.0.3", 1)]))]


def wire_seeds() -> Seeds:
    handshake = wire.Handshake(HASH, PEER_ID, wire.build_reserved(dht=True)).to_bytes()
    messages = b"".join(_messages())
    extensions = b"".join(_extensions())
    return {
        "incoming-held": wire_input(handshake + messages, handshake=True, num_pieces=12, hold=True, seed=1),
        "outgoing": wire_input(handshake + messages + extensions, handshake=True, num_pieces=12, seed=2),
        "metadata-phase": wire_input(handshake + extensions + messages, handshake=True, seed=3),
        "no-handshake": wire_input(messages, handshake=False, num_pieces=12, seed=4),
        "bytewise": wire_input(handshake + wire.build_have(11), handshake=True, num_pieces=12, seed=255),
        "big-bitfield": wire_input(wire.build_bitfield(b"\xff" * 1000), handshake=False, num_pieces=8000, seed=5),
    }


def ext_handshake_seeds() -> Seeds:
    header = 6  # length prefix, message id 20, extended id 0
    return {
        "full": _extensions()[0][header:],
        "minimal": bencoding.encode({b"m": {}}),
        "ipv6": wire.build_extended_handshake({"ut_pex": 0}, yourip=bytes(16), extra={"ipv6": bytes(range(16)),
                                              "ipv4": b"\x01\x02\x03\x04", "upload_only": 1})[header:],
    }


def ut_metadata_seeds() -> Seeds:
    info = bencoding.encode({b"name": b"x", b"piece length": 16384, b"length": 1, b"pieces": bytes(20)})
    return {
        "request": metadata.request(0),
        "reject": metadata.reject(5),
        "data-whole": metadata.data(0, info),
        "data-second-piece": metadata.data(1, bytes(metadata.PIECE) + b"tail"),
    }


def ut_pex_seeds() -> Seeds:
    return {
        "ipv4": pex.build([("10.0.0.1", 6881, pex.SEED | pex.REACHABLE), ("192.168.1.9", 51413, 0)],
                          [("10.0.0.7", 6881)]),
        "ipv6": pex.build([("2001:db8::1", 6881, pex.UTP)], [("2001:db8::2", 1)]),
        "empty": pex.build(),
    }


def _http(status: str, headers: list[str], body: bytes, seed: int) -> bytes:
    head = "\r\n".join([f"HTTP/1.1 {status}", *headers, "", ""]).encode()
    return bytes((seed,)) + head + body


def http_response_seeds() -> Seeds:
    body = http_body_seeds()["compact"]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7))
    return {
        "content-length": _http("200 OK", [f"Content-Length: {len(body)}", "Content-Type: text/plain"], body, 1),
        "chunked": _http("200 OK", ["Transfer-Encoding: chunked"], chunked + b"0\r\nX-Trailer: 1\r\n\r\n", 2),
        "gzip": _http("200 OK", ["Content-Encoding: gzip"], gzip.compress(body, mtime=0), 3),
        "deflate": _http("200 OK", ["Content-Encoding: deflate"], zlib.compress(body), 4),
        "redirect": _http("302 Found", ["Location: https://other.example/announce", "Content-Length: 0"], b"", 5),
        "continue-then-lf": b"\x06HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\nServer: x\n folded\n\n" + body,
        "no-content": _http("204 No Content", [], b"", 7),
    }


def http_body_seeds() -> Seeds:
    compact = bencoding.encode({b"interval": 1800, b"min interval": 60, b"complete": 5, b"incomplete": 3,
                                b"peers": bytes([10, 0, 0, 1, 0x1A, 0xE1, 10, 0, 0, 2, 0, 0]),
                                b"peers6": bytes(15) + b"\x01\x1a\xe1", b"external ip": b"\x7f\x00\x00\x01",
                                b"tracker id": b"tid"})
    return {
        "compact": compact,
        "dict-peers": bencoding.encode({b"interval": 900, b"peers": [
            {b"ip": b"10.0.0.5", b"port": 6881, b"peer id": PEER_ID}, {b"ip": b"peer.example", b"port": 1},
            {b"ip": b"[::1]", b"port": 65535}, {b"ip": b"bad host", b"port": 0}], b"warning message": b"be nice"}),
        "failure": bencoding.encode({b"failure reason": b"torrent not registered"}),
        "scrape": bencoding.encode({b"files": {HASH: {b"complete": 1, b"downloaded": 10, b"incomplete": 2}},
                                    b"flags": {b"min_request_interval": 600}}),
    }


def udp_seeds() -> Seeds:
    connect = (0).to_bytes(4, "big") + UDP_TID.to_bytes(4, "big") + (0x1234).to_bytes(8, "big")

    def head(action: int) -> bytes:
        return action.to_bytes(4, "big") + UDP_TID.to_bytes(4, "big")

    announce = head(1) + (1800).to_bytes(4, "big") + (3).to_bytes(4, "big") + (7).to_bytes(4, "big")
    peers4 = bytes([10, 0, 0, 1, 0x1A, 0xE1, 10, 0, 0, 2, 0xC8, 0xD5])
    peers6 = bytes(15) + b"\x01\x1a\xe1"
    scrape = head(2) + b"".join(n.to_bytes(4, "big") for n in (5, 50, 2, 0, 0, 0))
    return {
        "announce": udp_input([connect, announce + peers4]),
        "announce-ipv6": udp_input([connect, announce + peers6], ipv6=True),
        "scrape-two": udp_input([connect, scrape], scrape=True, hashes=2),
        "error": udp_input([connect, head(3) + b"go away"]),
        "stray-then-answer": udp_input([b"\x00" * 16, b"short", connect, announce]),
    }


def krpc_seeds() -> Seeds:
    nodes = [krpc.Node(NODE_B, "10.0.0.1", 6881), krpc.Node(NODE_A, "2001:db8::1", 51413)]
    return {
        "ping": krpc.ping(b"aa", NODE_A, read_only=True),
        "find_node": krpc.find_node(b"aa", NODE_A, NODE_B, want=["n4", "n6"]),
        "get_peers": krpc.get_peers(b"ab", NODE_A, HASH),
        "announce_peer": krpc.announce_peer(b"ac", NODE_A, HASH, 6881, b"token", implied_port=True),
        "reply-nodes": krpc.response(b"aa", NODE_B, nodes=nodes, token=b"tok", ip=("192.0.2.1", 6881)),
        "reply-values": krpc.response(b"ab", NODE_B, values=[("10.0.0.9", 6881), ("2001:db8::9", 1)], token=b"t"),
        "error": krpc.error(b"aa", krpc.METHOD_UNKNOWN, "Method Unknown"),
    }


def lsd_seeds() -> Seeds:
    two = lsd.build(6881, [HASH, bytes(range(20))], cookie="c0ffee")
    return {
        "one": lsd.build(51413, [HASH]),
        "two-cookie": two,
        "ipv6-lf": lsd.build(6881, [HASH], group=lsd.IPV6_GROUP).replace(b"\r\n", b"\n"),
    }


def resume_seeds() -> Seeds:
    meta = RESUME_TORRENT
    states = (FileState(40000, 1_700_000_000_000_000_000), None, None, FileState(100000, 1_700_000_001_000_000_000))
    matching = ResumeData(info_hash=meta.info_hash, num_pieces=meta.num_pieces, have=b"\xff\xc0", files=states,
                          download_dir="/srv/downloads", uploaded=5, downloaded=149152, priorities=(1, 0, 1, 7),
                          saved_at=1_700_000_002)
    other = ResumeData(info_hash=HASH, num_pieces=3, have=b"\xa0", files=(None,), download_dir="/tmp/\udcff")
    return {"matching": encode_resume(matching), "other-torrent": encode_resume(other)}


def blocklist_seeds() -> Seeds:
    dat = (b"# eMule ipfilter.dat\n001.009.096.105 - 001.009.096.110 , 000 , Some organization\n"
           b"10.0.0.0 - 10.255.255.255 , 200 , allowed: level over 127\n"
           b"2001:db8::1 - 2001:db8::ff , 0 , documentation\n")
    p2p = (b"// PeerGuardian\nSome organization:1.9.96.105-1.9.96.110\nA: name: with colons:8.8.8.0-8.8.8.255\r\n"
           b"six:2001:db8::-2001:db8::ffff\nbroken line\n")
    return {"dat": b"\x00" + dat, "p2p": b"\x07" + p2p, "mixed": b"\x21" + dat + p2p,
            "gzip": b"\x03" + gzip.compress(dat + p2p, mtime=0)}


def mse_seeds() -> Seeds:
    hs = wire.PROTOCOL + bytes(8) + HASH + PEER_ID
    provide = bytes(8) + (3).to_bytes(4, "big") + (0).to_bytes(2, "big") + len(hs).to_bytes(2, "big") + hs
    return {
        "responder-rc4": mse_input(provide + b"\x00\x00\x00\x01\x02", responder=True, pad=17, seed=3),
        "responder-padc": mse_input(bytes(8) + b"\x00\x00\x00\x01\x00\x05" + bytes(5) + b"\x00\x00",
                                    responder=True),
        "initiator-rc4": mse_input(bytes(8) + b"\x00\x00\x00\x02\x00\x03" + bytes(3) + b"\x00\x00\x00\x00",
                                   responder=False, pad=512, seed=5),
        "initiator-plain": mse_input(bytes(8) + b"\x00\x00\x00\x01\x00\x00", responder=False),
        "raw": mse_input(b"\x13BitTorrent protocol" + bytes(range(256)) * 3, responder=True, raw=True),
    }


def utp_seeds() -> Seeds:
    p = utp.build_packet
    syn = p(utp.ST_SYN, 500, 1_000_000, 0, 65536, 40, 0)
    # The side that accepted our SYN answers: its ST_STATE, data in order, out of order, a SACK, a FIN.
    answer = [p(utp.ST_STATE, UTP_ID, 1_000_000, 5000, 65536, 900, 100)]
    data = [p(utp.ST_DATA, UTP_ID, 1_001_000 + i, 5000, 65536, 901 + i, 100, payload=bytes([i]) * 1000)
            for i in range(4)]
    return {
        "dialled-data": utp_input(answer + data, accept=False),
        "dialled-reordered": utp_input(answer + data[::-1], accept=False, step_ms=1),
        "dialled-sack": utp_input(answer + [p(utp.ST_STATE, UTP_ID, 1_002_000, 5000, 65536, 905, 101,
                                              sack=b"\x05\x00\x00\x00")], accept=False),
        "dialled-fin": utp_input(answer + data[:1] + [p(utp.ST_FIN, UTP_ID, 1_003_000, 5000, 65536, 902, 100)],
                                 accept=False),
        "dialled-reset": utp_input(answer + [p(utp.ST_RESET, UTP_ID, 1_003_000, 5000, 65536, 901, 100)],
                                   accept=False),
        "accepted": utp_input([syn] + [p(utp.ST_DATA, 500, 1_001_000 + i, 3000, 65536, 41 + i, 7,
                                         payload=b"\x13BitTorrent protocol"[:i + 5]) for i in range(3)],
                              accept=True, step_ms=200),
        "timeouts": utp_input([syn] + [b""] * 20, accept=True, step_ms=255),
    }


SEEDS: dict[str, Callable[[], Seeds]] = {
    "bencode": lambda: {**{f"krpc-{k}": v for k, v in krpc_seeds().items() if k in ("ping", "reply-nodes")},
                        "torrent": metainfo_seeds()["multi"], "scalars": bencoding.encode([0, -1, 2**70, b"", b"x"]),
                        "nested": bencoding.encode({b"a": [[[{b"b": {}}]]], b"c": []})},
    "metainfo": metainfo_seeds,
    "magnet": magnet_seeds,
    "wire": wire_seeds,
    "ext_handshake": ext_handshake_seeds,
    "ut_metadata": ut_metadata_seeds,
    "ut_pex": ut_pex_seeds,
    "http_response": http_response_seeds,
    "http_body": http_body_seeds,
    "udp": udp_seeds,
    "krpc": krpc_seeds,
    "lsd": lsd_seeds,
    "resume": resume_seeds,
    "blocklist": blocklist_seeds,
    "mse": mse_seeds,
    "utp": utp_seeds,
}


def write_corpus(root: Path = CORPUS) -> dict[str, int]:
    """Replace each target's directory under ``root`` with its seeds; the number written per target."""
    missing = set(TARGETS) - set(SEEDS)
    if missing:
        raise SystemExit(f"no seeds for {', '.join(sorted(missing))}")
    written = {}
    for name, make in SEEDS.items():
        directory = root / name
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.iterdir():
            old.unlink()
        seeds = make()
        for label, data in seeds.items():
            (directory / re.sub(r"[^A-Za-z0-9_.-]", "_", label)).write_bytes(data)
        written[name] = len(seeds)
    return written


if __name__ == "__main__":
    counts = write_corpus(Path(sys.argv[1]) if len(sys.argv) > 1 else CORPUS)
    print(", ".join(f"{name}: {n}" for name, n in counts.items()))
