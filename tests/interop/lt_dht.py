"""libtorrent with its DHT on 127.0.0.1, and waiting on it from asyncio, for ``test_dht_interop.py``.

A plain module beside ``clients.py`` (which it builds on). Nothing here reaches beyond 127.0.0.1:
libtorrent's only bootstrap node is the router the test gives it, and LSD, UPnP and NAT-PMP stay off
(``LIBTORRENT_LOOPBACK``, which ``clients.LtPeer`` starts from).

libtorrent 2.1 on loopback needs two of its DHT defaults turned off (measured: with either left on, a
four-node DHT on 127.0.0.1 stops working as one):

- ``dht_restrict_routing_ips``: at most one node per IP (per /24) in its routing table, so it keeps a
  single node of all those on 127.0.0.1;
- ``dht_restrict_search_ips``: one node per IP in a lookup, so its searches ask one node and stop.

``dht_enforce_node_id``, ``dht_prefer_verified_node_ids`` and ``dht_ignore_dark_internet`` made no
difference here (BEP 42 exempts loopback addresses, and 127/8 is not on the dark-internet list); they are
off as well, so that a libtorrent that starts applying them to loopback does not quietly break these
tests. (``allow_multiple_connections_per_ip`` is on in ``LIBTORRENT_LOOPBACK`` already: it matters to
peer connections, not to the DHT.)

Also seen: libtorrent never puts the nodes of its ``dht_bootstrap_nodes`` in its routing table, so the
router is missing from its ``live_nodes``; and ``dht_get_peers_reply_alert`` is in the
``dht_operation`` alert category, not ``dht``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

from clients import Harness, LtPeer

Address = tuple[str, int]

LOOPBACK_DHT = {
    "enable_dht": True,
    "dht_restrict_routing_ips": False,
    "dht_restrict_search_ips": False,
    "dht_enforce_node_id": False,
    "dht_prefer_verified_node_ids": False,
    "dht_ignore_dark_internet": False,
}


class Seen(NamedTuple):
    """One DHT alert, copied out of libtorrent (an alert object dies with the next pop)."""

    at: float  # time.monotonic()
    kind: str  # get_peers_reply, incoming_announce, torrent_dht_reply, live_nodes, metadata_received
    info_hash: str  # hex, "" when the alert has none
    peers: tuple[Address, ...]  # peers it names (get_peers replies, incoming announces)
    count: int  # a count it gives (peers found, live nodes)
    nodes: tuple[tuple[str, Address], ...] = ()  # live nodes: (id hex, address)


class LtDht(LtPeer):
    """A libtorrent session with its DHT on, bootstrapped from ``router`` only (None: from nobody, as a
    router itself or a node that peers' ``port`` messages must introduce)."""

    def __init__(self, lt: ModuleType, name: str, router: Address | None, settings: dict[str, Any] | None = None
                 ) -> None:
        self.seen_dht: list[Seen] = []  # appended by the alert thread, read by the test
        cat = lt.alert_category
        super().__init__(lt, name, {
            **LOOPBACK_DHT,
            "dht_bootstrap_nodes": f"{router[0]}:{router[1]}" if router else "",
            "alert_mask": cat.error | cat.status | cat.peer | cat.connect | cat.storage | cat.dht | cat.dht_operation,
            **(settings or {}),
        })

    @property
    def address(self) -> Address:
        """Its DHT node (UDP) and its peer (TCP) listen on the same port."""
        return ("127.0.0.1", self.port)

    def seen(self, alert: Any) -> None:
        lt = self.lt
        record: Seen | None = None
        now = time.monotonic()
        if isinstance(alert, lt.dht_get_peers_reply_alert):
            record = Seen(now, "get_peers_reply", str(alert.info_hash), tuple(_peers(alert.peers())), 0)
        elif isinstance(alert, lt.dht_announce_alert):  # another node announced to us
            record = Seen(now, "incoming_announce", str(alert.info_hash), ((str(alert.ip), alert.port),), 0)
        elif isinstance(alert, lt.dht_reply_alert):  # a torrent's own DHT search found peers
            record = Seen(now, "torrent_dht_reply", str(alert.handle.info_hashes().v1), (), alert.num_peers)
        elif isinstance(alert, lt.dht_live_nodes_alert):
            nodes = tuple((str(n["nid"]), (str(n["endpoint"][0]), int(n["endpoint"][1]))) for n in alert.nodes)
            record = Seen(now, "live_nodes", str(alert.node_id), (), len(nodes), nodes)
        elif isinstance(alert, lt.metadata_received_alert):
            record = Seen(now, "metadata_received", str(alert.handle.info_hashes().v1), (), 0)
        if record is not None:
            self.seen_dht.append(record)

    def find(self, kind: str, info_hash: str = "") -> list[Seen]:
        return [s for s in list(self.seen_dht) if s.kind == kind and (not info_hash or s.info_hash == info_hash)]

    @property
    def node_id(self) -> str:
        """Its DHT node id (hex), from its saved session state (``dht_state()`` is deprecated)."""
        state = self.lt.write_session_params(self.session.session_state())
        ids = state[b"dht state"][b"node-id"]
        return ids[0][:20].hex()

    def live_nodes(self) -> None:
        """Ask for the nodes of its routing table that answered it: a ``live_nodes`` record follows."""
        self.session.dht_live_nodes(self.lt.sha1_hash(bytes.fromhex(self.node_id)))

    def get_peers(self, info_hash: bytes) -> None:
        """A get_peers lookup: ``get_peers_reply`` records follow, one per node that gave peers."""
        self.session.dht_get_peers(self.lt.sha1_hash(info_hash))

    def announce(self, info_hash: bytes, port: int) -> None:
        self.session.dht_announce(self.lt.sha1_hash(info_hash), port, 0)


def _peers(values: Any) -> list[Address]:
    return [(str(host), int(port)) for host, port in values]


def start_lt(h: Harness, lt: ModuleType, name: str, router: Address | None, **kwargs: Any) -> LtDht:
    """An ``LtDht`` that the harness closes after the test (and whose alerts it shows on failure)."""
    peer = LtDht(lt, name, router, **kwargs)
    h.lts.append(peer)
    return peer


async def until(h: Harness, what: str, predicate: Callable[[], Any], *, timeout: float, interval: float = 0.1,
                context: Callable[[], object] | None = None) -> Any:
    """``Harness.wait_for`` for a test running on an event loop: poll without blocking the loop (our
    sessions live on it), fail with every client's log after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{context()}" if context is not None else ""
            h.fail(f"timed out after {timeout:g} s waiting for {what}{extra}")
        await asyncio.sleep(interval)


def magnet(info_hash_hex: str, name: str | None = None, peers: Sequence[Address] = ()) -> str:
    """A magnet link with no tracker: the info-hash, a name, and ``x.pe`` peers if given."""
    uri = f"magnet:?xt=urn:btih:{info_hash_hex}"
    if name:
        uri += f"&dn={name}"
    return uri + "".join(f"&x.pe={host}:{port}" for host, port in peers)


def saved_info(torrent_file: Path) -> bytes:
    """The bencoded info dictionary of a .torrent file, as bytes (to compare with the original's)."""
    from torrent.codec import bencoding

    return bencoding.encode(bencoding.decode(torrent_file.read_bytes())[b"info"])
