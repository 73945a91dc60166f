"""uTP between whole sessions on 127.0.0.1: the default order (uTP first, then TCP), uTP alone, uTP with
RC4, and a peer without uTP reached over TCP once, then dialled over TCP first."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from swarmkit import (
    PeerServer,
    connected_row,
    local_settings,
    make_torrent,
    run,
    same_tree,
    start_session,
    wait_complete,
    wait_for,
)

from torrent.codec import wire

MiB = 1024 * 1024



@pytest.mark.parametrize(("transports", "encryption", "expected"), [
    ("utp,tcp", "prefer", "handshake"),  # the defaults
    ("utp", "require", "rc4"),
    ("tcp,utp", "prefer", "handshake"),  # TCP preferred: uTP is not used
])
def test_sessions_transfer_over_the_transport_dialled_first(tmp_path: Path, transports: str, encryption: str,
                                                            expected: str) -> None:
    meta, data, torrent = make_torrent(tmp_path, 3 * MiB + 5)
    transport = transports.split(",")[0]

    async def main() -> None:
        settings = local_settings(network__transports=transports, network__encryption=encryption)
        seeder = await start_session(tmp_path, "s", settings)
        leecher = await start_session(tmp_path, "l", settings)
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_for(seeder, sid, lambda s: s.state == "seeding", what="seeding")
            await seeder.set_rate_limits(max_up=3 * MiB)  # about a second connected, to look at the rows
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seeder.listen_port)])
            ours, theirs = await connected_row(leecher, lid), await connected_row(seeder, sid)
            assert (ours.transport, theirs.transport) == (transport, transport)
            assert (ours.encryption, theirs.encryption) == (expected, expected)
            snap = await wait_complete(leecher, lid, timeout=60)
            assert snap.hash_failures == 0
        finally:
            await leecher.close()
            await seeder.close()
        assert same_tree(data / "payload", tmp_path / "out" / "payload")

    run(main())


class TcpOnlyPeer(PeerServer):
    """A seeder without uTP (nothing listens on its UDP port): counts TCP connections, closes the first
    one after the handshake so that we dial it again."""

    def __init__(self, meta, payload: bytes) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.meta = meta
        self.payload = payload
        self.connections = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        parser = wire.WireParser(num_pieces=self.meta.num_pieces)
        try:
            while chunk := await reader.read(65536):
                for event in parser.feed(chunk):
                    if isinstance(event, wire.Handshake):
                        writer.write(wire.Handshake(self.meta.info_hash, b"-TC0001-" + bytes(12)).to_bytes())
                        if self.connections == 1:
                            await writer.drain()
                            writer.close()
                            return
                        writer.write(wire.build_have_all())
                        writer.write(wire.build_unchoke())
                    elif isinstance(event, wire.Request):
                        start = event.index * self.meta.piece_length + event.begin
                        writer.write(wire.build_piece(event.index, event.begin,
                                                      self.payload[start:start + event.length]))
                await writer.drain()
        except (ConnectionError, wire.ProtocolError):
            pass


def test_a_peer_without_utp_is_reached_over_tcp_and_dialled_so_first_next_time(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 512 * 1024, files=1)
    payload = b"".join((data / Path(*f.path)).read_bytes() for f in meta.files)

    async def main() -> None:
        peer = TcpOnlyPeer(meta, payload)
        await peer.start()
        # The uTP try costs utp_connect_timeout; the retry after the first close must not pay it again.
        leecher = await start_session(tmp_path, "l", local_settings(
            network__transports="utp,tcp", network__encryption="disable", network__utp_connect_timeout=3.0,
            network__retry_first=0.1))
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", peer.port)])
            await wait_for(leecher, lid, lambda s: peer.connections >= 1, what="a TCP connection", timeout=10)
            assert loop.time() - started >= 3.0  # uTP was tried first, for utp_connect_timeout
            first = loop.time()
            await wait_for(leecher, lid, lambda s: peer.connections >= 2, what="the second TCP connection",
                           timeout=10)
            # Redialled on the next one-second tick, over TCP at once: not after another 3 s uTP timeout.
            assert loop.time() - first < 2.5
            await wait_complete(leecher, lid, timeout=20)
            (row,) = [p for p in leecher.peers(lid) if p.address.endswith(f":{peer.port}")]
            assert row.transport == "tcp" or row.status != "connected"
        finally:
            await leecher.close()
            peer.close()
        assert same_tree(data / "payload", tmp_path / "out" / "payload")

    run(main())


@pytest.mark.parametrize("side", ["leecher's download", "seeder's upload"])
def test_rate_limits_hold_over_utp(tmp_path: Path, side: str) -> None:
    meta, data, torrent = make_torrent(tmp_path, 3 * MiB, files=1)

    async def main() -> None:
        settings = local_settings(network__transports="utp")
        seeder, leecher = await start_session(tmp_path, "s", settings), await start_session(tmp_path, "l", settings)
        if side == "seeder's upload":
            await seeder.set_rate_limits(max_up=512 * 1024)
        else:
            await leecher.set_rate_limits(max_down=512 * 1024)
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_for(seeder, sid, lambda s: s.state == "seeding", what="seeding")
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seeder.listen_port)])
            row = await connected_row(leecher, lid)
            assert row.transport == "utp"
            await asyncio.sleep(2.0)
            # 512 KiB/s plus a one-second burst: at most ~1.5 MiB in two seconds, where uTP alone moves 3 MiB
            # in a small fraction of a second here.
            snap = leecher.torrent(lid)
            assert 0 < snap.verified <= 512 * 1024 * 3 + 2 * meta.piece_length, snap.verified
            await seeder.set_rate_limits(max_up=0)
            await leecher.set_rate_limits(max_down=0)
            await wait_complete(leecher, lid)
        finally:
            await leecher.close()
            await seeder.close()
        assert same_tree(data / "payload", tmp_path / "out" / "payload")

    run(main())
