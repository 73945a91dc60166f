"""Short human forms of the engine's figures, sized for table cells."""

from __future__ import annotations

import time

from torrent.core.units import format_size

BAR_PARTS = " ▏▎▍▌▋▊▉█"
clock = time.time  # "now" for relative times; screenshot tests fix it


def size(n: float) -> str:
    return format_size(n)


def rate(bytes_per_s: float) -> str:
    """'' for nothing, so an idle list is quiet to read."""
    if bytes_per_s < 1:
        return ""
    return format_size(bytes_per_s) + "/s"


def eta(seconds: float | None) -> str:
    if seconds is None:
        return "∞"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s < 86400 * 365:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    return "∞"


def duration(seconds: float) -> str:
    return eta(seconds) if seconds >= 1 else "0s"


def ratio(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def percent(fraction: float) -> str:
    if 0 < fraction < 0.001:
        return "0.1%"
    if 0.999 < fraction < 1:
        return "99.9%"
    return f"{fraction * 100:.1f}%" if fraction < 1 else "100%"


def bar(fraction: float, width: int) -> str:
    """A progress bar in eighths of a cell."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (BAR_PARTS[part] if part else "")
    return text.ljust(width)


def when(unix: float | None, now: float | None = None) -> str:
    """A past or future moment relative to now: '3m ago', 'in 20m', '-'."""
    if unix is None:
        return "-"
    delta = unix - (clock() if now is None else now)
    if abs(delta) < 1:
        return "now"
    if abs(delta) >= 86400 * 7:
        return date(unix)
    return f"in {duration(delta)}" if delta > 0 else f"{duration(-delta)} ago"


def date(unix: float | None) -> str:
    if unix is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(unix))


def peers(connected: int, known: int | None) -> str:
    return f"{connected}/{known}" if known is not None else str(connected)
