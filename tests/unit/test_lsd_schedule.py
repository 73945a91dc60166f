"""The LSD announce schedule: each torrent at most once per interval, at most one datagram per gap, the
longest overdue first, a port change re-announcing everything, and a bounded number of torrents."""

from __future__ import annotations

import pytest

from torrent.lsd.schedule import AnnounceSchedule


def h(i: int) -> bytes:
    return i.to_bytes(20, "big")


def test_a_new_torrent_goes_at_once_then_once_per_interval() -> None:
    s = AnnounceSchedule(interval=300, gap=1)
    s.add(h(1), now=10)
    assert s.next_time() == 10
    assert s.take(10, limit=5) == [h(1)]
    assert s.take(11, limit=5) == []
    assert s.next_time() == 310
    assert s.take(309.9, limit=5) == []
    assert s.take(310, limit=5) == [h(1)]


def test_one_datagram_per_gap_however_many_are_due() -> None:
    s = AnnounceSchedule(interval=300, gap=1)
    for i in range(5):
        s.add(h(i), now=0)
    assert s.take(0, limit=2) == [h(0), h(1)]
    assert s.take(0.5, limit=2) == []  # within the gap
    assert s.next_time() == 1
    assert s.take(1, limit=2) == [h(2), h(3)]
    assert s.take(2, limit=2) == [h(4)]
    assert s.next_time() == 300


def test_a_torrent_added_between_datagrams_waits_for_the_gap() -> None:
    s = AnnounceSchedule(interval=300, gap=1)
    s.add(h(1), now=0)
    s.take(0, limit=5)
    s.add(h(2), now=0.2)
    s.add(h(1), now=0.2)  # already scheduled: keeps its time
    assert s.next_time() == 1
    assert s.take(0.9, limit=5) == []
    assert s.take(1, limit=5) == [h(2)]


def test_the_longest_overdue_go_first() -> None:
    s = AnnounceSchedule(interval=10, gap=1)
    s.add(h(1), now=0)
    s.take(0, limit=1)  # h1 next at 10
    s.add(h(2), now=5)
    s.add(h(3), now=8)
    assert s.take(20, limit=2) == [h(2), h(3)]
    assert s.take(21, limit=2) == [h(1)]


def test_a_port_change_makes_every_torrent_due() -> None:
    s = AnnounceSchedule(interval=300, gap=1)
    s.add(h(1), now=0)
    s.add(h(2), now=0)
    s.take(0, limit=5)
    s.reset(now=0.5)
    assert s.take(0.5, limit=5) == []  # the gap still holds
    assert s.take(1, limit=5) == [h(1), h(2)]


def test_removed_torrents_are_not_announced_and_the_count_is_bounded() -> None:
    s = AnnounceSchedule(interval=300, gap=1, max_torrents=2)
    assert s.add(h(1), now=0) and s.add(h(2), now=0)
    assert not s.add(h(3), now=0)
    s.remove(h(1))
    assert h(1) not in s and len(s) == 1
    assert s.add(h(3), now=0)
    assert s.take(0, limit=5) == [h(2), h(3)]
    s.remove(h(2))
    s.remove(h(3))
    assert s.next_time() is None


def test_bad_timing_is_refused() -> None:
    with pytest.raises(ValueError):
        AnnounceSchedule(interval=0)
    with pytest.raises(ValueError):
        AnnounceSchedule(gap=-1)
