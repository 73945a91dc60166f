"""BEP 12 tiers and backoff, driven with a fake clock (plain floats) and a seeded RNG."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrent.codec.tracker.announce import AnnounceResponse, TrackerFailure, TrackerTimeout
from torrent.core.settings import TrackerSettings
from torrent.tracker.tiers import MAX_ANNOUNCE_INTERVAL, TrackerTiers

DEFAULTS = TrackerSettings()
BACKOFF_BASE, BACKOFF_MAX, MIN_ANNOUNCE_INTERVAL = DEFAULTS.backoff_base, DEFAULTS.backoff_max, \
    DEFAULTS.min_announce_interval

A, B, C = "http://a/announce", "udp://b:1/announce", "https://c/announce"
D, E = "http://d/announce", "udp://e:2"

OK = AnnounceResponse(interval=1800, min_interval=300, peers=(("1.2.3.4", 5),), complete=3, incomplete=4)


class NoShuffle(random.Random):
    def shuffle(self, x: list) -> None:  # type: ignore[override,type-arg]
        pass


def tiers(*lists: list[str], **kw: float) -> TrackerTiers:
    return TrackerTiers(lists, rng=NoShuffle(), settings=TrackerSettings(**kw))


def test_each_tier_shuffled_once_with_injected_rng() -> None:
    lists = [[f"http://t{i}/announce" for i in range(8)], [f"udp://u{i}:1" for i in range(8)]]
    t = TrackerTiers(lists, rng=random.Random(42))
    expected_rng = random.Random(42)
    expected = []
    for urls in lists:
        copy = list(urls)
        expected_rng.shuffle(copy)
        expected.append(tuple(copy))
    assert t.tiers == tuple(expected)
    assert t.tiers != tuple(map(tuple, lists))  # (for this seed) the order did change
    assert TrackerTiers(lists, rng=random.Random(42)).tiers == t.tiers  # reproducible


def test_no_trackers() -> None:
    for t in (tiers(), tiers([]), tiers([], [])):
        assert t.next_announce(0.0) is None
        assert not t.has_trackers
        assert t.status() == ()


def test_only_unusable_urls() -> None:
    t = tiers(["wss://x/announce", "dht://abc", "not a url", "http://:80/x"])
    assert t.next_announce(0.0) is None and not t.has_trackers
    errors = {s.url: s.last_error for s in t.status()}
    assert errors["wss://x/announce"] == "unsupported URL scheme 'wss'"
    assert errors["not a url"] == "URL has no scheme"
    assert errors["http://:80/x"] == "URL has no host"
    assert all(not s.supported for s in t.status())
    with pytest.raises(ValueError, match="cannot be used"):
        t.on_failure("wss://x/announce", "x", 0.0)


def test_duplicates_keep_first_place_and_empty_tiers_vanish() -> None:
    t = tiers([A, B, A], [], [B, C])
    assert t.tiers == ((A, B), (C,))
    assert [s.tier for s in t.status()] == [0, 0, 1]


def test_first_announce_is_immediate() -> None:
    assert tiers([A, B]).next_announce(5.0) == (A, 5.0)


def test_failover_within_tier_then_next_tier() -> None:
    t = tiers([A, B], [C, D])
    assert t.next_announce(0.0) == (A, 0.0)
    t.on_failure(A, TrackerTimeout(5), 0.0)
    assert t.next_announce(1.0) == (B, 1.0)
    t.on_failure(B, TrackerFailure("nope"), 1.0)
    assert t.next_announce(2.0) == (C, 2.0)
    t.on_failure(C, "refused", 2.0)
    assert t.next_announce(3.0) == (D, 3.0)


def test_success_promotes_to_front_of_its_tier_only() -> None:
    t = tiers([A, B], [C, D])
    for url, now in ((A, 0.0), (B, 1.0), (C, 2.0)):
        t.on_failure(url, "down", now)
    t.on_success(D, OK, 3.0)
    assert t.tiers == ((A, B), (D, C))
    # The next round begins with the first tier again (BEP 12), once A's backoff allows.
    url, when = t.next_announce(3.0)  # type: ignore[misc]
    assert (url, when) == (A, 3.0 + 1800)


def test_promotion_within_first_tier() -> None:
    t = tiers([A, B, C])
    t.on_failure(A, "down", 0.0)
    t.on_success(B, OK, 1.0)
    assert t.tiers == ((B, A, C),)
    assert t.next_announce(2.0) == (B, 1.0 + 1800)


def test_interval_honoured_and_urgent_uses_min_interval() -> None:
    t = tiers([A])
    t.on_success(A, OK, 100.0)
    assert t.next_announce(101.0) == (A, 1900.0)
    assert t.next_announce(101.0, urgent=True) == (A, 400.0)
    assert t.next_announce(500.0, urgent=True) == (A, 500.0)
    assert t.next_announce(5000.0) == (A, 5000.0)  # overdue: now


def test_interval_floor_and_min_interval_above_interval() -> None:
    t = tiers([A])
    t.on_success(A, AnnounceResponse(interval=0), 0.0)
    assert t.next_announce(0.0) == (A, MIN_ANNOUNCE_INTERVAL)
    t.on_success(A, AnnounceResponse(interval=100, min_interval=500), 1000.0)
    assert t.next_announce(1000.0) == (A, 1500.0)
    t2 = tiers([A], min_announce_interval=0)
    t2.on_success(A, AnnounceResponse(interval=5), 0.0)
    assert t2.next_announce(0.0) == (A, 5.0)


def test_backoff_doubles_and_caps() -> None:
    t = tiers([A])
    now = 0.0
    delays = []
    for _ in range(10):
        url, when = t.next_announce(now)  # type: ignore[misc]
        assert url == A
        now = when
        t.on_failure(A, "timeout", now)
        status = t.status()[0]
        assert status.retry_at is not None
        delays.append(status.retry_at - now)
    assert delays == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600, 3600]
    assert t.status()[0].failures == 10
    assert (BACKOFF_BASE, BACKOFF_MAX) == (60, 3600)


def test_backoff_reset_on_success() -> None:
    t = tiers([A])
    for now in (0.0, 60.0, 180.0):
        t.on_failure(A, "x", now)
    assert t.status()[0].failures == 3
    t.on_success(A, OK, 500.0)
    s = t.status()[0]
    assert (s.failures, s.retry_at, s.last_error, s.last_success_at) == (0, None, None, 500.0)
    t.on_failure(A, "again", 2300.0)
    assert t.status()[0].retry_at == 2360.0  # back to the first step


def test_all_failed_waits_for_earliest_backoff_in_order() -> None:
    t = tiers([A, B], [C])
    t.on_failure(A, "x", 0.0)
    t.on_failure(B, "x", 10.0)
    t.on_failure(C, "x", 20.0)
    assert t.next_announce(30.0) == (A, 60.0)  # new round, paced by A's backoff
    t.on_failure(A, "x", 60.0)  # A now backs off 120 s → 180
    assert t.next_announce(61.0) == (B, 70.0)
    t.on_failure(B, "x", 70.0)  # B → 190
    assert t.next_announce(71.0) == (C, 80.0)


def test_backed_off_tracker_skipped_for_a_ready_one() -> None:
    t = tiers([A, B])
    t.on_failure(A, "x", 0.0)
    t.on_success(B, OK, 1.0)  # B promoted: (B, A)
    t.on_failure(B, "x", 1801.0)  # next round: B fails…
    assert t.next_announce(1802.0) == (A, 1802.0)  # …A's 60 s backoff is long over


def test_skips_tracker_still_in_backoff_at_round_start() -> None:
    t = tiers([A, B])
    t.on_failure(A, "x", 0.0)
    t.on_failure(B, "x", 0.0)
    t.on_failure(A, "x", 60.0)  # A: 120 s → 180
    # new round at 60: A busy until 180, B ready at 60
    assert t.next_announce(60.0) == (B, 60.0)


def test_failures_recorded_for_display() -> None:
    t = tiers([A, B])
    t.on_failure(A, TrackerFailure("not registered").at(A), 0.0)
    t.on_failure(B, ConnectionResetError(), 1.0)
    s = {x.url: x for x in t.status()}
    assert s[A].last_error == "tracker refused the request: not registered"
    assert s[B].last_error == "ConnectionResetError"
    assert s[A].failures == 1 and s[A].retry_at == 60.0


def test_success_records_stats_and_tracker_id() -> None:
    t = tiers([A])
    assert t.tracker_id(A) is None
    t.on_success(A, AnnounceResponse(interval=60, tracker_id=b"T1", warning="hm", complete=1, incomplete=2,
                                     peers=(("a", 1), ("b", 2))), 0.0)
    t.on_success(A, AnnounceResponse(interval=60), 100.0)  # no id: keep the old one
    assert t.tracker_id(A) == b"T1"
    s = t.status()[0]
    assert (s.interval, s.peers, s.warning, s.complete) == (60, 0, None, None)


def test_unknown_url_is_a_bug() -> None:
    t = tiers([A])
    with pytest.raises(ValueError, match="unknown tracker"):
        t.on_success(B, OK, 0.0)
    with pytest.raises(ValueError, match="unknown tracker"):
        t.tracker_id(B)


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 5000)), max_size=40))
def test_random_outcomes_keep_invariants(steps: list[tuple[bool, float]]) -> None:
    urls = [A, B, C, D, E]
    t = TrackerTiers([[A, B], [C], [D, E]], rng=random.Random(0))
    now = 0.0
    for ok, dt in steps:
        now += dt
        choice = t.next_announce(now)
        assert choice is not None
        url, when = choice
        assert url in urls and when >= now
        now = when
        if ok:
            t.on_success(url, OK, now)
            assert next(tier for tier in t.tiers if url in tier)[0] == url  # promoted
        else:
            t.on_failure(url, "x", now)
        for s in t.status():
            if s.retry_at is not None:
                assert s.retry_at - now <= BACKOFF_MAX
    assert sorted(u for tier in t.tiers for u in tier) == sorted(urls)


@pytest.mark.parametrize("huge", [10**400, 2**63, 2**31 - 1])
def test_absurd_intervals_are_clamped_to_a_day(huge: int) -> None:
    """A tracker's ``interval`` and ``min interval`` of 10**400 once raised OverflowError
    (float clock + int) and killed the announcer: they now mean "in a day" at most."""
    t = tiers([A, B])
    t.on_success(A, AnnounceResponse(interval=huge, min_interval=huge, peers=(("1.2.3.4", 5),)), 1000.0)
    assert t.next_announce(1000.0) == (A, 1000.0 + MAX_ANNOUNCE_INTERVAL)
    assert t.next_announce(1000.0, urgent=True) == (A, 1000.0 + MAX_ANNOUNCE_INTERVAL)
    (status, _) = t.status()
    assert status.failures == 0 and status.peers == 1
    t2 = tiers([A], min_announce_interval=10 * MAX_ANNOUNCE_INTERVAL)  # a floor above the ceiling
    t2.on_success(A, AnnounceResponse(interval=0), 0.0)
    assert t2.next_announce(0.0) == (A, float(MAX_ANNOUNCE_INTERVAL))
