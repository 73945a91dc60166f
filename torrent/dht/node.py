"""A DHT node on asyncio (BEP 5): answers queries, runs lookups, announces, keeps its routing table.

The protocol logic lives in the sans-IO modules (``codec.krpc``, ``routing``, ``lookup``, ``store``);
this module sends datagrams, matches replies to queries by transaction id, times queries out, and limits
what one address may ask of it. ``datagram_received`` takes any datagram whose first byte says KRPC, so
the session's shared UDP endpoint can hand it ours; ``open`` gives the node an endpoint of its own.

No amplification: a reply goes only to the address that asked, and carries at most ``k`` nodes and
``REPLY_PEERS`` peers, so it is never much larger than a datagram; queries beyond ``QUERIES_PER_SECOND``
from one address are dropped without a reply.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from torrent.codec import krpc
from torrent.core.errors import TorrentError
from torrent.dht.lookup import Lookup
from torrent.dht.routing import Contact, RoutingTable
from torrent.dht.store import PeerStore, Tokens

log = logging.getLogger("torrent.dht")

QUERY_TIMEOUT = 2.0  # seconds before a query counts as unanswered
QUERIES_PER_SECOND = 20.0  # from one address, with a burst of as many
MAX_RATE_ENTRIES = 4096  # addresses whose rate we track (the oldest are forgotten)
MAX_PENDING = 1024  # our queries in flight


class _Bucket:
    __slots__ = ("level", "at")

    def __init__(self, level: float, now: float) -> None:
        self.level = level
        self.at = now


class DhtNode:
    def __init__(self, node_id: bytes | None = None, *, clock: Callable[[], float] = time.monotonic,
                 timeout: float = QUERY_TIMEOUT, query_rate: float = QUERIES_PER_SECOND) -> None:
        """``query_rate``: queries a second one IP address may make of us (a burst of as many)."""
        self.node_id = node_id or os.urandom(20)
        self.clock = clock
        self.timeout = timeout
        self.query_rate = query_rate
        now = clock()
        self.table = RoutingTable(self.node_id, now=now)
        self.store = PeerStore()
        self.tokens = Tokens(now)
        self.transport: asyncio.DatagramTransport | None = None
        self._pending: dict[bytes, tuple[asyncio.Future[krpc.Response], tuple[str, int]]] = {}
        self._next_tid = int.from_bytes(os.urandom(2), "big")
        self._rates: OrderedDict[str, _Bucket] = OrderedDict()
        self.dropped = 0  # datagrams refused: malformed, unmatched, over the rate

    # ---- the endpoint ------------------------------------------------------------------------

    async def open(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """An endpoint of its own (tests, ``torrent dht``); returns the bound address."""
        loop = asyncio.get_running_loop()
        node = self

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
                node.datagram_received(data, (addr[0], addr[1]))

            def error_received(self, exc: Exception) -> None:
                log.debug("dht: %s", exc)

        transport, _ = await loop.create_datagram_endpoint(Protocol, local_addr=(host, port))
        self.transport = transport
        return transport.get_extra_info("sockname")[:2]

    def attach(self, transport: asyncio.DatagramTransport) -> None:
        """Send through a shared endpoint that hands us KRPC datagrams."""
        self.transport = transport

    def close(self) -> None:
        for future, _ in self._pending.values():
            if not future.done():
                future.cancel()
        self._pending.clear()
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)

    # ---- incoming ----------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = krpc.parse(data)
        except krpc.KrpcError:
            self.dropped += 1
            return
        if isinstance(message, krpc.Query):
            if not self._allowed(addr[0]):
                self.dropped += 1
                return
            self._answer(message, addr)
        else:
            pending = self._pending.get(message.tid)
            if pending is None or pending[1] != addr:
                self.dropped += 1  # not ours, or from another address than we asked: ignore
                return
            future, _ = self._pending.pop(message.tid)
            if future.done():
                return
            if isinstance(message, krpc.Response):
                future.set_result(message)
            else:
                future.set_exception(DhtQueryError(f"{message.code} {message.message}"))

    def _allowed(self, host: str) -> bool:
        now = self.clock()
        bucket = self._rates.get(host)
        if bucket is None:
            bucket = self._rates[host] = _Bucket(self.query_rate, now)
            if len(self._rates) > MAX_RATE_ENTRIES:
                self._rates.popitem(last=False)
        else:
            self._rates.move_to_end(host)
            bucket.level = min(self.query_rate, bucket.level + (now - bucket.at) * self.query_rate)
            bucket.at = now
        if bucket.level < 1:
            return False
        bucket.level -= 1
        return True

    def _answer(self, query: krpc.Query, addr: tuple[str, int]) -> None:
        now = self.clock()
        if not query.read_only:
            self.table.heard_from(Contact(query.node_id, *addr), now, replied=False)
        if query.method == "ping":
            reply = krpc.response(query.tid, self.node_id, ip=addr)
        elif query.method == "find_node":
            reply = krpc.response(query.tid, self.node_id, nodes=self.table.closest(query.target), ip=addr)
        elif query.method == "get_peers":
            peers = self.store.peers(query.info_hash, now, ipv6=":" in addr[0])
            reply = krpc.response(query.tid, self.node_id, values=peers,
                                  nodes=() if peers else self.table.closest(query.info_hash),
                                  token=self.tokens.make(addr[0], now), ip=addr)
        elif query.method == "announce_peer":
            if not self.tokens.check(query.token or b"", addr[0], now):
                reply = krpc.error(query.tid, krpc.PROTOCOL_ERROR, "bad token")
            else:
                port = addr[1] if query.implied_port or query.port is None else query.port
                self.store.announce(query.info_hash, addr[0], port, now)
                reply = krpc.response(query.tid, self.node_id, ip=addr)
        else:
            reply = krpc.error(query.tid, krpc.METHOD_UNKNOWN, "method unknown")
        self._send(reply, addr)

    # ---- outgoing ----------------------------------------------------------------------------

    def _tid(self) -> bytes:
        self._next_tid = (self._next_tid + 1) & 0xFFFF
        return self._next_tid.to_bytes(2, "big")

    async def query(self, addr: tuple[str, int], build: Callable[[bytes], bytes],
                    node_id: bytes | None = None) -> krpc.Response:
        """Send one query and wait for its reply; ``DhtQueryError`` when it times out or is refused. The
        routing table learns either way (a reply makes the node good, silence counts against it)."""
        if len(self._pending) >= MAX_PENDING:
            raise DhtQueryError("too many queries in flight")
        tid = self._tid()
        while tid in self._pending:
            tid = self._tid()
        future: asyncio.Future[krpc.Response] = asyncio.get_running_loop().create_future()
        self._pending[tid] = (future, addr)
        self._send(build(tid), addr)
        try:
            reply = await asyncio.wait_for(future, self.timeout)
        except (TimeoutError, asyncio.TimeoutError):
            if node_id is not None:
                self.table.failed(node_id, self.clock())
            raise DhtQueryError(f"no reply from {addr[0]}:{addr[1]}") from None
        finally:
            self._pending.pop(tid, None)
        self.table.heard_from(Contact(reply.node_id, *addr), self.clock(), replied=True)
        return reply

    async def ping(self, addr: tuple[str, int]) -> bytes:
        """The node id answering at ``addr``."""
        reply = await self.query(addr, lambda tid: krpc.ping(tid, self.node_id))
        return reply.node_id

    async def bootstrap(self, routers: Sequence[tuple[str, int]]) -> int:
        """Fill the routing table from ``routers`` and a lookup of our own id; the nodes known after."""
        replies = await asyncio.gather(*(self._find(addr, self.node_id) for addr in routers),
                                       return_exceptions=True)
        for reply in replies:
            if isinstance(reply, krpc.Response):
                for node in reply.nodes:
                    self.table.heard_from(Contact(node.id, node.host, node.port), self.clock(), replied=False)
        await self.lookup(self.node_id)
        return len(self.table)

    def _find(self, addr: tuple[str, int], target: bytes) -> Any:
        return self.query(addr, lambda tid: krpc.find_node(tid, self.node_id, target))

    async def lookup(self, target: bytes, *, peers: bool = False) -> Lookup:
        """An iterative find_node (or get_peers) towards ``target``."""
        lookup = Lookup(target)
        lookup.add(self.table.closest(target))

        async def ask(contact: Contact) -> None:
            addr = (contact.host, contact.port)
            build = (lambda tid: krpc.get_peers(tid, self.node_id, target)) if peers else \
                (lambda tid: krpc.find_node(tid, self.node_id, target))
            try:
                reply = await self.query(addr, build, contact.id)
            except DhtQueryError:
                lookup.failed(contact.id)
                return
            nodes = [Contact(n.id, n.host, n.port) for n in reply.nodes if n.id != self.node_id]
            lookup.replied(contact.id, nodes, reply.values, reply.token)

        running: set[asyncio.Task[None]] = set()
        while not lookup.done or running:
            for contact in lookup.next_queries():
                running.add(asyncio.ensure_future(ask(contact)))
            if not running:
                break
            finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        return lookup

    async def get_peers(self, info_hash: bytes) -> tuple[list[tuple[str, int]], Lookup]:
        lookup = await self.lookup(info_hash, peers=True)
        return list(lookup.values), lookup

    async def announce(self, info_hash: bytes, port: int, *, implied_port: bool = False) -> int:
        """get_peers, then announce_peer to the nearest nodes that gave a token; how many accepted."""
        _, lookup = await self.get_peers(info_hash)
        accepted = 0
        for contact, token in lookup.result():
            if token is None:
                continue
            try:
                await self.query((contact.host, contact.port), lambda tid, t=token: krpc.announce_peer(
                    tid, self.node_id, info_hash, port, t, implied_port=implied_port), contact.id)
                accepted += 1
            except DhtQueryError:
                pass
        return accepted


class DhtQueryError(TorrentError):
    """A query got no reply in time, or an error reply."""
