"""BEP 42 node ids: the BEP's test vectors, CRC-32C's check value, generation and the exempt addresses."""

from __future__ import annotations

import random

import pytest

from torrent.dht.node_ids import AddressVotes, crc32c, exempt, secure_node_id, valid_node_id

# BEP 42's examples: IP, the id it gives (first 3 bytes, then the rest, last byte = rand)
VECTORS = [
    ("124.31.75.21", "5fbfbff10c5d6a4ec8a88e4c6ab4c28b95eee401"),
    ("21.75.31.124", "5a3ce9c14e7a08645677bbd1cfe7d8f956d53256"),
    ("65.23.51.170", "a5d43220bc8f112a3d426c84764f8c2a1150e616"),
    ("84.124.73.14", "1b0321dd1bb1fe518101ceef99462b947a01ff41"),
    ("43.213.53.83", "e56f6cbf5b7c4be0237986d5243b87aa6d51305a"),
]


def test_crc32c_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283


@pytest.mark.parametrize("host,node_id", VECTORS)
def test_the_bep42_vectors_are_valid_for_their_address_only(host: str, node_id: str) -> None:
    raw = bytes.fromhex(node_id)
    assert valid_node_id(raw, host)
    assert not valid_node_id(raw, "8.8.4.4")
    assert not valid_node_id(raw[:19] + bytes([raw[19] ^ 1]), host)  # another r: another prefix


def test_generated_ids_are_valid_and_random() -> None:
    rng = random.Random(1)
    ids = {secure_node_id("203.0.113.7", rng) for _ in range(50)}
    assert len(ids) == 50 and all(len(i) == 20 and valid_node_id(i, "203.0.113.7") for i in ids)
    v6 = secure_node_id("2001:4860::8888", rng)
    assert valid_node_id(v6, "2001:4860::8888") and not valid_node_id(v6, "2001:4860:1::8888")


def test_local_and_private_addresses_are_exempt() -> None:
    for host in ("127.0.0.1", "10.1.2.3", "192.168.1.10", "172.16.5.5", "169.254.1.1", "::1", "fe80::1"):
        assert exempt(host) and valid_node_id(b"\x00" * 20, host)
    assert not exempt("124.31.75.21") and not valid_node_id(b"\x00" * 20, "124.31.75.21")


def test_our_address_is_believed_once_a_quorum_of_distinct_nodes_agrees() -> None:
    votes = AddressVotes(quorum=3, window=10)
    assert votes.vote("1.1.1.1", "124.31.75.21") is None
    assert votes.vote("1.1.1.1", "124.31.75.21") is None  # the same node twice is one vote
    assert votes.vote("2.2.2.2", "124.31.75.21") is None
    assert votes.vote("3.3.3.3", "124.31.75.21") == "124.31.75.21" and votes.address == "124.31.75.21"
    assert votes.vote("4.4.4.4", "124.31.75.21") is None  # no change: nothing new to say
    for voter in ("5.5.5.5", "6.6.6.6", "7.7.7.7"):  # three say otherwise: a tie is not a verdict
        votes.vote(voter, "65.23.51.170")
    assert votes.address == "124.31.75.21"
    assert votes.vote("8.8.8.8", "65.23.51.170") is None  # 4 to 4
    assert votes.vote("9.9.9.9", "65.23.51.170") == "65.23.51.170"


def test_the_votes_remember_only_the_last_window_of_nodes() -> None:
    votes = AddressVotes(quorum=2, window=3)
    votes.vote("1.1.1.1", "124.31.75.21")
    for voter in ("2.2.2.2", "3.3.3.3", "4.4.4.4"):
        votes.vote(voter, f"65.23.51.{voter[0]}")  # three different claims push the first one out
    assert votes.vote("5.5.5.5", "124.31.75.21") is None  # one of the window's three, not two
