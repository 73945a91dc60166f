"""Piece picker: every behaviour on its own, then Hypothesis-driven sequences and a
simulated swarm. Every test runs with the compiled Bitfield and with its pure twin
(the picker works with either), ids ``cython`` / ``python``."""

from __future__ import annotations

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
from torrent.engine.picker import Block, PiecePicker, Received

KiB = 1024




@pytest.fixture(scope="module", params=["cython", "python"])
def impl(request: pytest.FixtureRequest) -> type:
    return compiled_bitfield_class() if request.param == "cython" else PyBitfield


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
    assert p.pick("b", 1) == [a[1]]
    p._validate()


def test_timed_out_block_is_reassigned_and_a_late_copy_accepted(impl):
    p = make(impl, geo(2))
    p.peer_have_all("slow")
    p.peer_have_all("fast")
    s = p.pick("slow", 4)
    assert p.request_timed_out("slow", s[0].index, s[0].begin)
    assert p.pick("fast", 1) == [s[0]]
    r = p.block_received("slow", s[0].index, s[0].begin)  # it arrived after all
    assert r.new and list(r.cancel) == ["fast"]
    assert p.outstanding("fast") == []
    p._validate()


def test_a_timed_out_block_is_not_asked_of_the_same_peer_until_cancelled(impl):
    p = make(impl, geo(1))
    p.peer_have_all("slow")
    p.peer_bitfield("other", bits(impl, 1))  # nothing yet
    s = p.pick("slow", 4)
    assert p.request_timed_out("slow", s[1].index, s[1].begin)
    assert not p.request_timed_out("slow", s[1].index, s[1].begin)  # already timed out
    assert s[1] in p.outstanding("slow")  # still on the wire
    p.peer_have("other", 0)
    assert p.pick("slow", 4) == []  # another peer has the piece: leave the block to it
    assert not p.in_endgame  # the block is free for anyone else
    assert p.pick("other", 1) == [s[1]]  # (more would be endgame duplicates)
    assert p.block_rejected("other", s[1].index, s[1].begin)
    assert p.block_rejected("slow", s[1].index, s[1].begin)  # we sent cancel
    assert p.pick("slow", 4) == [s[1]]
    p._validate()


def test_a_timed_out_block_is_asked_again_of_its_only_source(impl):
    p = make(impl, geo(2))
    p.peer_have_all("only")
    p.peer_bitfield("other", bits(impl, 2, [1]))
    s = p.pick("only", 4)
    piece = s[0].index
    assert p.request_timed_out("only", piece, s[0].begin)
    if piece == 1:  # "other" has it: it gets the block
        assert p.pick("only", 1)[0].index != piece
        assert p.pick("other", 1) == [s[0]]
    else:  # nobody else has it: the same peer is asked again rather than waiting forever
        assert p.pick("only", 1) == [s[0]]
        assert p.outstanding("only").count(s[0]) == 1
    p._validate()


def test_a_piece_whose_requests_all_timed_out_waits_for_them(impl):
    p = make(impl, geo(2))
    p.peer_have_all("a")
    a = p.pick("a", 4)
    for b in a:
        p.request_timed_out("a", b.index, b.begin)
    assert [pp.index for pp in p.partials()] == [a[0].index]  # kept: data may come
    assert p.block_received("a", a[2].index, a[2].begin).new
    p.release("a")
    p._validate()
    p.peer_have_all("b")
    assert {b.index for b in p.pick("b", 3)} == {a[0].index}


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


# --------------------------------------------------------------------- data, hash results, smart-ban


def test_block_received_filters_what_we_do_not_want(impl):
    p = make(impl, geo(3))
    p.peer_have_all("a")
    a = p.pick("a", 4)
    i = a[0].index
    assert p.block_received("a", i, 1) == Received(False, False, ())  # unaligned
    assert p.block_received("a", i, 4 * BLOCK_SIZE) == Received(False, False, ())  # past the end
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
    assert p.piece_failed(0) == ["a", "a", "b", "b"]
    assert p.wanted_remaining == 1 and not p.have.get(0)
    again = p.pick("b", 4)
    assert len(again) == 4
    deliver(p, "b", again[:3])
    assert p.block_received("b", again[3].index, again[3].begin).complete
    assert p.piece_verified(0) == ["b"] * 4
    assert p.have.get(0) and p.done and p.piece_verified(0) == []
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


