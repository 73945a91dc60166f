"""RateHistory keeps a bounded second-by-second ring; HistoryBook bounds how many it keeps."""

from __future__ import annotations

import pytest

from tui.history import HistoryBook, RateHistory, RateSample

T0 = 1_764_000_000.0


def test_ring_keeps_the_last_seconds_oldest_first() -> None:
    history = RateHistory(seconds=300)
    for i in range(400):
        history.add(T0 + i, float(i), float(2 * i))
    samples = history.samples()
    assert len(history) == len(samples) == 300
    assert samples[0] == RateSample(T0 + 100, 100.0, 200.0)
    assert samples[-1] == RateSample(T0 + 399, 399.0, 798.0)
    assert [s.at for s in samples] == sorted(s.at for s in samples)
    assert history.latest() == samples[-1]


def test_a_sample_in_the_same_second_replaces_the_last() -> None:
    history = RateHistory(seconds=10)
    history.add(T0 + 0.1, 1.0, 1.0)
    history.add(T0 + 0.6, 5.0, 3.0)  # a UI ticking at 2 Hz
    history.add(T0 + 1.1, 7.0, 0.0)
    assert history.samples() == (RateSample(T0 + 0.6, 5.0, 3.0), RateSample(T0 + 1.1, 7.0, 0.0))


def test_replacing_across_the_ring_boundary_keeps_order() -> None:
    history = RateHistory(seconds=3)
    for i in range(3):
        history.add(T0 + i, float(i), 0.0)
    history.add(T0 + 3.0, 30.0, 0.0)  # wraps to slot 0
    history.add(T0 + 3.5, 35.0, 0.0)  # replaces it
    assert [s.down for s in history.samples()] == [1.0, 2.0, 35.0]


def test_a_clock_that_goes_back_drops_the_future_samples() -> None:
    history = RateHistory(seconds=10)
    history.add(T0 + 100, 1.0, 1.0)
    history.add(T0 + 101, 2.0, 2.0)
    history.add(T0 + 50, 3.0, 3.0)
    assert history.samples() == (RateSample(T0 + 50, 3.0, 3.0),)
    assert history.peak() == (3.0, 3.0)


def test_peak_forgets_samples_that_left_the_ring() -> None:
    history = RateHistory(seconds=5)
    assert history.peak() == (0.0, 0.0)
    assert history.latest() is None
    history.add(T0, 1000.0, 10.0)
    for i in range(1, 5):
        history.add(T0 + i, 5.0, 50.0)
    assert history.peak() == (1000.0, 50.0)
    history.add(T0 + 5, 6.0, 1.0)  # pushes the 1000 out
    assert history.peak() == (6.0, 50.0)


def test_negative_rates_are_recorded_as_zero() -> None:
    history = RateHistory(seconds=5)
    history.add(T0, -1.0, -2.0)
    assert history.samples() == (RateSample(T0, 0.0, 0.0),)


def test_a_history_needs_a_second() -> None:
    with pytest.raises(ValueError):
        RateHistory(seconds=0)


def test_idle_torrents_cost_nothing() -> None:
    book = HistoryBook(max_torrents=16, seconds=60)
    book.record(T0, 10.0, 5.0, ((f"{i:040x}", 0.0, 0.0) for i in range(10_000)))
    assert len(book) == 0
    assert book.get("0" * 40) is None
    assert book.global_history.samples() == (RateSample(T0, 10.0, 5.0),)


def test_an_active_torrent_keeps_getting_samples_when_it_goes_idle() -> None:
    book = HistoryBook(seconds=60)
    book.record(T0, 0.0, 0.0, [("a", 100.0, 0.0), ("b", 0.0, 0.0)])
    book.record(T0 + 1, 0.0, 0.0, [("a", 0.0, 0.0), ("b", 0.0, 0.0)])
    history = book.get("a")
    assert history is not None
    assert [s.down for s in history.samples()] == [100.0, 0.0]
    assert "b" not in book


def test_a_full_book_gives_newcomers_no_history_until_selected_and_then_evicts_the_least_recent() -> None:
    book = HistoryBook(max_torrents=3, seconds=60)
    book.record(T0, 0.0, 0.0, [("a", 1.0, 0.0), ("b", 1.0, 0.0), ("c", 1.0, 0.0)])
    book.record(T0 + 1, 0.0, 0.0, [("a", 1.0, 0.0), ("b", 0.0, 0.0), ("c", 0.0, 0.0)])  # a active again
    book.record(T0 + 2, 0.0, 0.0, [("d", 0.0, 1.0)])
    assert "d" not in book and len(book) == 3  # full: no churn
    history = book.track("d")  # selected
    assert history is book.get("d") and len(book) == 3
    assert "b" not in book  # b was the least recently active
    assert all(key in book for key in "acd")
    book.record(T0 + 3, 0.0, 0.0, [("d", 0.0, 2.0)])
    assert [s.up for s in history.samples()] == [2.0]


def test_the_selected_torrent_is_kept() -> None:
    book = HistoryBook(max_torrents=2, seconds=60)
    book.record(T0, 0.0, 0.0, [("selected", 1.0, 0.0), ("busy", 1.0, 0.0)])
    for tick in range(1, 20):
        assert book.get("selected") is not None  # the detail pane asks for it every refresh
        book.record(T0 + tick, 0.0, 0.0, [("selected", 0.0, 0.0), (f"other{tick}", 5.0, 5.0)])
    assert "selected" in book
    assert len(book) == 2


def test_memory_is_bounded_however_many_torrents_are_active() -> None:
    book = HistoryBook(max_torrents=10, seconds=30)
    for tick in range(100):
        book.record(T0 + tick, 1.0, 1.0, [(f"t{tick}-{i}", 1.0, 1.0) for i in range(50)])
    assert len(book) == 10
    assert all(book.get(f"t0-{i}") is not None for i in range(10))  # the first ten keep theirs
    assert book.get("t99-0") is None


def test_forget_drops_a_removed_torrent() -> None:
    book = HistoryBook()
    book.record(T0, 0.0, 0.0, [("a", 1.0, 1.0)])
    book.forget("a")
    book.forget("never seen")
    assert "a" not in book
    assert book.get("a") is None
