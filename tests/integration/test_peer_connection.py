"""Two PeerConnections over 127.0.0.1: handshake, state exchange, blocks, faults."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

import pytest
import uvloop
from swarmkit import count_writes

from torrent.codec import wire
from torrent.core.bitfield import Bitfield
from torrent.core.settings import Settings, with_values
from torrent.peer.connection import PeerConnection

NUM_PIECES = 10
INFO_HASH = bytes(range(20))


@dataclass(eq=False)
class Owner:
    """Records what the connection reports; stands in for the swarm."""

    peer_id: bytes
    have: Bitfield
    info_hash: bytes = INFO_HASH
    num_pieces: int = NUM_PIECES
    refuse: str | None = None
    events: list[tuple] = field(default_factory=list)
    attached: list[PeerConnection] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _record(self, *event: object) -> None:
        self.events.append(event)
        self.changed.set()

    def attach(self, peer: PeerConnection) -> str | None:
        if self.refuse is None:
            self.attached.append(peer)
        self._record("attach", peer.remote_id)
        return self.refuse

    def detach(self, peer: PeerConnection) -> None:
        self._record("detach", peer.close_reason)

    def on_bitfield(self, peer: PeerConnection) -> None:
        self._record("bitfield", peer.bitfield.count())

    def on_have(self, peer: PeerConnection, index: int) -> None:
        self._record("have", index)

    def on_choke_change(self, peer: PeerConnection) -> None:
        self._record("choke", peer.peer_choking)

    def on_interest_change(self, peer: PeerConnection) -> None:
        self._record("interest", peer.peer_interested)

    def on_blocks(self, peer: PeerConnection, blocks: list[wire.Piece]) -> None:
        for index, begin, data in blocks:
            self._record("block", index, begin, bytes(data))

    def on_reject(self, peer: PeerConnection, index: int, begin: int, length: int) -> None:
        self._record("reject", index, begin, length)

    def on_request(self, peer: PeerConnection, index: int, begin: int, length: int) -> None:
        self._record("request", index, begin, length)

    def on_cancel(self, peer: PeerConnection, index: int, begin: int, length: int) -> None:
        self._record("cancel", index, begin, length)

    def on_allowed_fast(self, peer: PeerConnection, index: int) -> None:
        self._record("allowed_fast", index)

    async def wait_for(self, kind: str, timeout: float = 5.0) -> tuple:
        async def find() -> tuple:
            while True:
                for event in self.events:
                    if event[0] == kind:
                        return event
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(find(), timeout)


def full() -> Bitfield:
    bf = Bitfield(NUM_PIECES)
    bf.set_all()
    return bf


async def connect(seed: Owner, leech: Owner) -> tuple[PeerConnection, PeerConnection, asyncio.Server]:
    """``seed`` listens (incoming side resolves the hash), ``leech`` dials."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: PeerConnection(None, resolver=lambda h: seed if h == seed.info_hash else None),
        "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, outgoing = await loop.create_connection(lambda: PeerConnection(leech, address=("127.0.0.1", port)),
                                               "127.0.0.1", port)
    await leech.wait_for("attach")
    await seed.wait_for("attach")
    return outgoing, seed.attached[0] if seed.attached else None, server


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_factory(request):
    return asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop


def run(loop_factory, coro):
    loop = loop_factory()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def test_handshake_state_and_a_block_round_trip(loop_factory) -> None:
    async def main() -> None:
        seed = Owner(b"S" * 20, full())
        leech = Owner(b"L" * 20, Bitfield(NUM_PIECES))
        out, inc, server = await connect(seed, leech)
        # Fast extension both ways: have-all / have-none instead of bitfields.
        assert ("bitfield", NUM_PIECES) == await leech.wait_for("bitfield")
        assert ("bitfield", 0) == await seed.wait_for("bitfield")
        assert out.remote_id == b"S" * 20 and inc.remote_id == b"L" * 20
        assert out.supports_fast and out.extension is not None and out.extension.v.startswith("torrent")
        out.set_interested(True)
        assert await seed.wait_for("interest") == ("interest", True)
        inc.set_choking(False)
        assert await leech.wait_for("choke") == ("choke", False)
        out.send(wire.build_request(3, 0, 16384))
        assert await seed.wait_for("request") == ("request", 3, 0, 16384)
        block = os.urandom(16384)
        inc.send_blocks([(3, 0, block)])
        assert await leech.wait_for("block") == ("block", 3, 0, block)
        assert out.downloaded.total == 16384 and inc.uploaded.total == 16384
        out.close("done")
        assert (await seed.wait_for("detach"))[0] == "detach"
        server.close()

    run(loop_factory, main())


