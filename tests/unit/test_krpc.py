"""KRPC codec: the BEP 5 examples byte for byte, round trips, every malformed form dropped with KrpcError; the
KRPC decoder agrees with the general bencode decoder, and replies are the bytes bencoding.encode would write."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrent.codec import bencoding, krpc
from torrent.codec.krpc import Error, KrpcError, Node, Query, Response
from torrent.core.settings import Limits

A = b"abcdefghij0123456789"
B = b"mnopqrstuvwxyz123456"

# The examples of BEP 5, as they appear there.
BEP5 = {
    "ping": b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe",
    "ping reply": b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
    "find_node": b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe",
    "get_peers": b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe",
    "announce_peer": b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e"
                     b"5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe",
    "error": b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee",
}


def test_the_bep5_queries_parse() -> None:
    assert krpc.parse(BEP5["ping"]) == Query(b"aa", "ping", A)
    assert krpc.parse(BEP5["find_node"]) == Query(b"aa", "find_node", A, target=B)
    assert krpc.parse(BEP5["get_peers"]) == Query(b"aa", "get_peers", A, info_hash=B)
    assert krpc.parse(BEP5["announce_peer"]) == Query(b"aa", "announce_peer", A, info_hash=B, port=6881,
                                                      implied_port=True, token=b"aoeusnth")
    assert krpc.parse(BEP5["ping reply"]) == Response(b"aa", B)
    assert krpc.parse(BEP5["error"]) == Error(b"aa", 201, "A Generic Error Ocurred")


def test_the_builders_write_the_bep5_bytes() -> None:
    assert krpc.ping(b"aa", A) == BEP5["ping"]
    assert krpc.find_node(b"aa", A, B) == BEP5["find_node"]
    assert krpc.get_peers(b"aa", A, B) == BEP5["get_peers"]
    assert krpc.announce_peer(b"aa", A, B, 6881, b"aoeusnth", implied_port=True) == BEP5["announce_peer"]
    assert krpc.response(b"aa", B) == BEP5["ping reply"]
    assert krpc.error(b"aa", 201, "A Generic Error Ocurred") == BEP5["error"]


def test_a_get_peers_reply_round_trips_with_ipv4_and_ipv6_nodes_values_token_and_ip() -> None:
    nodes = (Node(A, "127.0.0.1", 6881), Node(B, "::1", 51413), Node(A, "10.1.2.3", 65535))
    values = (("192.168.1.7", 6881), ("2001:db8::1", 443))
    data = krpc.response(b"\x00\x01", B, nodes=nodes, values=values, token=b"t0k", ip=("203.0.113.9", 40000))
    reply = krpc.parse(data)
    assert reply == Response(b"\x00\x01", B, (nodes[0], nodes[2], nodes[1]), values, b"t0k", ("203.0.113.9", 40000))
    nodes4, nodes6 = krpc.encode_nodes(nodes)
    assert len(nodes4) == 2 * krpc.NODE4 and len(nodes6) == krpc.NODE6


def test_read_only_and_want_flags() -> None:
    query = krpc.parse(krpc.get_peers(b"ab", A, B, read_only=True))
    assert query.read_only and query.info_hash == B
    raw = b"d1:ad2:id20:" + A + b"6:target20:" + B + b"4:wantl2:n42:n6ee1:q9:find_node1:t2:aa1:y1:qe"
    assert krpc.parse(raw).want == ("n4", "n6")


def test_an_unknown_method_still_parses_so_it_can_be_answered() -> None:
    query = krpc.parse(b"d1:ad2:id20:" + A + b"e1:q9:vote_peer1:t1:x1:y1:qe")
    assert query.method == "vote_peer" and query.method not in krpc.QUERIES


def test_nodes_with_port_zero_are_skipped() -> None:
    data = A + bytes([127, 0, 0, 1]) + b"\x00\x00" + B + bytes([127, 0, 0, 2]) + b"\x1a\xe1"
    assert krpc.decode_nodes(data) == (Node(B, "127.0.0.2", 6881),)


BAD = {
    "not bencode": b"GET / HTTP/1.1\r\n",
    "not a dict": b"li1ei2ee",
    "truncated": BEP5["ping"][:-3],
    "trailing data": BEP5["ping"] + b"x",
    "no transaction id": b"d1:ad2:id20:" + A + b"e1:q4:ping1:y1:qe",
    "empty transaction id": b"d1:ad2:id20:" + A + b"e1:q4:ping1:t0:1:y1:qe",
    "long transaction id": b"d1:ad2:id20:" + A + b"e1:q4:ping1:t17:" + b"x" * 17 + b"1:y1:qe",
    "unknown type": b"d1:t2:aa1:y1:xe",
    "query without args": b"d1:q4:ping1:t2:aa1:y1:qe",
    "short node id": b"d1:ad2:id19:" + A[:19] + b"e1:q4:ping1:t2:aa1:y1:qe",
    "id is an integer": b"d1:ad2:idi5ee1:q4:ping1:t2:aa1:y1:qe",
    "short target": b"d1:ad2:id20:" + A + b"6:target3:abce1:q9:find_node1:t2:aa1:y1:qe",
    "announce without token": b"d1:ad2:id20:" + A + b"9:info_hash20:" + B + b"4:porti6881ee1:q13:announce_peer"
                              b"1:t2:aa1:y1:qe",
    "announce with port 0": b"d1:ad2:id20:" + A + b"9:info_hash20:" + B + b"4:porti0e5:token1:xe"
                            b"1:q13:announce_peer1:t2:aa1:y1:qe",
    "announce with huge port": b"d1:ad2:id20:" + A + b"9:info_hash20:" + B + b"4:porti70000e5:token1:xe"
                               b"1:q13:announce_peer1:t2:aa1:y1:qe",
    "nodes not a multiple of 26": b"d1:rd2:id20:" + B + b"5:nodes25:" + b"n" * 25 + b"e1:t2:aa1:y1:re",
    "nodes6 not a multiple of 38": b"d1:rd2:id20:" + B + b"6:nodes626:" + b"n" * 26 + b"e1:t2:aa1:y1:re",
    "a value of 5 bytes": b"d1:rd2:id20:" + B + b"6:valuesl5:abcdeee1:t2:aa1:y1:re",
    "values not a list": b"d1:rd2:id20:" + B + b"6:values6:abcdefe1:t2:aa1:y1:re",
    "token too long": b"d1:rd2:id20:" + B + b"5:token65:" + b"k" * 65 + b"e1:t2:aa1:y1:re",
    "error without a list": b"d1:e3:bad1:t2:aa1:y1:ee",
    "error with a string code": b"d1:el3:2013:bade1:t2:aa1:y1:ee",
    "too deep": b"d1:ad2:idl" + b"l" * 10 + b"e" * 11 + b"e1:q4:ping1:t2:aa1:y1:qe",
}


@pytest.mark.parametrize("data", BAD.values(), ids=BAD.keys())
def test_malformed_messages_are_refused(data: bytes) -> None:
    with pytest.raises(KrpcError):
        krpc.parse(data)


def test_a_huge_node_list_is_refused_before_it_is_decoded() -> None:
    nodes = b"n" * (krpc.NODE4 * 100)
    data = b"d1:rd2:id20:" + B + b"5:nodes%d:" % len(nodes) + nodes + b"e1:t2:aa1:y1:re"
    with pytest.raises(KrpcError, match="limit"):
        krpc.parse(data)


@given(st.binary(max_size=300))
def test_garbage_is_a_krpc_error_or_a_message(data: bytes) -> None:
    try:
        message = krpc.parse(data)
    except KrpcError:
        return
    assert isinstance(message, Query | Response | Error)


@given(st.sampled_from(list(BEP5.values())), st.integers(0, 80), st.binary(min_size=1, max_size=4))
def test_corrupted_real_messages_never_raise_anything_else(data: bytes, at: int, junk: bytes) -> None:
    mutated = data[:at] + junk + data[at + len(junk):]
    try:
        krpc.parse(mutated)
    except KrpcError:
        pass


# ---- the KRPC decoder agrees with the general one; replies are what bencoding.encode would write ----

_GENERAL = Limits(bencode_max_depth=krpc.MAX_DEPTH, bencode_max_size=krpc.MAX_MESSAGE,
                  bencode_max_string=krpc.MAX_MESSAGE)
_values = st.recursive(
    st.integers(-10**20, 10**20) | st.binary(max_size=24),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.binary(max_size=6), inner, max_size=4),
    max_leaves=12)


def _general(data: bytes) -> tuple[bool, object]:
    try:
        return True, bencoding.decode(data, limits=_GENERAL)
    except bencoding.BencodeError:
        return False, None


def _ours(data: bytes) -> tuple[bool, object]:
    try:
        return True, krpc.decode_bencode(data)
    except KrpcError:
        return False, None


@given(_values, st.integers(0, 200), st.binary(max_size=3))
def test_the_krpc_decoder_accepts_and_refuses_what_the_general_one_does(value: object, at: int, junk: bytes) -> None:
    data = bencoding.encode(value)
    assert _ours(data) == _general(data)
    mutated = data[:at] + junk + data[at + len(junk):]
    assert _ours(mutated) == _general(mutated)


@given(st.binary(max_size=60))
def test_the_krpc_decoder_agrees_on_garbage(data: bytes) -> None:
    assert _ours(data) == _general(data)


def test_the_krpc_decoder_refuses_each_non_canonical_form() -> None:
    for bad in (b"i03e", b"i-0e", b"ie", b"03:abc", b"d1:ai1e1:ai2ee", b"di1ei2ee", b"l" * 5 + b"e" * 5, b"5:abc",
                b"i1ex", b"x"):
        ok, _ = _ours(bad)
        assert not ok, bad
        assert _general(bad)[0] is False, bad


_nodes = st.lists(st.tuples(st.binary(min_size=20, max_size=20), st.ip_addresses(), st.integers(1, 65535)),
                  max_size=10).map(lambda xs: tuple(Node(i, str(h), p) for i, h, p in xs))
_peers = st.lists(st.tuples(st.ip_addresses(), st.integers(0, 65535)), max_size=8).map(
    lambda xs: tuple((str(h), p) for h, p in xs))


@given(st.binary(min_size=1, max_size=4), _nodes, _peers, st.none() | st.binary(max_size=20),
       st.none() | st.tuples(st.ip_addresses(), st.integers(0, 65535)))
def test_a_reply_is_written_as_bencoding_would_write_it(tid: bytes, nodes: tuple[Node, ...], values: tuple,
                                                        token: bytes | None, ip: tuple | None) -> None:
    ip = (str(ip[0]), ip[1]) if ip else None
    body: dict[bytes, object] = {b"id": B}
    nodes4, nodes6 = krpc.encode_nodes(nodes)
    if nodes4:
        body[b"nodes"] = nodes4
    if nodes6:
        body[b"nodes6"] = nodes6
    if values:
        body[b"values"] = [krpc.encode_address(h, p) for h, p in values]
    if token is not None:
        body[b"token"] = token
    msg: dict[bytes, object] = {b"t": tid, b"y": b"r", b"r": body}
    if ip is not None:
        msg[b"ip"] = krpc.encode_address(*ip)
    assert krpc.response(tid, B, nodes=nodes, values=values, token=token, ip=ip) == bencoding.encode(msg)
    # peers already in compact form give the same bytes
    packed = [krpc.encode_address(h, p) for h, p in values]
    assert krpc.response(tid, B, nodes=nodes, values=packed, token=token, ip=ip) == bencoding.encode(msg)


@given(st.ip_addresses(), st.integers(0, 65535))
def test_compact_addresses_round_trip_in_canonical_text(host: object, port: int) -> None:
    packed = krpc.encode_address(str(host), port)
    assert len(packed) == (6 if host.version == 4 else 18)
    assert krpc.decode_address(packed) == (str(host), port)


def test_want_is_sent_in_find_node_and_get_peers_and_read_back() -> None:
    for data in (krpc.find_node(b"aa", A, B, want=("n4", "n6")), krpc.get_peers(b"aa", A, B, want=("n6",))):
        query = krpc.parse(data)
        assert query.want in (("n4", "n6"), ("n6",))
    assert b"want" not in krpc.find_node(b"aa", A, B)  # the family the query travels on, by default
