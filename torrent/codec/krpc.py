"""KRPC, the DHT's messages (BEP 5, with BEP 32 IPv6 nodes, BEP 42 ``ip`` and BEP 43 read-only), sans-IO.

``parse`` turns one datagram into a ``Query``, ``Response`` or ``Error`` or raises ``KrpcError``: a
malformed or oversized message is dropped without a reply, so parsing checks every type and length
before anything trusts it. A response does not say which query it answers: the node matches its
transaction id against the queries it has in flight and reads the fields that query asks for.
The builders make the bytes to send; compact node and peer lists go both ways here too.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from torrent.codec import bencoding
from torrent.core.errors import ProtocolError

ID_LENGTH = 20
MAX_MESSAGE = 2048  # bytes: a full get_peers reply fits in one ~1.4 KB datagram; bigger is an attack or junk
MAX_TID = 16  # transaction ids are 2-4 bytes in practice
MAX_TOKEN = 64
MAX_VALUES = 256  # peers in one get_peers reply (about 100 fit in a datagram)
NODE4 = 26  # compact node info: id, IPv4, port
NODE6 = 38  # id, IPv6, port
MAX_DEPTH = 4  # containers open at once: message → a/r → want/values list is 3
QUERIES = ("ping", "find_node", "get_peers", "announce_peer")

# BEP 5 error codes
GENERIC_ERROR = 201
SERVER_ERROR = 202
PROTOCOL_ERROR = 203
METHOD_UNKNOWN = 204


class KrpcError(ProtocolError):
    """A datagram that is not a valid KRPC message; it is dropped."""


class Node(NamedTuple):
    id: bytes
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Query:
    tid: bytes
    method: str  # one of QUERIES, or another name (answered with METHOD_UNKNOWN)
    node_id: bytes  # the querying node's id
    target: bytes | None = None  # find_node
    info_hash: bytes | None = None  # get_peers, announce_peer
    port: int | None = None  # announce_peer
    implied_port: bool = False  # announce_peer: use the datagram's source port
    token: bytes | None = None  # announce_peer
    want: tuple[str, ...] = ()  # BEP 32: "n4", "n6"
    read_only: bool = False  # BEP 43: do not add the sender to routing tables


@dataclass(frozen=True, slots=True)
class Response:
    tid: bytes
    node_id: bytes
    nodes: tuple[Node, ...] = ()  # IPv4 (``nodes``) and IPv6 (``nodes6``) together
    values: tuple[tuple[str, int], ...] = ()  # peers, get_peers
    token: bytes | None = None  # get_peers
    ip: tuple[str, int] | None = None  # BEP 42: our address as the responder saw it


@dataclass(frozen=True, slots=True)
class Error:
    tid: bytes
    code: int
    message: str


Message = Query | Response | Error


# ---- parsing ---------------------------------------------------------------------------------


def parse(data: bytes) -> Message:
    """One datagram as a message; ``KrpcError`` says why it is not one."""
    if len(data) > MAX_MESSAGE:
        raise KrpcError(f"message of {len(data)} bytes is over the {MAX_MESSAGE}-byte limit")
    if not data.startswith(b"d"):
        raise KrpcError("not a bencoded dictionary")
    msg = decode_bencode(data)
    if not isinstance(msg, dict):
        raise KrpcError("not a bencoded dictionary")
    tid = _bytes(msg, b"t", "transaction id", max_len=MAX_TID)
    if not tid:
        raise KrpcError("empty transaction id")
    kind = msg.get(b"y")
    if kind == b"q":
        return _query(msg, tid)
    if kind == b"r":
        return _response(msg, tid)
    if kind == b"e":
        return _error(msg, tid)
    raise KrpcError(f"unknown message type {kind!r}")


# ---- bencode, as strict as ``bencoding.decode`` --------------------------------------------------
# A datagram is at most MAX_MESSAGE bytes and MAX_DEPTH containers deep, so a small recursive decoder
# does here what the general one (a validating scan, then a second decoding pass) does in 40 % of the
# time (16 µs against 41 µs for a get_peers query, measured; queries are the node's hot path). It
# accepts and refuses exactly what ``bencoding.decode`` does under those limits (a test compares the
# two): canonical integers and lengths, string keys, no duplicate keys, no trailing bytes.

_INT = re.compile(rb"i(0|-?[1-9][0-9]*)e")
_LENGTH = re.compile(rb"(0|[1-9][0-9]{0,18}):")


def decode_bencode(data: bytes) -> Any:
    """One bencoded value filling ``data`` (strings stay bytes); ``KrpcError`` says where it is not."""
    try:
        value, end = _value(data, 0, 0)
    except IndexError:
        raise KrpcError("not bencode: unexpected end of data") from None
    if end != len(data):
        raise KrpcError(f"not bencode: trailing data at byte {end}")
    return value


def _value(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    c = data[pos]
    if 0x30 <= c <= 0x39:  # a string
        m = _LENGTH.match(data, pos)
        if m is None:
            raise KrpcError(f"not bencode: malformed string length at byte {pos}")
        start = m.end()
        end = start + int(m.group(1))
        if end > len(data):
            raise KrpcError(f"not bencode: string at byte {pos} runs past the end")
        return data[start:end], end
    if c == 0x64 or c == 0x6C:  # 'd', 'l'
        if depth >= MAX_DEPTH:
            raise KrpcError(f"not bencode: nesting deeper than {MAX_DEPTH} levels at byte {pos}")
        pos += 1
        if c == 0x6C:
            items = []
            while data[pos] != 0x65:
                item, pos = _value(data, pos, depth + 1)
                items.append(item)
            return items, pos + 1
        d: dict[bytes, Any] = {}
        while data[pos] != 0x65:
            if not 0x30 <= data[pos] <= 0x39:
                raise KrpcError(f"not bencode: dict key at byte {pos} is not a string")
            key, pos = _value(data, pos, depth + 1)
            if key in d:
                raise KrpcError(f"not bencode: duplicate dict key {key!r}")
            d[key], pos = _value(data, pos, depth + 1)
        return d, pos + 1
    if c == 0x69:  # 'i'
        m = _INT.match(data, pos)
        if m is None:
            raise KrpcError(f"not bencode: malformed integer at byte {pos}")
        return int(m.group(1)), m.end()
    raise KrpcError(f"not bencode: unexpected byte {chr(c)!r} at {pos}")


def _query(msg: dict[bytes, Any], tid: bytes) -> Query:
    method = _bytes(msg, b"q", "method", max_len=32).decode("ascii", "replace")
    args = msg.get(b"a")
    if not isinstance(args, dict):
        raise KrpcError("query without an argument dictionary")
    node_id = _node_id(args)
    fields: dict[str, Any] = {"read_only": msg.get(b"ro") == 1}
    want = args.get(b"want")
    if isinstance(want, list):
        fields["want"] = tuple(w.decode("ascii", "replace") for w in want[:4] if isinstance(w, bytes))
    if method == "find_node":
        fields["target"] = _exact(args, b"target", "target", ID_LENGTH)
    elif method in ("get_peers", "announce_peer"):
        fields["info_hash"] = _exact(args, b"info_hash", "info_hash", ID_LENGTH)
    if method == "announce_peer":
        fields["implied_port"] = args.get(b"implied_port") == 1
        port = args.get(b"port")
        if not fields["implied_port"] or port is not None:
            if not isinstance(port, int) or not 0 < port < 65536:
                raise KrpcError(f"announce_peer with port {port!r}")
            fields["port"] = port
        fields["token"] = _bytes(args, b"token", "token", max_len=MAX_TOKEN)
    return Query(tid, method, node_id, **fields)


def _response(msg: dict[bytes, Any], tid: bytes) -> Response:
    body = msg.get(b"r")
    if not isinstance(body, dict):
        raise KrpcError("response without a reply dictionary")
    nodes = decode_nodes(_optional(body, b"nodes"), NODE4) + decode_nodes(_optional(body, b"nodes6"), NODE6)
    values: list[tuple[str, int]] = []
    raw_values = body.get(b"values")
    if raw_values is not None:
        if not isinstance(raw_values, list) or len(raw_values) > MAX_VALUES:
            raise KrpcError(f"values is not a list of at most {MAX_VALUES} peers")
        for value in raw_values:
            if not isinstance(value, bytes) or len(value) not in (6, 18):
                raise KrpcError("a peer in values is not 6 or 18 bytes")
            values.append(decode_address(value))
    token = body.get(b"token")
    if token is not None and (not isinstance(token, bytes) or len(token) > MAX_TOKEN):
        raise KrpcError(f"token is not a string of at most {MAX_TOKEN} bytes")
    ip = msg.get(b"ip")
    address = decode_address(ip) if isinstance(ip, bytes) and len(ip) in (6, 18) else None
    return Response(tid, _node_id(body), tuple(nodes), tuple(values), token, address)


def _error(msg: dict[bytes, Any], tid: bytes) -> Error:
    body = msg.get(b"e")
    if not isinstance(body, list) or len(body) < 2 or not isinstance(body[0], int) or not isinstance(body[1], bytes):
        raise KrpcError("error without [code, message]")
    return Error(tid, body[0], body[1][:200].decode("utf-8", "replace"))


def _bytes(d: dict[bytes, Any], key: bytes, what: str, *, max_len: int) -> bytes:
    value = d.get(key)
    if not isinstance(value, bytes):
        raise KrpcError(f"missing or malformed {what}")
    if len(value) > max_len:
        raise KrpcError(f"{what} of {len(value)} bytes (at most {max_len})")
    return value


def _exact(d: dict[bytes, Any], key: bytes, what: str, length: int) -> bytes:
    value = d.get(key)
    if not isinstance(value, bytes) or len(value) != length:
        raise KrpcError(f"{what} is not {length} bytes")
    return value


def _node_id(d: dict[bytes, Any]) -> bytes:
    return _exact(d, b"id", "node id", ID_LENGTH)


def _optional(d: dict[bytes, Any], key: bytes) -> bytes:
    value = d.get(key, b"")
    if not isinstance(value, bytes):
        raise KrpcError(f"{key.decode()} is not a string")
    return value


# ---- compact forms ---------------------------------------------------------------------------


def decode_address(data: bytes) -> tuple[str, int]:
    """6 bytes (IPv4) or 18 (IPv6), then the port, big-endian."""
    if len(data) == 6:
        return f"{data[0]}.{data[1]}.{data[2]}.{data[3]}", (data[4] << 8) | data[5]
    return _ipv6_text(bytes(data[:-2])), int.from_bytes(data[-2:], "big")


@functools.lru_cache(maxsize=4096)
def _ipv6_text(packed: bytes) -> str:
    return str(ipaddress.IPv6Address(packed))


def encode_address(host: str, port: int) -> bytes:
    """The compact form of an address: ``host`` is an IPv4 or IPv6 address (``ValueError`` otherwise)."""
    return packed_ip(host) + port.to_bytes(2, "big")


@functools.lru_cache(maxsize=8192)
def packed_ip(host: str) -> bytes:
    """4 or 16 bytes. Cached: the same few thousand addresses (the routing table's, the askers') are packed
    again and again, and ``ipaddress`` takes 3 µs each time."""
    return ipaddress.ip_address(host).packed


def decode_nodes(data: bytes, size: int = NODE4) -> tuple[Node, ...]:
    """Compact node info: ``size`` bytes each (26 for IPv4, 38 for IPv6); nodes with port 0 are skipped."""
    if len(data) % size:
        raise KrpcError(f"compact node list of {len(data)} bytes is not a multiple of {size}")
    out = []
    for i in range(0, len(data), size):
        host, port = decode_address(data[i + ID_LENGTH:i + size])
        if port:
            out.append(Node(data[i:i + ID_LENGTH], host, port))
    return tuple(out)


def encode_nodes(nodes: Iterable[Node]) -> tuple[bytes, bytes]:
    """(``nodes``, ``nodes6``): the compact lists, IPv4 and IPv6 apart."""
    v4: list[bytes] = []
    v6: list[bytes] = []
    for node in nodes:
        ip = packed_ip(node.host)
        (v4 if len(ip) == 4 else v6).append(node.id + ip + node.port.to_bytes(2, "big"))
    return b"".join(v4), b"".join(v6)


# ---- building --------------------------------------------------------------------------------


def _query_bytes(tid: bytes, method: str, args: dict[bytes, Any], read_only: bool) -> bytes:
    msg: dict[bytes, Any] = {b"t": tid, b"y": b"q", b"q": method.encode(), b"a": args}
    if read_only:
        msg[b"ro"] = 1
    return bencoding.encode(msg)


def ping(tid: bytes, node_id: bytes, *, read_only: bool = False) -> bytes:
    return _query_bytes(tid, "ping", {b"id": node_id}, read_only)


def find_node(tid: bytes, node_id: bytes, target: bytes, *, read_only: bool = False,
              want: Sequence[str] = ()) -> bytes:
    """``want`` (BEP 32): ``"n4"`` and/or ``"n6"``, the families of nodes the reply should carry; by
    default the family the query travels on."""
    args: dict[bytes, Any] = {b"id": node_id, b"target": target}
    if want:
        args[b"want"] = [w.encode() for w in want]
    return _query_bytes(tid, "find_node", args, read_only)


def get_peers(tid: bytes, node_id: bytes, info_hash: bytes, *, read_only: bool = False,
              want: Sequence[str] = ()) -> bytes:
    args: dict[bytes, Any] = {b"id": node_id, b"info_hash": info_hash}
    if want:
        args[b"want"] = [w.encode() for w in want]
    return _query_bytes(tid, "get_peers", args, read_only)


def announce_peer(tid: bytes, node_id: bytes, info_hash: bytes, port: int, token: bytes, *,
                  implied_port: bool = False) -> bytes:
    args = {b"id": node_id, b"info_hash": info_hash, b"port": port, b"token": token,
            b"implied_port": int(implied_port)}
    return _query_bytes(tid, "announce_peer", args, False)


def response(tid: bytes, node_id: bytes, *, nodes: Sequence[Node] = (),
             values: Sequence[tuple[str, int] | bytes] = (), token: bytes | None = None,
             ip: tuple[str, int] | None = None) -> bytes:
    """A reply; ``values`` are peers as (host, port) or already in compact form. Its shape is fixed, so it
    is written directly, keys in bencode's sorted order: the bytes ``bencoding.encode`` gives, in a quarter
    of the time (7 µs against 29 µs for a find_node reply, measured; replies are the node's hot path)."""
    v4, v6 = encode_nodes(nodes)
    out = [b"d"]
    if ip is not None:
        out += (b"2:ip", _string(encode_address(*ip)))
    out += (b"1:rd2:id", _string(node_id))
    if v4:
        out += (b"5:nodes", _string(v4))
    if v6:
        out += (b"6:nodes6", _string(v6))
    if token is not None:
        out += (b"5:token", _string(token))
    if values:
        out.append(b"6:valuesl")
        out += [_string(v if isinstance(v, bytes) else encode_address(*v)) for v in values]
        out.append(b"e")
    out += (b"e1:t", _string(tid), b"1:y1:re")
    return b"".join(out)


def _string(data: bytes) -> bytes:
    return b"%d:%s" % (len(data), data)


def error(tid: bytes, code: int, message: str) -> bytes:
    return bencoding.encode({b"t": tid, b"y": b"e", b"e": [code, message.encode()]})
