"""The download and seed queues: which torrents may be active, and queue moves."""

from __future__ import annotations

import dataclasses

import pytest

from torrent.core.settings import QueueSettings
from torrent.session.queueing import QueueEntry, allowed, moved


def limits(downloads: int, seeds: int) -> QueueSettings:
    return dataclasses.replace(QueueSettings(), max_active_downloads=downloads, max_active_seeds=seeds)


def down(tid: str, position: int, *, forced: bool = False) -> QueueEntry:
    return QueueEntry(tid, position, seeding=False, forced=forced)


def seed(tid: str, position: int, *, forced: bool = False) -> QueueEntry:
    return QueueEntry(tid, position, seeding=True, forced=forced)


def test_defaults_are_five_downloads_and_unlimited_seeds() -> None:
    entries = [down(f"d{i}", i) for i in range(7)] + [seed(f"s{i}", 7 + i) for i in range(50)]
    active = allowed(entries, QueueSettings())
    assert {e for e in active if e.startswith("d")} == {"d0", "d1", "d2", "d3", "d4"}
    assert {e for e in active if e.startswith("s")} == {f"s{i}" for i in range(50)}


def test_download_limit_takes_the_first_in_queue_order_not_input_order() -> None:
    entries = [down("c", 2), down("a", 0), down("d", 3), down("b", 1)]
    assert allowed(entries, limits(2, -1)) == {"a", "b"}


def test_seed_limit_takes_the_first_seeds_in_queue_order() -> None:
    entries = [seed("late", 9), seed("early", 1), down("x", 0), seed("mid", 4)]
    assert allowed(entries, limits(-1, 2)) == {"x", "early", "mid"}


def test_download_and_seed_slots_are_counted_apart() -> None:
    entries = [seed("s0", 0), seed("s1", 1), down("d0", 2), down("d1", 3), seed("s2", 4)]
    assert allowed(entries, limits(1, 1)) == {"s0", "d0"}


def test_minus_one_is_unlimited() -> None:
    entries = [down(f"d{i}", i) for i in range(100)] + [seed(f"s{i}", 100 + i) for i in range(100)]
    assert len(allowed(entries, limits(-1, -1))) == 200


def test_zero_allows_none() -> None:
    entries = [down("d", 0), seed("s", 1)]
    assert allowed(entries, limits(0, 0)) == set()
    assert allowed(entries, limits(0, -1)) == {"s"}
    assert allowed(entries, limits(-1, 0)) == {"d"}


def test_forced_entries_run_outside_the_limits_and_take_no_slot() -> None:
    entries = [down("f", 0, forced=True), down("a", 1), down("b", 2), seed("fs", 3, forced=True), seed("s", 4)]
    assert allowed(entries, limits(1, 1)) == {"f", "a", "fs", "s"}
    assert allowed(entries, limits(0, 0)) == {"f", "fs"}


def test_completed_download_frees_its_slot_for_the_next_in_line() -> None:
    before = [down("a", 0), down("b", 1), down("c", 2)]
    assert allowed(before, limits(2, -1)) == {"a", "b"}
    after = [seed("a", 0), down("b", 1), down("c", 2)]
    assert allowed(after, limits(2, -1)) == {"a", "b", "c"}


def test_no_entries() -> None:
    assert allowed([], QueueSettings()) == set()


def test_entries_may_be_any_iterable() -> None:
    assert allowed((down(t, i) for i, t in enumerate("abc")), limits(2, 0)) == {"a", "b"}


ORDER = ["a", "b", "c", "d"]


@pytest.mark.parametrize(("tid", "how", "expected"), [
    ("c", "top", ["c", "a", "b", "d"]),
    ("c", "up", ["a", "c", "b", "d"]),
    ("b", "down", ["a", "c", "b", "d"]),
    ("b", "bottom", ["a", "c", "d", "b"]),
    # the edges: nothing moves past them
    ("a", "top", ORDER),
    ("a", "up", ORDER),
    ("d", "down", ORDER),
    ("d", "bottom", ORDER),
    ("a", "bottom", ["b", "c", "d", "a"]),
    ("d", "top", ["d", "a", "b", "c"]),
    ("a", "down", ["b", "a", "c", "d"]),
    ("d", "up", ["a", "b", "d", "c"]),
])
def test_moved(tid: str, how: str, expected: list[str]) -> None:
    order = list(ORDER)
    assert moved(order, tid, how) == expected
    assert order == ORDER  # the argument is not changed


@pytest.mark.parametrize("how", ["top", "up", "down", "bottom"])
def test_moved_single_entry(how: str) -> None:
    assert moved(["only"], "only", how) == ["only"]


def test_moved_unknown_id_or_direction_raise() -> None:
    with pytest.raises(ValueError):
        moved(ORDER, "zz", "top")
    with pytest.raises(KeyError):
        moved(ORDER, "a", "sideways")