def test_a_reserved_piece_is_asked_again_of_its_peer_after_a_timeout(impl):
    p = make(impl, geo(1))
    p.peer_have_all("a")
    p.peer_have_all("b")
    deliver_all = [p.block_received("a", b.index, b.begin) for b in p.pick("a", 4)]
    assert deliver_all[-1].complete
    p.piece_failed(0, reserve_for="a")
    again = p.pick("a", 4)
    assert p.request_timed_out("a", again[0].index, again[0].begin)
    assert p.pick("b", 4) == []  # reserved: b may not help
    assert p.pick("a", 4) == [again[0]]  # so a is asked again
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


# --------------------------------------------------------------------- random sequences

N_PIECES = 8  # 7 full pieces of 3 blocks and a short last one (a block and 100 bytes)
PIECE_LEN = 3 * BLOCK_SIZE
TAIL = BLOCK_SIZE + 100
PEER_KEYS = ["p0", "p1", "p2", "p3", "p4"]


class Model:
    """One picker under arbitrary events, checked against a model of the swarm and
    of every request outstanding. Each ``do_*`` applies one event with explicit
    arguments; the Hypothesis state machine and the seeded random walk below both
    drive it."""

    def __init__(self, cls: type, seed: int, have: set[int], random_first: int, requesters: int) -> None:
        self.cls = cls
        self.g = geo(N_PIECES - 1, PIECE_LEN, TAIL)
        assert self.g.num_pieces == N_PIECES
        self.picker = PiecePicker(self.g, bits(cls, N_PIECES, have), rng=random.Random(seed),
                                  random_first=random_first, endgame_requesters=requesters)
        self.pieces: dict[str, set[int]] = {}  # connected peers → what they have
        self.out: dict[str, set[Block]] = {}  # every request outstanding, per peer
        self.late: dict[str, set[Block]] = {}  # of those, the ones timed out
        self.reserved: dict[int, str] = {}
        self.prio = [1] * N_PIECES
        self.stats: Counter = Counter()

    # -- swarm
    def do_bitfield(self, peer: str, pieces: set[int]) -> None:
        if peer in self.pieces:
            return  # a second bitfield is a protocol error the engine deals with
        self.picker.peer_bitfield(peer, bits(self.cls, N_PIECES, pieces))
        self.pieces[peer] = set(pieces)
        self.out[peer], self.late[peer] = set(), set()

    def do_have_all(self, peer: str) -> None:
        if peer in self.pieces:
            return
        self.picker.peer_have_all(peer)
        self.pieces[peer] = set(range(N_PIECES))
        self.out[peer], self.late[peer] = set(), set()

    def do_have(self, peer: str, index: int) -> None:
        need = self.picker.peer_have(peer, index)
        known = self.pieces.setdefault(peer, set())
        self.out.setdefault(peer, set())
        self.late.setdefault(peer, set())
        assert need == (index not in known and not self.picker.have.get(index) and self.prio[index] > 0)
        known.add(index)

    def do_gone(self, peer: str) -> None:
        freed = self.picker.peer_gone(peer)
        assert set(freed) == self.out.pop(peer, set())
        self.late.pop(peer, None)
        self.pieces.pop(peer, None)
        for i, who in list(self.reserved.items()):
            if who == peer:
                del self.reserved[i]

    def do_priorities(self, prio: list[int]) -> None:
        self.picker.set_piece_priorities(prio)
        self.prio = list(prio)

    # -- requests
    def do_pick(self, peer: str, count: int, choked: bool, fast: set[int], snubbed: bool) -> None:
        p = self.picker
        was_endgame = p.in_endgame
        blocks = p.pick(peer, count, allowed_fast=fast, choked=choked, snubbed=snubbed)
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
            # Never twice to one peer, unless the first request timed out and no
            # other peer has the piece (then asking again is the only way on).
            assert b not in mine or b in self.late[peer], "same block twice to one peer"
            if b in self.late[peer]:
                assert self.reserved.get(i) == peer or not any(
                    i in self.pieces[k] for k in self.pieces if k != peer
                )
                self.late[peer].discard(b)
                self.stats["asked again"] += 1
            if choked:
                assert i in fast, "choked peer got a piece outside its allowed-fast set"
            size = self.g.piece_size(i)
            assert b.begin % BLOCK_SIZE == 0 and b.length == min(BLOCK_SIZE, size - b.begin) > 0
            if i in self.reserved:
                assert self.reserved[i] == peer, "reserved piece given to another peer"
        live = {k: o - self.late[k] for k, o in self.out.items()}
        dup = [b for b in blocks if any(b in o for k, o in live.items() if k != peer)]
        if dup:
            self.stats["endgame duplicates"] += len(dup)
            assert p.in_endgame or was_endgame, "a block went to two peers outside endgame"
            assert p.endgame_requesters > 1 and not snubbed
            for b in dup:
                assert sum(b in o for o in live.values()) < p.endgame_requesters
        mine.update(blocks)

    def outstanding(self) -> list[tuple[str, Block]]:
        return sorted((k, b) for k, o in self.out.items() for b in o)

    def do_receive(self, peer: str, b: Block) -> None:
        """``peer`` delivers a block it was asked for: always wanted."""
        was_outstanding_at = {k for k, o in self.out.items() if b in o}
        r = self.picker.block_received(peer, b.index, b.begin)
        assert r.new, "an outstanding block was refused"
        assert set(r.cancel) == was_outstanding_at - {peer}
        for k in was_outstanding_at:
            self.out[k].discard(b)
            self.late[k].discard(b)
        self.stats["blocks received"] += 1
        self.stats["cancels"] += len(r.cancel)
        if r.complete:
            assert b.index in self.pending()

    def do_unsolicited(self, peer: str, index: int, begin: int) -> None:
        """A block nobody asked this peer for: accepted only as a not yet received
        block of a piece in progress (a late arrival), never one we have."""
        before = {pp.index for pp in self.picker.partials() if not pp.pending_hash}
        r = self.picker.block_received(peer, index, begin)
        if r.new:
            assert index in before and begin % BLOCK_SIZE == 0 and peer in self.pieces
            if index in self.reserved:
                assert self.reserved[index] == peer
            b = Block(index, begin, min(BLOCK_SIZE, self.g.piece_size(index) - begin))
            assert set(r.cancel) == {k for k, o in self.out.items() if b in o} - {peer}
            for k in self.out:
                self.out[k].discard(b)
                self.late[k].discard(b)

    def do_reject(self, peer: str, b: Block, timeout: bool) -> None:
        """A ``reject`` (or our ``cancel``), or the engine's request timer firing."""
        p = self.picker
        if timeout:
            assert p.request_timed_out(peer, b.index, b.begin) == (b not in self.late[peer])
            assert not p.request_timed_out(peer, b.index, b.begin)
            self.late[peer].add(b)
            self.stats["timeouts"] += 1
        else:
            assert p.block_rejected(peer, b.index, b.begin)
            assert not p.block_rejected(peer, b.index, b.begin)
            self.out[peer].discard(b)
            self.late[peer].discard(b)

    def do_release(self, peer: str, choke: bool) -> None:
        if choke:
            self.picker.peer_choked(peer)
            return
        freed = self.picker.release(peer)
        assert set(freed) == self.out.get(peer, set())
        if peer in self.out:
            self.out[peer].clear()
            self.late[peer].clear()

    # -- hash results
    def pending(self) -> list[int]:
        return [pp.index for pp in self.picker.partials() if pp.pending_hash]

    def do_verify(self, i: int) -> None:
        sources = self.picker.piece_verified(i)
        assert len(sources) == self.g.num_blocks(i) and None not in sources
        if i in self.reserved:
            assert set(sources) == {self.reserved[i]}, "a reserved piece came from another peer"
        self.reserved.pop(i, None)
        self.stats["verified"] += 1

    def do_fail(self, i: int, reserve: str | None) -> None:
        sources = self.picker.piece_failed(i, reserve_for=reserve)
        assert len(sources) == self.g.num_blocks(i) and None not in sources
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
        for k in PEER_KEYS:
            assert set(p.outstanding(k)) == self.out.get(k, set())
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
        for b in sorted(self.m.out[peer]):
            if b in self.m.out[peer]:
                self.m.do_receive(peer, b)

    @precondition(lambda self: self.m.outstanding())
    @rule(data=st.data(), timeout=st.booleans())
    def reject(self, data, timeout):
        peer, b = data.draw(st.sampled_from(self.m.outstanding()))
        self.m.do_reject(peer, b, timeout)

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

    def some_pieces() -> set[int]:
        return {i for i in range(N_PIECES) if rng.random() < 0.6}

    events = [
        ("join", 6), ("have", 6), ("gone", 2), ("prio", 1), ("pick", 30), ("receive", 20),
        ("deliver", 6), ("reject", 4), ("release", 2), ("unsolicited", 2), ("verify", 8), ("fail", 3),
    ]
    names = [e for e, _ in events]
    weights = [w for _, w in events]
    for _ in range(steps):
        ev = rng.choices(names, weights)[0]
        peer = rng.choice(PEER_KEYS)
        out = m.outstanding()
        pending = m.pending()
        if ev == "join":
            m.do_have_all(peer) if rng.random() < 0.2 else m.do_bitfield(peer, some_pieces())
        elif ev == "have":
            m.do_have(peer, rng.randrange(N_PIECES))
        elif ev == "gone":
            m.do_gone(peer)
        elif ev == "prio":
            m.do_priorities([rng.choice([0, 1, 1, 2, 3]) for _ in range(N_PIECES)])
        elif ev == "pick":
            choked = rng.random() < 0.2
            fast = set(rng.sample(range(N_PIECES), rng.randrange(4)))
            m.do_pick(peer, rng.randrange(1, 12), choked, fast, rng.random() < 0.15)
        elif ev == "receive" and out:
            m.do_receive(*rng.choice(out))
        elif ev == "deliver" and out:
            k = rng.choice(out)[0]
            for b in sorted(m.out[k]):
                if b in m.out[k]:
                    m.do_receive(k, b)
        elif ev == "reject" and out:
            m.do_reject(*rng.choice(out), rng.random() < 0.5)
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
                 "timeouts"):
        assert total[what] >= 10, (what, total)