def test_wrong_info_hash_is_refused(loop_factory) -> None:
    async def main() -> None:
        seed = Owner(b"S" * 20, full())
        stranger = Owner(b"L" * 20, Bitfield(NUM_PIECES), info_hash=b"\xff" * 20)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: PeerConnection(None, resolver=lambda h: seed if h == seed.info_hash else None),
            "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, out = await loop.create_connection(lambda: PeerConnection(stranger), "127.0.0.1", port)
        for _ in range(100):
            if out.closed:
                break
            await asyncio.sleep(0.02)
        assert out.closed and not seed.attached and not stranger.attached
        server.close()

    run(loop_factory, main())


def test_owner_refusal_closes_without_detach(loop_factory) -> None:
    async def main() -> None:
        seed = Owner(b"S" * 20, full(), refuse="duplicate connection")
        leech = Owner(b"L" * 20, Bitfield(NUM_PIECES))
        out, _, server = await connect(seed, leech)
        for _ in range(100):
            if out.closed:
                break
            await asyncio.sleep(0.02)
        assert out.closed
        assert not any(e[0] == "detach" for e in seed.events)
        server.close()

    run(loop_factory, main())


@pytest.mark.parametrize("garbage, reason", [
    (wire.build_message(5, b"\xff\xff"), "spare bits"),  # bitfield with spare bits set for 10 pieces
    (b"\xff\xff\xff\xff\x07", "exceeds the limit"),  # oversized length prefix
    (wire.build_have(NUM_PIECES), "out of range"),
])
def test_protocol_violations_drop_the_peer(loop_factory, garbage: bytes, reason: str) -> None:
    async def main() -> None:
        seed = Owner(b"S" * 20, Bitfield(NUM_PIECES))
        leech = Owner(b"L" * 20, Bitfield(NUM_PIECES))
        out, inc, server = await connect(seed, leech)
        await seed.wait_for("bitfield")
        seed.events.clear()
        out.transport.write(garbage)
        detach = await seed.wait_for("detach")
        assert reason in detach[1]
        assert inc.closed
        server.close()

    run(loop_factory, main())


def test_a_later_bitfield_adds_its_new_pieces_as_haves(loop_factory) -> None:
    """aria2 sends a fresh bitfield instead of several haves: keep the peer."""
    async def main() -> None:
        seed = Owner(b"S" * 20, full())
        leech = Owner(b"L" * 20, Bitfield(NUM_PIECES))
        out, inc, server = await connect(seed, leech)
        await seed.wait_for("bitfield")  # have-none from the leecher
        seed.events.clear()
        later = Bitfield(NUM_PIECES)
        later.set(2)
        later.set(7)
        out.send(wire.build_bitfield(later.to_bytes()))
        assert await seed.wait_for("have") == ("have", 2)
        await asyncio.sleep(0.05)
        assert [e for e in seed.events if e[0] == "have"] == [("have", 2), ("have", 7)]
        assert not inc.closed and inc.bitfield.iter_set() == [2, 7]
        out.close("done")
        server.close()

    run(loop_factory, main())


