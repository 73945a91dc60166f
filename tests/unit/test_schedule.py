"""The alternative ("turtle") speed limits: on demand and on a weekly schedule (local time)."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest

from torrent.core.settings import RateSettings
from torrent.session.schedule import alt_active, effective_limits

# 2024-01-01 was a Monday.
MON, FRI, SAT, SUN = 1, 5, 6, 7


def at(day: int, hhmm: str) -> datetime:
    hours, minutes = hhmm.split(":")
    return datetime(2024, 1, day, int(hours), int(minutes))


def rates(**changes: object) -> RateSettings:
    base = RateSettings(max_down=1000, max_up=2000, alt_max_down=10, alt_max_up=20)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_weekday_constants() -> None:
    assert [at(d, "12:00").strftime("%a") for d in (MON, FRI, SAT, SUN)] == ["Mon", "Fri", "Sat", "Sun"]


def test_off_by_default() -> None:
    r = rates()
    for day in range(1, 8):
        for hhmm in ("00:00", "06:59", "12:00", "22:00", "23:59"):
            assert alt_active(r, at(day, hhmm)) is False
    assert effective_limits(r, at(MON, "23:00")) == (1000, 2000, False)


def test_alt_enabled_is_always_in_force_whatever_the_schedule() -> None:
    for r in (rates(alt_enabled=True),
              rates(alt_enabled=True, alt_schedule=True, alt_begin="10:00", alt_end="11:00", alt_days="sun")):
        assert alt_active(r, at(MON, "03:00")) is True
        assert effective_limits(r, at(MON, "03:00")) == (10, 20, True)


def test_schedule_off_ignores_the_window() -> None:
    r = rates(alt_schedule=False, alt_begin="00:00", alt_end="23:59")
    assert alt_active(r, at(MON, "12:00")) is False


@pytest.mark.parametrize(("hhmm", "expected"), [
    ("08:59", False), ("09:00", True), ("12:30", True), ("16:59", True), ("17:00", False), ("23:00", False),
])
def test_daytime_window(hhmm: str, expected: bool) -> None:
    r = rates(alt_schedule=True, alt_begin="09:00", alt_end="17:00")
    assert alt_active(r, at(MON, hhmm)) is expected
    assert effective_limits(r, at(MON, hhmm)) == ((10, 20, True) if expected else (1000, 2000, False))


def test_daytime_window_only_on_listed_days() -> None:
    r = rates(alt_schedule=True, alt_begin="09:00", alt_end="17:00", alt_days="sat,sun")
    assert alt_active(r, at(FRI, "12:00")) is False
    assert alt_active(r, at(SAT, "12:00")) is True
    assert alt_active(r, at(SUN, "12:00")) is True
    assert alt_active(r, at(MON, "12:00")) is False


@pytest.mark.parametrize(("day", "hhmm", "expected"), [
    (FRI, "21:59", False),
    (FRI, "22:00", True),   # begins on Friday
    (FRI, "23:59", True),
    (SAT, "00:00", True),   # Friday's span runs into Saturday morning
    (SAT, "06:59", True),
    (SAT, "07:00", False),  # ends
    (SAT, "22:00", False),  # Saturday is not listed: no span begins
    (SUN, "03:00", False),  # nor does Saturday's (absent) span run into Sunday
    (MON, "03:00", False),  # Sunday not listed either
    (FRI, "03:00", False),  # Thursday not listed
])
def test_window_crossing_midnight_belongs_to_the_day_it_began(day: int, hhmm: str, expected: bool) -> None:
    r = rates(alt_schedule=True, alt_begin="22:00", alt_end="07:00", alt_days="fri")
    assert alt_active(r, at(day, hhmm)) is expected


def test_window_crossing_midnight_from_sunday_reaches_monday() -> None:
    r = rates(alt_schedule=True, alt_begin="23:00", alt_end="01:00", alt_days="sun")
    assert alt_active(r, at(SUN, "23:30")) is True
    assert alt_active(r, at(MON, "00:30")) is True  # the week wraps
    assert alt_active(r, at(MON, "23:30")) is False


def test_window_crossing_midnight_every_day() -> None:
    r = rates(alt_schedule=True, alt_begin="22:00", alt_end="07:00")
    assert alt_active(r, at(MON, "02:00")) is True
    assert alt_active(r, at(MON, "12:00")) is False
    assert alt_active(r, at(MON, "22:00")) is True


@pytest.mark.parametrize("hhmm", ["00:00", "08:00", "12:00", "23:59"])
def test_begin_equal_to_end_is_the_whole_day(hhmm: str) -> None:
    r = rates(alt_schedule=True, alt_begin="08:00", alt_end="08:00", alt_days="mon,wed")
    assert alt_active(r, at(MON, hhmm)) is True
    assert alt_active(r, at(MON + 1, hhmm)) is False  # Tuesday
    assert alt_active(r, at(MON + 2, hhmm)) is True  # Wednesday


def test_seconds_do_not_matter() -> None:
    r = rates(alt_schedule=True, alt_begin="09:00", alt_end="17:00")
    assert alt_active(r, datetime(2024, 1, MON, 16, 59, 59, 999999)) is True
    assert alt_active(r, datetime(2024, 1, MON, 8, 59, 59, 999999)) is False
