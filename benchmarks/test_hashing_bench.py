"""SHA-1 piece hashing: compiled module against its pure-Python twin, with a plain
``hashlib`` loop as the reference, on 64 MiB of payload.

Each call hashes tens of megabytes, so every benchmark uses ``benchmark.pedantic``
with a few rounds of one iteration. Groups:

- ``hash-256KiB-pieces``: ``sha1_pieces`` over 256 pieces of 256 KiB.
- ``hash-16KiB-pieces``: ``sha1_pieces`` over 4096 pieces of 16 KiB (per-piece
  overhead shows here).
- ``verify-pieces``: ``verify_pieces`` over 256 KiB pieces, all good.
- ``hash-2-threads``: two threads each hash half of 128 MiB (256 KiB pieces); the
  compiled module and ``hashlib`` both release the GIL, so both should use both cores.

Payload and expected digests are made in fixtures, outside the timed calls, and
every benchmark checks its result once against ``hashlib``.

    .venv/bin/pytest benchmarks/test_hashing_bench.py --benchmark-only -q \\
        --benchmark-columns=min,median,mean
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

MiB = 1024 * 1024
KiB = 1024
SIZE = 64 * MiB
ROUNDS = 5


def hashlib_loop(data: memoryview, piece_length: int) -> bytes:
    """The obvious Python: one ``hashlib.sha1`` per piece slice."""
    sha1 = hashlib.sha1
    return b"".join(sha1(data[i:i + piece_length]).digest() for i in range(0, len(data), piece_length))


@pytest.fixture(params=["cython", "python", "hashlib-loop"])
def sha1_pieces(request: pytest.FixtureRequest, twins) -> Callable[[memoryview, int], bytes]:
    """The two twins (root conftest.py) and the plain loop they are measured against."""
    if request.param == "hashlib-loop":
        return hashlib_loop
    return twins[request.param].hashing.sha1_pieces


@pytest.fixture(scope="module")
def payload() -> bytearray:
    """128 MiB of random bytes; single-thread groups use the first 64 MiB."""
    return bytearray(os.urandom(2 * SIZE))


@pytest.fixture(scope="module")
def expected_256k(payload: bytearray) -> bytes:
    return hashlib_loop(memoryview(payload)[:SIZE], 256 * KiB)


@pytest.fixture(scope="module")
def expected_16k(payload: bytearray) -> bytes:
    return hashlib_loop(memoryview(payload)[:SIZE], 16 * KiB)


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2, thread_name_prefix="bench-hash") as executor:
        list(executor.map(abs, [1, 2]))  # start both threads before timing
        yield executor


def test_sha1_pieces_256k(benchmark, sha1_pieces, payload, expected_256k):
    benchmark.group = "hash-256KiB-pieces"
    data = memoryview(payload)[:SIZE]
    assert sha1_pieces(data, 256 * KiB) == expected_256k
    benchmark.pedantic(sha1_pieces, args=(data, 256 * KiB), rounds=ROUNDS, iterations=1, warmup_rounds=1)


def test_sha1_pieces_16k(benchmark, sha1_pieces, payload, expected_16k):
    benchmark.group = "hash-16KiB-pieces"
    data = memoryview(payload)[:SIZE]
    assert sha1_pieces(data, 16 * KiB) == expected_16k
    benchmark.pedantic(sha1_pieces, args=(data, 16 * KiB), rounds=ROUNDS, iterations=1, warmup_rounds=1)


def test_verify_pieces(benchmark, twin, payload, expected_256k):
    benchmark.group = "verify-pieces"
    verify = twin.hashing.verify_pieces
    data = memoryview(payload)[:SIZE]
    assert verify(data, 256 * KiB, expected_256k) == [True] * (SIZE // (256 * KiB))
    benchmark.pedantic(verify, args=(data, 256 * KiB, expected_256k), rounds=ROUNDS, iterations=1,
                       warmup_rounds=1)


def test_sha1_pieces_two_threads(benchmark, twin, payload, pool):
    benchmark.group = "hash-2-threads"
    fn = twin.hashing.sha1_pieces
    view = memoryview(payload)
    halves = [view[:SIZE], view[SIZE:]]

    def run() -> bytes:
        return b"".join(pool.map(lambda half: fn(half, 256 * KiB), halves))

    assert run() == hashlib_loop(view, 256 * KiB)
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=1)


def test_sha1_many_separate_pieces(benchmark, twin, payload, expected_256k):
    """Four separate 256 KiB piece buffers at a time, the way the verifier
    hands over pieces completed together (multi-buffer in the compiled one)."""
    benchmark.group = "hash-separate-pieces-x4"
    many = twin.hashing.sha1_many
    view = memoryview(payload)[:SIZE]
    pieces = [bytearray(view[i:i + 256 * KiB]) for i in range(0, SIZE, 256 * KiB)]
    batches = [pieces[i:i + 4] for i in range(0, len(pieces), 4)]

    def run() -> list[bytes]:
        return [d for batch in batches for d in many(batch)]

    assert b"".join(run()) == expected_256k
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=1)