def test_a_silent_connection_is_dropped_after_the_handshake_timeout(loop_factory) -> None:
    quick = with_values(Settings(), {"network.handshake_timeout": 0.2})

    async def main() -> None:
        seed = Owner(b"S" * 20, full())
        loop = asyncio.get_running_loop()
        conns: list[PeerConnection] = []

        def factory() -> PeerConnection:
            conns.append(PeerConnection(None, resolver=lambda h: seed, settings=quick))
            return conns[-1]

        server = await loop.create_server(factory, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        assert await asyncio.wait_for(reader.read(), 3) == b""  # closed on us, nothing sent
        assert conns[0].close_reason == "no handshake within 0.2 s"
        assert conns[0].closed and "no handshake" in conns[0].close_reason
        writer.close()
        server.close()

    run(loop_factory, main())


def test_small_messages_queued_in_one_iteration_leave_in_one_write_and_blocks_in_one_writev(loop_factory) -> None:
    async def until(condition) -> None:
        for _ in range(500):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("condition not met within 5 s")

    async def main() -> None:
        seed = Owner(b"S" * 20, full())
        leech = Owner(b"L" * 20, Bitfield(NUM_PIECES))
        out, inc, server = await connect(seed, leech)
        out_writes = count_writes(out)
        for index in (1, 2, 5):
            out.send_soon(wire.build_have(index))
        assert out_writes == []  # nothing leaves before the iteration ends
        await until(lambda: len([e for e in seed.events if e[0] == "have"]) == 3)
        assert out_writes == [3 * 9]
        assert [e[1] for e in seed.events if e[0] == "have"] == [1, 2, 5]

        inc_writes = count_writes(inc)
        blocks = [(4, i * 16384, os.urandom(16384)) for i in range(3)]
        inc.send_blocks(blocks)
        assert inc_writes == [3 * (13 + 16384)]
        await until(lambda: len([e for e in leech.events if e[0] == "block"]) == 3)
        assert [e[1:] for e in leech.events if e[0] == "block"] == blocks
        out.close("done")
        server.close()

    run(loop_factory, main())


def test_messages_sent_later_ride_on_the_next_write_or_leave_at_the_flush(loop_factory) -> None:
    """A seed wakes for every packet it reads: haves for its display of us wait for the next request
    (one write, haves first) or the owner's tick (``flush_later``), and none is lost or reordered."""
    async def main() -> None:
        seed = Owner(b"S" * 20, full())
        leech = Owner(b"L" * 20, Bitfield(NUM_PIECES))
        out, inc, server = await connect(seed, leech)
        writes = count_writes(out)
        out.send_later(wire.build_have(1))
        out.send_later(wire.build_have(2))
        await asyncio.sleep(0.2)
        assert writes == [] and not [e for e in seed.events if e[0] == "have"]
        out.send(wire.build_request(3, 0, 16384))
        request = await seed.wait_for("request")
        assert writes == [2 * 9 + 17]
        haves = [e for e in seed.events if e[0] in ("have", "request")]
        assert haves == [("have", 1), ("have", 2), request]
        out.send_later(wire.build_have(4))
        out.flush_later()
        out.flush_later()  # nothing left: no empty write
        for _ in range(100):
            if ("have", 4) in seed.events:
                break
            await asyncio.sleep(0.01)
        assert ("have", 4) in seed.events and writes == [2 * 9 + 17, 9]
        out.close("done")
        server.close()

    run(loop_factory, main())


def test_every_connection_reads_into_one_buffer_and_loses_nothing_between_reads() -> None:
    """Two peers' reads interleave in the loop's one receive buffer; a block cut off at the end of one read
    is completed by the next, after the other peer's read has overwritten the buffer."""
    async def main() -> None:
        leech = Owner(b"L" * 20, Bitfield(NUM_PIECES))
        peers = [PeerConnection(leech, address=("127.0.0.1", n)) for n in (1, 2)]  # no transport
        blocks = {peer: (n, 0, bytes([n + 1]) * 16384) for n, peer in enumerate(peers)}
        streams = {peer: wire.Handshake(INFO_HASH, b"S" * 20).to_bytes() + wire.build_bitfield(b"\xff\xc0")
                   + wire.build_piece(*blocks[peer]) for peer in peers}
        buffers = []

        def read(peer: PeerConnection, n: int) -> None:
            buffer = peer.get_buffer(-1)
            buffers.append(buffer)
            buffer[:n] = streams[peer][:n]
            streams[peer] = streams[peer][n:]
            peer.buffer_updated(n)

        for peer in peers:
            read(peer, 68 + 7 + 5000)  # the handshake, the bitfield, and a third of the block
        for peer in peers:
            read(peer, len(streams[peer]))
        assert not any(peer.closed for peer in peers), [peer.close_reason for peer in peers]
        assert all(buffer is buffers[0] for buffer in buffers)
        assert len(buffers[0]) == Settings().peer.recv_buffer
        assert [e[1:] for e in leech.events if e[0] == "block"] == [blocks[peer] for peer in peers]
        assert not any(peer.closed for peer in peers)

    asyncio.run(main())


@pytest.mark.parametrize("message", [wire.build_have(10**9), wire.build_request(10**9, 0, 16384),
                                     wire.build_bitfield(b"\xff" * 100)], ids=["have", "request", "bitfield"])
def test_an_incoming_peer_is_checked_against_the_piece_count_from_its_first_message(message: bytes) -> None:
    """The handshake and a message with an impossible index in one read: before the handshake named the
    torrent the parser could not know the piece count, so it waits for it instead of passing the message."""
    seed = Owner(b"S" * 20, Bitfield(NUM_PIECES))
    peer = PeerConnection(None, resolver=lambda info_hash: seed)  # incoming; no transport: sends go nowhere
    data = wire.Handshake(INFO_HASH, b"L" * 20).to_bytes() + wire.build_have(3) + message
    buffer = peer.get_buffer(-1)
    buffer[:len(data)] = data
    peer.buffer_updated(len(data))
    assert peer.closed and (peer.close_reason or "").startswith("protocol error: ")
    assert "out of range" in peer.close_reason or "bitfield" in peer.close_reason
    assert seed.attached == [peer]  # the handshake itself was fine
