"""ut_metadata (BEP 9): messages both ways, malformed ones refused, and the info dictionary assembled from
several peers, verified against the info-hash, with a lying peer named."""

from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrent.codec import metadata
from torrent.codec.metadata import (
    DATA,
    MAX_METADATA,
    PIECE,
    REJECT,
    REQUEST,
    Assembly,
    MetadataError,
    MetadataMessage,
)


def test_the_bep9_examples() -> None:
    assert metadata.request(0) == b"d8:msg_typei0e5:piecei0ee"
    assert metadata.parse(b"d8:msg_typei0e5:piecei0ee") == MetadataMessage(REQUEST, 0)
    assert metadata.parse(b"d8:msg_typei2e5:piecei0ee") == MetadataMessage(REJECT, 0)
    raw = b"d8:msg_typei1e5:piecei0e10:total_sizei34256eexxxxxxxx"
    assert metadata.parse(raw) == MetadataMessage(DATA, 0, 34256, b"xxxxxxxx")


def test_data_messages_round_trip_every_piece() -> None:
    info = os.urandom(2 * PIECE + 100)
    for piece in range(metadata.piece_count(len(info))):
        message = metadata.parse(metadata.data(piece, info))
        assert message.total_size == len(info)
        assert message.data == info[piece * PIECE:(piece + 1) * PIECE]


@pytest.mark.parametrize("payload", [
    b"", b"xyz", b"le", b"d8:msg_typei7e5:piecei0ee", b"d8:msg_typei0e5:piecei-1ee",
    b"d8:msg_typei0e5:piece1:xe", b"d8:msg_typei1e5:piecei0ee",  # data without total_size
    b"d8:msg_typei1e5:piecei0e10:total_sizei0ee",
    b"d8:msg_typei1e5:piecei0e10:total_sizei%dee" % (MAX_METADATA + 1),
    b"d8:msg_typei1e5:piecei0e10:total_sizei99999ee" + b"x" * (PIECE + 1),
])
def test_malformed_messages_are_refused(payload: bytes) -> None:
    with pytest.raises(MetadataError):
        metadata.parse(payload)


@given(st.binary(max_size=200))
def test_garbage_is_a_metadata_error_or_a_message(payload: bytes) -> None:
    try:
        metadata.parse(payload)
    except MetadataError:
        pass


def test_an_info_dictionary_assembles_from_several_peers() -> None:
    info = os.urandom(3 * PIECE + 5)
    assembly = Assembly(hashlib.sha1(info).digest(), len(info))
    asked = {peer: assembly.next_piece(peer) for peer in ("a", "b", "c")}
    assert sorted(asked.values()) == [0, 1, 2] and assembly.next_piece("d") == 3
    assert assembly.next_piece("e") is None  # everything is asked for
    assembly.forget("d")  # d went away: its piece is free again
    assert assembly.next_piece("e") == 3
    result = None
    for peer, piece in [*asked.items(), ("e", 3)]:
        result = assembly.received(peer, metadata.parse(metadata.data(piece, info)))
    assert result == info


def test_metadata_that_does_not_hash_right_names_who_sent_it_and_starts_over() -> None:
    info = os.urandom(PIECE + 10)
    assembly = Assembly(hashlib.sha1(info).digest(), len(info))
    forged = bytearray(info)
    forged[5] ^= 1
    assembly.received("honest", metadata.parse(metadata.data(1, info)))
    with pytest.raises(MetadataError, match="info-hash"):
        assembly.received("liar", metadata.parse(metadata.data(0, bytes(forged))))
    assert sorted(assembly.bad_peers) == ["honest", "liar"]  # the caller cannot tell who lied: both go
    assert all(p is None for p in assembly.pieces)
    assembly.received("honest", metadata.parse(metadata.data(0, info)))
    assert assembly.received("honest", metadata.parse(metadata.data(1, info))) == info


def test_wrong_sizes_are_refused() -> None:
    info = os.urandom(PIECE + 10)
    assembly = Assembly(hashlib.sha1(info).digest(), len(info))
    with pytest.raises(MetadataError, match="expected"):
        assembly.received("p", metadata.parse(metadata.data(0, info + b"more")))  # another total_size
    short = MetadataMessage(DATA, 1, len(info), b"abc")
    with pytest.raises(MetadataError, match="not 10"):
        assembly.received("p", short)
    with pytest.raises(MetadataError, match="out of range"):
        Assembly(b"x" * 20, MAX_METADATA + 1)
    with pytest.raises(MetadataError, match="out of range"):
        Assembly(b"x" * 20, 0)
