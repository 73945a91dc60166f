"""A busy DHT node: what it holds in memory and what answering costs.

The node has both routing tables full (IPv4 and IPv6: every bucket that can exist, 8 nodes and 8
replacements each, about 158 buckets a family) and the peer store at its default bound, 100 000 peers
(``MAX_PEERS``) spread over 2 000 info-hashes, 50 each, one in ten of them IPv6. Everything is built
in module fixtures, outside the timed calls.

- ``dht-memory``: building that node (the timed call), and its size as tracemalloc counts it once built.
  Target (issue): under 50 MB.
- ``dht-answer``: 1 000 queries as they arrive, bytes through ``datagram_received`` to a transport that
  only counts: 250 each of ping, find_node, get_peers (half of them for stored info-hashes, answered with
  peers, half with nodes) and announce_peer (with valid tokens), from 1 000 askers, one in ten over IPv6
  and one in ten find_node asking for both families (BEP 32 ``want``). CPU time (``time.process_time``)
  of each batch goes in ``extra_info``. Target (issue): under 100 ms of CPU for 1 000 queries.

Each test checks what came back (every query answered, no error, the right families), so the numbers
measure the real thing.

    .venv/bin/python -m pytest benchmarks/test_dht_bench.py --benchmark-only -q \\
        --benchmark-columns=min,median,mean,rounds -p no:cacheprovider -s
"""

from __future__ import annotations

import gc
import random
import statistics
import time
import tracemalloc

import pytest

from torrent.codec import krpc
from torrent.dht.node import DhtNode
from torrent.dht.routing import ID_BITS, Contact
from torrent.dht.store import MAX_PEERS

SEED = 0xD47
TORRENTS = 2_000
PEERS = MAX_PEERS  # 100 000: the store's default bound, 50 a torrent
QUERIES = 1_000
NOW = 10_000.0
MEMORY_LIMIT_MB = 50.0
CPU_LIMIT_MS = 100.0


class CountingTransport:
    """Stands in for the UDP endpoint: counts replies, keeps the last of each kind to check."""

    def __init__(self) -> None:
        self.sent = 0
        self.bytes = 0
        self.last: dict[tuple[str, int], bytes] = {}

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent += 1
        self.bytes += len(data)
        self.last[addr] = data

    def get_extra_info(self, name: str) -> object:
        return ("0.0.0.0", 6881) if name == "sockname" else None

    def close(self) -> None:
        pass


def _fill_table(node: DhtNode, family: int, rng: random.Random) -> None:
    """For each distance class from our id (each bucket the table can split into), 16 nodes: 8 fill the
    bucket, 8 wait as replacements."""
    own = int.from_bytes(node.node_id, "big")
    table = node.tables[family]
    for depth in range(ID_BITS):
        span = ID_BITS - 1 - depth  # free low bits below the first differing one
        for j in range(16):
            value = ((own >> (span + 1)) << (span + 1)) | ((~own >> span & 1) << span) | rng.getrandbits(span)
            host = f"10.{depth}.{j}.1" if family == 4 else f"2001:db8:{depth:x}::{j + 1:x}"
            table.heard_from(Contact(value.to_bytes(20, "big"), host, 6881 + j), NOW, replied=True)


def build_node(seed: int = SEED) -> tuple[DhtNode, list[bytes]]:
    rng = random.Random(seed)
    node = DhtNode(rng.randbytes(20), clock=lambda: NOW, query_rate=1e9)
    _fill_table(node, 4, rng)
    _fill_table(node, 6, rng)
    hashes = [rng.randbytes(20) for _ in range(TORRENTS)]
    for i in range(PEERS):
        host = f"2001:db8:1:{i >> 16:x}::{i & 0xFFFF:x}" if i % 10 == 9 else \
            f"{1 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.{1 + i % 200}"
        node.store.announce(hashes[i % TORRENTS], host, 1024 + i % 60_000, NOW)
    return node, hashes


@pytest.fixture(scope="module")
def busy() -> tuple[DhtNode, list[bytes]]:
    return build_node()


