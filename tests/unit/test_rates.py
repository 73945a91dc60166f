"""Sliding-window rate arithmetic with explicit times."""

from __future__ import annotations

import pytest

from torrent.core.rates import WINDOW, RateMeter


def test_steady_rate_is_measured() -> None:
    meter = RateMeter()
    for tick in range(100):
        meter.add(1000, now=tick / 10)  # 10 000 B/s
    assert meter.rate(now=10.0) == pytest.approx(10_000, rel=0.25)
    assert meter.total == 100_000


def test_rate_decays_to_zero_after_the_window() -> None:
    meter = RateMeter()
    meter.add(10**6, now=1.0)
    assert meter.rate(now=1.5) > 0
    assert meter.rate(now=1.0 + WINDOW + 1) == 0


def test_time_going_backwards_does_not_corrupt() -> None:
    meter = RateMeter()
    meter.add(100, now=10.0)
    meter.add(100, now=9.0)
    assert meter.total == 200
    assert meter.rate(now=10.5) > 0
