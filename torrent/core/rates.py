"""Transfer rates over a sliding window, for the choker, the UI and pipelining.

Counting is one addition per block; the rate is computed on demand from
per-second buckets, so nothing runs on a timer.
"""

from __future__ import annotations

WINDOW = 5  # seconds averaged


class RateMeter:
    __slots__ = ("total", "_buckets", "_second", "_start")

    def __init__(self) -> None:
        self.total = 0
        self._buckets = [0] * WINDOW
        self._second = 0
        self._start: float | None = None

    def add(self, amount: int, now: float) -> None:
        if self._start is None:
            self._start = now
        self._advance(int(now))
        self._buckets[self._second % WINDOW] += amount
        self.total += amount

    def rate(self, now: float) -> float:
        """Bytes per second over the last complete seconds of the window."""
        self._advance(int(now))
        if self._start is None:
            return 0.0
        # WINDOW - 1 whole seconds plus the part of the current one that has
        # passed; less for a young meter, so a new connection is not
        # underestimated (its pipeline depth is sized from this). At least
        # 0.1 s, so one early block does not read as a burst.
        span = min((WINDOW - 1) + (now - int(now)), max(now - self._start, 0.1))
        return sum(self._buckets) / span

    def _advance(self, second: int) -> None:
        if second <= self._second:
            return
        if second - self._second >= WINDOW:
            self._buckets = [0] * WINDOW
        else:
            for s in range(self._second + 1, second + 1):
                self._buckets[s % WINDOW] = 0
        self._second = second
