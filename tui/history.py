"""Recent transfer rates for the speed graphs: one history per torrent and one for the session.

The engine reports rates, not their past, so the TUI keeps the last minutes itself. It is pure (no Textual)
and bounded: a history is a fixed ring of one sample a second, and the book keeps at most ``max_torrents``
of them however many torrents the session has.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple


class RateSample(NamedTuple):
    at: float  # Unix time
    down: float  # payload bytes/s
    up: float


class RateHistory:
    """The last ``seconds`` samples of a download/upload rate pair, at most one a second.

    A sample in the same whole second as the previous one replaces it, so a UI refreshing twice a second
    still keeps one a second and the ring spans ``seconds`` seconds. The ring is three ``array('d')``
    (24 bytes a sample, 7 KiB for five minutes) rather than tuples (about 140 bytes a sample), because the
    book keeps hundreds of histories.
    """

    __slots__ = ("_at", "_count", "_down", "_next", "_up", "seconds")

    def __init__(self, seconds: int = 300) -> None:
        if seconds < 1:
            raise ValueError(f"a history needs at least one second, not {seconds}")
        self.seconds = seconds
        self._at = array("d", bytes(8 * seconds))
        self._down = array("d", bytes(8 * seconds))
        self._up = array("d", bytes(8 * seconds))
        self._next = 0  # the slot the next sample goes to
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, at: float, down: float, up: float) -> None:
        """Record the rates at Unix time ``at``. A clock that went back drops the samples now in the future."""
        if self._count:
            last = self._at[self._next - 1]
            if at < last and int(at) != int(last):
                self.clear()
            elif int(at) == int(last):
                self._next -= 1
                self._count -= 1
        slot = self._next % self.seconds
        self._at[slot], self._down[slot], self._up[slot] = at, max(down, 0.0), max(up, 0.0)
        self._next = slot + 1
        self._count = min(self._count + 1, self.seconds)

    def clear(self) -> None:
        for ring in (self._at, self._down, self._up):
            ring[:] = array("d", bytes(8 * self.seconds))
        self._next = self._count = 0

    def samples(self) -> tuple[RateSample, ...]:
        """The samples, oldest first."""
        start = self._next - self._count
        return tuple(RateSample(self._at[i], self._down[i], self._up[i]) for i in range(start, self._next))

    def latest(self) -> RateSample | None:
        if not self._count:
            return None
        last = self._next - 1
        return RateSample(self._at[last], self._down[last], self._up[last])

    def peak(self) -> tuple[float, float]:
        """The highest download and upload rates held (0.0 each when empty: unused slots are zero)."""
        return max(self._down), max(self._up)


class HistoryBook:
    """A history for each torrent that moved data lately, and ``global_history`` for the session's totals.

    A torrent gets a history the first time one of its rates is not zero, so 10 000 idle torrents cost a
    dictionary lookup a tick and no memory. A torrent that has a history keeps getting samples, zeros
    included, so its graph falls to zero. Once ``max_torrents`` have one, newly busy torrents get none (so
    thousands of busy torrents do not make and drop histories every tick) until selected (``track``), which
    evicts the least recently active or selected: memory stays under ``max_torrents`` × 24 bytes × ``seconds``.
    """

    def __init__(self, max_torrents: int = 256, seconds: int = 300) -> None:
        self.max_torrents = max_torrents
        self.seconds = seconds
        self.global_history = RateHistory(seconds)
        self._torrents: OrderedDict[str, RateHistory] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._torrents)

    def __contains__(self, torrent_id: object) -> bool:
        return torrent_id in self._torrents

    def record(self, at: float, session_down: float, session_up: float,
               rows: Iterable[tuple[str, float, float]]) -> None:
        """Add one tick: the session's rates and ``(torrent id, down, up)`` for every torrent."""
        self.global_history.add(at, session_down, session_up)
        torrents = self._torrents
        for torrent_id, down, up in rows:
            history = torrents.get(torrent_id)
            if down or up:
                if history is None:
                    if len(torrents) >= self.max_torrents:
                        continue  # full: the busy keep theirs (no churn); a newcomer gets one when selected
                    history = torrents[torrent_id] = RateHistory(self.seconds)
                else:
                    torrents.move_to_end(torrent_id)
                history.add(at, down, up)
            elif history is not None:
                history.add(at, down, up)

    def get(self, torrent_id: str) -> RateHistory | None:
        """The torrent's history, None if it has not moved data lately. Asking keeps it: the selected
        torrent's graph is not evicted while busier torrents come and go."""
        history = self._torrents.get(torrent_id)
        if history is not None:
            self._torrents.move_to_end(torrent_id)
        return history

    def track(self, torrent_id: str) -> RateHistory:
        """The selected torrent's history, made now if it has none (the least recently used goes)."""
        history = self.get(torrent_id)
        if history is None:
            history = self._torrents[torrent_id] = RateHistory(self.seconds)
            if len(self._torrents) > self.max_torrents:
                self._torrents.popitem(last=False)
        return history

    def forget(self, torrent_id: str) -> None:
        """Drop a removed torrent's history."""
        self._torrents.pop(torrent_id, None)
