"""Piece picker: every behaviour on its own, then Hypothesis-driven sequences and a
simulated swarm. Every test runs with the compiled Bitfield and with its pure twin
(the picker works with either), ids ``cython`` / ``python``."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from helpers import compiled_bitfield_class
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from torrent.core.bitfield import PyBitfield
from torrent.core.errors import ProtocolError
from torrent.codec.geometry import BLOCK_SIZE, Geometry
from torrent.engine.picker import MAX_PRIORITY, Block, PiecePicker, Received, piece_priorities

KiB = 1024


@pytest.fixture(scope="module")
def impl(twin) -> type:
    """The Bitfield class of the twin under test (root conftest.py: ``cython`` / ``python``)."""
    return twin.Bitfield


def geo(pieces: int, piece_length: int = 64 * KiB, tail: int = 0) -> Geometry:
    """One file of ``pieces`` full pieces plus ``tail`` bytes (a shorter last piece)."""
    return Geometry(piece_length, (pieces * piece_length + tail,))


def bits(cls: type, n: int, indexes=()) -> object:
    bf = cls(n)
    for i in indexes:
        bf.set(i)
    return bf


def make(cls: type, g: Geometry, *, seed: int = 0, have=(), **kw) -> PiecePicker:
    kw.setdefault("random_first", 0)
    h = bits(cls, g.num_pieces, have)
    return PiecePicker(g, h, rng=random.Random(seed), **kw)


def deliver(picker: PiecePicker, peer, blocks) -> list[int]:
    """Receive ``blocks`` from ``peer``; verify completed pieces; return them."""
    done = []
    for b in blocks:
        r = picker.block_received(peer, b.index, b.begin)
        if r.complete:
            picker.piece_verified(b.index)
            done.append(b.index)
    return done


def pieces_of(blocks) -> list[int]:
    out: list[int] = []
    for b in blocks:
        if not out or out[-1] != b.index:
            out.append(b.index)
    return out


# --------------------------------------------------------------------- geometry of blocks


def test_blocks_cover_pieces_and_the_short_tail(impl):
    g = geo(3, 64 * KiB, tail=20 * KiB + 5)  # last piece: one full block + 4 KiB + 5
    p = make(impl, g)
    p.peer_have_all("s")
    blocks = p.pick("s", 100)
    assert len(blocks) == 3 * 4 + 2
    by_piece: dict[int, list[Block]] = {}
    for b in blocks:
        by_piece.setdefault(b.index, []).append(b)
    for i, bs in by_piece.items():
        bs.sort()
        assert [b.begin for b in bs] == [k * BLOCK_SIZE for k in range(len(bs))]
        assert sum(b.length for b in bs) == g.piece_size(i)
    assert by_piece[3][-1] == Block(3, BLOCK_SIZE, 4 * KiB + 5)
    p._validate()


def test_piece_length_not_a_multiple_of_the_block(impl):
    g = Geometry(20_000, (50_000,))  # pieces 20000, 20000, 10000
    p = make(impl, g)
    p.peer_have_all("s")
    blocks = sorted(p.pick("s", 10))
    assert blocks == [
        Block(0, 0, BLOCK_SIZE), Block(0, BLOCK_SIZE, 20_000 - BLOCK_SIZE),
        Block(1, 0, BLOCK_SIZE), Block(1, BLOCK_SIZE, 20_000 - BLOCK_SIZE),
        Block(2, 0, 10_000),
    ]


def test_empty_torrent(impl):
    p = make(impl, Geometry(16 * KiB, ()))
    p.peer_have_all("s")
    assert p.pick("s", 10) == [] and p.done and not p.interesting("s")


# --------------------------------------------------------------------- availability


def test_availability_follows_bitfields_haves_and_departures(impl):
    n = 10
    p = make(impl, geo(n))
    p.peer_bitfield("a", bits(impl, n, [0, 1, 2]))
    p.peer_bitfield("b", bits(impl, n, [1, 2]))
    p.peer_have("b", 5)
    p.peer_have_all("seed")
    assert [p.availability(i) for i in range(n)] == [2, 3, 3, 1, 1, 2, 1, 1, 1, 1]
    assert p.num_seeds == 1 and p.num_peers == 3
    p.peer_gone("a")
    p.peer_gone("seed")
    assert [p.availability(i) for i in range(n)] == [0, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    p.peer_bitfield("b", bits(impl, n, [9]))  # a second bitfield replaces the first
    assert [p.availability(i) for i in range(n)] == [0] * 9 + [1]
    p._validate()


def test_availability_with_many_peers_uses_the_bulk_path(impl):
    n, rng = 300, random.Random(5)
    p = make(impl, geo(n))
    fields = {}
    for k in range(40):
        chosen = [i for i in range(n) if rng.random() < 0.6]
        fields[k] = set(chosen)
        p.peer_bitfield(k, bits(impl, n, chosen))
    for k in range(0, 40, 3):
        p.peer_gone(k)
        del fields[k]
    expect = [sum(i in f for f in fields.values()) for i in range(n)]
    assert [p.availability(i) for i in range(n)] == expect
    p._validate()


def test_a_peer_completing_by_haves_becomes_a_seed(impl):
    n = 4
    p = make(impl, geo(n))
    p.peer_bitfield("a", bits(impl, n, [0, 1, 2]))
    assert p.num_seeds == 0
    p.peer_have("a", 3)
    assert p.num_seeds == 1 and [p.availability(i) for i in range(n)] == [1] * n
    assert p.peer_have("a", 2) is False  # nothing changes for a seed
    p._validate()


def test_peer_have_reports_need_and_rejects_bad_indexes(impl):
    n = 4
    p = make(impl, geo(n), have=[1])
    p.set_piece_priorities([1, 1, 1, 0])
    assert p.peer_have("a", 0) is True
    assert p.peer_have("a", 0) is False  # already known
    assert p.peer_have("a", 1) is False  # we have it
    assert p.peer_have("a", 3) is False  # skipped
    with pytest.raises(ProtocolError):
        p.peer_have("a", 4)
    with pytest.raises(ProtocolError):
        p.peer_have("a", -1)


def test_interest(impl):
    n = 4
    p = make(impl, geo(n), have=[0])
    assert p.peer_bitfield("a", bits(impl, n, [0])) is False
    assert p.peer_bitfield("b", bits(impl, n, [0, 2])) is True
    assert p.peer_have_all("s") is True
    p.set_piece_priorities([1, 1, 0, 0])
    assert not p.interesting("b") and p.interesting("s")
    assert not p.interesting("unknown")
    with pytest.raises(ValueError):
        p.peer_bitfield("c", bits(impl, n + 1))


def test_mixed_bitfield_classes(impl):
    other = PyBitfield if impl is not PyBitfield else compiled_bitfield_class()
    n = 20
    p = make(impl, geo(n))
    p.peer_bitfield("a", bits(other, n, [3, 4]))
    assert {b.index for b in p.pick("a", 8)} == {3, 4}
    assert type(p.have) is impl


# --------------------------------------------------------------------- rarest first, random first


def test_rarest_first(impl):
    n = 30
    p = make(impl, geo(n))
    everyone = list(range(n))
    for k in range(5):
        p.peer_bitfield(f"c{k}", bits(impl, n, everyone))
    p.peer_bitfield("x", bits(impl, n, [7, 8, 9, 20]))
    p.peer_have("c0", 9)  # already had: no-op
    p.peer_bitfield("y", bits(impl, n, [8, 20]))  # 8 and 20 now at 7, 7 and 9 at 6
    p.peer_have_all("seed")  # seeds do not change the order
    assert sorted(pieces_of(p.pick("x", 8))) == [7, 9]  # availability 6 (+ the seed)
    assert sorted(pieces_of(p.pick("x", 8))) == [8, 20]  # then 7
    assert not {7, 8, 9, 20} & {b.index for b in p.pick("c1", 4 * 26)}
    p._validate()


def test_ties_are_broken_at_random(impl):
    n = 64
    first = Counter()
    for seed in range(40):
        p = make(impl, geo(n), seed=seed)
        p.peer_have_all("s")
        first[p.pick("s", 1)[0].index] += 1
    assert len(first) >= 15  # 40 draws spread over many of the 64 equally rare pieces


def test_random_first_until_enough_pieces_are_complete(impl):
    n = 40
    rare = 33
    picks = Counter()
    for seed in range(30):
        p = make(impl, geo(n), seed=seed, random_first=2)
        p.peer_bitfield("a", bits(impl, n, range(n)))
        p.peer_bitfield("b", bits(impl, n, [i for i in range(n) if i != rare]))
        picks[p.pick("a", 4)[0].index] += 1
    assert picks[rare] < 10  # random, not rarest: the rare piece is not always first

    p = make(impl, geo(n), seed=1, random_first=2)
    p.peer_bitfield("a", bits(impl, n, range(n)))
    p.peer_bitfield("b", bits(impl, n, [i for i in range(n) if i != rare]))
    for _ in range(2):
        deliver(p, "a", p.pick("a", 4))
    assert p.have.count() == 2
    assert p.pick("a", 4)[0].index == rare or rare in p.have.iter_set()


def test_random_first_picks_whole_pieces(impl):
    p = make(impl, geo(20), random_first=4)
    p.peer_have_all("s")
    blocks = p.pick("s", 8)
    assert len(pieces_of(blocks)) == 2 and all(
        sum(b.index == i for b in blocks) == 4 for i in pieces_of(blocks)
    )


# --------------------------------------------------------------------- partial pieces, whole pieces


def test_a_peer_keeps_filling_its_piece_and_others_start_new_ones(impl):
    n = 10
    p = make(impl, geo(n))
    p.peer_have_all("a")
    p.peer_have_all("b")
    a1 = p.pick("a", 2)
    piece = a1[0].index
    assert {b.index for b in a1} == {piece}
    b1 = p.pick("b", 4)
    assert piece not in {b.index for b in b1}
    a2 = p.pick("a", 2)
    assert [b.index for b in a2] == [piece, piece]
    assert {b.begin for b in a1 + a2} == {k * BLOCK_SIZE for k in range(4)}
    p._validate()


def test_partial_pieces_are_finished_first(impl):
    n = 10
    p = make(impl, geo(n))
    p.peer_have_all("a")
    p.peer_have_all("b")
    a = p.pick("a", 3)
    piece = a[0].index
    deliver(p, "a", a[:2])
    freed = p.peer_gone("a")
    assert freed == [a[2]]
    assert [pp.index for pp in p.partials()] == [piece]
    got = p.pick("b", 2)
    assert {b.index for b in got} == {piece}
    assert sorted(b.begin for b in got) == [2 * BLOCK_SIZE, 3 * BLOCK_SIZE]
    p._validate()


def test_pieces_being_filled_are_shared_only_when_nothing_else_fits(impl):
    n = 6
    p = make(impl, geo(n))
    p.peer_have_all("a")
    p.peer_bitfield("b", bits(impl, n, [0, 1]))
    a = p.pick("a", 2)
    piece = a[0].index
    other = 1 - piece if piece in (0, 1) else 0
    got = p.pick("b", 8)
    if piece in (0, 1):  # b starts the other piece, then helps with a's leftovers
        assert pieces_of(got) == [other, piece] and len(got) == 4 + 2
    else:
        assert {b.index for b in got} == {0, 1}
    p._validate()


# --------------------------------------------------------------------- endgame


def test_endgame_duplicates_and_cancels(impl):
    n = 2
    p = make(impl, geo(n))
    for k in "abc":
        p.peer_have_all(k)
    a = p.pick("a", 8)
    assert len(a) == 8 and p.in_endgame
    b = p.pick("b", 100)
    assert sorted(b) == sorted(a)  # every block once more, never twice to b
    assert p.pick("b", 10) == []  # not the same peer twice
    assert p.pick("c", 10) == []  # bounded: two requesters per block by default
    r = p.block_received("b", a[0].index, a[0].begin)
    assert r.new and list(r.cancel) == ["a"]
    assert a[0] not in p.outstanding("a")
    assert p.block_received("a", a[0].index, a[0].begin) == Received(False, False, ())
    p._validate()


def test_endgame_bound_is_configurable(impl):
    p = make(impl, geo(1), endgame_requesters=3)
    for k in "abcd":
        p.peer_have_all(k)
    a = p.pick("a", 4)
    assert len(p.pick("b", 4)) == 4 and len(p.pick("c", 4)) == 4 and p.pick("d", 4) == []
    r = p.block_received("c", a[1].index, a[1].begin)
    assert sorted(r.cancel) == ["a", "b"]

    off = make(impl, geo(1), endgame_requesters=1)
    off.peer_have_all("a")
    off.peer_have_all("b")
    off.pick("a", 4)
    assert off.pick("b", 4) == []


def test_no_endgame_while_a_peer_could_serve_a_free_block(impl):
    n = 3
    p = make(impl, geo(n))
    p.peer_bitfield("a", bits(impl, n, [0]))
    p.peer_bitfield("b", bits(impl, n, [0, 1]))
    p.pick("a", 4)
    assert not p.in_endgame  # piece 1 is free and b has it
    assert p.pick("a", 4) == []  # so no duplicates for a yet
    p.pick("b", 4)
    assert p.in_endgame  # piece 2 is free but nobody has it
    assert p.pick("a", 4) == []  # a's only piece is requested from a itself
    assert {b.index for b in p.pick("b", 4)} == {0}
    p._validate()


# --------------------------------------------------------------------- priorities


def test_priority_zero_is_never_picked(impl):
    n = 8
    p = make(impl, geo(n))
    p.set_piece_priorities([0, 1, 0, 1, 0, 1, 0, 1])
    p.peer_have_all("s")
    got = {b.index for b in p.pick("s", 100)}
    assert got == {1, 3, 5, 7}
    assert p.wanted_remaining == 4


def test_higher_priority_first(impl):
    n = 8
    p = make(impl, geo(n))
    p.set_piece_priorities([1, 1, 7, 1, 4, 1, 1, 1])
    p.peer_have_all("s")
    assert pieces_of(p.pick("s", 8)) == [2, 4]


def test_file_priorities_keep_shared_pieces(impl):
    # Files of 100, 30 and 70 KiB in 64 KiB pieces: piece 1 holds the end of file 0
    # and all of file 1, piece 2 the end of file 1 and file 2's start.
    g = Geometry(64 * KiB, (100 * KiB, 30 * KiB, 70 * KiB))
    assert [list(g.file_pieces(f)) for f in range(3)] == [[0, 1], [1, 2], [2, 3]]
    p = make(impl, g)
    p.set_file_priorities([0, 1, 0])
    assert [p.piece_priority(i) for i in range(4)] == [0, 1, 1, 0]
    p.peer_have_all("s")
    assert {b.index for b in p.pick("s", 100)} == {1, 2}

    q = make(impl, Geometry(64 * KiB, (400 * KiB, 0, 100 * KiB)))  # interior pieces too
    q.set_file_priorities([3, 7, 0])
    assert [q.piece_priority(i) for i in range(8)] == [3, 3, 3, 3, 3, 3, 3, 0]
    with pytest.raises(ValueError):
        q.set_file_priorities([1, 1])
    with pytest.raises(ValueError):
        q.set_piece_priorities([8] * 8)


def test_deprioritised_partial_gets_no_more_requests(impl):
    p = make(impl, geo(3))
    p.peer_have_all("s")
    first = p.pick("s", 2)
    piece = first[0].index
    prios = [1, 1, 1]
    prios[piece] = 0
    p.set_piece_priorities(prios)
    assert piece not in {b.index for b in p.pick("s", 100)}
    p._validate()


# --------------------------------------------------------------------- choking, BEP 6


def test_choked_peers_get_only_allowed_fast_pieces(impl):
    n = 20
    p = make(impl, geo(n))
    p.peer_have_all("a")
    assert p.pick("a", 10, choked=True) == []
    got = p.pick("a", 100, choked=True, allowed_fast=[3, 11, 25])
    assert {b.index for b in got} == {3, 11}
    p._validate()


def test_a_choked_filler_leaves_its_piece_to_others(impl):
    p = make(impl, geo(4))
    p.peer_have_all("a")
    p.peer_have_all("b")
    piece = p.pick("a", 1)[0].index
    p.peer_choked("a")
    assert len(p.outstanding("a")) == 1  # BEP 6: requests stand until rejected
    assert {b.index for b in p.pick("b", 3)} == {piece}


def test_release_frees_everything_outstanding(impl):
    p = make(impl, geo(4))
    p.peer_have_all("a")
    p.peer_have_all("b")
    a = p.pick("a", 6)
    assert sorted(p.release("a")) == sorted(a)
    assert p.outstanding("a") == [] and p.num_outstanding("a") == 0
    assert sorted(p.pick("b", 6)) == sorted(a)  # partials first, in the same pieces
    p._validate()


# --------------------------------------------------------------------- rejects, timeouts, snubs


def test_rejected_block_is_free_again(impl):
    p = make(impl, geo(2))
    p.peer_have_all("a")
    p.peer_have_all("b")
    a = p.pick("a", 4)
    assert p.block_rejected("a", a[1].index, a[1].begin)
    assert not p.block_rejected("a", a[1].index, a[1].begin)  # not outstanding any more
    assert not p.block_rejected("a", a[2].index, a[2].begin + 1)
    assert not p.block_rejected("b", a[2].index, a[2].begin)  # outstanding, but not at b
    assert p.pick("b", 1) == [a[1]]
    p._validate()


def test_a_timed_out_request_is_cancelled_and_goes_to_another_peer(impl):
    """The engine's timeout: the requests made at or before ``now - timeout`` are
    cancelled (``block_rejected``); another peer gets them, and a copy the slow
    peer still sends is dropped."""
    p = make(impl, geo(2))
    p.peer_have_all("slow")
    p.peer_have_all("fast")
    s = p.pick("slow", 2, now=10.0) + p.pick("slow", 2, now=20.0)
    overdue = p.requests_before("slow", 25.0 - 10.0)
    assert overdue == s[:2]
    for b in overdue:
        assert p.block_rejected("slow", b.index, b.begin)
    assert p.oldest_request("slow") == 20.0
    assert p.pick("fast", 2, now=25.0) == s[:2]  # partial first: the freed blocks
    r = p.block_received("slow", s[0].index, s[0].begin)  # it arrived after all
    assert r == Received(False, False, ())
    assert p.block_received("fast", s[0].index, s[0].begin) == Received(True, False, ())
    p._validate()


def test_a_cancelled_block_may_be_asked_again_of_the_same_peer(impl):
    p = make(impl, geo(1))
    p.peer_have_all("only")
    s = p.pick("only", 4, now=1.0)
    assert p.block_rejected("only", s[1].index, s[1].begin)
    assert p.pick("only", 4, now=2.0) == [s[1]]  # nobody else has it: asked again
    assert p.requests_before("only", 1.0) == [s[0], s[2], s[3]]
    assert p.requests_before("only", 2.0) == [s[0], s[2], s[3], s[1]]  # the new request is the newest
    assert p.block_received("only", s[1].index, s[1].begin).new
    p._validate()


def test_a_piece_whose_requests_are_all_cancelled_is_untouched_again(impl):
    p = make(impl, geo(2))
    p.peer_have_all("a")
    a = p.pick("a", 4)
    for b in a:
        assert p.block_rejected("a", b.index, b.begin)
    assert p.partials() == [] and p.num_outstanding("a") == 0
    p._validate()
    p.set_sequential(True)
    got = p.pick("a", 8)
    assert pieces_of(got) == [0, 1] and got == sorted(got)  # both untouched again


def test_snubbed_peers_take_common_pieces_and_do_not_hold_them(impl):
    n = 12
    p = make(impl, geo(n))
    common = list(range(6))
    for k in range(4):
        p.peer_bitfield(f"c{k}", bits(impl, n, common))
    p.peer_have_all("slow")
    got = p.pick("slow", 1, snubbed=True)
    assert got[0].index in common
    assert [pp.index for pp in p.partials()] == [got[0].index]
    nxt = p.pick("c0", 3)
    assert {b.index for b in nxt} == {got[0].index}  # the rest went to a healthy peer
    p._validate()


# --------------------------------------------------------------------- request times


def test_pick_records_request_times_oldest_first(impl):
    p = make(impl, geo(4))
    p.peer_have_all("a")
    assert p.oldest_request("a") is None and p.requests_before("a", 1e9) == []
    assert p.oldest_request("stranger") is None and p.requests_before("stranger", 1e9) == []
    first = p.pick("a", 3, now=10.0)
    second = p.pick("a", 6, now=20.0)
    assert p.oldest_request("a") == 10.0
    assert p.requests_before("a", 9.99) == []
    assert p.requests_before("a", 10.0) == first  # at or before the cutoff
    assert p.requests_before("a", 19.99) == first
    assert p.requests_before("a", 20.0) == first + second
    # The oldest ends only with the last request of its batch, in any order.
    for b in reversed(first[1:]):
        assert p.block_received("a", b.index, b.begin).new
        assert p.oldest_request("a") == 10.0
    assert p.block_received("a", first[0].index, first[0].begin).new
    assert p.oldest_request("a") == 20.0
    assert p.requests_before("a", 15.0) == []
    p._validate()


def test_request_times_follow_request_order_not_piece_order(impl):
    p = make(impl, geo(3))
    p.set_sequential(True)
    p.peer_have_all("a")
    p.peer_have_all("b")
    a = p.pick("a", 4, now=1.0)  # piece 0
    assert p.block_rejected("a", a[0].index, a[0].begin)
    b = p.pick("b", 4, now=2.0)  # block 0 of piece 0, then piece 1
    assert b[0] == a[0] and {x.index for x in b[1:]} == {1}
    assert p.block_rejected("b", b[0].index, b[0].begin)
    again = p.pick("a", 1, now=3.0)
    assert again == [a[0]]
    assert p.outstanding("a") == a  # piece/offset order
    assert p.requests_before("a", 3.0) == a[1:] + a[:1]  # request order
    assert p.requests_before("a", 2.5) == a[1:]
    assert p.oldest_request("a") == 1.0
    p._validate()


def test_request_times_never_go_back(impl):
    """A clock that steps back (or a caller that omits ``now``) cannot put a newer
    request before an older one."""
    p = make(impl, geo(2))
    p.peer_have_all("a")
    first = p.pick("a", 2, now=30.0)
    later = p.pick("a", 2, now=5.0)  # counts as 30.0
    later += p.pick("a", 2)  # the default 0.0 too
    assert p.requests_before("a", 29.0) == []
    assert p.requests_before("a", 30.0) == first + later
    assert p.oldest_request("a") == 30.0
    p._validate()


def test_endgame_duplicates_have_their_own_times(impl):
    p = make(impl, geo(1))
    p.peer_have_all("a")
    p.peer_have_all("b")
    a = p.pick("a", 4, now=1.0)
    b = p.pick("b", 4, now=7.0)
    assert sorted(b) == sorted(a)
    assert p.oldest_request("a") == 1.0 and p.oldest_request("b") == 7.0
    r = p.block_received("a", a[0].index, a[0].begin)
    assert list(r.cancel) == ["b"]
    assert p.requests_before("b", 7.0) == [x for x in b if x != a[0]]
    p._validate()


def test_requests_end_with_release_departure_and_verification(impl):
    p = make(impl, geo(4))
    for k in "abc":
        p.peer_have_all(k)
    p.pick("a", 4, now=1.0)
    p.release("a")
    assert p.oldest_request("a") is None and p.num_outstanding("a") == 0
    p.pick("b", 4, now=2.0)
    p.peer_gone("b")
    assert p.oldest_request("b") is None and p.requests_before("b", 9.0) == []
    c = p.pick("c", 2, now=3.0)
    p.piece_verified(c[0].index)
    assert p.oldest_request("c") is None and p.requests_before("c", 9.0) == []
    p._validate()


# --------------------------------------------------------------------- data, hash results, smart-ban


def test_block_received_filters_what_we_do_not_want(impl):
    p = make(impl, geo(3))
    p.peer_have_all("a")
    a = p.pick("a", 4)
    i = a[0].index
    assert p.block_received("a", i, 1) == Received(False, False, ())  # unaligned
    assert p.block_received("a", i, 4 * BLOCK_SIZE) == Received(False, False, ())  # past the end
    assert p.block_received("a", i, -BLOCK_SIZE) == Received(False, False, ())  # before the start
    assert p.block_received("a", i, 1 << 40) == Received(False, False, ())  # far past the end
    assert p.block_received("a", -1, 0) == Received(False, False, ())
    other = next(j for j in range(3) if j != i)
    assert not p.block_received("a", other, 0).new  # piece not in progress
    assert not p.block_received("stranger", i, 0).new
    results = [p.block_received("a", b.index, b.begin) for b in a]
    assert [r.new for r in results] == [True] * 4
    assert [r.complete for r in results] == [False, False, False, True]
    assert not p.block_received("a", i, 0).new  # duplicate
    assert p.partials()[0].pending_hash
    assert p.pick("a", 8) and i not in {b.index for b in p.outstanding("a")}
    p._validate()


def test_block_received_refuses_a_block_never_asked_of_that_peer(impl):
    p = make(impl, geo(2))
    p.peer_have_all("a")
    p.peer_have_all("b")
    a = p.pick("a", 2)
    assert p.block_received("b", a[0].index, a[0].begin) == Received(False, False, ())
    assert p.block_sources(a[0].index) == [None] * 4 and p.outstanding("a") == a  # nothing changed
    assert p.block_received("b", a[0].index, 2 * BLOCK_SIZE) == Received(False, False, ())  # free, not asked
    assert p.block_received("a", a[0].index, a[0].begin).new
    p._validate()


def test_block_received_refuses_a_block_after_release(impl):
    p = make(impl, geo(1))
    p.peer_have_all("a")
    p.peer_have_all("b")
    a = p.pick("a", 2)
    p.release("a")
    assert not p.block_received("a", a[0].index, a[0].begin).new
    assert p.pick("b", 1) == [a[0]]  # it is free, and b gets it
    assert not p.block_received("a", a[0].index, a[0].begin).new  # still not a's
    assert p.block_received("b", a[0].index, a[0].begin).new
    p._validate()


def test_block_received_refuses_a_block_after_block_rejected(impl):
    p = make(impl, geo(2))
    p.peer_have_all("a")
    a = p.pick("a", 2)
    assert p.block_rejected("a", a[1].index, a[1].begin)
    assert not p.block_received("a", a[1].index, a[1].begin).new
    assert p.block_received("a", a[0].index, a[0].begin).new
    assert p.block_sources(a[0].index) == ["a", None, None, None]
    p._validate()


def test_block_received_refuses_a_block_another_peer_delivered(impl):
    p = make(impl, geo(1))
    for k in "abc":
        p.peer_have_all(k)
    a = p.pick("a", 4)
    b = p.pick("b", 4)  # endgame: the same blocks
    assert sorted(a) == sorted(b)
    r = p.block_received("b", a[2].index, a[2].begin)
    assert r == Received(True, False, ["a"])
    assert a[2] not in p.outstanding("a") and p.num_outstanding("a") == 3
    assert p.block_received("a", a[2].index, a[2].begin) == Received(False, False, ())
    assert p.block_received("c", a[3].index, a[3].begin) == Received(False, False, ())  # c was never asked
    assert p.block_sources(0) == [None, None, "b", None]
    p._validate()


def test_block_received_refuses_a_block_from_a_peer_that_left_and_came_back(impl):
    p = make(impl, geo(2))
    p.peer_have_all("a")
    a = p.pick("a", 2)
    p.peer_gone("a")
    p.peer_have_all("a")
    assert not p.block_received("a", a[0].index, a[0].begin).new
    p._validate()


def test_verified_and_failed_pieces_report_who_sent_each_block(impl):
    p = make(impl, geo(1))
    p.peer_have_all("a")
    p.peer_have_all("b")
    a = p.pick("a", 2)
    b = p.pick("b", 2)
    deliver(p, "a", a[:1])
    assert p.block_sources(0) == ["a", None, None, None]
    for blk in a[1:]:
        p.block_received("a", blk.index, blk.begin)
    for blk in b:
        p.block_received("b", blk.index, blk.begin)
    assert p.block_sources(0) == ["a", "a", "b", "b"]  # while the hash check runs
    assert p.piece_failed(0) == ["a", "a", "b", "b"]
    assert p.block_sources(0) == []
    assert p.wanted_remaining == 1 and not p.have.get(0)
    again = p.pick("b", 4)
    assert len(again) == 4
    deliver(p, "b", again[:3])
    assert p.block_received("b", again[3].index, again[3].begin).complete
    assert p.block_sources(0) == ["b"] * 4
    assert p.piece_verified(0) == ["b"] * 4
    assert p.have.get(0) and p.done and p.piece_verified(0) == [] and p.block_sources(0) == []
    p._validate()


def test_sources_name_a_peer_that_left_before_the_hash_check(impl):
    p = make(impl, geo(1))
    p.peer_have_all("a")
    p.peer_have_all("b")
    deliver(p, "a", p.pick("a", 2))
    last = p.pick("b", 2)
    p.peer_gone("a")
    assert p.block_received("b", last[0].index, last[0].begin).new
    assert p.block_received("b", last[1].index, last[1].begin).complete
    assert p.block_sources(0) == ["a", "a", "b", "b"]
    assert p.piece_failed(0, reserve_for="a") == ["a", "a", "b", "b"]  # a is gone: no reservation
    assert p.partials() == []
    p._validate()


def test_failed_piece_reserved_for_one_peer(impl):
    p = make(impl, geo(3))
    for k in "abc":
        p.peer_have_all(k)
    got = p.pick("a", 4)
    piece = got[0].index
    deliver_blocks = [p.block_received("a", b.index, b.begin) for b in got]
    assert deliver_blocks[-1].complete
    p.piece_failed(piece, reserve_for="b")
    assert piece not in {b.index for b in p.pick("c", 100)}  # not even in endgame
    assert {pp.index: pp.reserved_for for pp in p.partials()}[piece] == "b"
    b = p.pick("b", 2)
    assert {x.index for x in b} == {piece}
    assert not p.block_received("c", piece, 2 * BLOCK_SIZE).new  # only b may deliver
    p._validate()
    p.peer_gone("b")  # the reservation lapses with the peer
    assert {x.index for x in p.pick("c", 4)} == {piece}
    p._validate()


def test_a_reserved_piece_is_asked_again_of_its_peer_after_a_cancel(impl):
    p = make(impl, geo(1))
    p.peer_have_all("a")
    p.peer_have_all("b")
    deliver_all = [p.block_received("a", b.index, b.begin) for b in p.pick("a", 4)]
    assert deliver_all[-1].complete
    p.piece_failed(0, reserve_for="a")
    again = p.pick("a", 4, now=5.0)
    assert p.block_rejected("a", again[0].index, again[0].begin)  # timed out: cancelled
    assert p.pick("b", 4) == []  # reserved: b may not help
    assert p.pick("a", 4, now=6.0) == [again[0]]  # so a is asked again
    assert p.requests_before("a", 5.0) == again[1:]
    p._validate()


def test_reservation_can_be_lifted_and_wants_a_pending_piece(impl):
    p = make(impl, geo(2))
    p.peer_have_all("a")
    p.peer_have_all("b")
    with pytest.raises(ValueError):
        p.piece_failed(0)
    got = p.pick("a", 4)
    deliver_all = [p.block_received("a", b.index, b.begin) for b in got]
    assert deliver_all[-1].complete
    p.piece_failed(got[0].index, reserve_for="a")
    p.unreserve(got[0].index)
    assert got[0].index in {b.index for b in p.pick("b", 8)}
    p._validate()


def test_piece_verified_for_a_piece_in_progress_drops_its_requests(impl):
    p = make(impl, geo(2))
    p.peer_have_all("a")
    a = p.pick("a", 2)
    p.piece_verified(a[0].index)
    assert p.outstanding("a") == [] and p.have.get(a[0].index)
    assert not p.block_received("a", a[0].index, a[0].begin).new
    p._validate()


# --------------------------------------------------------------------- who is asked for what


def test_block_requesters_name_the_peers_each_block_is_outstanding_at(impl):
    p = make(impl, geo(2), endgame_requesters=3)
    p.set_sequential(True)
    for k in "abc":
        p.peer_have_all(k)
    assert p.block_requesters(0) == [] and p.block_requesters(1) == []  # not in progress
    p.pick("a", 2)  # blocks 0, 1 of piece 0
    assert p.block_requesters(0) == [("a",), ("a",), (), ()]
    p.pick("b", 6)  # the rest of piece 0, then piece 1
    assert p.block_requesters(0) == [("a",), ("a",), ("b",), ("b",)]
    assert p.block_requesters(1) == [("b",)] * 4
    p.pick("c", 3)  # endgame: duplicates of piece 0's blocks first
    assert p.block_requesters(0) == [("a", "c"), ("a", "c"), ("b", "c"), ("b",)]
    p.block_received("c", 0, 0)
    assert p.block_requesters(0) == [(), ("a", "c"), ("b", "c"), ("b",)]
    p.block_rejected("a", 0, BLOCK_SIZE)
    assert p.block_requesters(0) == [(), ("c",), ("b", "c"), ("b",)]
    p.peer_gone("b")
    assert p.block_requesters(0) == [(), ("c",), ("c",), ()]
    assert p.block_requesters(1) == []  # nothing left of piece 1: untouched again
    p._validate()


# --------------------------------------------------------------------- sequential download


def test_sequential_starts_the_lowest_untouched_piece_not_the_rarest(impl):
    n = 10
    p = make(impl, geo(n))
    p.peer_have_all("a")
    p.peer_bitfield("b", bits(impl, n, range(n - 1)))
    p.peer_bitfield("c", bits(impl, n, [4, 9]))  # 9 and 4 are the rarest
    assert not p.sequential
    p.set_sequential(True)
    assert p.sequential
    assert pieces_of(p.pick("a", 12)) == [0, 1, 2]
    assert pieces_of(p.pick("c", 8)) == [4, 9]  # the lowest it has
    assert pieces_of(p.pick("b", 8)) == [3, 5]
    p.peer_bitfield("d", bits(impl, n, [6, 7]))  # 8 is now the rarest piece left
    assert pieces_of(p.pick("a", 4)) == [6]
    p.set_sequential(False)
    assert not p.sequential
    assert pieces_of(p.pick("a", 4)) == [8]  # rarest first again
    p._validate()


def test_sequential_ignores_random_first(impl):
    for seed in range(6):
        p = make(impl, geo(30), seed=seed, random_first=10)
        p.peer_have_all("s")
        p.set_sequential(True)
        assert pieces_of(p.pick("s", 16)) == [0, 1, 2, 3]


def test_sequential_within_each_priority_level(impl):
    p = make(impl, geo(8))
    p.set_sequential(True)
    p.set_piece_priorities([1, 0, 1, 7, 1, 4, 4, 1])
    p.peer_have_all("s")
    assert pieces_of(p.pick("s", 100)) == [3, 5, 6, 0, 2, 4, 7]
    p._validate()


def test_sequential_finishes_open_partials_first(impl):
    p = make(impl, geo(8))
    p.set_sequential(True)
    for k in "abc":
        p.peer_have_all(k)
    assert pieces_of(p.pick("a", 4)) == [0]
    b = p.pick("b", 8)
    assert pieces_of(b) == [1, 2]
    assert p.block_received("b", 2, 0).new
    p.peer_gone("b")  # piece 1 is untouched again, piece 2 is an open partial
    c = p.pick("c", 8)
    assert pieces_of(c) == [2, 1, 3] and len(c) == 3 + 4 + 1
    p._validate()


def test_sequential_snubbed_peers_and_allowed_fast(impl):
    p = make(impl, geo(8))
    p.set_sequential(True)
    p.peer_have_all("slow")
    p.peer_have_all("a")
    p.peer_have_all("choked")
    assert p.pick("slow", 1, snubbed=True) == [Block(0, 0, BLOCK_SIZE)]
    assert pieces_of(p.pick("a", 4)) == [0, 1]  # slow holds nothing: a finishes piece 0 first
    assert pieces_of(p.pick("choked", 8, choked=True, allowed_fast=[6, 3])) == [3, 6]
    p._validate()


# --------------------------------------------------------------------- file priorities, first and last piece


def _files() -> Geometry:
    # Files of 300, 10 (a pad file), 400 and 64 KiB in 64 KiB pieces: pieces 0-4,
    # 4, 4-11 and 11-12.
    g = Geometry(64 * KiB, (300 * KiB, 10 * KiB, 400 * KiB, 64 * KiB))
    assert [g.file_pieces(f) for f in range(4)] == [range(0, 5), range(4, 5), range(4, 12), range(11, 13)]
    return g


def test_first_and_last_piece_of_every_wanted_file_come_first(impl):
    p = make(impl, _files())
    p.set_file_priorities([1, 0, 2, 0])
    assert [p.piece_priority(i) for i in range(13)] == [1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 0]
    p.set_file_priorities([1, 0, 2, 0], first_last=True)
    assert [p.piece_priority(i) for i in range(13)] == [7, 1, 1, 1, 7, 2, 2, 2, 2, 2, 2, 7, 0]
    p.peer_have_all("s")
    assert sorted(pieces_of(p.pick("s", 12))) == [0, 4, 11]
    p._validate()


def test_first_last_skips_files_not_wanted(impl):
    p = make(impl, _files())
    p.set_file_priorities([0, 0, 3, 1], first_last=True)  # file 0 (and its first piece) skipped
    assert [p.piece_priority(i) for i in range(13)] == [0, 0, 0, 0, 7, 3, 3, 3, 3, 3, 3, 7, 7]
    p.set_file_priorities([0, 5, 0, 0], first_last=True)  # a one-piece file: its piece
    assert [p.piece_priority(i) for i in range(13)] == [0, 0, 0, 0, 7] + [0] * 8
    assert p.wanted_remaining == 1


def test_piece_priorities_function(impl):
    g = _files()
    assert piece_priorities(g, [1, 0, 2, 0]) == bytearray([1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 0])
    assert piece_priorities(g, [4, 4, 4, 4], first_last=True) == bytearray([7, 4, 4, 4, 7, 4, 4, 4, 4, 4, 4, 7, 7])
    assert piece_priorities(g, [0, 0, 0, 0], first_last=True) == bytearray(13)
    with pytest.raises(ValueError):
        piece_priorities(g, [1, 1, 1])
    with pytest.raises(ValueError):
        piece_priorities(g, [1, 1, 1, MAX_PRIORITY + 1])


# --------------------------------------------------------------------- availability map


def _expected_map(p: PiecePicker) -> bytes:
    return bytes(min(255, p.availability(i)) for i in range(p.num_pieces))


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 63, 64, 65, 200, 1001])
def test_availability_bytes_matches_availability_on_random_swarms(impl, n):
    for seed in range(8):
        rng = random.Random(seed * 1000 + n)
        p = make(impl, geo(n) if n else Geometry(16 * KiB, ()))
        assert p.availability_bytes() == bytes(n)
        npeers = rng.randrange(1, 60)
        for k in range(npeers):
            if rng.random() < 0.1:
                p.peer_have_all(k)
            else:
                density = rng.random()
                p.peer_bitfield(k, bits(impl, n, [i for i in range(n) if rng.random() < density]))
        for _ in range(rng.randrange(50)):
            if n:
                p.peer_have(rng.randrange(npeers), rng.randrange(n))
        for k in range(0, npeers, 4):
            p.peer_gone(k)
        got = p.availability_bytes()
        assert isinstance(got, bytes) and got == _expected_map(p), (n, seed)


def test_availability_bytes_saturates_with_many_peers_and_seeds(impl):
    n = 21
    p = make(impl, geo(n))
    # Piece i is had by 16 * i non-seed peers: 0 … 320, nine planes.
    for k in range(320):
        p.peer_bitfield(k, bits(impl, n, [i for i in range(n) if k < 16 * i]))
    expect = [min(255, 16 * i) for i in range(n)]
    assert [p.availability(i) for i in range(n)] == [16 * i for i in range(n)]
    assert list(p.availability_bytes()) == expect
    for s in range(200):
        p.peer_have_all(f"s{s}")
    assert list(p.availability_bytes()) == [min(255, 200 + 16 * i) for i in range(n)]
    for k in range(320):
        p.peer_gone(k)
    assert list(p.availability_bytes()) == [200] * n
    for s in range(200, 254):
        p.peer_have_all(f"s{s}")
    assert list(p.availability_bytes()) == [254] * n
    p.peer_bitfield("x", bits(impl, n, [3]))
    assert list(p.availability_bytes()) == [254] * 3 + [255] + [254] * (n - 4)
    for s in range(254, 400):
        p.peer_have_all(f"s{s}")
    assert p.availability_bytes() == b"\xff" * n
    p._validate()


def test_availability_bytes_saturates_on_the_bulk_path(impl):
    n, rng = 1000, random.Random(3)
    p = make(impl, geo(n))
    for k in range(280):  # big bitfields: the ripple-carry path, nine planes
        p.peer_bitfield(k, bits(impl, n, [i for i in range(n) if rng.random() < 0.9]))
    for s in range(rng.randrange(3)):
        p.peer_have_all(f"s{s}")
    got = p.availability_bytes()
    assert got == _expected_map(p)
    assert 255 in got and min(got) < 255  # both sides of the saturation


# --------------------------------------------------------------------- random sequences

N_PIECES = 8  # 7 full pieces of 3 blocks and a short last one (a block and 100 bytes)
PIECE_LEN = 3 * BLOCK_SIZE
TAIL = BLOCK_SIZE + 100
PEER_KEYS = ["p0", "p1", "p2", "p3", "p4"]
TIMEOUT = 5.0


class Model:
    """One picker under arbitrary events, checked against a model of the swarm, of
    every request outstanding (with its time) and of who sent each block. Each
    ``do_*`` applies one event with explicit arguments; the Hypothesis state machine
    and the seeded random walk below both drive it. Timeouts are the engine's: the
    requests made at or before ``now - TIMEOUT`` are cancelled (``block_rejected``),
    and the peer may still send them."""

    def __init__(self, cls: type, seed: int, have: set[int], random_first: int, requesters: int) -> None:
        self.cls = cls
        self.g = geo(N_PIECES - 1, PIECE_LEN, TAIL)
        assert self.g.num_pieces == N_PIECES
        self.picker = PiecePicker(self.g, bits(cls, N_PIECES, have), rng=random.Random(seed),
                                  random_first=random_first, endgame_requesters=requesters)
        self.pieces: dict[str, set[int]] = {}  # connected peers → what they have
        self.out: dict[str, dict[Block, float]] = {}  # every request outstanding, per peer, in request order
        self.stale: dict[str, set[Block]] = {}  # cancelled at a peer that may still send (or reject) them
        self.got: dict[int, dict[int, str]] = {}  # pieces in progress: block number → sender
        self.reserved: dict[int, str] = {}
        self.prio = [1] * N_PIECES
        self.now = 0.0
        self.sequential = False
        self.stats: Counter = Counter()

    def block(self, index: int, begin: int) -> Block:
        return Block(index, begin, min(BLOCK_SIZE, self.g.piece_size(index) - begin))

    # -- swarm
    def _join(self, peer: str, pieces: set[int]) -> None:
        self.pieces[peer] = set(pieces)
        self.out[peer] = {}
        self.stale[peer] = set()

    def do_bitfield(self, peer: str, pieces: set[int]) -> None:
        if peer in self.pieces:
            return  # a second bitfield is a protocol error the engine deals with
        self.picker.peer_bitfield(peer, bits(self.cls, N_PIECES, pieces))
        self._join(peer, pieces)

    def do_have_all(self, peer: str) -> None:
        if peer in self.pieces:
            return
        self.picker.peer_have_all(peer)
        self._join(peer, set(range(N_PIECES)))

    def do_have(self, peer: str, index: int) -> None:
        need = self.picker.peer_have(peer, index)
        if peer not in self.pieces:
            self._join(peer, set())
        known = self.pieces[peer]
        assert need == (index not in known and not self.picker.have.get(index) and self.prio[index] > 0)
        known.add(index)

    def do_gone(self, peer: str) -> None:
        freed = self.picker.peer_gone(peer)
        assert freed == sorted(self.out.pop(peer, {}))
        self.stale.pop(peer, None)  # a peer that left sends nothing more
        self.pieces.pop(peer, None)
        for i, who in list(self.reserved.items()):
            if who == peer:
                del self.reserved[i]

    def do_priorities(self, prio: list[int]) -> None:
        self.picker.set_piece_priorities(prio)
        self.prio = list(prio)

    def do_sequential(self, on: bool) -> None:
        self.picker.set_sequential(on)
        self.sequential = on
        assert self.picker.sequential is on

    def do_tick(self, dt: float) -> None:
        self.now += dt

    # -- requests
    def do_pick(self, peer: str, count: int, choked: bool, fast: set[int], snubbed: bool) -> None:
        p = self.picker
        was_endgame = p.in_endgame
        started = {pp.index for pp in p.partials()}
        blocks = p.pick(peer, count, now=self.now, allowed_fast=fast, choked=choked, snubbed=snubbed)
        assert len(blocks) <= count
        assert len(set(blocks)) == len(blocks)
        if peer not in self.pieces:
            assert blocks == []
            return
        self.stats["blocks picked"] += len(blocks)
        mine = self.out[peer]
        for b in blocks:
            i = b.index
            assert not p.have.get(i), "picked a piece we have"
            assert self.prio[i] > 0, "picked a skipped piece"
            assert i in self.pieces[peer], "picked a piece the peer lacks"
            assert b not in mine, "same block twice to one peer"
            if choked:
                assert i in fast, "choked peer got a piece outside its allowed-fast set"
            assert b == self.block(i, b.begin) and b.begin % BLOCK_SIZE == 0
            if i in self.reserved:
                assert self.reserved[i] == peer, "reserved piece given to another peer"
        dup = [b for b in blocks if any(b in o for k, o in self.out.items() if k != peer)]
        if dup:
            self.stats["endgame duplicates"] += len(dup)
            assert p.in_endgame or was_endgame, "a block went to two peers outside endgame"
            assert p.endgame_requesters > 1 and not snubbed
            for b in dup:
                assert sum(b in o for o in self.out.values()) < p.endgame_requesters
        # Untouched pieces start highest priority first; lowest index first within a
        # priority in sequential mode (and among allowed-fast pieces).
        untouched = {i for i in self.pieces[peer] - started if self.prio[i] and not p.have.get(i)}
        if choked:
            untouched &= fast
        new = {b.index for b in blocks} - started
        for s in new:
            for f in untouched - new:
                assert self.prio[f] <= self.prio[s], "started a piece of lower priority"
                if self.sequential or choked:
                    assert not (self.prio[f] == self.prio[s] and f < s), "out of sequence"
        if self.sequential and new:
            self.stats["sequential starts"] += len(new)
        for b in blocks:
            mine[b] = self.now

    def outstanding(self) -> list[tuple[str, Block]]:
        return sorted((k, b) for k, o in self.out.items() for b in o)

    def stale_copies(self) -> list[tuple[str, Block]]:
        return sorted((k, b) for k, s in self.stale.items() for b in s)

    def do_receive(self, peer: str, b: Block) -> None:
        """``peer`` delivers a block outstanding there: always wanted."""
        was_outstanding_at = {k for k, o in self.out.items() if b in o}
        assert peer in was_outstanding_at
        r = self.picker.block_received(peer, b.index, b.begin)
        assert r.new, "an outstanding block was refused"
        assert sorted(r.cancel) == sorted(was_outstanding_at - {peer})
        for k in was_outstanding_at:
            del self.out[k][b]
            if k != peer:
                self.stale[k].add(b)  # cancelled there: its copy may still come
        self.got.setdefault(b.index, {})[b.begin // BLOCK_SIZE] = peer
        self.stats["blocks received"] += 1
        self.stats["cancels"] += len(r.cancel)
        if r.complete:
            assert b.index in self.pending()

    def do_stale(self, peer: str, b: Block, reject: bool) -> None:
        """A copy (or a BEP 6 reject) of a block cancelled at ``peer``: refused,
        unless the block has been asked of that peer again since."""
        self.stale[peer].discard(b)
        if b in self.out[peer]:
            if reject:
                self.do_reject(peer, b)
            else:
                self.do_receive(peer, b)
            return
        if reject:
            assert not self.picker.block_rejected(peer, b.index, b.begin)
        else:
            assert self.picker.block_received(peer, b.index, b.begin) == Received(False, False, ())
            self.stats["late copies dropped"] += 1

    def do_unsolicited(self, peer: str, index: int, begin: int) -> None:
        """Any block from any peer: wanted exactly when it is outstanding there."""
        if begin < self.g.piece_size(index) and self.block(index, begin) in self.out.get(peer, {}):
            self.do_receive(peer, self.block(index, begin))
            return
        assert self.picker.block_received(peer, index, begin) == Received(False, False, ())

    def do_reject(self, peer: str, b: Block) -> None:
        """A ``reject``, or our ``cancel``."""
        p = self.picker
        assert p.block_rejected(peer, b.index, b.begin)
        assert not p.block_rejected(peer, b.index, b.begin)
        del self.out[peer][b]

    def do_timeout(self, peer: str) -> None:
        """The engine's timer: cancel every request made at or before ``now - TIMEOUT``."""
        cutoff = self.now - TIMEOUT
        mine = self.out.get(peer, {})
        overdue = self.picker.requests_before(peer, cutoff)
        assert overdue == [b for b, t in mine.items() if t <= cutoff]
        for b in overdue:
            self.do_reject(peer, b)
            self.stale[peer].add(b)
        self.stats["timeouts"] += len(overdue)

    def do_release(self, peer: str, choke: bool) -> None:
        if choke:
            self.picker.peer_choked(peer)
            return
        freed = self.picker.release(peer)
        assert freed == sorted(self.out.get(peer, {}))
        if peer in self.out:
            self.stale[peer].update(self.out[peer])
            self.out[peer].clear()

    # -- hash results
    def pending(self) -> list[int]:
        return [pp.index for pp in self.picker.partials() if pp.pending_hash]

    def _sources(self, i: int) -> list[str]:
        got = self.got.pop(i)
        return [got[b] for b in range(self.g.num_blocks(i))]

    def do_verify(self, i: int) -> None:
        expect = self._sources(i)
        assert self.picker.block_sources(i) == expect
        assert self.picker.piece_verified(i) == expect
        if i in self.reserved:
            assert set(expect) == {self.reserved[i]}, "a reserved piece came from another peer"
        self.reserved.pop(i, None)
        self.stats["verified"] += 1

    def do_fail(self, i: int, reserve: str | None) -> None:
        expect = self._sources(i)
        assert self.picker.block_sources(i) == expect
        assert self.picker.piece_failed(i, reserve_for=reserve) == expect
        self.reserved.pop(i, None)
        if reserve is not None and reserve in self.pieces:
            self.reserved[i] = reserve
            self.stats["reserved"] += 1

    # -- invariants
    def check(self) -> None:
        p = self.picker
        p._validate()
        for i in range(N_PIECES):
            assert p.availability(i) == sum(i in s for s in self.pieces.values())
        assert p.availability_bytes() == bytes(p.availability(i) for i in range(N_PIECES))
        for k in PEER_KEYS:
            mine = self.out.get(k, {})
            assert p.outstanding(k) == sorted(mine)
            assert p.num_outstanding(k) == len(mine)
            assert p.requests_before(k, math.inf) == list(mine)
            assert p.oldest_request(k) == next(iter(mine.values()), None)
        in_progress = {pp.index for pp in p.partials()}
        assert set(self.got) <= in_progress
        for i in in_progress:
            requesters = p.block_requesters(i)
            sources = p.block_sources(i)
            assert len(requesters) == len(sources) == self.g.num_blocks(i)
            for n in range(self.g.num_blocks(i)):
                b = self.block(i, n * BLOCK_SIZE)
                assert sorted(requesters[n]) == sorted(k for k, o in self.out.items() if b in o)
                assert sources[n] == self.got.get(i, {}).get(n)
        for i, k in self.reserved.items():
            assert {pp.index: pp.reserved_for for pp in p.partials()}[i] == k
        assert p.wanted_remaining == sum(
            1 for i in range(N_PIECES) if self.prio[i] and not p.have.get(i)
        )


