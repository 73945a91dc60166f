"""When the alternative ("turtle") speed limits are in force (sans-IO).

Transmission's scheduler, in local time: between ``alt_begin`` and
``alt_end`` on the days listed. A span that crosses midnight belongs to the
day it begins on (22:00–07:00 on Friday runs into Saturday morning).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from torrent.core.settings import DAYS, RateSettings


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def alt_active(rates: RateSettings, now: datetime) -> bool:
    if rates.alt_enabled:
        return True
    if not rates.alt_schedule:
        return False
    days = set(rates.alt_days.split(","))
    begin, end = _minutes(rates.alt_begin), _minutes(rates.alt_end)
    minute = now.hour * 60 + now.minute
    today = DAYS[now.weekday()]
    if begin == end:
        return today in days  # the whole day
    if begin < end:
        return today in days and begin <= minute < end
    yesterday = DAYS[(now - timedelta(days=1)).weekday()]
    return (today in days and minute >= begin) or (yesterday in days and minute < end)


def effective_limits(rates: RateSettings, now: datetime) -> tuple[int, int, bool]:
    """(download limit, upload limit, alternative in force) at ``now``."""
    if alt_active(rates, now):
        return rates.alt_max_down, rates.alt_max_up, True
    return rates.max_down, rates.max_up, False
