"""DHT nodes on 127.0.0.1: bootstrap, lookups, announce and get_peers across a small network; and what a
hostile sender gets: malformed datagrams ignored, a bad token refused, a flood rate-limited, silence timed out."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from torrent.codec import krpc
from torrent.dht.node import QUERIES_PER_SECOND, DhtNode, DhtQueryError

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]
LOCAL = "127.0.0.1"


async def network(n: int, query_rate: float = QUERIES_PER_SECOND) -> list[tuple[DhtNode, tuple[str, int]]]:
    """``n`` nodes; they all share 127.0.0.1, so a network of many needs a higher per-address rate."""
    nodes = []
    for _ in range(n):
        node = DhtNode(timeout=0.5, query_rate=query_rate)
        nodes.append((node, await node.open(LOCAL, 0)))
    return nodes


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
