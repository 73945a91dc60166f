"""Tit-for-tat, seeding rotation and the optimistic unchoke."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from torrent.engine.choker import Choker, PeerView


def peer(key: str, down: float = 0.0, up: float = 0.0, *, interested: bool = True, age: float = 600.0,
         snubbed: bool = False) -> PeerView:
    return PeerView(key, interested, down, up, age, snubbed)


def test_leeching_unchokes_the_fastest_uploaders_plus_one_optimistic() -> None:
    choker = Choker(upload_slots=4, rng=random.Random(1))
    peers = [peer(f"p{i}", down=i * 100) for i in range(10)]
    unchoked = choker.rechoke(peers, seeding=False)
    assert {"p9", "p8", "p7"} <= unchoked
    assert len(unchoked) == 4
    assert choker.optimistic in unchoked - {"p9", "p8", "p7"}


def test_uninterested_peers_are_never_unchoked() -> None:
    choker = Choker(upload_slots=4, rng=random.Random(2))
    peers = [peer("fast", down=10**6, interested=False), peer("slow", down=1)]
    assert choker.rechoke(peers, seeding=False) == {"slow"}


def test_snubbed_peers_lose_their_regular_slot() -> None:
    choker = Choker(upload_slots=2, rng=random.Random(3))
    peers = [peer("snub", down=10**6, snubbed=True), peer("honest", down=10)]
    unchoked = choker.rechoke(peers, seeding=False)
    assert "honest" in unchoked
    assert choker.optimistic == "snub"  # only the optimistic slot is left for it


def test_optimistic_slot_rotates_every_third_round() -> None:
    choker = Choker(upload_slots=2, rng=random.Random(4))
    peers = [peer("top", down=10**6)] + [peer(f"p{i}") for i in range(20)]
    seen = []
    for _ in range(9):
        choker.rechoke(peers, seeding=False)
        seen.append(choker.optimistic)
    assert seen[0] == seen[1] == seen[2]
    assert seen[3] == seen[4] == seen[5]
    assert len(set(seen)) > 1


def test_new_peers_are_favoured_for_the_optimistic_slot() -> None:
    choker = Choker(upload_slots=2, rng=random.Random(5))
    peers = [peer("top", down=10**6), peer("new", age=1.0)] + [peer(f"old{i}") for i in range(3)]
    wins = Counter()
    for _ in range(3000):
        choker._round = 0  # force a new draw each time
        choker.rechoke(peers, seeding=False)
        wins[choker.optimistic] += 1
    # Weight 3 against three peers of weight 1: about half the draws.
    assert wins["new"] > wins["old0"] * 2


def test_seeding_rotates_among_peers_of_similar_rate() -> None:
    choker = Choker(upload_slots=3, rng=random.Random(6))
    peers = [peer(f"p{i}", up=1000 + i) for i in range(6)]
    regular_sets = set()
    for _ in range(30):
        unchoked = choker.rechoke(peers, seeding=True)
        regular_sets.add(frozenset(unchoked - {choker.optimistic}))
    assert len(regular_sets) > 1


def test_slots_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Choker(upload_slots=0)


def test_a_newcomer_gets_the_optimistic_slot_at_the_next_draw_however_large_the_idle_crowd() -> None:
    crowd = [PeerView(f"idle{i}", True, 0.0, 0.0, 600.0) for i in range(60)]
    choker = Choker(upload_slots=4, rng=random.Random(7))
    for _ in range(6):  # two optimistic periods with the crowd alone
        choker.rechoke(crowd, seeding=True)
    newcomer = PeerView("new", True, 0.0, 0.0, 2.0)
    draws = []
    for _ in range(3):  # one optimistic period (optimistic_every rounds)
        unchoked = choker.rechoke([*crowd, newcomer], seeding=True)
        draws.append("new" in unchoked)
    assert any(draws)
    # Idle peers take turns: over many periods, no crowd member is left out for ever.
    turns = set()
    for _ in range(3 * 70):
        turns.add(choker.rechoke(crowd, seeding=True) and choker.optimistic)
    assert len(turns) == 60
