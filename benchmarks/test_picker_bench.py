"""Piece picker on a big swarm, with the compiled Bitfield and with its pure twin.

100 000 pieces of 256 KiB (16 blocks), 200 peers with random bitfields (about half
the pieces each) and 5 seeds; 10 % of the pieces verified and a few hundred in
progress before timing starts (the steady state, past random-first). Each benchmark
is parametrized ``cython``/``python`` and tagged ``group="picker-<op>"``; every timed
call does a batch of operations (the ``extra_info`` says how many) and the set-up
between rounds puts the picker back into the same state, outside the timed call.

    .venv/bin/pytest benchmarks/test_picker_bench.py --benchmark-only -q \\
        --benchmark-columns=min,median,mean,rounds
"""

from __future__ import annotations

import itertools
import random

import pytest

from torrent.codec.geometry import Geometry
from torrent.engine.picker import PiecePicker

N = 100_000
PIECE = 256 * 1024
PEERS = 200
SEEDS = 5
SEED = 0x91C4E5
BATCH_PEERS = 20  # peers served per timed call
DEPTH = 64  # blocks per pick


@pytest.fixture(scope="module")
def wire_fields() -> list[bytes]:
    rng = random.Random(SEED)
    return [rng.getrandbits(N).to_bytes(N // 8, "big") for _ in range(PEERS + 1)]


def _swarm(cls: type, wire_fields: list[bytes]) -> PiecePicker:
    rng = random.Random(SEED)
    geo = Geometry(PIECE, (N * PIECE,))
    have = cls(N)
    for i in rng.sample(range(N), N // 10):
        have.set(i)
    picker = PiecePicker(geo, have, rng=random.Random(SEED))
    for p in range(PEERS):
        picker.peer_bitfield(p, cls.from_bytes(wire_fields[p], N))
    for s in range(SEEDS):
        picker.peer_have_all(f"seed{s}")
    # Some pieces in progress: every peer asks for a deep queue and gets half of it.
    for p in range(PEERS):
        blocks = picker.pick(p, DEPTH)
        for b in blocks[: len(blocks) // 2]:
            picker.block_received(p, b.index, b.begin)
    return picker


@pytest.fixture(scope="module")
def swarm(twin, wire_fields: list[bytes]) -> tuple[str, type, PiecePicker]:
    """The picker with the twin's Bitfield (root conftest.py: ``cython`` / ``python``)."""
    return twin.name, twin.Bitfield, _swarm(twin.Bitfield, wire_fields)


def _batch_peers(rng: random.Random) -> list[int]:
    return rng.sample(range(PEERS), BATCH_PEERS)


def test_pick(benchmark, swarm):
    """``pick(peer, 64)`` for 20 peers; each round's requests are released again in
    the set-up, so every round starts from the same kind of state."""
    _, _, picker = swarm
    benchmark.group = "picker-pick"
    benchmark.extra_info["blocks_per_call"] = BATCH_PEERS * DEPTH
    rng = random.Random(1)
    last: list[int] = []

    def setup():
        for p in last:
            picker.release(p)
        last[:] = _batch_peers(rng)
        return (list(last),), {}

    def run(peers):
        pick = picker.pick
        n = 0
        for p in peers:
            n += len(pick(p, DEPTH))
        assert n == BATCH_PEERS * DEPTH

    benchmark.pedantic(run, setup=setup, rounds=40, iterations=1)
    for p in last:
        picker.release(p)


def test_cycle(benchmark, swarm):
    """Pick 64 blocks for each of 20 peers, receive them all, verify the completed
    pieces: the picker's whole share of moving 20 × 1 MiB."""
    _, _, picker = swarm
    benchmark.group = "picker-cycle"
    benchmark.extra_info["blocks_per_call"] = BATCH_PEERS * DEPTH
    rng = random.Random(2)

    def setup():
        return (_batch_peers(rng),), {}

    def run(peers):
        pick, received, verified = picker.pick, picker.block_received, picker.piece_verified
        for p in peers:
            for b in pick(p, DEPTH):
                if received(p, b.index, b.begin).complete:
                    verified(b.index)

    benchmark.pedantic(run, setup=setup, rounds=40, iterations=1)


def test_block_received(benchmark, swarm):
    """``block_received`` for 20 × 64 requested blocks (picked in the set-up)."""
    _, _, picker = swarm
    benchmark.group = "picker-block_received"
    benchmark.extra_info["blocks_per_call"] = BATCH_PEERS * DEPTH
    rng = random.Random(3)
    complete: list[int] = []

    def setup():
        for i in complete:
            picker.piece_verified(i)
        complete.clear()
        pairs = [(p, b.index, b.begin) for p in _batch_peers(rng) for b in picker.pick(p, DEPTH)]
        return (pairs,), {}

    def run(pairs):
        received = picker.block_received
        for p, i, begin in pairs:
            if received(p, i, begin).complete:
                complete.append(i)

    benchmark.pedantic(run, setup=setup, rounds=40, iterations=1)
    for i in complete:
        picker.piece_verified(i)


HAVES = 10_000


def test_peer_have(benchmark, swarm):
    """10 000 ``have`` messages from 10 peers that have half the pieces, each for a
    piece that peer lacked (the peers are replaced in the set-up)."""
    _, cls, picker = swarm
    benchmark.group = "picker-peer_have"
    benchmark.extra_info["haves_per_call"] = HAVES
    rng = random.Random(4)
    counter = itertools.count()
    joined: list[str] = []
    fields = [rng.getrandbits(N).to_bytes(N // 8, "big") for _ in range(10)]

    def setup():
        for key in joined:
            picker.peer_gone(key)
        joined.clear()
        msgs = []
        for f in fields:
            key = f"h{next(counter)}"
            bf = cls.from_bytes(f, N)
            picker.peer_bitfield(key, bf)
            joined.append(key)
            missing = rng.sample(range(N), 3000)
            msgs.extend((key, i) for i in missing if not bf.get(i))
        return (msgs[:HAVES],), {}

    def run(msgs):
        have = picker.peer_have
        for key, i in msgs:
            have(key, i)

    benchmark.pedantic(run, setup=setup, rounds=20, iterations=1)
    for key in joined:
        picker.peer_gone(key)


def test_peer_join(benchmark, swarm, wire_fields):
    """``peer_bitfield`` of a peer with half the pieces (it leaves in the set-up)."""
    _, cls, picker = swarm
    benchmark.group = "picker-peer_bitfield"
    bf = cls.from_bytes(wire_fields[PEERS], N)

    def setup():
        picker.peer_gone("joiner")
        return (), {}

    benchmark.pedantic(lambda: picker.peer_bitfield("joiner", bf), setup=setup, rounds=50, iterations=1)
    picker.peer_gone("joiner")


def test_peer_gone(benchmark, swarm, wire_fields):
    """``peer_gone`` of a peer with half the pieces and 64 requests outstanding."""
    _, cls, picker = swarm
    benchmark.group = "picker-peer_gone"
    bf = cls.from_bytes(wire_fields[PEERS], N)

    def setup():
        picker.peer_bitfield("leaver", bf)
        picker.pick("leaver", DEPTH)
        return (), {}

    benchmark.pedantic(lambda: picker.peer_gone("leaver"), setup=setup, rounds=50, iterations=1)


def test_seed_join(benchmark, swarm):
    """``peer_have_all``: a seed joins (and leaves in the set-up)."""
    _, _, picker = swarm
    benchmark.group = "picker-have_all"

    def setup():
        picker.peer_gone("newseed")
        return (), {}

    benchmark.pedantic(lambda: picker.peer_have_all("newseed"), setup=setup, rounds=200, iterations=1)
    picker.peer_gone("newseed")


def test_interesting(benchmark, swarm):
    """``interesting(peer)`` for a half-full peer."""
    _, _, picker = swarm
    benchmark.group = "picker-interesting"
    benchmark(picker.interesting, 7)


def test_pick_nothing_to_offer(benchmark, swarm):
    """``pick`` for a peer whose pieces are all verified already: the cost of asking
    in vain (the engine should not ask peers that are not interesting, but may)."""
    _, _, picker = swarm
    benchmark.group = "picker-pick_nothing"
    picker.peer_bitfield("useless", picker.have)
    assert not picker.interesting("useless")
    benchmark(picker.pick, "useless", DEPTH)
    picker.peer_gone("useless")


def test_availability_bytes(benchmark, swarm):
    """``availability_bytes()``: the piece map of 100 000 pieces for a UI snapshot,
    200 peers (8 planes) and 5 seeds (the saturating path); target under 2 ms with
    the compiled Bitfield."""
    _, _, picker = swarm
    benchmark.group = "picker-availability_bytes"
    counts = benchmark(picker.availability_bytes)
    assert len(counts) == N
    sample = random.Random(5).sample(range(N), 200)
    assert [counts[i] for i in sample] == [min(255, picker.availability(i)) for i in sample]