pieces_st = st.sets(st.integers(0, N_PIECES - 1))
peer_st = st.sampled_from(PEER_KEYS)


class PickerMachine(RuleBasedStateMachine):
    m: Model

    @initialize(seed=st.integers(0, 2**16), pure=st.booleans(),
                have=st.sets(st.integers(0, N_PIECES - 1), max_size=3),
                random_first=st.integers(0, 3), requesters=st.integers(1, 3),
                peers=st.lists(st.sets(st.integers(0, N_PIECES - 1), min_size=3), max_size=3))
    def start(self, seed, pure, have, random_first, requesters, peers):
        self.m = Model(PyBitfield if pure else compiled_bitfield_class(), seed, have, random_first, requesters)
        for k, pieces in zip(PEER_KEYS, peers):
            self.m.do_bitfield(k, pieces)

    @rule(peer=peer_st, pieces=pieces_st)
    def bitfield(self, peer, pieces):
        self.m.do_bitfield(peer, pieces)

    @rule(peer=peer_st)
    def have_all(self, peer):
        self.m.do_have_all(peer)

    @rule(peer=peer_st, index=st.integers(0, N_PIECES - 1))
    def have(self, peer, index):
        self.m.do_have(peer, index)

    @rule(peer=peer_st)
    def gone(self, peer):
        self.m.do_gone(peer)

    @rule(prio=st.lists(st.integers(0, 3), min_size=N_PIECES, max_size=N_PIECES))
    def priorities(self, prio):
        self.m.do_priorities(prio)

    @rule(on=st.booleans())
    def sequential(self, on):
        self.m.do_sequential(on)

    @rule(dt=st.sampled_from([0.0, 1.0, 2.5, TIMEOUT]))
    def tick(self, dt):
        self.m.do_tick(dt)

    @rule(data=st.data(), count=st.integers(0, 12),
          choked=st.sampled_from([False, False, False, True]),
          fast=st.sets(st.integers(0, N_PIECES - 1), max_size=3),
          snubbed=st.sampled_from([False, False, False, True]))
    def pick(self, data, count, choked, fast, snubbed):
        connected = sorted(self.m.pieces)  # mostly known peers, sometimes a stranger
        peer = data.draw(st.sampled_from(connected + ["stranger"] if connected else PEER_KEYS))
        self.m.do_pick(peer, count, choked, fast, snubbed)

    @precondition(lambda self: self.m.outstanding())
    @rule(data=st.data())
    def receive(self, data):
        self.m.do_receive(*data.draw(st.sampled_from(self.m.outstanding())))

    @precondition(lambda self: self.m.outstanding())
    @rule(data=st.data())
    def deliver_queue(self, data):
        """A peer sends everything it was asked for."""
        peer = data.draw(st.sampled_from(sorted({k for k, _ in self.m.outstanding()})))
        for b in list(self.m.out[peer]):
            if b in self.m.out[peer]:
                self.m.do_receive(peer, b)

    @precondition(lambda self: self.m.outstanding())
    @rule(data=st.data())
    def reject(self, data):
        self.m.do_reject(*data.draw(st.sampled_from(self.m.outstanding())))

    @rule(peer=peer_st)
    def timeout(self, peer):
        self.m.do_timeout(peer)

    @precondition(lambda self: self.m.stale_copies())
    @rule(data=st.data(), reject=st.booleans())
    def stale(self, data, reject):
        self.m.do_stale(*data.draw(st.sampled_from(self.m.stale_copies())), reject)

    @rule(peer=peer_st, choke=st.booleans())
    def release(self, peer, choke):
        self.m.do_release(peer, choke)

    @rule(peer=peer_st, index=st.integers(0, N_PIECES - 1), begin=st.integers(0, 4 * BLOCK_SIZE))
    def unsolicited(self, peer, index, begin):
        self.m.do_unsolicited(peer, index, begin)

    @precondition(lambda self: self.m.pending())
    @rule(data=st.data())
    def verify(self, data):
        self.m.do_verify(data.draw(st.sampled_from(self.m.pending())))

    @precondition(lambda self: self.m.pending())
    @rule(data=st.data(), reserve=st.sampled_from([None, *PEER_KEYS]))
    def fail(self, data, reserve):
        self.m.do_fail(data.draw(st.sampled_from(self.m.pending())), reserve)

    @invariant()
    def consistent(self):
        self.m.check()


