"""Token buckets for the upload and download limits (the session's and each torrent's).

The bucket is sans-IO (time is passed in) so it is tested without sleeping;
``RateLimiter`` wraps it for asyncio. A rate of 0 means unlimited, and the
rate can change while transfers run (the new rate applies from that moment).
"""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """Allows ``rate`` bytes/s on average with bursts up to ``burst`` bytes."""

    def __init__(self, rate: float, *, burst: float | None = None, now: float = 0.0) -> None:
        self._tokens = 0.0
        self._stamp = now
        self._rate = 0.0
        self._burst = 0.0
        self.set_rate(rate, burst=burst, now=now)

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, rate: float, *, burst: float | None = None, now: float) -> None:
        if rate < 0:
            raise ValueError("rate must not be negative")
        self._refill(now)
        self._rate = float(rate)
        # One second of traffic, and at least one 16 KiB block plus header.
        self._burst = float(burst if burst is not None else max(rate, 16 * 1024 + 13))
        self._tokens = min(self._tokens, self._burst)

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now

    def available(self, now: float) -> float:
        """Bytes that may go now without waiting (infinite when unlimited)."""
        if not self._rate:
            return float("inf")
        self._refill(now)
        return self._tokens

    def take(self, amount: int, now: float) -> float:
        """Spend ``amount`` bytes; return how long to wait before sending them.

        The bytes are spent even when a wait is returned (the bucket goes into
        debt), so callers waiting in turn are served in order at the rate.
        """
        if not self._rate:
            return 0.0
        self._refill(now)
        self._tokens -= amount
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate


class RateLimiter:
    """An asyncio front for a TokenBucket on the loop's monotonic clock."""

    def __init__(self, rate: float = 0.0) -> None:
        self._bucket = TokenBucket(rate, now=time.monotonic())

    @property
    def rate(self) -> float:
        return self._bucket.rate

    def set_rate(self, rate: float) -> None:
        self._bucket.set_rate(rate, now=time.monotonic())

    def available(self) -> float:
        return self._bucket.available(time.monotonic())

    def spend(self, amount: int) -> None:
        """Count bytes already committed (e.g. requested) against the limit."""
        self._bucket.take(amount, time.monotonic())

    async def acquire(self, amount: int) -> None:
        delay = self._bucket.take(amount, time.monotonic())
        if delay > 0:
            await asyncio.sleep(delay)


class LimiterChain:
    """Limiters that must all allow a transfer: the session's and the torrent's.
    Unlimited ones cost nothing (the chain skips them)."""

    def __init__(self, *limiters: RateLimiter) -> None:
        self._limiters = limiters

    @property
    def rate(self) -> float:
        """The tightest limit in force, 0 when none is."""
        rates = [limiter.rate for limiter in self._limiters if limiter.rate]
        return min(rates) if rates else 0.0

    def available(self) -> float:
        return min((limiter.available() for limiter in self._limiters), default=float("inf"))

    def spend(self, amount: int) -> None:
        for limiter in self._limiters:
            if limiter.rate:
                limiter.spend(amount)

    async def acquire(self, amount: int) -> None:
        now = time.monotonic()
        delay = max((limiter._bucket.take(amount, now) for limiter in self._limiters if limiter.rate),
                    default=0.0)
        if delay > 0:
            await asyncio.sleep(delay)
