"""uTP (torrent.session.utp) against libtorrent on 127.0.0.1 with TCP off on its side: a real PeerConnection
over our UtpTransport downloads a torrent from a libtorrent seed, and a libtorrent leecher dials our
UtpSocket and downloads the same torrent from us."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvloop

from torrent.bench.lt_peer import LOOPBACK_SETTINGS, UTP_ONLY
from torrent.codec import wire
from torrent.core.bitfield import Bitfield
from torrent.peer.connection import PeerConnection
from torrent.session.udp import UdpEndpoint
from torrent.session.utp import UtpSocket

pytestmark = pytest.mark.interop

PIECE = 64 * 1024
BLOCK = 16 * 1024
SIZE = 40 * PIECE + 1000  # 2.5 MiB: hundreds of uTP packets each way, a short last piece

LT_SETTINGS = dict(LOOPBACK_SETTINGS, **UTP_ONLY, alert_mask=0)  # libtorrent on loopback, uTP alone


def make_torrent(lt: Any, tmp_path: Path) -> tuple[bytes, Any]:
    data = random.Random(29).randbytes(SIZE)
    (tmp_path / "payload.bin").write_bytes(data)
    if hasattr(lt, "list_files"):
        ct = lt.create_torrent(lt.list_files(str(tmp_path / "payload.bin")), PIECE, lt.create_torrent.v1_only)
    else:
        fs = lt.file_storage()
        lt.add_files(fs, str(tmp_path / "payload.bin"))
        ct = lt.create_torrent(fs, PIECE, lt.create_torrent.v1_only)
    lt.set_piece_hashes(ct, str(tmp_path))
    return data, lt.torrent_info(lt.bencode(ct.generate()))


def lt_session(lt: Any, info: Any, save_path: Path, *, seeding: bool) -> tuple[Any, Any]:
    session = lt.session(LT_SETTINGS)
    params = lt.add_torrent_params()
    params.ti = info
    params.save_path = str(save_path)
    handle = session.add_torrent(params)
    if seeding:
        deadline = time.monotonic() + 15
        while not handle.status().is_seeding:
            assert time.monotonic() < deadline, "libtorrent did not finish checking the payload"
            time.sleep(0.02)
    return session, handle


@dataclass(eq=False)
class Owner:
    """The swarm's part, reduced to one peer: request every block, or serve every request."""

    info_hash: bytes
    num_pieces: int
    have: Bitfield
    data: bytes = b""
    peer_id: bytes = b"-XX0001-" + bytes(12)
    blocks: dict[tuple[int, int], bytes] = field(default_factory=dict)
    attached: list[PeerConnection] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    served: int = 0

    def attach(self, peer: PeerConnection) -> str | None:
        self.attached.append(peer)
        return None

    def detach(self, peer: PeerConnection) -> None:
        self.closed.append(peer.close_reason or "")

    def on_bitfield(self, peer: PeerConnection) -> None:
        peer.set_interested(True)

    def on_have(self, peer: PeerConnection, index: int) -> None: ...

    def on_choke_change(self, peer: PeerConnection) -> None:
        if not peer.peer_choking:
            for index in range(self.num_pieces):
                length = min(PIECE, SIZE - index * PIECE)
                for begin in range(0, length, BLOCK):
                    peer.send(wire.build_request(index, begin, min(BLOCK, length - begin)))

    def on_interest_change(self, peer: PeerConnection) -> None:
        peer.set_choking(not peer.peer_interested)

    def on_blocks(self, peer: PeerConnection, blocks: list[wire.Piece]) -> None:
        for index, begin, data in blocks:
            self.blocks[(index, begin)] = bytes(data)

    def on_request(self, peer: PeerConnection, index: int, begin: int, length: int) -> None:
        start = index * PIECE + begin
        peer.send_blocks([(index, begin, memoryview(self.data)[start:start + length])])
        self.served += length

    def on_reject(self, peer: PeerConnection, index: int, begin: int, length: int) -> None: ...
    def on_cancel(self, peer: PeerConnection, index: int, begin: int, length: int) -> None: ...
    def on_allowed_fast(self, peer: PeerConnection, index: int) -> None: ...

    def piece(self, index: int) -> bytes:
        length = min(PIECE, SIZE - index * PIECE)
        return b"".join(self.blocks.get((index, begin), b"") for begin in range(0, length, BLOCK))


