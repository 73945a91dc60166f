"""RC4 (MSE/PE protocol encryption): compiled class against its pure-Python twin.

Each size is one test function parametrized over ``cython``/``python`` and tagged
``group="rc4-<size>-in-place"``, so pytest-benchmark prints both in one table. Every
call decrypts a buffer in place with ``process_into``, as the receive path does; the
cipher keeps running across rounds (a stream), so no round repeats another's keystream.
MB/s = size / mean.

    .venv/bin/pytest benchmarks/test_rc4_bench.py --benchmark-only -q \\
        --benchmark-columns=min,median,mean,ops
"""

from __future__ import annotations

import os

import pytest

from torrent.core import rc4, speedups

KiB = 1024
MiB = 1024 * KiB
KEY = bytes(range(20))  # MSE keys are 20-byte SHA-1 digests


@pytest.fixture
def impl(twin) -> type:
    """The RC4 class of the twin under test (root conftest.py: ``cython`` / ``python``)."""
    return speedups.compiled_module("rc4").RC4 if twin.name == "cython" else rc4.PyRC4


@pytest.mark.parametrize("size, label", [(MiB, "1MiB"), (16 * KiB, "16KiB")], ids=["1MiB", "16KiB"])
def test_process_into(benchmark, impl: type, size: int, label: str) -> None:
    benchmark.group = f"rc4-{label}-in-place"
    data = os.urandom(size)
    buf = bytearray(data)
    # Checked once outside the timed calls: decrypting in place restores the plaintext.
    impl(KEY, drop=1024).process_into(buf)
    assert buf != data
    impl(KEY, drop=1024).process_into(buf)
    assert buf == data
    benchmark(impl(KEY, drop=1024).process_into, buf)