TestPickerMachine = PickerMachine.TestCase
TestPickerMachine.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)


def random_walk(cls: type, seed: int, steps: int) -> Counter:
    """Long weighted random event sequences (Hypothesis favours short ones)."""
    rng = random.Random(seed)
    m = Model(cls, seed, set(rng.sample(range(N_PIECES), rng.randrange(3))), rng.randrange(4),
              rng.randrange(1, 4))

    m.do_sequential(rng.random() < 0.5)

    def some_pieces() -> set[int]:
        return {i for i in range(N_PIECES) if rng.random() < 0.6}

    events = [
        ("join", 6), ("have", 6), ("gone", 2), ("prio", 1), ("seq", 1), ("tick", 15), ("pick", 30),
        ("receive", 15), ("deliver", 4), ("reject", 3), ("timeout", 8), ("stale", 4), ("release", 2),
        ("unsolicited", 2), ("verify", 8), ("fail", 4),
    ]
    names = [e for e, _ in events]
    weights = [w for _, w in events]
    for _ in range(steps):
        ev = rng.choices(names, weights)[0]
        peer = rng.choice(PEER_KEYS)
        out = m.outstanding()
        pending = m.pending()
        stale = m.stale_copies()
        if ev == "join":
            m.do_have_all(peer) if rng.random() < 0.2 else m.do_bitfield(peer, some_pieces())
        elif ev == "have":
            m.do_have(peer, rng.randrange(N_PIECES))
        elif ev == "gone":
            m.do_gone(peer)
        elif ev == "prio":
            m.do_priorities([rng.choice([0, 1, 1, 2, 3]) for _ in range(N_PIECES)])
        elif ev == "seq":
            m.do_sequential(rng.random() < 0.5)
        elif ev == "tick":
            m.do_tick(rng.choice([0.0, 1.0, 2.0, 3.0, TIMEOUT]))
        elif ev == "pick":
            choked = rng.random() < 0.2
            fast = set(rng.sample(range(N_PIECES), rng.randrange(4)))
            m.do_pick(peer, rng.randrange(1, 12), choked, fast, rng.random() < 0.15)
        elif ev == "receive" and out:
            m.do_receive(*rng.choice(out))
        elif ev == "deliver" and out:
            k = rng.choice(out)[0]
            for b in list(m.out[k]):
                if b in m.out[k]:
                    m.do_receive(k, b)
        elif ev == "reject" and out:
            m.do_reject(*rng.choice(out))
        elif ev == "timeout":
            m.do_timeout(peer)
        elif ev == "stale" and stale:
            m.do_stale(*rng.choice(stale), rng.random() < 0.3)
        elif ev == "release":
            m.do_release(peer, rng.random() < 0.5)
        elif ev == "unsolicited":
            m.do_unsolicited(peer, rng.randrange(N_PIECES), rng.randrange(4) * BLOCK_SIZE)
        elif ev == "verify" and pending:
            m.do_verify(rng.choice(pending))
        elif ev == "fail" and pending:
            m.do_fail(rng.choice(pending), rng.choice([None, *PEER_KEYS]))
        m.check()
    return m.stats


