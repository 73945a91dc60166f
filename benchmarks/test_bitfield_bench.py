"""Piece bitfield: compiled class against its pure-Python twin on 100 000 pieces.

Each operation is one test function parametrized over ``cython``/``python`` and
tagged ``group="bitfield-<op>"``, so pytest-benchmark prints both in one table.
Fields are random with about half the pieces set (fixed seed) and are built in
fixtures, outside the timed call.

    .venv/bin/pytest benchmarks/test_bitfield_bench.py --benchmark-only -q \\
        --benchmark-columns=min,median,mean
"""

from __future__ import annotations

import random

import pytest

N = 100_000
SEED = 0xB17F1E1D


@pytest.fixture
def impl(twin) -> type:
    """The Bitfield class of the twin under test (root conftest.py: ``cython`` / ``python``)."""
    return twin.Bitfield


@pytest.fixture(scope="module")
def rng_bits() -> tuple[bytes, bytes, list[int], bytes]:
    """Wire bytes of a half-full field, of a subset of it, 1000 random indexes, and a
    sparse field (100 pieces)."""
    rng = random.Random(SEED)
    half = rng.getrandbits(N).to_bytes(N // 8, "big")
    subset = (int.from_bytes(half, "big") & rng.getrandbits(N)).to_bytes(N // 8, "big")
    indexes = [rng.randrange(N) for _ in range(1000)]
    sparse = sum(1 << rng.randrange(N) for _ in range(100)).to_bytes(N // 8, "big")
    return half, subset, indexes, sparse


@pytest.fixture
def half(impl, rng_bits):
    return impl.from_bytes(rng_bits[0], N)


def test_from_bytes(benchmark, impl, rng_bits):
    benchmark.group = "bitfield-from_bytes"
    benchmark(impl.from_bytes, rng_bits[0], N)


def test_to_bytes(benchmark, half):
    benchmark.group = "bitfield-to_bytes"
    benchmark(half.to_bytes)


def test_get_set(benchmark, half, rng_bits):
    """1000 random pieces: set then read back (bounded by Python call overhead)."""
    benchmark.group = "bitfield-get+set"
    indexes = rng_bits[2]

    def run() -> None:
        bf = half
        for i in indexes:
            bf.set(i)
            bf.get(i)

    benchmark(run)


def test_count(benchmark, half):
    benchmark.group = "bitfield-count"
    benchmark(half.count)


def test_and_not(benchmark, impl, half, rng_bits):
    """Pieces a peer has that we lack."""
    benchmark.group = "bitfield-and_not"
    theirs = impl.from_bytes(rng_bits[1], N)
    benchmark(half.and_not, theirs)


def test_any_and_not(benchmark, impl, half, rng_bits):
    """Interest test, worst case: the peer has nothing we lack, so every word is read."""
    benchmark.group = "bitfield-any_and_not"
    theirs = impl.from_bytes(rng_bits[1], N)
    assert not half.all()
    assert theirs.any_and_not(half) is False
    benchmark(theirs.any_and_not, half)


def test_iter_set(benchmark, half):
    benchmark.group = "bitfield-iter_set"
    benchmark(half.iter_set)


def test_next_set_scan(benchmark, impl, rng_bits):
    """Walk every set piece of a sparse field (100 of 100 000) with next_set."""
    benchmark.group = "bitfield-next_set"
    bf = impl.from_bytes(rng_bits[3], N)

    def scan() -> int:
        found = 0
        i = bf.next_set(0)
        while i >= 0:
            found += 1
            i = bf.next_set(i + 1)
        return found

    assert scan() == bf.count()
    benchmark(scan)


def test_all_none(benchmark, half):
    benchmark.group = "bitfield-all/none"

    def run() -> tuple[bool, bool]:
        return half.all(), half.none()

    benchmark(run)
