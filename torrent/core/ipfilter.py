"""A set of IP address ranges, as a blocklist loads them: sorted, merged, looked up by bisection.

A blocklist holds hundreds of thousands of ranges, many overlapping or adjacent, and every peer
address is checked against it: ranges are merged once when the set is built, then one lookup is a
bisection of the sorted starts, O(log n). IPv4 and IPv6 are kept apart (their numbers overlap);
an IPv4-mapped IPv6 address (``::ffff:1.2.3.4``, what a dual-stack socket reports for an IPv4
peer) is looked up as the IPv4 address it carries, and a range of such addresses counts for those
IPv4 addresses too.
"""

from __future__ import annotations

import ipaddress
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from typing import Any

V4_MAX = (1 << 32) - 1
V6_MAX = (1 << 128) - 1
_MAPPED = 0xFFFF << 32  # ::ffff:0.0.0.0, the first IPv4-mapped IPv6 address (RFC 4291 2.5.5.2)
_MAPPED_LAST = _MAPPED | V4_MAX


class IpFilter:
    """Ranges of addresses, inclusive at both ends; ``IpFilter()`` blocks nothing.

    Build one with ``RangeBuilder`` (or ``from_ranges``); it never changes afterwards, so a
    session swaps in a new one whole.
    """

    __slots__ = ("_v4_starts", "_v4_ends", "_v6_starts", "_v6_ends")

    def __init__(self, v4: tuple[Sequence[int], Sequence[int]] = ((), ()),
                 v6: tuple[Sequence[int], Sequence[int]] = ((), ())) -> None:
        # Merged, sorted, disjoint and non-adjacent: starts[i] <= ends[i] < starts[i + 1] - 1.
        self._v4_starts, self._v4_ends = v4
        self._v6_starts, self._v6_ends = v6

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int, int]]) -> IpFilter:
        """From ``(version, first, last)`` triples, in any order, overlapping or not."""
        builder = RangeBuilder()
        for version, first, last in ranges:
            builder.add(version, first, last)
        return builder.build()

    def __len__(self) -> int:
        """Ranges after merging, both families."""
        return len(self._v4_starts) + len(self._v6_starts)

    @property
    def v4_ranges(self) -> int:
        return len(self._v4_starts)

    @property
    def v6_ranges(self) -> int:
        return len(self._v6_starts)

    def ranges(self) -> list[tuple[int, int, int]]:
        """The merged ranges as ``(version, first, last)``, IPv4 first, each family in order."""
        return [(4, s, e) for s, e in zip(self._v4_starts, self._v4_ends, strict=True)] + \
               [(6, s, e) for s, e in zip(self._v6_starts, self._v6_ends, strict=True)]

    def blocks(self, host: str) -> bool:
        """Whether the address ``host`` (text, as a socket or a tracker gives it) is in the set.
        A host name is not an address: it is never blocked here."""
        if not self:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if address.version == 4:
            return self.contains_v4(int(address))
        return self.contains_v6(int(address))

    def contains_v4(self, value: int) -> bool:
        i = bisect_right(self._v4_starts, value) - 1
        if i >= 0 and self._v4_ends[i] >= value:
            return True
        return bool(self._v6_starts) and self._in_v6(value | _MAPPED)  # a range written as ::ffff:a.b.c.d

    def contains_v6(self, value: int) -> bool:
        if _MAPPED <= value <= _MAPPED_LAST:
            return self.contains_v4(value - _MAPPED)
        return self._in_v6(value)

    def _in_v6(self, value: int) -> bool:
        i = bisect_right(self._v6_starts, value) - 1
        return i >= 0 and self._v6_ends[i] >= value


class RangeBuilder:
    """Collects ranges in any order; ``build`` sorts and merges them once.

    IPv4 ranges are kept as one integer each, ``first << 32 | last``, in ``v4_keys``, which a hot
    loop may append to directly: sorting plain integers is quicker than sorting tuples.
    """

    __slots__ = ("v4_keys", "_v6")

    def __init__(self) -> None:
        self.v4_keys: list[int] = []
        self._v6: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self.v4_keys) + len(self._v6)

    def add_v4(self, first: int, last: int) -> None:
        """``0 <= first <= last <= V4_MAX`` (the caller checked)."""
        self.v4_keys.append(first << 32 | last)

    def add_v6(self, first: int, last: int) -> None:
        """``0 <= first <= last <= V6_MAX``."""
        self._v6.append((first, last))

    def add(self, version: int, first: int, last: int) -> None:
        """Any range; ``ValueError`` when it is not one."""
        top = V4_MAX if version == 4 else V6_MAX if version == 6 else -1
        if top < 0:
            raise ValueError(f"IP version {version}")
        if not 0 <= first <= last <= top:
            raise ValueError(f"not an IPv{version} range: {first}..{last}")
        if version == 4:
            self.add_v4(first, last)
        else:
            self.add_v6(first, last)

    def build(self) -> IpFilter:
        self.v4_keys.sort()
        v4 = _merged(((key >> 32, key & V4_MAX) for key in self.v4_keys), array("L"), array("L"))
        v6 = _merged(sorted(self._v6), [], [])
        return IpFilter(v4, v6)  # v4 in arrays: 4 or 8 bytes a number, not 28 of an int object


def _merged(ranges: Iterable[tuple[int, int]], starts: Any, ends: Any) -> tuple[Any, Any]:
    """Sorted ranges merged where they overlap or touch, into ``starts`` and ``ends``."""
    last_end = -2
    for first, last in ranges:
        if first > last_end + 1:
            starts.append(first)
            ends.append(last)
            last_end = last
        elif last > last_end:
            ends[-1] = last_end = last
    return starts, ends


EMPTY = IpFilter()

__all__ = ["EMPTY", "V4_MAX", "V6_MAX", "IpFilter", "RangeBuilder"]
