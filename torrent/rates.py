"""Transfer rates over a sliding window, for the choker, the UI and pipelining.

Counting is one addition per block; the rate is computed on demand from
per-second buckets, so nothing runs on a timer.
"""

from __future__ import annotations

WINDOW = 5  # seconds averaged


class RateMeter:
    __slots__ = ("total", "_buckets", "_second")

    def __init__(self) -> None:
        self.total = 0
        self._buckets = [0] * WINDOW
        self._second = 0

    def add(self, amount: int, now: float) -> None:
        self._advance(int(now))
        self._buckets[self._second % WINDOW] += amount
        self.total += amount

    def rate(self, now: float) -> float:
        """Bytes per second over the last complete seconds of the window."""
        self._advance(int(now))
        # WINDOW - 1 whole seconds plus the part of the current one that has passed.
        return sum(self._buckets) / ((WINDOW - 1) + (now - int(now)))

    def _advance(self, second: int) -> None:
        if second <= self._second:
            return
        if second - self._second >= WINDOW:
            self._buckets = [0] * WINDOW
        else:
            for s in range(self._second + 1, second + 1):
                self._buckets[s % WINDOW] = 0
        self._second = second
