"""The blocklist's range set: merging, edges, families apart, IPv4-mapped addresses, against a brute force."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrent.core.ipfilter import EMPTY, V4_MAX, V6_MAX, IpFilter, RangeBuilder


def v4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def v6(text: str) -> int:
    return int(ipaddress.IPv6Address(text))


def test_empty_blocks_nothing_and_names_are_never_addresses() -> None:
    assert not EMPTY and len(EMPTY) == 0
    assert not EMPTY.blocks("1.2.3.4")
    everything = IpFilter.from_ranges([(4, 0, V4_MAX), (6, 0, V6_MAX)])
    assert everything.blocks("0.0.0.0") and everything.blocks("255.255.255.255") and everything.blocks("::")
    assert not everything.blocks("example.com") and not everything.blocks("") and not everything.blocks("1.2.3")


def test_edges_of_a_range_are_inside_and_their_neighbours_outside() -> None:
    f = IpFilter.from_ranges([(4, v4("10.0.0.10"), v4("10.0.0.20"))])
    assert [f.blocks(f"10.0.0.{i}") for i in (9, 10, 15, 20, 21)] == [False, True, True, True, False]


def test_overlapping_contained_and_adjacent_ranges_merge_and_gaps_stay() -> None:
    f = IpFilter.from_ranges([
        (4, 100, 200), (4, 150, 300),  # overlapping
        (4, 120, 130),  # contained
        (4, 301, 400),  # adjacent: 300 then 301
        (4, 402, 500),  # a gap of one address (401)
        (4, 50, 60), (4, 50, 60),  # duplicates, out of order
    ])
    assert f.ranges() == [(4, 50, 60), (4, 100, 400), (4, 402, 500)]
    assert len(f) == 3 and f.v4_ranges == 3 and f.v6_ranges == 0
    assert f.contains_v4(400) and not f.contains_v4(401) and f.contains_v4(402)


def test_families_are_kept_apart() -> None:
    f = IpFilter.from_ranges([(4, 0, 1000), (6, v6("2001:db8::"), v6("2001:db8::ffff"))])
    assert f.blocks("0.0.0.5") and not f.blocks("::5")  # the same number, the other family
    assert f.blocks("2001:db8::1") and not f.blocks("2001:db9::1")
    assert f.ranges() == [(4, 0, 1000), (6, v6("2001:db8::"), v6("2001:db8::ffff"))]


def test_ipv4_mapped_addresses_are_looked_up_as_ipv4_both_ways() -> None:
    plain = IpFilter.from_ranges([(4, v4("1.2.3.0"), v4("1.2.3.255"))])
    assert plain.blocks("::ffff:1.2.3.4") and not plain.blocks("::ffff:1.2.4.4")
    # A list that writes IPv4 ranges as mapped IPv6 blocks those IPv4 addresses too.
    mapped = IpFilter.from_ranges([(6, v6("::ffff:9.9.9.0"), v6("::ffff:9.9.9.255"))])
    assert mapped.blocks("9.9.9.9") and mapped.blocks("::ffff:9.9.9.9") and not mapped.blocks("9.9.10.9")


def test_a_range_that_is_not_one_is_refused() -> None:
    builder = RangeBuilder()
    for version, first, last in ((4, 5, 4), (4, 0, V4_MAX + 1), (6, -1, 3), (5, 0, 1)):
        with pytest.raises(ValueError):
            builder.add(version, first, last)
    assert len(builder) == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 40)), max_size=40))
def test_lookups_match_a_brute_force_and_merged_ranges_are_disjoint(spans: list[tuple[int, int]]) -> None:
    f = IpFilter.from_ranges([(4, start, start + width) for start, width in spans])
    blocked = {a for start, width in spans for a in range(start, start + width + 1)}
    assert [f.contains_v4(a) for a in range(-1, 345)] == [a in blocked for a in range(-1, 345)]
    merged = f.ranges()
    assert all(first <= last for _, first, last in merged)
    assert all(a[2] + 1 < b[1] for a, b in zip(merged, merged[1:], strict=False))  # neither overlapping nor adjacent