def test_memory(benchmark):
    """Building the busy node (timed), then its size: tracemalloc's count of what a fresh build keeps."""
    benchmark.group = "dht-memory"
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        node, _ = build_node(SEED + 1)
        gc.collect()
        size_mb = (tracemalloc.get_traced_memory()[0] - before) / 1e6
    finally:
        tracemalloc.stop()
    stats = node.stats()
    assert stats.peers == PEERS and stats.info_hashes == TORRENTS
    assert stats.buckets >= 2 * 150 and stats.nodes >= 2 * 150 * 8
    wide = [b for t in node.tables.values() for b in t.buckets if b.hi - b.lo >= 16]  # room for 16 ids
    assert all(len(b.nodes) == 8 for b in wide)  # full, and newcomers waiting
    assert sum(len(b.replacements) for b in wide) >= 0.95 * 8 * len(wide)
    benchmark.extra_info.update(memory_mb=round(size_mb, 1), peers=PEERS, torrents=TORRENTS,
                                nodes=stats.nodes, buckets=stats.buckets)
    print(f"\nDHT node with {stats.nodes} nodes in {stats.buckets} buckets and {PEERS} peers "
          f"of {TORRENTS} torrents: {size_mb:.1f} MB")
    assert size_mb < MEMORY_LIMIT_MB
    del node
    benchmark.pedantic(build_node, rounds=3, iterations=1)


def _queries(node: DhtNode, hashes: list[bytes]) -> list[tuple[bytes, tuple[str, int]]]:
    rng = random.Random(SEED + 2)
    out = []
    for i in range(QUERIES):
        tid = i.to_bytes(2, "big")
        asker = rng.randbytes(20)
        addr = (f"2001:db8:9:{i:x}::1", 6881) if i % 10 == 3 else (f"172.{16 + (i >> 8)}.{i & 255}.9", 6881)
        kind = i % 4
        if kind == 0:
            data = krpc.ping(tid, asker)
        elif kind == 1:
            want = ("n4", "n6") if i % 20 == 1 else ()
            data = krpc.find_node(tid, asker, rng.randbytes(20), want=want)
        elif kind == 2:
            data = krpc.get_peers(tid, asker, rng.choice(hashes) if i % 8 == 2 else rng.randbytes(20))
        else:
            token = node.tokens.make(addr[0], NOW)
            data = krpc.announce_peer(tid, asker, rng.choice(hashes), 1024 + i, token)
        out.append((data, addr))
    return out


def test_answer_1000_queries(benchmark, busy):
    """1 000 mixed queries through ``datagram_received``; ``extra_info`` has the CPU ms of each batch."""
    node, hashes = busy
    benchmark.group = "dht-answer"
    transport = CountingTransport()
    node.attach(transport)  # type: ignore[arg-type]
    batch = _queries(node, hashes)
    cpu_ms: list[float] = []

    def answer_all() -> None:
        start = time.process_time()
        receive = node.datagram_received
        for data, addr in batch:
            receive(data, addr)
        cpu_ms.append((time.process_time() - start) * 1000)

    dropped = node.dropped
    benchmark.pedantic(answer_all, rounds=20, iterations=1, warmup_rounds=2)
    assert node.dropped == dropped and transport.sent == QUERIES * len(cpu_ms)
    for (data, addr), i in zip(batch, range(QUERIES), strict=True):
        reply = krpc.parse(transport.last[addr])
        assert isinstance(reply, krpc.Response) and reply.ip == addr, (i, reply)
        six = {":" in n.host for n in reply.nodes}
        if i % 4 == 1:
            assert len(reply.nodes) == (16 if i % 20 == 1 else 8)
            assert six == ({False, True} if i % 20 == 1 else {i % 10 == 3})
        if i % 4 == 2:
            assert reply.token and (reply.values or len(reply.nodes) == 8)
            assert all((":" in host) == (i % 10 == 3) for host, _ in reply.values)
    median = statistics.median(cpu_ms)
    benchmark.extra_info.update(cpu_ms_per_1000_median=round(median, 1), cpu_ms_per_1000_min=round(min(cpu_ms), 1),
                                reply_bytes_mean=round(transport.bytes / transport.sent))
    print(f"\n1 000 queries: median {median:.1f} ms CPU (min {min(cpu_ms):.1f}), "
          f"{transport.bytes / transport.sent:.0f} bytes a reply")
    assert median < CPU_LIMIT_MS