# --------------------------------------------------------------------- simulated swarm


def run_swarm(cls, seed: int, *, pieces: int = 40, fail_rate: float = 0.1) -> PiecePicker:
    """Fake peers that deliver at different speeds, reject, stall (the engine times
    requests out; the data may still come), leave and come back, and sometimes
    corrupt a piece (re-fetched from one peer or from anyone). Every wanted piece
    must complete, and the picker's view of each peer's queue must match the peer's."""
    rng = random.Random(seed)
    g = geo(pieces, 4 * BLOCK_SIZE, tail=BLOCK_SIZE // 2)
    n = g.num_pieces
    p = PiecePicker(g, bits(cls, n, rng.sample(range(n), 3)), rng=random.Random(seed), random_first=3)
    prio = [rng.choice([0, 1, 1, 1, 4]) for _ in range(n)]
    p.set_piece_priorities(prio)
    npeers = 6
    owners = {i: rng.randrange(npeers) for i in range(n)}  # between them, every piece
    peer_pieces = {k: {i for i in range(n) if owners[i] == k or rng.random() < 0.4} for k in range(npeers)}
    speed = {k: rng.choice([0, 1, 2, 4, 8]) for k in range(npeers)}  # 0: stalls until it times out
    queue: dict[int, list[Block]] = {}  # what each peer will send, in order
    late: dict[int, set[Block]] = {}  # timed out by the engine, still in the peer's queue
    connected: set[int] = set()

    def connect(k):
        connected.add(k)
        queue[k], late[k] = [], set()
        if len(peer_pieces[k]) == n:
            p.peer_have_all(k)
        else:
            p.peer_bitfield(k, bits(cls, n, peer_pieces[k]))

    for k in range(npeers):
        connect(k)
    for tick in range(5000):
        if p.done:
            break
        for k in sorted(connected):
            if rng.random() < 0.01:  # leaves, and comes back later
                p.peer_gone(k)
                connected.discard(k)
                continue
            depth = 8 * max(speed[k], 1)
            got = p.pick(k, depth - (len(queue[k]) - len(late[k])), snubbed=speed[k] == 0)
            assert all(prio[b.index] for b in got)
            for b in got:
                if b in late[k]:  # asked again: nobody else has the piece
                    late[k].discard(b)
                    queue[k].remove(b)
            queue[k].extend(got)
            if speed[k] == 0 and queue[k] and rng.random() < 0.3:  # the engine's timer fires
                stale = next((b for b in queue[k] if b not in late[k]), None)
                if stale is not None:
                    assert p.request_timed_out(k, stale.index, stale.begin)
                    late[k].add(stale)
            if late[k] and rng.random() < 0.05:  # and later the engine cancels one
                b = min(late[k])
                assert p.block_rejected(k, b.index, b.begin)
                late[k].discard(b)
                queue[k].remove(b)
            for _ in range(speed[k] or (rng.random() < 0.1)):
                if not queue[k]:
                    break
                b = queue[k].pop(0)
                if b in late[k]:
                    late[k].discard(b)
                elif rng.random() < 0.03:
                    p.block_rejected(k, b.index, b.begin)
                    continue
                r = p.block_received(k, b.index, b.begin)
                for other in r.cancel:
                    queue[other].remove(b)
                    late[other].discard(b)
                if r.complete:
                    if rng.random() < fail_rate:
                        sources = p.piece_failed(b.index, reserve_for=k if rng.random() < 0.5 else None)
                    else:
                        sources = p.piece_verified(b.index)
                    assert len(sources) == g.num_blocks(b.index) and None not in sources
        for k in range(npeers):
            if k not in connected and rng.random() < 0.2:
                connect(k)
        for k in connected:
            assert sorted(queue[k]) == p.outstanding(k)
        if tick % 16 == 0:
            p._validate()
    assert p.done, f"stuck: {p.wanted_remaining} wanted pieces left, partials {p.partials()}"
    for i in range(n):
        assert p.have.get(i) or prio[i] == 0
    p._validate()
    return p


@pytest.mark.parametrize("seed", range(6))
def test_simulated_swarm_completes(impl, seed):
    run_swarm(impl, seed)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_simulated_swarm_completes_any_seed(seed):
    run_swarm(compiled_bitfield_class(), seed, pieces=20, fail_rate=0.2)


def test_no_new_pieces_gives_only_blocks_of_pieces_in_progress() -> None:
    geometry = Geometry(4 * BLOCK_SIZE, (4 * BLOCK_SIZE * 8,))
    picker = PiecePicker(geometry, rng=random.Random(1))
    full = PyBitfield(geometry.num_pieces)
    full.set_all()
    picker.peer_bitfield("a", full)
    picker.peer_bitfield("b", full)
    first = picker.pick("a", 2)  # starts one piece, half of it requested
    assert {b.index for b in first} == {first[0].index}
    capped = picker.pick("b", 10, new_pieces=False)
    assert capped and {b.index for b in capped} == {first[0].index}  # the rest of that piece only
    assert picker.pick("b", 10, new_pieces=False) == []
    assert picker.pick("b", 10)  # without the cap it starts new pieces
