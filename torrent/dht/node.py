"""A DHT node on asyncio (BEP 5, BEP 32 IPv6, BEP 42 ids): answers queries, runs lookups, announces, keeps
its routing tables, saves and restores them.

The protocol logic lives in the sans-IO modules (``codec.krpc``, ``routing``, ``lookup``, ``store``,
``persist``); this module sends datagrams, matches replies to queries by transaction id, times queries and
lookups out, limits what one address may ask of it, and runs the upkeep BEP 5 asks for. ``datagram_received``
takes any datagram whose first byte says KRPC, so the session's shared UDP endpoint can hand it ours;
``open`` gives the node an endpoint of its own.

Two address families, two DHTs (BEP 32): the node has an endpoint per family it takes part in (``open`` or
``attach`` each), a routing table per family (``tables[4]``, ``tables[6]``; ``table`` is the one of its main
family) and the same id in both. A query is answered with nodes of the asker's family, or of the families
its ``want`` names; peers only ever of the asker's family. Lookups run in one family; a node on both
announces and searches in both.

Upkeep (``maintain``, or ``start`` to run it as a task that ``close`` cancels), every
``maintenance_interval`` seconds: questionable nodes are pinged, those of full buckets where a newcomer waits
first (two pings unanswered make a node bad, and the newcomer takes its place); buckets unchanged for
``refresh_interval`` are refreshed by a find_node lookup of a random id in their range; a table left
without a node that is not bad bootstraps again from the routers (at most every ``bootstrap_interval``);
announce tokens rotate and stored
peers expire on time. At start, a node restored from saved state looks itself up through the saved nodes
(BEP 5's "when starting up thereafter"), which is also how they get verified.

No amplification: a reply goes only to the address that asked, and carries at most ``k`` nodes a family and
``REPLY_PEERS`` peers, so it is never much larger than a datagram; queries beyond ``query_rate`` from one
address are dropped without a reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import random
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from torrent.codec import krpc
from torrent.core.errors import TorrentError
from torrent.dht import persist
from torrent.dht.lookup import ALPHA, MAX_QUERIES, Lookup
from torrent.dht.node_ids import AddressVotes, exempt, secure_node_id, valid_node_id
from torrent.dht.routing import REFRESH_AFTER, Contact, Entry, K, RoutingTable
from torrent.dht.store import MAX_PEERS, MAX_PEERS_PER_TORRENT, PEER_TTL, REPLY_PEERS, REPLY_PEERS6, PeerStore, Tokens

log = logging.getLogger("torrent.dht")

QUERY_TIMEOUT = 2.0  # seconds before a query counts as unanswered
QUERIES_PER_SECOND = 20.0  # from one address, with a burst of as many
MAX_RATE_ENTRIES = 4096  # addresses whose rate we track (the oldest are forgotten)
MAX_PENDING = 1024  # our queries in flight
LOOKUP_TIMEOUT = 30.0  # seconds a lookup may take in all; what it found by then is its result
MAINTENANCE_INTERVAL = 5.0  # seconds between rounds of upkeep
PINGS_PER_ROUND = 8  # questionable nodes pinged in one round of upkeep
EXPIRE_INTERVAL = 60.0  # seconds between sweeps of expired announces (a get_peers also expires its torrent)
BOOTSTRAP_INTERVAL = 60.0  # a table of none but bad nodes asks the routers again at most this often
MAX_WAITING = 256  # questionable nodes queued for a ping because a newcomer waits for their place
BOTH_FAMILIES_BELOW = 4 * K  # a node on both families asks for both (BEP 32 "want") while a table is this small
Address = tuple[str, int]
# Routers for upkeep: addresses, or a function giving them (each time, so names are resolved afresh)
Routers = Sequence[Address] | Callable[[], Sequence[Address] | Awaitable[Sequence[Address]]]


def family_of(host: str) -> int:
    """4 or 6: the address family of an IP address (text)."""
    return 6 if ":" in host else 4


class _Bucket:
    __slots__ = ("at", "level")

    def __init__(self, level: float, now: float) -> None:
        self.level = level
        self.at = now


@dataclass(frozen=True, slots=True)
class DhtStats:
    """What a snapshot shows of the DHT node: plain values, both families together."""

    node_id: str  # hex
    nodes: int  # in the routing tables, every state
    nodes_good: int
    nodes_questionable: int
    nodes_ipv6: int  # of ``nodes``, in the IPv6 table
    buckets: int
    info_hashes: int  # torrents others announced to us
    peers: int  # peers they announced
    queries_in_flight: int
    lookups_running: int
    dropped: int  # datagrams refused: malformed, unmatched, over the rate
    queries_in: int  # queries we answered
    replies_out: int  # replies and errors we sent
    queries_out: int
    replies_in: int  # replies and errors to our queries
    timeouts: int  # our queries that got no answer
    external_ip: str | None  # as the nodes that answer us see it (BEP 42)


class DhtNode:
    def __init__(self, node_id: bytes | None = None, *, clock: Callable[[], float] = time.monotonic,
                 timeout: float = QUERY_TIMEOUT, query_rate: float = QUERIES_PER_SECOND,
                 alpha: int = ALPHA, max_queries: int = MAX_QUERIES, lookup_timeout: float = LOOKUP_TIMEOUT,
                 maintenance_interval: float = MAINTENANCE_INTERVAL, refresh_interval: float = REFRESH_AFTER,
                 pings_per_round: int = PINGS_PER_ROUND, expire_interval: float = EXPIRE_INTERVAL,
                 bootstrap_interval: float = BOOTSTRAP_INTERVAL, routers: Sequence[Address] = (),
                 max_stored_peers: int = MAX_PEERS, max_peers_per_torrent: int = MAX_PEERS_PER_TORRENT,
                 peer_ttl: float = PEER_TTL, external_ip: str | None = None,
                 enforce_node_ids: bool = False) -> None:
        """
        ``timeout``: seconds a query waits for its reply. ``query_rate``: queries a second one IP address
        may make of us (a burst of as many).

        Lookups: ``alpha`` queries in flight (BEP 5: 3), at most ``max_queries`` in all (64), and
        ``lookup_timeout`` seconds (30) whatever the nodes answer.

        Upkeep (``maintain``): a round every ``maintenance_interval`` seconds (5) pings up to
        ``pings_per_round`` questionable nodes (8); buckets unchanged for ``refresh_interval`` (BEP 5: 15
        minutes) are refreshed; expired announces are swept every ``expire_interval`` (60); a table with no
        node that is not bad bootstraps from ``routers`` (or those ``bootstrap`` was last given) at most every
        ``bootstrap_interval`` (60).

        Storage for others: at most ``max_stored_peers`` announced peers in all (100 000),
        ``max_peers_per_torrent`` a torrent (500), each for ``peer_ttl`` seconds (30 minutes).

        BEP 42: ``external_ip`` is our address if known (the nodes' votes find it otherwise); without a
        ``node_id`` the node takes an id valid for it. ``enforce_node_ids`` keeps nodes whose id does not
        match their address out of the routing tables and away from our announces, and replaces our own id
        when the address the nodes agree on (or a restored state's) says it is wrong. A ``node_id`` given
        here is kept as it is.
        """
        self.clock = clock
        self.timeout = timeout
        self.query_rate = query_rate
        self.alpha = alpha
        self.max_queries = max_queries
        self.lookup_timeout = lookup_timeout
        self.maintenance_interval = maintenance_interval
        self.refresh_interval = refresh_interval
        self.pings_per_round = pings_per_round
        self.expire_interval = expire_interval
        self.bootstrap_interval = bootstrap_interval
        self.routers: tuple[Address, ...] = tuple(routers)
        self.enforce_node_ids = enforce_node_ids
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._owned: set[int] = set()  # families whose endpoint ``open`` made (``close`` closes those)
        self._votes = {4: AddressVotes(), 6: AddressVotes()}
        self._external: dict[int, str] = {}
        if external_ip is not None:
            self._external[family_of(external_ip)] = external_ip
        self._rng = random.Random()
        self.node_id = node_id if node_id is not None else self._choose_id(None)
        now = clock()
        self.tables = {family: RoutingTable(self.node_id, now=now, refresh_after=refresh_interval)
                       for family in (4, 6)}
        self.store = PeerStore(max_peers=max_stored_peers, per_torrent=max_peers_per_torrent, ttl=peer_ttl)
        self.tokens = Tokens(now)
        self._pending: dict[bytes, tuple[asyncio.Future[krpc.Response], Address]] = {}
        self._next_tid = int.from_bytes(os.urandom(2), "big")
        self._rates: OrderedDict[str, _Bucket] = OrderedDict()
        self._waiting: OrderedDict[tuple[int, bytes], Contact] = OrderedDict()  # to ping: a newcomer waits
        self._pinging: set[tuple[int, bytes]] = set()
        self._maintenance: asyncio.Task[None] | None = None
        self._started_up = False
        self._last_expire = now
        self._last_bootstrap: float | None = None
        self._lookups = 0
        self.dropped = 0  # datagrams refused: malformed, unmatched, over the rate
        self.queries_in = self.replies_out = self.queries_out = self.replies_in = self.timeouts = 0

    # ---- saved state ---------------------------------------------------------------------------

    @classmethod
    def from_state(cls, data: bytes, **kwargs: Any) -> DhtNode:
        """A node resuming from ``save_state`` bytes (any constructor keyword but ``node_id``, which the
        state gives): see ``restore``. Unusable state gives a fresh node, with a warning logged."""
        if "node_id" in kwargs:
            raise TypeError("from_state takes the node id from the saved state")
        node = cls(**kwargs)
        node.restore(data)
        return node

    def save_state(self) -> bytes:
        """Our id, the good and questionable nodes of both tables (good first; bad ones are not worth a
        restart) and our external address, as bytes for ``from_state``/``restore``."""
        now = self.clock()
        contacts: list[Contact] = []
        for table in self.tables.values():
            entries = [e for e in table.entries() if not e.bad()]
            entries.sort(key=lambda e: not e.good(now))
            contacts += [e.contact for e in entries]
        return persist.dump(self.node_id, contacts, self.external_ip)

    def restore(self, data: bytes) -> int:
        """Take the id and nodes of a saved state; how many nodes were added. The nodes count as
        questionable until they answer (upkeep pings them, and ``maintain`` starts with a lookup of our
        id through them). The saved id is kept unless ``enforce_node_ids`` and our external address (given,
        voted, or the one saved) say BEP 42 forbids it. Unusable state is logged and changes nothing."""
        try:
            state = persist.load(data)
        except persist.DhtStateError as exc:
            log.warning("dht: %s; starting with an empty routing table", exc)
            return 0
        if state.external_ip is not None:
            self._external.setdefault(family_of(state.external_ip), state.external_ip)
        node_id = self._choose_id(state.node_id)
        if node_id != self.node_id:
            self._set_node_id(node_id)
        now = self.clock()
        added = 0
        for contact in state.nodes:
            if self._acceptable(contact):
                added += self.tables[family_of(contact.host)].heard_of(contact, now)
        return added

    def _choose_id(self, candidate: bytes | None) -> bytes:
        """``candidate`` unless BEP 42 enforcement rules it out for our external address; otherwise an id
        valid for that address, or a random one while we do not know it."""
        ip = self.external_ip
        if candidate is not None and (not self.enforce_node_ids or ip is None or valid_node_id(candidate, ip)):
            return candidate
        if ip is not None and not exempt(ip):
            return secure_node_id(ip)
        return os.urandom(20)

    def _set_node_id(self, node_id: bytes) -> None:
        """A new id of ours: the tables are rebuilt around it, keeping the nodes (and their states) that fit."""
        now = self.clock()
        log.info("dht: node id %s (was %s)", node_id.hex(), self.node_id.hex())
        self.node_id = node_id
        self.tables = {family: table.reseated(node_id, now) for family, table in self.tables.items()}

    # ---- families and endpoints ------------------------------------------------------------------

    @property
    def family(self) -> int:
        """The node's main address family: 6 when its only endpoint is IPv6, else 4."""
        return 6 if 6 in self._transports and 4 not in self._transports else 4

    @property
    def families(self) -> tuple[int, ...]:
        """The families the node takes part in (those it has an endpoint for; its main one before any)."""
        return tuple(sorted(self._transports)) or (self.family,)

    @property
    def table(self) -> RoutingTable:
        """The routing table of the main family (``tables[4]`` and ``tables[6]`` are both)."""
        return self.tables[self.family]

    @property
    def transport(self) -> asyncio.DatagramTransport | None:
        return self._transports.get(self.family)

    @property
    def external_ip(self) -> str | None:
        """Our address as the nodes see it, in the main family (given, saved, or voted by their replies)."""
        return self._external.get(self.family) or next(iter(self._external.values()), None)

    async def open(self, host: str = "127.0.0.1", port: int = 0) -> Address:
        """An endpoint of its own (tests, ``torrent dht``) for the family of ``host``; returns the bound
        address. Call it once per family for a node on both; an IPv6 endpoint carries IPv6 only."""
        loop = asyncio.get_running_loop()
        node = self

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
                node.datagram_received(data, (addr[0], addr[1]))

            def error_received(self, exc: Exception) -> None:
                log.debug("dht: %s", exc)

        try:
            family = family_of(str(ipaddress.ip_address(host)))
        except ValueError:  # a name: let the loop resolve it
            transport, _ = await loop.create_datagram_endpoint(Protocol, local_addr=(host, port))
        else:
            sock = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET, socket.SOCK_DGRAM)
            try:
                if family == 6:  # one DHT a socket (BEP 32): no IPv4-mapped traffic on the IPv6 one
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((host, port))
                sock.setblocking(False)
                transport, _ = await loop.create_datagram_endpoint(Protocol, sock=sock)
            except BaseException:
                sock.close()
                raise
        bound = transport.get_extra_info("sockname")
        family = family_of(bound[0])
        old = self._transports.get(family)
        if old is not None and family in self._owned:
            old.close()
        self._transports[family] = transport
        self._owned.add(family)
        return bound[0], bound[1]

    def attach(self, transport: asyncio.DatagramTransport, family: int | None = None) -> None:
        """Send through a shared endpoint that hands us KRPC datagrams; ``family`` (4 or 6) defaults to the
        endpoint's own. ``close`` leaves an attached endpoint open: it belongs to whoever attached it."""
        if family is None:
            get_extra_info = getattr(transport, "get_extra_info", None)  # a test's stand-in may lack it
            sockname = get_extra_info("sockname") if get_extra_info is not None else None
            family = family_of(sockname[0]) if sockname else 4
        if family not in (4, 6):
            raise ValueError(f"address family {family!r} (4 or 6)")
        self._transports[family] = transport
        self._owned.discard(family)

    def start(self) -> asyncio.Task[None]:
        """Run ``maintain`` as a task (once; ``close`` cancels it)."""
        if self._maintenance is None or self._maintenance.done():
            self._maintenance = asyncio.get_running_loop().create_task(self.maintain(), name="dht-maintenance")
        return self._maintenance

    def close(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            self._maintenance = None
        for future, _ in self._pending.values():
            if not future.done():
                future.cancel()
        self._pending.clear()
        for family, transport in self._transports.items():
            if family in self._owned:
                transport.close()
        self._transports.clear()
        self._owned.clear()

    def _send(self, data: bytes, addr: Address) -> None:
        transport = self._transports.get(6 if ":" in addr[0] else 4)
        if transport is None and len(self._transports) == 1:  # an endpoint of unknown family (a test's)
            transport = next(iter(self._transports.values()))
        if transport is not None:
            transport.sendto(data, addr)

    # ---- statistics ----------------------------------------------------------------------------

    @property
    def lookups_running(self) -> int:
        """Cheap, for a snapshot twice a second (``stats`` counts the tables)."""
        return self._lookups

    def stats(self) -> DhtStats:
        """Counts for a snapshot; cheap (one pass over at most 2 × 1 280 table entries)."""
        now = self.clock()
        good = questionable = total = buckets = 0
        for table in self.tables.values():
            census = table.census(now)
            good += census.good
            questionable += census.questionable
            total += census.nodes
            buckets += census.buckets
        return DhtStats(
            node_id=self.node_id.hex(), nodes=total, nodes_good=good, nodes_questionable=questionable,
            nodes_ipv6=len(self.tables[6]), buckets=buckets, info_hashes=self.store.torrents(),
            peers=len(self.store), queries_in_flight=len(self._pending), lookups_running=self.lookups_running,
            dropped=self.dropped, queries_in=self.queries_in, replies_out=self.replies_out,
            queries_out=self.queries_out, replies_in=self.replies_in, timeouts=self.timeouts,
            external_ip=self.external_ip)

    # ---- incoming ----------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            message = krpc.parse(data)
        except krpc.KrpcError:
            self.dropped += 1
            return
        if type(message) is krpc.Query:
            if not self._allowed(addr[0]):
                self.dropped += 1
                return
            self.queries_in += 1
            self._answer(message, addr)
            return
        pending = self._pending.get(message.tid)
        if pending is None or pending[1] != addr:
            self.dropped += 1  # not ours, or from another address than we asked: ignore
            return
        future, _ = self._pending.pop(message.tid)
        self.replies_in += 1
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

    def _answer(self, query: krpc.Query, addr: Address) -> None:
        now = self.clock()
        family = 6 if ":" in addr[0] else 4
        method = query.method
        if method == "ping":
            reply = krpc.response(query.tid, self.node_id, ip=addr)
        elif method == "find_node":
            reply = krpc.response(query.tid, self.node_id, nodes=self._nodes_for(query, family), ip=addr)
        elif method == "get_peers":
            assert query.info_hash is not None
            values = self.store.compact(query.info_hash, now, ipv6=family == 6,
                                        count=REPLY_PEERS6 if family == 6 else REPLY_PEERS)
            reply = krpc.response(query.tid, self.node_id, values=values,
                                  nodes=() if values else self._nodes_for(query, family),
                                  token=self.tokens.make(addr[0], now), ip=addr)
        elif method == "announce_peer":
            assert query.info_hash is not None
            if not self.tokens.check(query.token or b"", addr[0], now):
                reply = krpc.error(query.tid, krpc.PROTOCOL_ERROR, "bad token")
            else:
                port = addr[1] if query.implied_port or query.port is None else query.port
                self.store.announce(query.info_hash, addr[0], port, now)
                reply = krpc.response(query.tid, self.node_id, ip=addr)
        else:
            reply = krpc.error(query.tid, krpc.METHOD_UNKNOWN, "method unknown")
        self.replies_out += 1
        self._send(reply, addr)
        if not query.read_only:  # after the reply: the asker is not among the nodes it is sent
            self._heard(Contact(query.node_id, addr[0], addr[1]), family, now, replied=False)

    def _nodes_for(self, query: krpc.Query, family: int) -> list[Contact]:
        """The nearest nodes of the asker's family, or of those its ``want`` names (BEP 32)."""
        target = query.target if query.target is not None else query.info_hash
        assert target is not None
        if query.want and ("n4" in query.want or "n6" in query.want):
            nodes = self.tables[4].closest(target) if "n4" in query.want else []
            if "n6" in query.want:
                nodes += self.tables[6].closest(target)
            return nodes
        return self.tables[family].closest(target)

    def _acceptable(self, contact: Contact) -> bool:
        """BEP 42: whether the node may enter a routing table (always, unless ids are enforced)."""
        return not self.enforce_node_ids or valid_node_id(contact.id, contact.host)

    def _heard(self, contact: Contact, family: int, now: float, *, replied: bool) -> None:
        if not self._acceptable(contact):
            return
        for waiting in self.tables[family].heard_from(contact, now, replied=replied):
            key = (family, waiting.id)
            if key not in self._waiting:
                self._waiting[key] = waiting
                if len(self._waiting) > MAX_WAITING:
                    self._waiting.popitem(last=False)

    def _vote(self, voter: str, seen: tuple[str, int] | None) -> None:
        """A reply's ``ip``: how its sender sees us (BEP 42)."""
        if seen is None or family_of(seen[0]) != family_of(voter):
            return
        family = family_of(voter)
        address = self._votes[family].vote(voter, seen[0])
        if address is None or self._external.get(family) == address:
            return
        log.info("dht: the nodes see us at %s", address)
        self._external[family] = address
        if family == self.family and self.enforce_node_ids and not valid_node_id(self.node_id, address):
            self._set_node_id(self._choose_id(None))

    # ---- outgoing ----------------------------------------------------------------------------

    def _tid(self) -> bytes:
        self._next_tid = (self._next_tid + 1) & 0xFFFF
        return self._next_tid.to_bytes(2, "big")

    async def query(self, addr: Address, build: Callable[[bytes], bytes],
                    node_id: bytes | None = None) -> krpc.Response:
        """Send one query and wait for its reply; ``DhtQueryError`` when it times out or is refused. The
        routing table learns either way: a reply makes the node good; silence, or another id answering
        where ``node_id`` was, counts against ``node_id``."""
        if len(self._pending) >= MAX_PENDING:
            raise DhtQueryError("too many queries in flight")
        tid = self._tid()
        while tid in self._pending:
            tid = self._tid()
        future: asyncio.Future[krpc.Response] = asyncio.get_running_loop().create_future()
        self._pending[tid] = (future, addr)
        family = family_of(addr[0])
        self.queries_out += 1
        self._send(build(tid), addr)
        try:
            reply = await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            self.timeouts += 1
            if node_id is not None:
                self.tables[family].failed(node_id, self.clock())
            raise DhtQueryError(f"no reply from {addr[0]}:{addr[1]}") from None
        finally:
            self._pending.pop(tid, None)
        now = self.clock()
        if node_id is not None and reply.node_id != node_id:
            self.tables[family].failed(node_id, now)  # someone else lives there now
        self._heard(Contact(reply.node_id, addr[0], addr[1]), family, now, replied=True)
        self._vote(addr[0], reply.ip)
        return reply

    async def ping(self, addr: Address) -> bytes:
        """The node id answering at ``addr``."""
        reply = await self.query(addr, lambda tid: krpc.ping(tid, self.node_id))
        return reply.node_id

    def _want(self, family: int) -> tuple[str, ...]:
        """BEP 32: a node on both families asks for both kinds of nodes while a table is still small."""
        if len(self._transports) < 2 or min(len(t) for t in self.tables.values()) >= BOTH_FAMILIES_BELOW:
            return ()
        return ("n4", "n6")

    def _learn(self, nodes: Iterable[krpc.Node], now: float) -> None:
        """Nodes a reply named in a family we take part in: into that table, questionable."""
        families = self.families
        for node in nodes:
            family = family_of(node.host)
            if family in families and node.id != self.node_id:
                contact = Contact(node.id, node.host, node.port)
                if self._acceptable(contact):
                    self.tables[family].heard_of(contact, now)

    async def bootstrap(self, routers: Sequence[Address]) -> int:
        """Fill the routing tables from ``routers`` (addresses or host names, remembered for upkeep) and a
        lookup of our own id in each family; the nodes known after."""
        self.routers = tuple(routers)
        self._last_bootstrap = self.clock()
        self._started_up = True  # the lookup of our id below is the one upkeep would start with
        families = self.families
        addresses = [a for a in await self._resolve(self.routers) if family_of(a[0]) in families]
        replies = await asyncio.gather(*(self._find(addr, self.node_id) for addr in addresses),
                                       return_exceptions=True)
        now = self.clock()
        for reply in replies:
            if isinstance(reply, krpc.Response):
                self._learn(reply.nodes, now)
        await asyncio.gather(*(self.lookup(self.node_id, family=f) for f in families))
        return sum(len(self.tables[f]) for f in families)

    async def _resolve(self, routers: Sequence[Address]) -> list[Address]:
        """IP addresses as they are; host names through the loop's resolver (replies are matched by
        address, so a query must go to one)."""
        out: list[Address] = []
        loop = asyncio.get_running_loop()
        for host, port in routers:
            try:
                out.append((str(ipaddress.ip_address(host)), port))
                continue
            except ValueError:
                pass
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            except OSError as exc:
                log.debug("dht: router %s: %s", host, exc)
                continue
            for info in infos:
                addr = (str(info[4][0]), int(info[4][1]))
                if addr not in out:
                    out.append(addr)
        return out

    def _find(self, addr: Address, target: bytes) -> Any:
        want = self._want(family_of(addr[0]))
        return self.query(addr, lambda tid: krpc.find_node(tid, self.node_id, target, want=want))

    async def lookup(self, target: bytes, *, peers: bool = False, family: int | None = None) -> Lookup:
        """An iterative find_node (or get_peers) towards ``target`` in one family's DHT (the main one by
        default), within ``alpha``, ``max_queries`` and ``lookup_timeout``."""
        family = family or self.family
        lookup = Lookup(target, alpha=self.alpha, max_queries=self.max_queries)
        lookup.add(self.tables[family].closest(target, 3 * K))
        want = self._want(family)

        async def ask(contact: Contact) -> None:
            addr = (contact.host, contact.port)
            build = (lambda tid: krpc.get_peers(tid, self.node_id, target, want=want)) if peers else \
                (lambda tid: krpc.find_node(tid, self.node_id, target, want=want))
            try:
                reply = await self.query(addr, build, contact.id)
            except DhtQueryError:
                lookup.failed(contact.id)
                return
            if want:
                self._learn((n for n in reply.nodes if family_of(n.host) != family), self.clock())
            nodes = [Contact(n.id, n.host, n.port) for n in reply.nodes
                     if n.id != self.node_id and family_of(n.host) == family]
            if reply.node_id != contact.id or not self._acceptable(Contact(reply.node_id, *addr)):
                # BEP 42: a non-compliant node's nodes may be followed, but its answer does not count
                # towards the lookup's end, nor does its token make it a place to announce
                lookup.add(nodes)
                lookup.failed(contact.id)
                return
            lookup.replied(contact.id, nodes, reply.values, reply.token)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lookup_timeout
        running: set[asyncio.Task[None]] = set()
        self._lookups += 1
        try:
            while not lookup.done or running:
                for contact in lookup.next_queries():
                    running.add(asyncio.ensure_future(ask(contact)))
                if not running:
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    lookup.stop()
                    break
                _, running = await asyncio.wait(running, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._lookups -= 1
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        return lookup

    async def get_peers(self, info_hash: bytes, *, family: int | None = None) -> tuple[list[Address], Lookup]:
        """Peers of ``info_hash``: from one family's DHT, or (by default) every family the node takes part
        in; the lookup returned is the main family's."""
        families = (family,) if family else self.families
        lookups = await asyncio.gather(*(self.lookup(info_hash, peers=True, family=f) for f in families))
        values: dict[Address, None] = {}
        for lookup in lookups:
            values.update(lookup.values)
        main = lookups[families.index(self.family)] if self.family in families else lookups[0]
        return list(values), main

    async def announce(self, info_hash: bytes, port: int, *, implied_port: bool = False,
                       family: int | None = None) -> int:
        """get_peers, then announce_peer to the nearest nodes that gave a token, in each family (or the one
        given); how many accepted."""
        _, accepted = await self.find_and_announce(info_hash, port, implied_port=implied_port, family=family)
        return accepted

    async def find_and_announce(self, info_hash: bytes, port: int, *, implied_port: bool = False,
                                family: int | None = None) -> tuple[list[Address], int]:
        """``announce``, also giving the peers its get_peers lookups found: (peers, how many accepted)."""
        families = (family,) if family else self.families
        results = await asyncio.gather(*(self._announce(info_hash, port, implied_port, f) for f in families))
        peers: dict[Address, None] = {}
        for values, _ in results:
            peers.update(dict.fromkeys(values))
        return list(peers), sum(accepted for _, accepted in results)

    async def _announce(self, info_hash: bytes, port: int, implied_port: bool,
                        family: int) -> tuple[list[Address], int]:
        lookup = await self.lookup(info_hash, peers=True, family=family)

        async def store(contact: Contact, token: bytes) -> bool:
            try:
                await self.query((contact.host, contact.port), lambda tid: krpc.announce_peer(
                    tid, self.node_id, info_hash, port, token, implied_port=implied_port), contact.id)
            except DhtQueryError:
                return False
            return True

        accepted = await asyncio.gather(*(store(c, t) for c, t in lookup.result() if t is not None))
        return list(lookup.values), sum(accepted)

    # ---- upkeep ----------------------------------------------------------------------------------

    async def maintain(self, routers: Routers | None = None) -> None:
        """Upkeep until cancelled: a round at once, then one every ``maintenance_interval`` seconds.
        ``routers`` (addresses, or a function giving them, possibly async) replace the node's own for
        bootstrapping again."""
        while True:
            try:
                await self.maintain_once(routers)
            except asyncio.CancelledError:
                raise
            except Exception:  # upkeep must outlive a bug in one round; say so loudly
                log.exception("dht: upkeep round failed")
            await asyncio.sleep(self.maintenance_interval)

    async def maintain_once(self, routers: Routers | None = None) -> None:
        """One round of upkeep (see the module's docstring); the first looks our id up through the nodes
        we start with, restored ones included. ``routers``: as for ``maintain``."""
        now = self.clock()
        self.tokens.expire(now)
        if now - self._last_expire >= self.expire_interval:
            self.store.expire(now)
            self._last_expire = now
        families = self.families
        if any(self._usable(f, now) == 0 for f in families) and (
                self._last_bootstrap is None or now - self._last_bootstrap >= self.bootstrap_interval):
            addresses = await _routers(routers) if routers is not None else self.routers
            if addresses:
                await self.bootstrap(addresses)
                return
            self._last_bootstrap = now  # none to ask: try again after the interval
        if not self._started_up:
            self._started_up = True
            await asyncio.gather(*(self.lookup(self.node_id, family=f) for f in families if len(self.tables[f])))
            now = self.clock()
        await self._ping_round(now)
        targets = [(f, target) for f in families for target in self.tables[f].refresh_targets(now, self._rng)]
        await asyncio.gather(*(self.lookup(target, family=f) for f, target in targets))

    def _usable(self, family: int, now: float) -> int:
        """Nodes of a table that are not bad: a table of bad nodes is as empty as an empty one."""
        census = self.tables[family].census(now)
        return census.good + census.questionable

    async def _ping_round(self, now: float) -> None:
        """Up to ``pings_per_round`` questionable nodes: those a newcomer waits on first, then the ones
        never heard from (restored, or only named by others), then the longest silent."""
        chosen: list[tuple[int, Contact]] = []
        while self._waiting and len(chosen) < self.pings_per_round:
            (family, node_id), contact = self._waiting.popitem(last=False)
            entry = self.tables[family].get(node_id)
            if entry is not None and self._due(family, entry, now):
                chosen.append((family, contact))
        if len(chosen) < self.pings_per_round:
            picked = {(f, c.id) for f, c in chosen}
            candidates = [(f, e) for f in self.families for e in self.tables[f].entries()
                          if (f, e.contact.id) not in picked and self._due(f, e, now)]
            candidates.sort(key=lambda fe: (fe[1].last_reply is not None, fe[1].last_reply or 0.0))
            chosen += [(f, e.contact) for f, e in candidates[:self.pings_per_round - len(chosen)]]
        await asyncio.gather(*(self._check(family, contact) for family, contact in chosen))

    def _due(self, family: int, entry: Entry, now: float) -> bool:
        return not entry.bad() and not entry.good(now) and (family, entry.contact.id) not in self._pinging

    async def _check(self, family: int, contact: Contact) -> None:
        key = (family, contact.id)
        self._pinging.add(key)
        try:
            with contextlib.suppress(DhtQueryError):  # a silence is counted against it by ``query``
                await self.query((contact.host, contact.port), lambda tid: krpc.ping(tid, self.node_id),
                                 contact.id)
        finally:
            self._pinging.discard(key)


async def _routers(routers: Routers) -> tuple[Address, ...]:
    if callable(routers):
        given = routers()
        return tuple(await given if isinstance(given, Awaitable) else given)
    return tuple(routers)


class DhtQueryError(TorrentError):
    """A query got no reply in time, or an error reply."""
