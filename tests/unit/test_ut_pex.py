"""ut_pex on the extension registry, with peers that only record what they are sent: who is told about
whom, how often, what is learned, and the private-torrent switch. Also which of two simultaneous
connections to one peer both sides keep."""

from __future__ import annotations

from torrent.codec import pex, wire
from torrent.core.bitfield import Bitfield
from torrent.peer.connection import keeps_new_connection
from torrent.peer.ut_pex import PexExtension


class FakePeer:
    def __init__(self, host: str, port: int, *, outgoing: bool = True, listen: int | None = None,
                 pex_id: int = 1, seed: bool = False, remote_id: bytes = b"r" * 20) -> None:
        self.address = (host, port)
        self.outgoing = outgoing
        self.closed = False
        self.remote_id = remote_id
        self.extension = wire.ExtensionHandshake(m={"ut_pex": pex_id} if pex_id else {}, p=listen)
        self.bitfield: Bitfield | None = None
        if seed:
            self.bitfield = Bitfield(8)
            self.bitfield.set_all()
        self.sent: list[pex.PexMessage] = []
        self.connected_at = 100.0
        self.downloaded = self.uploaded = Meter()

    def send_extended(self, name: str, payload: bytes) -> bool:
        assert name == "ut_pex"
        self.sent.append(pex.parse(payload))
        return True


class Meter:
    total = 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def setup(peers: list[FakePeer], *, enabled: bool = True):
    learned: list[tuple[str, int]] = []
    clock = Clock()
    ext = PexExtension(connected=lambda: peers, on_peers=lambda added, seeds: learned.extend(added),
                       enabled=lambda: enabled, clock=clock)
    for peer in peers:
        ext.peer_ready(peer)  # type: ignore[arg-type]
    return ext, learned, clock


def test_each_peer_hears_of_the_others_by_their_listen_address() -> None:
    a = FakePeer("10.0.0.1", 6881)
    b = FakePeer("10.0.0.2", 51234, outgoing=False, listen=7000, seed=True)
    c = FakePeer("10.0.0.3", 40000, outgoing=False)  # incoming, never said its port: not dialable
    ext, _, clock = setup([a, b, c])
    ext.tick()
    (to_a,) = a.sent
    assert set(to_a.added) == {("10.0.0.2", 7000, pex.SEED)}
    (to_b,) = b.sent
    assert set(to_b.added) == {("10.0.0.1", 6881, pex.REACHABLE)}
    # Nothing changed and the minute is not up: nothing more goes out.
    clock.now += 30
    ext.tick()
    assert len(a.sent) == 1
    # A peer leaves: after the minute, the others hear it was dropped.
    b.closed = True
    ext.peer_gone(b)  # type: ignore[arg-type]
    clock.now += 31
    ext.tick()
    assert a.sent[-1].dropped == (("10.0.0.2", 7000),)


def test_what_peers_tell_us_becomes_candidates_once_a_minute() -> None:
    a = FakePeer("10.0.0.1", 6881)
    ext, learned, clock = setup([a])
    message = pex.build([("10.0.0.9", 6000, 0), ("10.0.0.8", 6001, pex.SEED)])
    ext.received(a, message)  # type: ignore[arg-type]
    assert learned == [("10.0.0.9", 6000), ("10.0.0.8", 6001)]
    clock.now += 5
    ext.received(a, pex.build([("10.0.0.7", 6002, 0)]))  # type: ignore[arg-type]  # too soon: ignored
    assert len(learned) == 2
    clock.now += 60
    ext.received(a, pex.build([("10.0.0.7", 6002, 0)]))  # type: ignore[arg-type]
    assert learned[-1] == ("10.0.0.7", 6002)


def test_peers_flagged_as_seeds_are_named_as_such() -> None:
    a = FakePeer("10.0.0.1", 6881)
    told: list[tuple[list[tuple[str, int]], set[tuple[str, int]]]] = []
    ext = PexExtension(connected=lambda: [a], on_peers=lambda added, seeds: told.append((added, seeds)))
    ext.peer_ready(a)  # type: ignore[arg-type]
    ext.received(a, pex.build([("10.0.0.7", 6002, pex.SEED | pex.REACHABLE), ("10.0.0.8", 6003, 0)]))  # type: ignore[arg-type]
    assert told == [([("10.0.0.7", 6002), ("10.0.0.8", 6003)], {("10.0.0.7", 6002)})]


def test_off_for_private_torrents_and_peers_without_ut_pex() -> None:
    a, b = FakePeer("10.0.0.1", 6881), FakePeer("10.0.0.2", 6882, pex_id=0)
    ext, learned, _ = setup([a, b], enabled=False)
    ext.tick()
    ext.received(a, pex.build([("10.0.0.9", 6000, 0)]))  # type: ignore[arg-type]
    assert a.sent == [] and learned == []
    ext2, _, _ = setup([a, b])
    ext2.tick()
    assert b.sent == [] and len(a.sent) == 1


def test_both_sides_keep_the_connection_dialled_by_the_larger_peer_id() -> None:
    low, high = b"\x01" * 20, b"\x02" * 20
    # At the low side: its own dial (outgoing) exists, the high side's dial (incoming) arrives.
    mine = FakePeer("h", 1, outgoing=True, remote_id=high)
    theirs = FakePeer("h", 2, outgoing=False, remote_id=high)
    assert keeps_new_connection(mine, theirs, low)  # type: ignore[arg-type]
    # At the high side the same two connections, the other way round: it keeps its own dial.
    mine_h = FakePeer("l", 1, outgoing=True, remote_id=low)
    theirs_h = FakePeer("l", 2, outgoing=False, remote_id=low)
    assert not keeps_new_connection(mine_h, theirs_h, high)  # type: ignore[arg-type]
    assert keeps_new_connection(theirs_h, mine_h, high)  # type: ignore[arg-type]
    # A second connection later (a retry, a client that dials after being dialled): the first one stays.
    theirs.connected_at = mine.connected_at + 5
    assert not keeps_new_connection(mine, theirs, low)  # type: ignore[arg-type]

