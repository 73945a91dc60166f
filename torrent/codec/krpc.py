"""KRPC, the DHT's messages (BEP 5, with BEP 32 IPv6 nodes, BEP 42 ``ip`` and BEP 43 read-only), sans-IO.

``parse`` turns one datagram into a ``Query``, ``Response`` or ``Error`` or raises ``KrpcError``: a
malformed or oversized message is dropped without a reply, so parsing checks every type and length
before anything trusts it. A response does not say which query it answers: the node matches its
transaction id against the queries it has in flight and reads the fields that query asks for.
The builders make the bytes to send; compact node and peer lists go both ways here too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from torrent.codec import bencoding
from torrent.core.errors import BencodeError, ProtocolError
from torrent.core.settings import Limits

ID_LENGTH = 20
MAX_MESSAGE = 2048  # bytes: a full get_peers reply fits in one ~1.4 KB datagram; bigger is an attack or junk
MAX_TID = 16  # transaction ids are 2-4 bytes in practice
MAX_TOKEN = 64
MAX_VALUES = 256  # peers in one get_peers reply (about 100 fit in a datagram)
NODE4 = 26  # compact node info: id, IPv4, port
NODE6 = 38  # id, IPv6, port
QUERIES = ("ping", "find_node", "get_peers", "announce_peer")
_LIMITS = Limits(bencode_max_depth=4, bencode_max_size=MAX_MESSAGE, bencode_max_string=MAX_MESSAGE)

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
    try:
        msg = bencoding.decode(data, limits=_LIMITS)
    except BencodeError as exc:
        raise KrpcError(f"not bencode: {exc}") from None
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
            raise KrpcError("values is not a list of at most %d peers" % MAX_VALUES)
        for value in raw_values:
            if not isinstance(value, bytes) or len(value) not in (6, 18):
                raise KrpcError("a peer in values is not 6 or 18 bytes")
            values.append(decode_address(value))
    token = body.get(b"token")
    if token is not None and (not isinstance(token, bytes) or len(token) > MAX_TOKEN):
        raise KrpcError("token is not a string of at most %d bytes" % MAX_TOKEN)
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
    host = str(ipaddress.ip_address(data[:-2]))
    return host, int.from_bytes(data[-2:], "big")


def encode_address(host: str, port: int) -> bytes:
    return ipaddress.ip_address(host).packed + port.to_bytes(2, "big")


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
    v4, v6 = bytearray(), bytearray()
    for node in nodes:
        packed = node.id + encode_address(node.host, node.port)
        (v4 if len(packed) == NODE4 else v6).extend(packed)
    return bytes(v4), bytes(v6)


# ---- building --------------------------------------------------------------------------------


def _query_bytes(tid: bytes, method: str, args: dict[bytes, Any], read_only: bool) -> bytes:
    msg: dict[bytes, Any] = {b"t": tid, b"y": b"q", b"q": method.encode(), b"a": args}
    if read_only:
        msg[b"ro"] = 1
    return bencoding.encode(msg)


def ping(tid: bytes, node_id: bytes, *, read_only: bool = False) -> bytes:
    return _query_bytes(tid, "ping", {b"id": node_id}, read_only)


def find_node(tid: bytes, node_id: bytes, target: bytes, *, read_only: bool = False) -> bytes:
    return _query_bytes(tid, "find_node", {b"id": node_id, b"target": target}, read_only)


def get_peers(tid: bytes, node_id: bytes, info_hash: bytes, *, read_only: bool = False) -> bytes:
    return _query_bytes(tid, "get_peers", {b"id": node_id, b"info_hash": info_hash}, read_only)


def announce_peer(tid: bytes, node_id: bytes, info_hash: bytes, port: int, token: bytes, *,
                  implied_port: bool = False) -> bytes:
    args = {b"id": node_id, b"info_hash": info_hash, b"port": port, b"token": token,
            b"implied_port": int(implied_port)}
    return _query_bytes(tid, "announce_peer", args, False)


def response(tid: bytes, node_id: bytes, *, nodes: Sequence[Node] = (), values: Sequence[tuple[str, int]] = (),
             token: bytes | None = None, ip: tuple[str, int] | None = None) -> bytes:
    body: dict[bytes, Any] = {b"id": node_id}
    v4, v6 = encode_nodes(nodes)
    if v4:
        body[b"nodes"] = v4
    if v6:
        body[b"nodes6"] = v6
    if values:
        body[b"values"] = [encode_address(h, p) for h, p in values]
    if token is not None:
        body[b"token"] = token
    msg: dict[bytes, Any] = {b"t": tid, b"y": b"r", b"r": body}
    if ip is not None:
        msg[b"ip"] = encode_address(*ip)
    return bencoding.encode(msg)


def error(tid: bytes, code: int, message: str) -> bytes:
    return bencoding.encode({b"t": tid, b"y": b"e", b"e": [code, message.encode()]})