def run(coro: Any) -> Any:
    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, 90))
    finally:
        loop.close()


async def open_utp(**kwargs: Any) -> tuple[UdpEndpoint, UtpSocket]:
    endpoint = await UdpEndpoint.open("127.0.0.1", 0)
    sock = UtpSocket(endpoint.sendto, sockname=("127.0.0.1", endpoint.port), **kwargs)
    endpoint.on_utp = sock.datagram_received
    return endpoint, sock


def test_we_download_from_libtorrent_over_utp(lt: Any, tmp_path: Path) -> None:
    """Our UtpTransport dials a libtorrent seed (uTP only); a real PeerConnection handshakes, gets the
    bitfield, is unchoked and downloads every piece, each matching its SHA-1 in the torrent."""
    data, info = make_torrent(lt, tmp_path)
    session, handle = lt_session(lt, info, tmp_path, seeding=True)
    info_hash = bytes(info.info_hashes().v1.to_bytes())
    port = session.listen_port()
    owner = Owner(info_hash, info.num_pieces(), Bitfield(info.num_pieces()))

    async def main() -> None:
        endpoint, sock = await open_utp()
        try:
            transport, peer = await sock.connect(("127.0.0.1", port),
                                                 lambda: PeerConnection(owner, address=("127.0.0.1", port)),
                                                 timeout=10)
            while len(owner.blocks) < sum(-(-min(PIECE, SIZE - i * PIECE) // BLOCK)
                                          for i in range(info.num_pieces())):
                assert not peer.closed, peer.close_reason
                await asyncio.sleep(0.02)
            peer.close("done")
        finally:
            sock.close()
            endpoint.close()

    run(main())
    assert owner.attached and owner.attached[0].remote_id
    for index in range(info.num_pieces()):
        assert hashlib.sha1(owner.piece(index)).digest() == bytes(info.hash_for_piece(index)), index
    assert b"".join(owner.piece(i) for i in range(info.num_pieces())) == data
    del session


def test_libtorrent_downloads_from_us_over_utp(lt: Any, tmp_path: Path) -> None:
    """A libtorrent leecher (uTP only) dials our UtpSocket; our PeerConnection serves every block and
    libtorrent's own hash checks pass: it ends up seeding."""
    (tmp_path / "seed").mkdir()
    data, info = make_torrent(lt, tmp_path / "seed")
    have = Bitfield(info.num_pieces())
    have.set_all()
    info_hash = bytes(info.info_hashes().v1.to_bytes())
    owner = Owner(info_hash, info.num_pieces(), have, data=data)
    leech_dir = tmp_path / "leech"
    leech_dir.mkdir()
    session, handle = lt_session(lt, info, leech_dir, seeding=False)

    async def main() -> None:
        endpoint, sock = await open_utp(
            on_accept=lambda: PeerConnection(None, resolver=lambda h: owner if h == info_hash else None))
        try:
            handle.connect_peer(("127.0.0.1", endpoint.port))
            deadline = time.monotonic() + 60
            while not handle.status().is_seeding:
                assert time.monotonic() < deadline, f"libtorrent has {handle.status().progress:.0%}"
                if not sock._conns and owner.closed:
                    pytest.fail(f"libtorrent hung up: {owner.closed}")
                await asyncio.sleep(0.05)
        finally:
            sock.close()
            endpoint.close()

    run(main())
    assert owner.served >= SIZE
    assert (leech_dir / "payload.bin").read_bytes() == data
    del session
