"""ut_metadata on the extension registry, with peers that only record what they are sent: fetching from
several peers, verification, liars, silence, rejects, and serving with its bound."""

from __future__ import annotations

import hashlib
import os

import pytest

from torrent.codec import bencoding, metadata, wire
from torrent.codec.metadata import MetadataError
from torrent.peer.extensions import OUR_IDS, PeerExtensions
from torrent.peer.ut_metadata import PER_PEER, SERVE_ROUNDS, MetadataExtension


class FakePeer:
    def __init__(self, name: str, size: int | None, *, their_id: int = 3) -> None:
        self.name = name
        m = {"ut_metadata": their_id}
        self.extension = wire.ExtensionHandshake(m=m, metadata_size=size)
        self.sent: list[metadata.MetadataMessage] = []
        self.closed = False
        self.close_reason: str | None = None

    def send_extended(self, name: str, payload: bytes) -> bool:
        assert name == "ut_metadata"
        self.sent.append(metadata.parse(payload))
        return True

    def close(self, reason: str) -> None:
        self.closed, self.close_reason = True, reason

    def requested(self) -> list[int]:
        return [m.piece for m in self.sent if m.kind == metadata.REQUEST]

    def __repr__(self) -> str:
        return self.name


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def info_dict(size_hint: int) -> bytes:
    """A bencoded info dictionary of about ``size_hint`` bytes."""
    return bencoding.encode({b"name": b"x", b"pieces": os.urandom(20 * (size_hint // 20))})


def fetcher(info: bytes, clock: Clock | None = None) -> tuple[MetadataExtension, list[bytes]]:
    got: list[bytes] = []
    ext = MetadataExtension(hashlib.sha1(info).digest(), None, on_metadata=got.append, clock=clock or Clock())
    return ext, got


def answer(ext: MetadataExtension, peer: FakePeer, info: bytes, *, corrupt: bool = False) -> None:
    """The peer answers every request it has not answered yet."""
    answered = getattr(peer, "answered", 0)
    requests = peer.requested()
    peer.answered = len(requests)  # type: ignore[attr-defined]
    for piece in requests[answered:]:
        payload = metadata.data(piece, info)
        if corrupt:
            payload = payload[:-1] + bytes([payload[-1] ^ 0xFF])
        ext.received(peer, payload)  # type: ignore[arg-type]


def test_fetches_from_several_peers_and_verifies() -> None:
    info = info_dict(100_000)  # 7 pieces
    ext, got = fetcher(info)
    a, b = FakePeer("a", len(info)), FakePeer("b", len(info))
    ext.peer_ready(a)  # type: ignore[arg-type]
    ext.peer_ready(b)  # type: ignore[arg-type]
    assert len(a.requested()) == PER_PEER and len(b.requested()) == 7 - PER_PEER
    assert not set(a.requested()) & set(b.requested())
    assert ext.progress() == (0, 7)
    while not got:
        answer(ext, a, info)
        answer(ext, b, info)
    assert got == [info]
    assert not ext.fetching and ext.info == info
    assert ext.handshake_fields() == {"metadata_size": len(info)}


def test_a_liar_is_dropped_and_the_honest_peer_finishes() -> None:
    info = info_dict(40_000)  # 3 pieces
    ext, got = fetcher(info)
    liar, honest = FakePeer("liar", len(info)), FakePeer("honest", len(info))
    ext.peer_ready(liar)  # type: ignore[arg-type]
    ext.peer_ready(honest)  # type: ignore[arg-type]
    answer(ext, liar, info, corrupt=True)
    answer(ext, honest, info)
    assert liar.closed and "does not match the info-hash" in (liar.close_reason or "")
    ext.peer_gone(liar)  # type: ignore[arg-type]  # what the connection does when it closes
    for _ in range(5):
        answer(ext, honest, info)
    assert got == [info]


def test_the_size_most_peers_announce_wins() -> None:
    info = info_dict(20_000)
    ext, got = fetcher(info)
    liar = FakePeer("liar", len(info) + 5000)
    ext.peer_ready(liar)  # type: ignore[arg-type]
    honest = [FakePeer(f"h{i}", len(info)) for i in range(2)]
    for peer in honest:
        ext.peer_ready(peer)  # type: ignore[arg-type]
    # The liar came first, so its size started the assembly; its pieces do not fit and it is dropped.
    answer(ext, liar, info + os.urandom(5000))
    assert liar.closed
    ext.peer_gone(liar)  # type: ignore[arg-type]
    for _ in range(4):
        for peer in honest:
            answer(ext, peer, info)
    assert got == [info]


def test_an_absurd_size_is_ignored() -> None:
    info = info_dict(20_000)
    ext, got = fetcher(info)
    huge = FakePeer("huge", 10**12)
    ext.peer_ready(huge)  # type: ignore[arg-type]
    assert huge.requested() == [] and ext.assembly is None


def test_silence_sends_the_pieces_elsewhere() -> None:
    info = info_dict(20_000)
    clock = Clock()
    ext, got = fetcher(info, clock)
    mute, honest = FakePeer("mute", len(info)), FakePeer("honest", len(info))
    ext.peer_ready(mute)  # type: ignore[arg-type]
    ext.peer_ready(honest)  # type: ignore[arg-type]
    assert mute.requested() == [0, 1] and honest.requested() == []
    clock.now += ext.request_timeout + 1
    ext.tick()
    assert honest.requested() == [0, 1]
    answer(ext, honest, info)
    assert got == [info]
    assert mute.requested() == [0, 1]  # not asked again while it is in the sin bin


def test_a_reject_sends_the_piece_elsewhere() -> None:
    info = info_dict(20_000)
    ext, got = fetcher(info)
    refuser, honest = FakePeer("refuser", len(info)), FakePeer("honest", len(info))
    ext.peer_ready(refuser)  # type: ignore[arg-type]
    ext.peer_ready(honest)  # type: ignore[arg-type]
    ext.received(refuser, metadata.reject(0))  # type: ignore[arg-type]
    assert 0 in honest.requested()
    answer(ext, honest, info)
    answer(ext, honest, info)
    assert got == [info]


def test_unrequested_data_is_ignored() -> None:
    info = info_dict(20_000)
    ext, got = fetcher(info)
    pusher = FakePeer("pusher", None)
    ext.peer_ready(pusher)  # type: ignore[arg-type]
    for piece in range(2):
        ext.received(pusher, metadata.data(piece, info))  # type: ignore[arg-type]
    assert got == [] and ext.fetching


def test_serving_with_a_bound_per_peer() -> None:
    info = info_dict(40_000)
    ext = MetadataExtension(hashlib.sha1(info).digest(), info, on_metadata=lambda _: None)
    peer = FakePeer("leecher", None)
    ext.received(peer, metadata.request(1))  # type: ignore[arg-type]
    reply = peer.sent[-1]
    assert reply.kind == metadata.DATA and reply.total_size == len(info)
    assert reply.data == info[metadata.PIECE:2 * metadata.PIECE]
    ext.received(peer, metadata.request(3))  # type: ignore[arg-type]  # out of range
    assert peer.sent[-1].kind == metadata.REJECT
    for _ in range(SERVE_ROUNDS * 3):
        ext.received(peer, metadata.request(0))  # type: ignore[arg-type]
    kinds = [m.kind for m in peer.sent[2:]]
    assert kinds.count(metadata.DATA) == SERVE_ROUNDS * 3 - 1 and kinds[-1] == metadata.REJECT


def test_without_metadata_every_request_is_rejected() -> None:
    info = info_dict(20_000)
    ext, _ = fetcher(info)
    peer = FakePeer("asker", None)
    ext.received(peer, metadata.request(0))  # type: ignore[arg-type]
    assert peer.sent[-1].kind == metadata.REJECT
    assert ext.handshake_fields() == {}


def test_malformed_messages_raise_a_protocol_error() -> None:
    ext, _ = fetcher(info_dict(20_000))
    for payload in (b"", b"not bencode", bencoding.encode({b"msg_type": 9, b"piece": 0}),
                    bencoding.encode({b"msg_type": 1, b"piece": 0, b"total_size": 10**12})):
        with pytest.raises(MetadataError):
            ext.received(FakePeer("bad", None), payload)  # type: ignore[arg-type]


def test_the_registry_routes_by_our_ids() -> None:
    info = info_dict(20_000)
    ext = MetadataExtension(hashlib.sha1(info).digest(), info, on_metadata=lambda _: None)
    registry = PeerExtensions([ext], dht_port=6881)
    assert registry.m() == {"ut_metadata": OUR_IDS["ut_metadata"]}
    assert registry.handshake_fields() == {"metadata_size": len(info)}
    peer = FakePeer("p", None)
    registry.received(peer, OUR_IDS["ut_metadata"], metadata.request(0))  # type: ignore[arg-type]
    registry.received(peer, 200, b"whatever")  # type: ignore[arg-type]  # an id we never gave: ignored
    assert [m.kind for m in peer.sent] == [metadata.DATA]
    heard: list[tuple[str, int]] = []
    registry.on_dht_node = lambda host, port: heard.append((host, port))
    registry.dht_node("127.0.0.1", 0)
    registry.dht_node("127.0.0.1", 7000)
    assert heard == [("127.0.0.1", 7000)]