def test_random_walks(impl):
    total: Counter = Counter()
    for seed in range(12):
        total += random_walk(impl, seed, 400)
    # The walks reach every interesting state, not just the easy ones.
    for what in ("blocks picked", "blocks received", "verified", "reserved", "endgame duplicates", "cancels",
                 "timeouts", "late copies dropped", "sequential starts"):
        assert total[what] >= 10, (what, total)


# --------------------------------------------------------------------- simulated swarm

TIMEOUT_TICKS = 12


def run_swarm(cls, seed: int, *, pieces: int = 40, fail_rate: float = 0.1, sequential: bool = False) -> Counter:
    """Fake peers that deliver at different speeds, reject, stall, leave and come
    back, and sometimes corrupt a piece (re-fetched from one peer or from anyone).
    The engine's part is played as the engine will: it asks at tick ``now``, cancels
    (``block_rejected``) what is still outstanding ``TIMEOUT_TICKS`` later, and a
    peer may ignore the cancel and send the block anyway (it must be dropped). Every
    wanted piece must complete, and the picker's record of each peer's requests and
    their times must match what the engine asked."""
    rng = random.Random(seed)
    stats: Counter = Counter()
    g = geo(pieces, 4 * BLOCK_SIZE, tail=BLOCK_SIZE // 2)
    n = g.num_pieces
    p = PiecePicker(g, bits(cls, n, rng.sample(range(n), 3)), rng=random.Random(seed), random_first=3)
    p.set_sequential(sequential)
    prio = [rng.choice([0, 1, 1, 1, 4]) for _ in range(n)]
    p.set_piece_priorities(prio)
    npeers = 6
    owners = {i: rng.randrange(npeers) for i in range(n)}  # between them, every piece
    peer_pieces = {k: {i for i in range(n) if owners[i] == k or rng.random() < 0.4} for k in range(npeers)}
    speed = {k: rng.choice([0, 1, 2, 4, 8]) for k in range(npeers)}  # 0: stalls, answers now and then
    queue: dict[int, list[Block]] = {}  # what each peer will send, in order (cancelled blocks too)
    asked: dict[int, dict[Block, float]] = {}  # what the engine expects from each peer, with request times
    connected: set[int] = set()

    def connect(k):
        connected.add(k)
        queue[k], asked[k] = [], {}
        if len(peer_pieces[k]) == n:
            p.peer_have_all(k)
        else:
            p.peer_bitfield(k, bits(cls, n, peer_pieces[k]))

    def cancelled(k, b):  # the engine sent ``cancel``; the peer may not honour it
        if rng.random() < 0.5:
            queue[k].remove(b)

    for k in range(npeers):
        connect(k)
    for tick in range(5000):
        if p.done:
            break
        now = float(tick)
        for k in sorted(connected):
            if rng.random() < 0.01:  # leaves, and comes back later
                assert p.peer_gone(k) == sorted(asked[k])
                connected.discard(k)
                continue
            depth = 8 * max(speed[k], 1)
            got = p.pick(k, depth - p.num_outstanding(k), now=now, snubbed=speed[k] == 0)
            assert all(prio[b.index] for b in got)
            for b in got:
                assert b not in asked[k]
                asked[k][b] = now
            queue[k].extend(got)
            # The engine's timer: cancel whatever is overdue.
            overdue = p.requests_before(k, now - TIMEOUT_TICKS)
            assert overdue == [b for b, t in asked[k].items() if t <= now - TIMEOUT_TICKS]
            for b in overdue:
                assert p.block_rejected(k, b.index, b.begin)
                del asked[k][b]
                cancelled(k, b)
                stats["timed out"] += 1
            for _ in range(speed[k] or (rng.random() < 0.2)):
                if not queue[k]:
                    break
                b = queue[k].pop(0)
                if rng.random() < 0.03:  # BEP 6 reject (also of a request we cancelled)
                    assert p.block_rejected(k, b.index, b.begin) == (b in asked[k])
                    asked[k].pop(b, None)
                    continue
                r = p.block_received(k, b.index, b.begin)
                assert r.new == (b in asked[k])
                if not r.new:
                    stats["dropped"] += 1
                    continue
                del asked[k][b]
                for other in r.cancel:
                    del asked[other][b]
                    cancelled(other, b)
                    stats["endgame cancels"] += 1
                if r.complete:
                    sources = p.block_sources(b.index)
                    if rng.random() < fail_rate:
                        assert p.piece_failed(b.index, reserve_for=k if rng.random() < 0.5 else None) == sources
                        stats["failed"] += 1
                    else:
                        assert p.piece_verified(b.index) == sources
                    assert len(sources) == g.num_blocks(b.index) and None not in sources
        for k in range(npeers):
            if k not in connected and rng.random() < 0.2:
                connect(k)
        for k in connected:
            assert p.outstanding(k) == sorted(asked[k])
            assert p.oldest_request(k) == next(iter(asked[k].values()), None)
        if tick % 16 == 0:
            p._validate()
    assert p.done, f"stuck: {p.wanted_remaining} wanted pieces left, partials {p.partials()}"
    for i in range(n):
        assert p.have.get(i) or prio[i] == 0
    p._validate()
    return stats


@pytest.mark.parametrize("sequential", [False, True], ids=["rarest", "sequential"])
def test_simulated_swarm_completes(impl, sequential):
    total: Counter = Counter()
    for seed in range(6):
        total += run_swarm(impl, seed, sequential=sequential)
    for what in ("timed out", "dropped", "endgame cancels", "failed"):
        assert total[what] >= 5, (what, total)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), sequential=st.booleans())
