"""The DHT node's saved state, sans-IO: our node id and the nodes worth asking again, as bytes and back.

A restart that remembers its routing table rejoins the DHT without the bootstrap routers, under the same
id (nodes that knew us keep us where we were). The nodes come back *questionable*: the node pings them and
looks itself up before it trusts any of them (BEP 5), and a node that has changed id or gone silent is
dropped like any other.

The format is a bencoded dictionary::

    version  1 (FORMAT_VERSION); another version is refused, not guessed at
    id       our 20-byte node id
    nodes    IPv4 nodes, compact node info (26 bytes each: id, address, port), good ones first
    nodes6   IPv6 nodes, compact (38 bytes each)
    ip       optional: our external address as other nodes last saw it (compact, port included),
             which BEP 42 ties our id to

The reader trusts nothing: the document is bounded (``MAX_STATE`` bytes, ``MAX_NODES`` nodes a family),
every field's type and length is checked, and anything wrong raises ``DhtStateError`` naming the field;
the node catches it and starts afresh. Nodes with port 0, our own id or an id seen before are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from torrent.codec import bencoding, krpc
from torrent.core.errors import BencodeError, TorrentError
from torrent.core.settings import Limits
from torrent.dht.routing import Contact

FORMAT_VERSION = 1
MAX_NODES = 2048  # a family; a full table holds 160 buckets of 8 (1 280)
MAX_STATE = 192 * 1024  # bytes: MAX_NODES of each family (52 KB + 78 KB) and the keys
_LIMITS = Limits(bencode_max_depth=2, bencode_max_size=MAX_STATE, bencode_max_string=MAX_STATE)


class DhtStateError(TorrentError):
    """Saved DHT state that cannot be used; the node starts with a fresh table."""


@dataclass(frozen=True, slots=True)
class DhtState:
    node_id: bytes
    nodes: tuple[Contact, ...] = ()  # both families, in the order they were saved
    external_ip: str | None = None

    @property
    def nodes4(self) -> tuple[Contact, ...]:
        return tuple(c for c in self.nodes if ":" not in c.host)

    @property
    def nodes6(self) -> tuple[Contact, ...]:
        return tuple(c for c in self.nodes if ":" in c.host)


def dump(node_id: bytes, nodes: Iterable[Contact], external_ip: str | None = None) -> bytes:
    """The state as bytes; nodes beyond ``MAX_NODES`` of a family are left out (list the best first)."""
    if len(node_id) != krpc.ID_LENGTH:
        raise ValueError("a node id is 20 bytes")
    v4: list[krpc.Node] = []
    v6: list[krpc.Node] = []
    for contact in nodes:
        family = v6 if ":" in contact.host else v4
        if len(family) < MAX_NODES:
            family.append(krpc.Node(contact.id, contact.host, contact.port))
    nodes4, _ = krpc.encode_nodes(v4)
    _, nodes6 = krpc.encode_nodes(v6)
    doc: dict[bytes, Any] = {b"version": FORMAT_VERSION, b"id": node_id, b"nodes": nodes4, b"nodes6": nodes6}
    if external_ip is not None:
        doc[b"ip"] = krpc.encode_address(external_ip, 0)
    return bencoding.encode(doc)


def load(data: bytes) -> DhtState:
    """The state ``dump`` wrote; ``DhtStateError`` says what is wrong with anything else."""
    if len(data) > MAX_STATE:
        raise DhtStateError(f"saved DHT state of {len(data)} bytes is over the {MAX_STATE}-byte limit")
    try:
        doc = bencoding.decode(data, limits=_LIMITS)
    except BencodeError as exc:
        raise DhtStateError(f"saved DHT state is not bencode: {exc}") from None
    if not isinstance(doc, dict):
        raise DhtStateError("saved DHT state is not a dictionary")
    version = doc.get(b"version")
    if version != FORMAT_VERSION:
        raise DhtStateError(f"saved DHT state has format version {version!r}, this program reads {FORMAT_VERSION}")
    node_id = doc.get(b"id")
    if not isinstance(node_id, bytes) or len(node_id) != krpc.ID_LENGTH:
        raise DhtStateError("saved DHT state has no 20-byte node id")
    contacts: list[Contact] = []
    seen = {node_id}
    for key, size in ((b"nodes", krpc.NODE4), (b"nodes6", krpc.NODE6)):
        raw = doc.get(key, b"")
        if not isinstance(raw, bytes) or len(raw) % size:
            raise DhtStateError(f"saved DHT state: {key.decode()} is not a list of {size}-byte nodes")
        if len(raw) // size > MAX_NODES:
            raise DhtStateError(f"saved DHT state: {key.decode()} holds more than {MAX_NODES} nodes")
        for node in krpc.decode_nodes(raw, size):  # skips port 0
            if node.id not in seen:
                seen.add(node.id)
                contacts.append(Contact(node.id, node.host, node.port))
    ip = doc.get(b"ip")
    external_ip = None
    if ip is not None:
        if not isinstance(ip, bytes) or len(ip) not in (6, 18):
            raise DhtStateError("saved DHT state: ip is not a compact address")
        external_ip = krpc.decode_address(ip)[0]
    return DhtState(node_id, tuple(contacts), external_ip)
