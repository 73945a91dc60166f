"""BEP 12 tracker tiers and per-tracker backoff, sans-IO (times are arguments).

BEP 12: "The tiers of announces will be processed sequentially; all URLs in
each tier must be checked before the client goes on to the next tier. URLs
within each tier will be processed in a randomly chosen order; in other
words, the list will be shuffled when first read, and then parsed in order.
[...] If a connection with a tracker is successful, it will be moved to the
front of the tier."

The model here is a *round*: one announce goes through the trackers in tier
order until one succeeds. A tracker that fails is skipped for the rest of the
round and is in backoff for ``backoff_base * 2**(failures-1)`` seconds, capped
at ``backoff_max`` (60 s doubling to an hour by default; reset by a success).
When every tracker has failed in a round, the next round begins as soon as
the earliest backoff expires. After a success the next round is due after the
tracker's ``interval`` (never less than ``min_interval`` nor
``min_announce_interval``, never more than ``MAX_ANNOUNCE_INTERVAL``, a day);
an urgent announce (an event such as ``completed``, or a user's
"re-announce") may go as soon as ``min interval`` allows.

Failures never raise: they are recorded, with the last error's message, for
display. Passing a URL this object does not know is a bug (ValueError).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from torrent.codec.tracker.announce import AnnounceResponse, TrackerError
from torrent.core.settings import TrackerSettings

__all__ = [
    "MAX_ANNOUNCE_INTERVAL",
    "SUPPORTED_SCHEMES",
    "TrackerStatus",
    "TrackerTiers",
]

SUPPORTED_SCHEMES = frozenset({"http", "https", "udp"})

# The longest a tracker's ``interval`` or ``min interval`` can make us wait: a day.
# Real trackers ask for 15-60 minutes; a larger value is a broken or hostile tracker,
# and a torrent that stopped hearing of new peers for longer would look dead.
MAX_ANNOUNCE_INTERVAL = 24 * 3600


@dataclass(frozen=True, slots=True)
class TrackerStatus:
    """A snapshot of one tracker, for display."""

    url: str
    tier: int
    supported: bool
    failures: int  # consecutive, reset by a success
    last_error: str | None
    last_success_at: float | None
    retry_at: float | None  # end of backoff, None when not backing off
    interval: int | None
    min_interval: int | None
    complete: int | None
    incomplete: int | None
    peers: int | None  # how many peers the last success gave
    warning: str | None


class _Tracker:
    __slots__ = ("url", "tier", "supported", "failures", "last_error", "retry_at", "last_success_at",
                 "response", "tracker_id")

    def __init__(self, url: str, tier: int, supported: bool, error: str | None) -> None:
        self.url = url
        self.tier = tier
        self.supported = supported
        self.failures = 0
        self.last_error = error
        self.retry_at = -math.inf
        self.last_success_at: float | None = None
        self.response: AnnounceResponse | None = None
        self.tracker_id: bytes | None = None


def _scheme_error(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "malformed URL"
    scheme = parts.scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        return f"unsupported URL scheme {scheme!r}" if scheme else "URL has no scheme"
    try:
        parts.port
    except ValueError:
        return "bad port in URL"
    return None if parts.hostname else "URL has no host"


class TrackerTiers:
    """Which tracker to announce to next, and when.

    ``tiers`` is the BEP 12 ``announce-list`` (or ``[[announce]]``); duplicate
    URLs keep their first place, empty tiers vanish, URLs we cannot speak to
    are kept (for display) but never chosen. Each tier is shuffled once with
    ``rng`` (inject a seeded ``random.Random`` in tests).
    """

    def __init__(self, tiers: Sequence[Sequence[str]], *, rng: random.Random | None = None,
                 settings: TrackerSettings | None = None) -> None:
        rng = rng if rng is not None else random.Random()
        self.settings = settings or TrackerSettings()
        self._by_url: dict[str, _Tracker] = {}
        self._tiers: list[list[_Tracker]] = []
        for urls in tiers:
            tier: list[_Tracker] = []
            for url in urls:
                if url in self._by_url:
                    continue
                error = _scheme_error(url)
                tracker = _Tracker(url, len(self._tiers), error is None, error)
                self._by_url[url] = tracker
                tier.append(tracker)
            if tier:
                rng.shuffle(tier)
                self._tiers.append(tier)
        self._tried: set[str] = set()  # failed during the current round
        self._due = -math.inf  # start of the next regular round
        self._earliest = -math.inf  # min interval after the last success

    # -- queries ------------------------------------------------------------------

    @property
    def tiers(self) -> tuple[tuple[str, ...], ...]:
        """The current order (after shuffling and promotions)."""
        return tuple(tuple(t.url for t in tier) for tier in self._tiers)

    @property
    def has_trackers(self) -> bool:
        """False for a trackerless torrent (DHT/PEX only) or one with only unusable URLs."""
        return any(t.supported for t in self._by_url.values())

    def tracker_id(self, url: str) -> bytes | None:
        """The ``tracker id`` to send back to ``url`` (BEP 3), if it gave one."""
        return self._get(url).tracker_id

    def status(self) -> tuple[TrackerStatus, ...]:
        out = []
        for tier in self._tiers:
            for t in tier:
                r = t.response
                out.append(TrackerStatus(
                    url=t.url, tier=t.tier, supported=t.supported, failures=t.failures,
                    last_error=t.last_error, last_success_at=t.last_success_at,
                    retry_at=t.retry_at if t.failures else None,
                    interval=r.interval if r else None, min_interval=r.min_interval if r else None,
                    complete=r.complete if r else None, incomplete=r.incomplete if r else None,
                    peers=len(r.peers) if r else None, warning=r.warning if r else None,
                ))
        return tuple(out)

    def next_announce(self, now: float, *, urgent: bool = False) -> tuple[str, float] | None:
        """The tracker to announce to and the time (>= now) to do it; None if there is none.

        ``urgent`` asks for the earliest time ``min interval`` allows instead of
        waiting for the regular ``interval``.
        """
        usable = [t for tier in self._tiers for t in tier if t.supported]
        if not usable:
            return None
        candidates = [t for t in usable if t.url not in self._tried]
        if not candidates:  # everyone failed this round: start over, paced by backoff
            self._tried.clear()
            candidates = usable
        start = max(now, self._earliest if urgent else self._due)
        for t in candidates:
            if t.retry_at <= start:
                return t.url, start
        first = min(candidates, key=lambda t: t.retry_at)  # min() keeps the first of equals
        return first.url, max(start, first.retry_at)

    # -- outcomes -----------------------------------------------------------------

    def on_success(self, url: str, response: AnnounceResponse, now: float) -> None:
        t = self._get(url)
        t.failures = 0
        t.retry_at = -math.inf
        t.last_error = None
        t.last_success_at = now
        t.response = response
        if response.tracker_id is not None:
            t.tracker_id = response.tracker_id
        tier = self._tiers[t.tier]
        tier.remove(t)
        tier.insert(0, t)  # BEP 12: a working tracker moves to the front of its tier
        self._tried.clear()
        # Whatever the tracker said (its numbers are only bounded by the codec), the next
        # regular announce comes within [min_announce_interval, MAX_ANNOUNCE_INTERVAL].
        floor = min(self.settings.min_announce_interval, MAX_ANNOUNCE_INTERVAL)
        min_interval = min(response.min_interval or 0, MAX_ANNOUNCE_INTERVAL)
        self._earliest = now + min_interval
        self._due = now + min(max(response.interval, min_interval, floor), MAX_ANNOUNCE_INTERVAL)

    def on_failure(self, url: str, error: BaseException | str, now: float) -> None:
        t = self._get(url)
        t.failures += 1
        delay = min(self.settings.backoff_base * 2 ** min(t.failures - 1, 62), self.settings.backoff_max)
        t.retry_at = now + delay
        if isinstance(error, TrackerError):
            t.last_error = error.reason
        else:
            t.last_error = str(error) or type(error).__name__
        self._tried.add(url)

    def _get(self, url: str) -> _Tracker:
        try:
            t = self._by_url[url]
        except KeyError:
            raise ValueError(f"unknown tracker {url!r}") from None
        if not t.supported:
            raise ValueError(f"tracker {url!r} cannot be used: {t.last_error}")
        return t
