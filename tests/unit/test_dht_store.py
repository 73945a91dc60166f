"""Announce tokens (per address, rotating, 5–10 minutes) and the peer store (expiry, bounds, samples)."""

from __future__ import annotations

import random

from torrent.dht.store import PEER_TTL, TOKEN_ROTATION, PeerStore, Tokens

IH = b"i" * 20
OTHER = b"o" * 20


def test_a_token_holds_for_its_address_only_and_for_five_to_ten_minutes() -> None:
    tokens = Tokens(0.0)
    token = tokens.make("10.0.0.1", 0.0)
    assert tokens.check(token, "10.0.0.1", 1.0)
    assert not tokens.check(token, "10.0.0.2", 1.0)
    assert not tokens.check(b"x" * len(token), "10.0.0.1", 1.0)
    assert tokens.check(token, "10.0.0.1", TOKEN_ROTATION + 1)  # the previous secret still counts
    assert not tokens.check(token, "10.0.0.1", 2 * TOKEN_ROTATION + 1)  # two rotations: gone


def test_tokens_differ_between_nodes() -> None:
    assert Tokens(0.0).make("10.0.0.1", 0.0) != Tokens(0.0).make("10.0.0.1", 0.0)


def test_announced_peers_come_back_by_family_and_expire() -> None:
    store = PeerStore()
    store.announce(IH, "10.0.0.1", 6881, 0.0)
    store.announce(IH, "::1", 6882, 0.0)
    store.announce(IH, "10.0.0.2", 6883, 100.0)
    assert sorted(store.peers(IH, 1.0)) == [("10.0.0.1", 6881), ("10.0.0.2", 6883)]
    assert store.peers(IH, 1.0, ipv6=True) == [("::1", 6882)]
    assert store.peers(IH, PEER_TTL + 1) == [("10.0.0.2", 6883)]
    store.expire(PEER_TTL + 101)
    assert len(store) == 0 and store.torrents() == 0 and store.peers(IH, PEER_TTL + 102) == []


def test_a_reannounce_refreshes_and_does_not_duplicate() -> None:
    store = PeerStore()
    store.announce(IH, "10.0.0.1", 6881, 0.0)
    store.announce(IH, "10.0.0.1", 6881, PEER_TTL - 1)
    assert len(store) == 1 and store.peers(IH, PEER_TTL + 10) == [("10.0.0.1", 6881)]


def test_a_flood_of_announces_stays_within_the_bounds() -> None:
    store = PeerStore(max_peers=1000, per_torrent=100)
    rng = random.Random(5)
    for i in range(20_000):
        info_hash = rng.randbytes(20) if i % 2 else IH
        store.announce(info_hash, f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1 + i % 60000, float(i))
    assert len(store) <= 1000
    assert len(store.peers(IH, 20_000.0, count=10_000)) <= 100
    assert store.peers(IH, 20_000.0, count=10_000)  # the busiest, most recent torrent kept its peers


def test_a_reply_is_a_bounded_sample() -> None:
    store = PeerStore()
    for i in range(300):
        store.announce(IH, f"10.0.{i // 250}.{i % 250}", 6881, 0.0)
    sample = store.peers(IH, 1.0, count=50, rng=random.Random(1))
    assert len(sample) == 50 and len(set(sample)) == 50


def test_peers_are_kept_compact_and_come_back_as_reply_values() -> None:
    store = PeerStore()
    store.announce(IH, "10.0.0.1", 6881, 0.0)
    store.announce(IH, "2001:db8::1", 443, 0.0)
    assert store.compact(IH, 1.0) == [bytes((10, 0, 0, 1)) + (6881).to_bytes(2, "big")]
    assert store.compact(IH, 1.0, ipv6=True) == [bytes.fromhex("20010db8" + "0" * 23 + "1") + (443).to_bytes(2, "big")]


def test_tokens_expire_on_time_without_queries() -> None:
    tokens = Tokens(0.0)
    token = tokens.make("10.0.0.1", 0.0)
    tokens.expire(2 * TOKEN_ROTATION + 1)  # the node's upkeep rotates the secrets
    assert not tokens.check(token, "10.0.0.1", 2 * TOKEN_ROTATION + 2)


def test_100_000_peers_fit_the_default_bound() -> None:
    store = PeerStore()
    hashes = [i.to_bytes(20, "big") for i in range(400)]
    for i in range(100_000):
        store.announce(hashes[i % 400], f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 6881, 0.0)
    assert len(store) == 100_000 and store.torrents() == 400