def test_simulated_swarm_completes_any_seed(seed, sequential):
    run_swarm(compiled_bitfield_class(), seed, pieces=20, fail_rate=0.2, sequential=sequential)


def test_no_new_pieces_gives_only_blocks_of_pieces_in_progress() -> None:
    geometry = Geometry(4 * BLOCK_SIZE, (4 * BLOCK_SIZE * 8,))
    picker = PiecePicker(geometry, rng=random.Random(1))
    full = PyBitfield(geometry.num_pieces)
    full.set_all()
    picker.peer_bitfield("a", full)
    picker.peer_bitfield("b", full)
    first = picker.pick("a", 2)  # starts one piece, half of it requested
    assert {b.index for b in first} == {first[0].index}
    capped = picker.pick("b", 10, new_pieces=0)
    assert capped and {b.index for b in capped} == {first[0].index}  # the rest of that piece only
    assert picker.pick("b", 10, new_pieces=0) == []
    assert picker.pick("b", 10)  # without the cap it starts new pieces


def test_new_pieces_caps_how_many_untouched_pieces_one_pick_starts() -> None:
    """One pick of 40 blocks would start ten 4-block pieces; with room for three it starts three."""
    geometry = Geometry(4 * BLOCK_SIZE, (4 * BLOCK_SIZE * 20,))
    picker = PiecePicker(geometry, rng=random.Random(2))
    full = PyBitfield(geometry.num_pieces)
    full.set_all()
    picker.peer_bitfield("a", full)
    capped = picker.pick("a", 40, new_pieces=3)
    assert len({b.index for b in capped}) == 3 and len(capped) == 12
    assert picker.num_in_progress() == 3
    assert len({b.index for b in picker.pick("a", 40)}) == 10  # no cap: as many as the count asks
    assert picker.num_in_progress() == 13
