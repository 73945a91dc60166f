"""IP blocklists of 500 000 ranges: loading one, and looking addresses up in it.

The lists are written to files in a module fixture, outside the timed calls: 500 000 ranges at
random places in the IPv4 space, 1 to 4096 addresses wide (about a fifth of them overlap another
and are merged), in random order (a sorted list loads faster: the sort has nothing to do), as

- ``dat``: eMule lines, zero-padded octets, level and description (``001.009.096.105 - … , 000 , Org 17``);
- ``p2p``: PeerGuardian lines whose descriptions hold colons (``Org: unit 17:1.9.96.105-1.9.96.110``);
- ``dat.gz``: the eMule list gzipped, as lists are downloaded.

- ``blocklist-load``: ``read_blocklist`` of the file, as the session runs it in a worker thread
  (read in 1 MiB chunks, gunzip, parse, sort and merge). CPU seconds of each round go in ``extra_info``
  (this machine is shared: CPU time is the steadier figure). Target (issue 13): under 2 s.
- ``blocklist-lookup``: 10 000 addresses looked up in the loaded list, as text (what a socket gives).
  Target: O(log n), a few microseconds each.

Each test checks what came back (every range read, no problem, lookups that agree with the
ranges written), so the numbers measure the real thing.

    .venv/bin/python -m pytest benchmarks/test_blocklist_bench.py --benchmark-only -q \\
        --benchmark-columns=min,median,mean,rounds -p no:cacheprovider
"""

from __future__ import annotations

import gzip
import ipaddress
import random
import time
from pathlib import Path

import pytest

from torrent.codec.blocklist import Blocklist
from torrent.core.settings import Limits
from torrent.session.blocklist import read_blocklist

RANGES = 500_000
LOOKUPS = 10_000
SEED = 0xB10C
MAX_SIZE = Limits().blocklist_max_size


def _spans() -> list[tuple[int, int]]:
    rng = random.Random(SEED)
    spans = []
    for _ in range(RANGES):
        first = rng.getrandbits(32)
        spans.append((first, min(first + rng.randrange(4096), (1 << 32) - 1)))
    return spans


def _dotted(value: int, pad: bool) -> str:
    octets = ((value >> shift) & 255 for shift in (24, 16, 8, 0))
    return ".".join(f"{o:03d}" if pad else str(o) for o in octets)


@pytest.fixture(scope="module")
def spans() -> list[tuple[int, int]]:
    return _spans()


@pytest.fixture(scope="module")
def lists(tmp_path_factory: pytest.TempPathFactory, spans: list[tuple[int, int]]) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("blocklists")
    dat = "".join(f"{_dotted(a, True)} - {_dotted(b, True)} , 000 , Organisation {i}\n"
                  for i, (a, b) in enumerate(spans)).encode()
    p2p = "".join(f"Organisation: unit {i}:{_dotted(a, False)}-{_dotted(b, False)}\n"
                  for i, (a, b) in enumerate(spans)).encode()
    files = {"dat": (dat, "list.dat"), "p2p": (p2p, "list.p2p"), "dat.gz": (gzip.compress(dat, 6), "list.dat.gz")}
    paths = {}
    for kind, (data, name) in files.items():
        paths[kind] = root / name
        paths[kind].write_bytes(data)
    return paths


@pytest.mark.parametrize("kind", ["dat", "p2p", "dat.gz"])
def test_load(benchmark, lists: dict[str, Path], kind: str) -> None:
    benchmark.group = "blocklist-load"
    cpu: list[float] = []

    def load() -> Blocklist:
        started = time.process_time()
        result = read_blocklist(str(lists[kind]), MAX_SIZE)
        cpu.append(time.process_time() - started)
        return result

    result = benchmark.pedantic(load, rounds=3, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(ranges=RANGES, merged=len(result.filter), bytes=lists[kind].stat().st_size,
                                cpu_seconds=[round(c, 3) for c in cpu])
    assert (result.entries, result.problem_count, result.allowed) == (RANGES, 0, 0)
    assert 0.7 * RANGES < len(result.filter) < RANGES  # overlapping ranges were merged


def test_lookup(benchmark, lists: dict[str, Path], spans: list[tuple[int, int]]) -> None:
    benchmark.group = "blocklist-lookup"
    blocked = read_blocklist(str(lists["p2p"]), MAX_SIZE).filter
    rng = random.Random(SEED + 1)
    # Half inside a written range (its first, last or a middle address), half anywhere.
    inside = [rng.choice(spans) for _ in range(LOOKUPS // 2)]
    addresses = [str(ipaddress.IPv4Address(rng.choice((a, b, (a + b) // 2)))) for a, b in inside]
    addresses += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(LOOKUPS - len(addresses))]

    def lookups() -> int:
        return sum(map(blocked.blocks, addresses))

    hits = benchmark(lookups)
    benchmark.extra_info.update(lookups=LOOKUPS, ranges=len(blocked))
    # Every address taken from a range is blocked; a random one is as often as the list covers the space
    # (the ranges hold about 10**9 addresses: about a fifth of it once overlaps are counted once).
    assert all(map(blocked.blocks, addresses[:LOOKUPS // 2]))
    assert LOOKUPS // 2 + LOOKUPS // 2 * 0.15 < hits < LOOKUPS // 2 + LOOKUPS // 2 * 0.3
