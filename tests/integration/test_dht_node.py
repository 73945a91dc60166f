"""DHT nodes on 127.0.0.1 (and ::1): bootstrap, lookups, announce and get_peers across a small network; what
a hostile sender gets: malformed datagrams ignored, a bad token refused, a flood rate-limited, silence timed
out; upkeep on an injected clock (questionable nodes pinged and replaced, stale buckets refreshed, a dead
table bootstrapped again, announces and tokens expired); a node restored from its saved state rejoining
without routers; lookups bounded by the node's settings; statistics; IPv6 (BEP 32) on ::1, alone and
beside IPv4; our address voted by the replies and our id replaced when BEP 42 is enforced."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable

import pytest

from torrent.codec import krpc
from torrent.dht.node import QUERIES_PER_SECOND, DhtNode, DhtQueryError
from torrent.dht.node_ids import valid_node_id
from torrent.dht.routing import GOOD_FOR, Contact

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]
LOCAL = "127.0.0.1"
LOCAL6 = "::1"
FAST = 10_000.0  # query rate for networks sharing one address


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind((LOCAL6, 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this host")


async def network(n: int, query_rate: float = QUERIES_PER_SECOND, host: str = LOCAL,
                  **kwargs: object) -> list[tuple[DhtNode, tuple[str, int]]]:
    """``n`` nodes; they all share one address, so a network of many needs a higher per-address rate."""
    nodes = []
    for _ in range(n):
        node = DhtNode(timeout=0.5, query_rate=query_rate, **kwargs)  # type: ignore[arg-type]
        nodes.append((node, await node.open(host, 0)))
    return nodes


async def joined(n: int, host: str = LOCAL, **kwargs: object) -> list[tuple[DhtNode, tuple[str, int]]]:
    """A network of ``n`` that has bootstrapped through its first node, and looked itself up once more."""
    nodes = await network(n, FAST, host, **kwargs)
    for node, _ in nodes[1:]:
        await node.bootstrap([nodes[0][1]])
    for node, _ in nodes:
        await node.lookup(node.node_id)
    return nodes


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def silent_sockets(n: int, family: int = socket.AF_INET) -> list[socket.socket]:
    """Bound sockets nobody reads: addresses where queries go unanswered."""
    out = []
    for _ in range(n):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((LOCAL if family == socket.AF_INET else LOCAL6, 0))
        sock.setblocking(False)
        out.append(sock)
    return out


def received(sock: socket.socket) -> list[krpc.Message]:
    out = []
    while True:
        try:
            out.append(krpc.parse(sock.recv(4096)))
        except BlockingIOError:
            return out


def spy(node: DhtNode) -> list[tuple[krpc.Query, tuple[str, int]]]:
    """Every query ``node`` receives from now on."""
    seen: list[tuple[krpc.Query, tuple[str, int]]] = []
    original = node.datagram_received

    def receive(data: bytes, addr: tuple[str, int]) -> None:
        message = krpc.parse(data)
        if isinstance(message, krpc.Query):
            seen.append((message, addr))
        original(data, addr)

    node.datagram_received = receive  # type: ignore[method-assign]
    return seen


def far_id(low: int) -> bytes:
    """An id in the far half of the space from ``bytes(20)``."""
    return ((1 << 159) | low).to_bytes(20, "big")


def close(nodes: list[tuple[DhtNode, tuple[str, int]]]) -> None:
    for node, _ in nodes:
        node.close()


async def test_nodes_bootstrap_and_find_an_announced_peer() -> None:
    nodes = await network(12, query_rate=10_000)
    try:
        router, router_addr = nodes[0]
        for node, _ in nodes[1:]:
            known = await node.bootstrap([router_addr])
            assert known >= 1, (known, node.dropped, router.dropped, len(router.table))
        for node, _ in nodes[1:]:  # a second pass: everyone has met the late joiners
            await node.lookup(node.node_id)
        assert all(len(node.table) >= 5 for node, _ in nodes[1:])
        info_hash = os.urandom(20)
        announcer = nodes[4][0]
        assert await announcer.announce(info_hash, 51413) >= 3
        peers, lookup = await nodes[9][0].get_peers(info_hash)
        assert (LOCAL, 51413) in peers
        assert lookup.queries <= lookup.max_queries
    finally:
        close(nodes)


async def test_ping_names_the_node_and_a_silent_address_times_out() -> None:
    nodes = await network(2)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind((LOCAL, 0))
    try:
        (a, _), (b, b_addr) = nodes
        assert await a.ping(b_addr) == b.node_id
        assert b.node_id in a.table and a.node_id in b.table  # both learned the other
        with pytest.raises(DhtQueryError, match="no reply"):
            await a.ping(silent.getsockname())
    finally:
        silent.close()
        close(nodes)


async def test_hostile_datagrams_are_dropped_and_the_node_keeps_answering() -> None:
    nodes = await network(2)
    try:
        (a, _), (b, b_addr) = nodes
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for junk in (b"", b"xyz", b"d1:t2:aa1:y1:qe", b"d" + b"9" * 3000, krpc.error(b"zz", 201, "unasked")):
            sender.sendto(junk, b_addr)
        sender.close()
        await asyncio.sleep(0.1)
        assert b.dropped >= 4
        assert await a.ping(b_addr) == b.node_id
        # announce_peer with a token b never gave
        with pytest.raises(DhtQueryError, match="203"):
            await a.query(b_addr, lambda tid: krpc.announce_peer(tid, a.node_id, os.urandom(20), 6881, b"forged"))
        assert len(b.store) == 0
    finally:
        close(nodes)


async def test_a_flood_of_queries_from_one_address_is_rate_limited() -> None:
    nodes = await network(1)
    (b, b_addr), = nodes
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind((LOCAL, 0))
    sender.setblocking(False)
    try:
        for i in range(300):
            sender.sendto(krpc.ping(i.to_bytes(2, "big"), b"f" * 20), b_addr)
        await asyncio.sleep(0.3)
        answers = 0
        while True:
            try:
                data = sender.recv(4096)
            except BlockingIOError:
                break
            answers += 1
            assert len(data) < 200  # a ping reply, never amplified
        assert QUERIES_PER_SECOND <= answers <= QUERIES_PER_SECOND + 15  # the burst, plus what refilled
        assert b.dropped >= 100  # refused (the kernel may drop some of the 300 before they reach us)
    finally:
        sender.close()
        close(nodes)


# ---- upkeep --------------------------------------------------------------------------------------------


async def test_upkeep_pings_a_full_buckets_questionable_nodes_and_a_newcomer_takes_a_silent_ones_place() -> None:
    clock = Clock()
    a = DhtNode(bytes(20), clock=clock, timeout=0.3, query_rate=FAST)
    await a.open(LOCAL, 0)
    residents = await network(5, FAST)
    for i, (node, _) in enumerate(residents):
        node.node_id = far_id(i + 1)
    silent = silent_sockets(3)
    newcomer = DhtNode(far_id(100), timeout=0.5, query_rate=FAST)
    try:
        # the far half full of nodes that answered long ago: 5 alive, 3 gone quiet
        for i, (node, addr) in enumerate(residents):
            a.table.heard_from(Contact(node.node_id, *addr), clock.now, replied=True)
        for i, sock in enumerate(silent):
            a.table.heard_from(Contact(far_id(50 + i), *sock.getsockname()), clock.now, replied=True)
        clock.now += GOOD_FOR + 1
        a_addr = a.transport.get_extra_info("sockname")[:2]
        await newcomer.open(LOCAL, 0)
        assert await newcomer.ping(a_addr) == a.node_id  # it asks us: no room, it waits as a replacement
        assert newcomer.node_id not in a.table and a.stats().nodes_questionable == 8

        await a.maintain_once()  # our own id looked up through them, then pings for the ones in question
        for sock in silent:  # each silent node was pinged (once it had missed a query) before it was given up
            pings = [m for m in received(sock) if isinstance(m, krpc.Query) and m.method == "ping"]
            assert pings and all(m.node_id == a.node_id for m in pings)
        entries = {e.contact.id: e for e in a.table.entries()}
        assert newcomer.node_id in entries  # it took a bad node's place ...
        assert sum(far_id(50 + i) in entries for i in range(3)) == 2  # ... and only one: one replacement
        assert all(entries[far_id(50 + i)].bad() for i in range(3) if far_id(50 + i) in entries)
        assert all(entries[node.node_id].good(clock.now) for node, _ in residents)  # the live ones answered
        await a.maintain_once()  # questionable until it answers us: it is asked in turn
        assert entries[newcomer.node_id].good(clock.now)
        assert a.stats().nodes_good == 6 and a.stats().nodes_questionable == 0
    finally:
        for sock in silent:
            sock.close()
        close(residents)
        a.close()
        newcomer.close()


async def test_upkeep_refreshes_each_bucket_left_unchanged_with_a_lookup_in_its_range() -> None:
    clock = Clock()
    nodes = await joined(16)
    a = DhtNode(clock=clock, timeout=0.5, query_rate=FAST, refresh_interval=100.0)
    await a.open(LOCAL, 0)
    try:
        await a.bootstrap([nodes[0][1]])
        assert len(a.table.buckets) >= 2
        spies = [spy(node) for node, _ in nodes]
        await a.maintain_once()  # bootstrapped just now (our id looked up), nothing stale: no lookup
        assert not [q for seen in spies for q, _ in seen if q.node_id == a.node_id and q.method == "find_node"]
        for seen in spies:
            seen.clear()
        clock.now += 150.0
        await a.maintain_once()
        targets = [q.target for seen in spies for q, _ in seen if q.node_id == a.node_id and q.method == "find_node"]
        for bucket in a.table.buckets:
            assert any(bucket.covers(int.from_bytes(t, "big")) for t in targets), (bucket.lo, bucket.hi)
            assert bucket.changed >= clock.now - 1  # refreshed: not stale again before another 100 s
        for seen in spies:
            seen.clear()
        clock.now += 50.0
        await a.maintain_once()
        assert not [q for seen in spies for q, _ in seen if q.node_id == a.node_id and q.method == "find_node"]
    finally:
        close(nodes)
        a.close()


async def test_upkeep_bootstraps_again_once_every_node_has_gone_bad() -> None:
    clock = Clock()
    nodes = await joined(5)
    router, router_addr = nodes[0]
    silent = silent_sockets(3)
    c = DhtNode(clock=clock, timeout=0.2, query_rate=FAST, routers=[router_addr], bootstrap_interval=50.0)
    await c.open(LOCAL, 0)
    try:
        for i, sock in enumerate(silent):
            c.table.heard_from(Contact(os.urandom(20), *sock.getsockname()), clock.now, replied=True)
        seen = spy(router)
        await c.maintain_once()  # they do not answer our lookup nor our pings: bad, but no bootstrap yet
        stats = c.stats()
        assert stats.nodes == 3 and stats.nodes_good == stats.nodes_questionable == 0 and stats.timeouts == 6
        assert not any(q.node_id == c.node_id for q, _ in seen)
        clock.now += 1.0
        await c.maintain_once()  # nothing usable left: the routers again
        assert any(q.node_id == c.node_id for q, _ in seen)
        assert router.node_id in c.table and c.stats().nodes_good >= 3
    finally:
        for sock in silent:
            sock.close()
        close(nodes)
        c.close()


async def test_upkeep_asks_a_routers_function_afresh_each_time_it_must_bootstrap() -> None:
    clock = Clock()
    nodes = await joined(5)
    asked: list[float] = []

    async def routers() -> list[tuple[str, int]]:  # as a session resolving router names would
        asked.append(clock.now)
        return [nodes[0][1]] if len(asked) > 1 else []

    c = DhtNode(clock=clock, timeout=0.5, query_rate=FAST, bootstrap_interval=30.0)
    await c.open(LOCAL, 0)
    try:
        await c.maintain_once(routers)  # none yet: nothing to do, and no asking again before 30 s
        await c.maintain_once(routers)
        assert asked == [clock.now] and len(c.table) == 0
        clock.now += 30.0
        await c.maintain_once(routers)
        assert len(asked) == 2 and c.stats().nodes_good >= 4 and c.routers == (nodes[0][1],)
        clock.now += 100.0
        await c.maintain_once(routers)  # a table in use: the routers are left alone
        assert len(asked) == 2
    finally:
        close(nodes)
        c.close()


async def test_upkeep_expires_announced_peers_and_tokens_on_time() -> None:
    clock = Clock(0.0)
    node = DhtNode(clock=clock, peer_ttl=100.0, expire_interval=10.0)
    for i in range(30):
        node.store.announce(bytes([i % 3]) * 20, f"10.0.0.{i}", 6881, clock.now)
    token = node.tokens.make("10.1.1.1", clock.now)
    assert (node.stats().peers, node.stats().info_hashes) == (30, 3)
    clock.now = 50.0
    await node.maintain_once()
    assert node.stats().peers == 30
    clock.now = 111.0
    await node.maintain_once()
    assert (node.stats().peers, node.stats().info_hashes) == (0, 0)  # swept without any get_peers
    clock.now = 700.0
    await node.maintain_once()
    assert not node.tokens.check(token, "10.1.1.1", clock.now)


async def test_start_runs_upkeep_that_verifies_restored_nodes_and_close_stops_it() -> None:
    nodes = await joined(6)
    try:
        state = nodes[3][0].save_state()
        nodes[3][0].close()
        node = DhtNode.from_state(state, timeout=0.5, query_rate=FAST, maintenance_interval=0.05)
        await node.open(LOCAL, 0)
        assert node.stats().nodes_good == 0 and node.stats().nodes_questionable >= 4
        task = node.start()
        assert node.start() is task  # once
        deadline = time.monotonic() + 10
        while node.stats().nodes_good < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert node.stats().nodes_good >= 4
        node.close()
        await asyncio.sleep(0)
        assert task.cancelled() or task.done()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        close(nodes)


# ---- saved state ---------------------------------------------------------------------------------------


async def test_a_node_restored_from_saved_state_rejoins_without_routers_and_finds_peers() -> None:
    nodes = await joined(10)
    try:
        old, _ = nodes[6]
        state = old.save_state()
        old.close()
        info_hash = os.urandom(20)
        assert await nodes[2][0].announce(info_hash, 51413) >= 3

        node = DhtNode.from_state(state, timeout=0.5, query_rate=FAST)
        await node.open(LOCAL, 0)
        assert node.node_id == old.node_id and node.routers == ()
        before = node.stats()
        assert before.nodes >= 5 and before.nodes_good == 0  # trusted by nobody yet
        await node.maintain_once()  # the start: our own id looked up through the saved nodes
        assert node.stats().nodes_good >= 5
        peers, lookup = await node.get_peers(info_hash)
        assert (LOCAL, 51413) in peers and lookup.queries <= lookup.max_queries
        found, accepted = await node.find_and_announce(info_hash, 6000)
        assert found == [(LOCAL, 51413)] and accepted >= 3
        peers, _ = await nodes[8][0].get_peers(info_hash)
        assert sorted(peers) == [(LOCAL, 6000), (LOCAL, 51413)]
    finally:
        close(nodes)


# ---- limits and statistics ------------------------------------------------------------------------------


async def test_a_lookup_is_bounded_by_the_nodes_time_and_query_settings() -> None:
    silent = silent_sockets(10)
    slow = DhtNode(timeout=5.0, lookup_timeout=0.3, alpha=2)
    await slow.open(LOCAL, 0)
    nodes = await joined(12)
    small = DhtNode(timeout=0.5, query_rate=FAST, max_queries=4)
    await small.open(LOCAL, 0)
    try:
        for sock in silent:
            slow.table.heard_from(Contact(os.urandom(20), *sock.getsockname()), 0.0, replied=True)
        started = time.monotonic()
        lookup = await slow.lookup(os.urandom(20))
        assert time.monotonic() - started < 2.0  # not the 5 s of one query's timeout
        assert lookup.stopped and lookup.done and lookup.queries == 2  # alpha 2, none ever answered
        assert slow.stats().queries_in_flight == 0 and slow.stats().lookups_running == 0

        await small.bootstrap([nodes[0][1]])
        lookup = await small.lookup(os.urandom(20))
        assert lookup.max_queries == 4 and lookup.queries <= 4 and lookup.alpha == 3
    finally:
        for sock in silent:
            sock.close()
        slow.close()
        small.close()
        close(nodes)


async def test_stats_count_what_the_node_did() -> None:
    nodes = await network(2)
    try:
        (a, _), (b, b_addr) = nodes
        assert await a.ping(b_addr) == b.node_id
        await a.lookup(os.urandom(20))
        a.datagram_received(b"junk", b_addr)
        sa, sb = a.stats(), b.stats()
        assert sa.node_id == a.node_id.hex() and sa.queries_out >= 2 and sa.replies_in == sa.queries_out
        assert sb.queries_in == sa.queries_out and sb.replies_out == sb.queries_in
        assert sa.dropped == 1 and sa.timeouts == 0 and sa.queries_in == 0
        assert (sa.nodes, sa.nodes_good, sa.buckets) == (1, 1, 2)  # b in each node's table (one bucket a family)
        assert (sb.nodes, sb.nodes_good, sb.nodes_questionable) == (1, 0, 1)  # a only asked b: questionable
        assert sa.info_hashes == sa.peers == sa.lookups_running == sa.queries_in_flight == 0
    finally:
        close(nodes)


# ---- IPv6 (BEP 32) ----------------------------------------------------------------------------------------


@needs_ipv6
async def test_an_ipv6_network_on_loopback_bootstraps_announces_and_finds_peers() -> None:
    nodes = await joined(10, host=LOCAL6)
    try:
        assert all(node.family == 6 and node.table is node.tables[6] for node, _ in nodes)
        assert all(len(node.tables[6]) >= 5 and len(node.tables[4]) == 0 for node, _ in nodes)
        assert all(":" in c.host for node, _ in nodes for c in node.table.contacts())
        info_hash = os.urandom(20)
        assert await nodes[3][0].announce(info_hash, 51413) >= 3
        peers, _ = await nodes[8][0].get_peers(info_hash)
        assert peers == [(LOCAL6, 51413)]
        assert nodes[8][0].stats().nodes_ipv6 == nodes[8][0].stats().nodes >= 5
    finally:
        close(nodes)


def _ask(sock: socket.socket, addr: tuple[str, int], data: bytes) -> krpc.Response:
    sock.settimeout(2.0)
    sock.sendto(data, addr)
    reply = krpc.parse(sock.recv(4096))
    assert isinstance(reply, krpc.Response)
    return reply


@needs_ipv6
async def test_ipv6_askers_get_nodes6_and_want_chooses_the_families_but_never_the_peers() -> None:
    node = DhtNode(query_rate=FAST)
    addr4 = await node.open(LOCAL, 0)
    addr6 = await node.open(LOCAL6, 0)
    v4 = [Contact(os.urandom(20), f"10.0.0.{i}", 6881) for i in range(1, 6)]
    v6 = [Contact(os.urandom(20), f"2001:db8::{i}", 6881) for i in range(1, 6)]
    for c in v4:
        node.tables[4].heard_from(c, 0.0, replied=True)
    for c in v6:
        node.tables[6].heard_from(c, 0.0, replied=True)
    info_hash = os.urandom(20)
    node.store.announce(info_hash, "10.9.9.9", 7001, node.clock())
    node.store.announce(info_hash, "2001:db8::99", 7002, node.clock())
    me = os.urandom(20)
    target = os.urandom(20)
    sock4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        loop = asyncio.get_running_loop()

        async def ask(sock: socket.socket, addr: tuple[str, int], data: bytes) -> krpc.Response:
            return await loop.run_in_executor(None, _ask, sock, addr, data)

        def families(reply: krpc.Response) -> set[int]:
            return {6 if ":" in n.host else 4 for n in reply.nodes}

        plain6 = await ask(sock6, addr6, krpc.find_node(b"a1", me, target))
        assert families(plain6) == {6} and set(plain6.nodes) == set(v6) and plain6.ip[0] == LOCAL6
        plain4 = await ask(sock4, addr4, krpc.find_node(b"a2", me, target))
        assert families(plain4) == {4} and set(plain4.nodes) == set(v4)  # the asker is never in its own reply
        both = await ask(sock4, addr4, krpc.find_node(b"a3", me, target, want=("n4", "n6")))
        assert {n for n in both.nodes if n.id != me} == set(v4) | set(v6)
        only6 = await ask(sock4, addr4, krpc.get_peers(b"a4", me, os.urandom(20), want=("n6",)))
        assert families(only6) == {6} and set(v6) <= set(only6.nodes)
        peers4 = await ask(sock4, addr4, krpc.get_peers(b"a5", me, info_hash, want=("n6",)))
        assert peers4.values == (("10.9.9.9", 7001),)  # want chooses nodes, not the family of peers
        peers6 = await ask(sock6, addr6, krpc.get_peers(b"a6", me, info_hash))
        assert peers6.values == (("2001:db8::99", 7002),) and peers6.token
        # the asker went into the table of each family it asked over, with that family's address
        assert [c.host for c in node.tables[4].contacts() if c.id == me] == [LOCAL]
        assert [c.host for c in node.tables[6].contacts() if c.id == me] == [LOCAL6]
    finally:
        sock4.close()
        sock6.close()
        node.close()


@needs_ipv6
async def test_a_node_on_both_families_fills_both_tables_and_finds_peers_in_both() -> None:
    nodes = []
    try:
        for _ in range(8):
            node = DhtNode(timeout=0.5, query_rate=FAST)
            nodes.append((node, await node.open(LOCAL, 0), await node.open(LOCAL6, 0)))
        _, r4, r6 = nodes[0]
        for node, _, _ in nodes[1:]:
            await node.bootstrap([r4, r6])
        for node, _, _ in nodes:
            await node.lookup(node.node_id, family=4)
            await node.lookup(node.node_id, family=6)
        assert all(len(node.tables[4]) >= 4 and len(node.tables[6]) >= 4 for node, _, _ in nodes)
        assert all(node.families == (4, 6) and node.family == 4 for node, _, _ in nodes)
        info_hash = os.urandom(20)
        assert await nodes[2][0].announce(info_hash, 51413) >= 6  # in both DHTs
        peers, _ = await nodes[6][0].get_peers(info_hash)
        assert sorted(peers) == sorted([(LOCAL6, 51413), (LOCAL, 51413)])
        only6, _ = await nodes[5][0].get_peers(info_hash, family=6)
        assert only6 == [(LOCAL6, 51413)]
    finally:
        for node, _, _ in nodes:
            node.close()


# ---- our address (BEP 42) ----------------------------------------------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def get_extra_info(self, name: str) -> object:
        return ("0.0.0.0", 6881) if name == "sockname" else None

    def close(self) -> None:
        pass


async def _answer_pings(node: DhtNode, transport: FakeTransport, seen_as: Callable[[int], str]) -> None:
    """Ping 6 nodes on public addresses; each answers and says where it sees us."""
    voters = [(f"8.8.{i}.1", 6881) for i in range(6)]
    tasks = [asyncio.ensure_future(node.ping(addr)) for addr in voters]
    await asyncio.sleep(0)
    for (data, addr), i in zip(transport.sent, range(6), strict=True):
        tid = krpc.parse(data).tid
        node.datagram_received(krpc.response(tid, os.urandom(20), ip=(seen_as(i), 6881)), addr)
    await asyncio.gather(*tasks)


@pytest.mark.parametrize("enforce", [False, True], ids=["prefer", "enforce"])
async def test_replies_vote_on_our_address_and_enforcement_replaces_an_id_wrong_for_it(enforce: bool) -> None:
    public = "124.31.75.21"
    node = DhtNode(bytes(20), enforce_node_ids=enforce)
    transport = FakeTransport()
    node.attach(transport)  # type: ignore[arg-type]
    await _answer_pings(node, transport, lambda i: public if i != 2 else "65.23.51.170")
    assert node.external_ip == public and node.stats().external_ip == public  # 5 of 6 agree
    if enforce:
        assert node.node_id != bytes(20) and valid_node_id(node.node_id, public)
        assert len(node.table) == 0  # the voters' random ids do not match their addresses: kept out
    else:
        assert node.node_id == bytes(20) and len(node.table) == 6
    # the address is saved with the state, and a restart under enforcement keeps a valid id
    restored = DhtNode.from_state(node.save_state(), enforce_node_ids=True)
    assert restored.external_ip == public and valid_node_id(restored.node_id, public)
