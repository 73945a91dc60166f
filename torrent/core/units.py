"""Human sizes in and out: one parser and one formatter for every command."""

from __future__ import annotations

import re
from fractions import Fraction

from torrent.core.errors import UsageError

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'262144', '256K', '256KiB', '1.5M', '2GB' → bytes (binary units)."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise UsageError(f"invalid size {text!r}: use bytes or a number with K, M or G (e.g. 256K)")
    size = int(Fraction(m.group(1)) * _UNITS[m.group(2).upper()])
    if size >= 1 << 63:
        raise UsageError(f"size {text!r} is too large")
    return size


def format_size(n: float) -> str:
    """1536 → '1.5 KiB'; exact bytes below 1 KiB."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        text = f"{n:.1f}" if n < 99.95 else f"{n:.0f}"
        if float(text) < 1024 or unit == "TiB":
            return f"{text} {unit}"
    raise AssertionError("unreachable")
