"""Token bucket arithmetic with a fake clock, and the asyncio wrapper."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrent.engine.ratelimit import RateLimiter, TokenBucket


def test_unlimited_never_waits() -> None:
    bucket = TokenBucket(0)
    assert bucket.take(10**9, now=0.0) == 0.0


def test_waits_once_the_burst_is_spent() -> None:
    bucket = TokenBucket(1000, burst=1000, now=0.0)
    assert bucket.take(500, now=1.0) == 0.0  # one second refilled the full burst
    assert bucket.take(500, now=1.0) == 0.0
    assert bucket.take(500, now=1.0) == pytest.approx(0.5)  # in debt by 500 bytes at 1000 B/s


def test_debt_queues_callers_in_order() -> None:
    bucket = TokenBucket(100, burst=100, now=0.0)
    waits = [bucket.take(100, now=0.0) for _ in range(3)]
    assert waits == pytest.approx([1.0, 2.0, 3.0])


def test_rate_change_applies_from_that_moment() -> None:
    bucket = TokenBucket(100, burst=100, now=0.0)
    bucket.take(100, now=1.0)
    bucket.set_rate(1000, burst=1000, now=1.0)
    assert bucket.take(1000, now=2.0) == 0.0  # refilled at the new rate
    bucket.set_rate(0, now=2.0)
    assert bucket.take(10**6, now=2.0) == 0.0


def test_negative_rate_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenBucket(-1)


@given(rate=st.integers(1, 10**7), sizes=st.lists(st.integers(1, 10**6), min_size=1, max_size=50))
def test_long_run_average_never_exceeds_the_rate(rate: int, sizes: list[int]) -> None:
    burst = max(rate, 16 * 1024 + 13)
    bucket = TokenBucket(rate, now=0.0)
    now = 0.0
    for size in sizes:
        now += bucket.take(size, now)  # a caller that honours every wait
    # Everything sent by `now` fits in what the rate allowed plus one burst.
    assert sum(sizes) <= rate * now + burst + 1e-6 * rate


@pytest.mark.asyncio
async def test_rate_limiter_sleeps_for_debt() -> None:
    limiter = RateLimiter(1_000_000)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await limiter.acquire(1_000_000)  # burst: one second of traffic, but bucket starts empty
    await limiter.acquire(100_000)
    assert loop.time() - start >= 0.1  # at least the debt of the second call was waited for
    limiter.set_rate(0)
    assert limiter.rate == 0
