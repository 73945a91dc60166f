"""Protocol encryption (MSE/PE) end to end between two sessions on 127.0.0.1, and against peers that
speak only plain text or only garbage: every pair of policies transfers (or refuses) as the words say,
the peer rows show what was negotiated, and a peer that closes our first handshake is dialled again at
once with the other."""

from __future__ import annotations

import asyncio
import hashlib
import os
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

from torrent.codec import mse, wire
from torrent.codec.metainfo import Metainfo
from torrent.core.errors import MseError

MiB = 1024 * 1024



@pytest.mark.parametrize(("seed_policy", "leech_policy", "expected"), [
    ("require", "require", "rc4"),
    ("prefer", "prefer", "handshake"),  # libtorrent's default: the handshake hidden, the stream plain
    ("require", "prefer", "rc4"),
    ("prefer", "require", "rc4"),
    ("allow", "allow", ""),  # plain text dialled first, and accepted
    ("disable", "prefer", ""),  # our encrypted try is refused; the plain retry works
    ("prefer", "disable", ""),
])
def test_every_pair_of_policies_transfers_as_negotiated(tmp_path: Path, seed_policy: str, leech_policy: str,
                                                        expected: str) -> None:
    meta, data, torrent = make_torrent(tmp_path, 2 * MiB + 777)

    async def main() -> None:
        seeder = await start_session(tmp_path, "s", local_settings(network__encryption=seed_policy))
        leecher = await start_session(tmp_path, "l", local_settings(network__encryption=leech_policy))
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_for(seeder, sid, lambda s: s.state == "seeding", what="seeding")
            await seeder.set_rate_limits(max_up=2 * MiB)  # about a second connected, to look at the rows
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seeder.listen_port)])
            ours, theirs = await connected_row(leecher, lid), await connected_row(seeder, sid)
            assert (ours.encryption, theirs.encryption) == (expected, expected)
            assert not ours.incoming and theirs.incoming
            snap = await wait_complete(leecher, lid, timeout=30)
            assert snap.hash_failures == 0
        finally:
            await leecher.close()
            await seeder.close()
        assert same_tree(data / "payload", tmp_path / "out" / "payload")

    run(main())


def test_a_peer_requiring_encryption_never_takes_plain_text(tmp_path: Path) -> None:
    """Seeder ``require``, leecher ``disable``: no policy lets them agree, so nothing flows and the
    leecher's row says why, without the plain handshake ever being answered."""
    meta, data, torrent = make_torrent(tmp_path, 256 * 1024)

    async def main() -> None:
        seeder = await start_session(tmp_path, "s", local_settings(network__encryption="require"))
        leecher = await start_session(tmp_path, "l", local_settings(network__encryption="disable"))
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_for(seeder, sid, lambda s: s.state == "seeding", what="seeding")
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seeder.listen_port)])
            snap = await wait_for(leecher, lid, lambda s: any(p.status == "failed" for p in leecher.peers(lid)),
                                  what="a failed attempt")
            (row,) = leecher.peers(lid)
            assert row.last_error == "connection closed by peer" and row.failures >= 1
            assert snap.downloaded == 0 and snap.verified == 0
            assert not [p for p in seeder.peers(sid) if p.status == "connected"]
        finally:
            await leecher.close()
            await seeder.close()

    run(main())


class PlainOnlyPeer(PeerServer):
    """A seeder from before MSE: it reads a plain handshake or closes the connection. Records how
    each connection began."""

    def __init__(self, meta: Metainfo, payload: bytes) -> None:
        super().__init__()
        self.meta = meta
        self.payload = payload
        self.openings: list[str] = []  # "plain" or "other", per connection

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        first = await reader.read(len(wire.PROTOCOL))
        if not first.startswith(wire.PROTOCOL[:len(first)]) or not first:
            self.openings.append("other")
            writer.close()
            return
        self.openings.append("plain")
        parser = wire.WireParser(num_pieces=self.meta.num_pieces)
        chunk = first
        try:
            while chunk:
                for event in parser.feed(chunk):
                    if isinstance(event, wire.Handshake):
                        writer.write(wire.Handshake(self.meta.info_hash, b"-PL0001-" + os.urandom(12)).to_bytes())
                        writer.write(wire.build_have_all() if event.supports_fast else
                                     wire.build_bitfield(b"\xff" * ((self.meta.num_pieces + 7) // 8)))
                        writer.write(wire.build_unchoke())
                    elif isinstance(event, wire.Request):
                        start = event.index * self.meta.piece_length + event.begin
                        writer.write(wire.build_piece(event.index, event.begin,
                                                      self.payload[start:start + event.length]))
                await writer.drain()
                chunk = await reader.read(65536)
        except (ConnectionError, wire.ProtocolError):
            pass


def test_a_plain_text_peer_is_dialled_again_at_once_in_plain_text(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 1 * MiB, files=1)
    payload = b"".join((data / Path(*f.path)).read_bytes() for f in meta.files)

    async def main() -> None:
        peer = PlainOnlyPeer(meta, payload)
        await peer.start()
        # retry_first 30 s: only the switch of handshake, not a scheduled retry, can reach the peer in time
        leecher = await start_session(tmp_path, "l", local_settings(network__retry_first=30.0))
        try:
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", peer.port)])
            await wait_complete(leecher, lid, timeout=20)
            assert peer.openings == ["other", "plain"]
        finally:
            await leecher.close()
            peer.close()
        assert same_tree(data / "payload", tmp_path / "out" / "payload")

    run(main())


def test_require_never_falls_back_to_plain_text(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 256 * 1024, files=1)

    async def main() -> None:
        peer = PlainOnlyPeer(meta, b"")
        await peer.start()
        leecher = await start_session(tmp_path, "l", local_settings(network__encryption="require",
                                                                    network__retry_first=0.2))
        try:
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", peer.port)])
            await wait_for(leecher, lid, lambda s: len(peer.openings) >= 3, what="three attempts")
            assert set(peer.openings) == {"other"}
        finally:
            await leecher.close()
            peer.close()

    run(main())


async def _dial_mse(port: int, info_hash: bytes) -> tuple[bytes, bool]:
    """Run our MSE initiator against the session: what came back, and whether the session closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    initiator = mse.Initiator(info_hash, initial_payload=wire.Handshake(info_hash, bytes(20)).to_bytes())
    writer.write(initiator.data_to_send())
    received = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                return received, True
            received += chunk
            initiator.receive(chunk)
            writer.write(initiator.data_to_send())
    except (ConnectionError, MseError):
        return received, True
    except asyncio.TimeoutError:
        return received, False
    finally:
        writer.close()


def test_an_encrypted_handshake_for_a_torrent_we_do_not_have_is_dropped(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 256 * 1024)

    async def main() -> None:
        seeder = await start_session(tmp_path, "s")
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_for(seeder, sid, lambda s: s.state == "seeding", what="seeding")
            received, closed = await _dial_mse(seeder.listen_port, hashlib.sha1(b"not served here").digest())
            assert closed and len(received) <= mse.KEY_LENGTH + mse.MAX_PAD  # Yb and PadB, nothing after
            assert not seeder.peers(sid)
        finally:
            await seeder.close()

    run(main())


def test_garbage_instead_of_a_handshake_is_dropped_within_the_spec_limit(tmp_path: Path) -> None:
    """Random bytes look like an MSE public key; the responder gives up where the spec says the
    synchronisation pattern must have appeared, long before 1 MiB."""
    meta, data, torrent = make_torrent(tmp_path, 256 * 1024)

    async def main() -> None:
        seeder = await start_session(tmp_path, "s")
        try:
            await seeder.add(torrent, save_path=data)
            reader, writer = await asyncio.open_connection("127.0.0.1", seeder.listen_port)
            sent = 0
            try:
                while sent < 1 * MiB:
                    writer.write(os.urandom(4096))
                    await writer.drain()
                    sent += 4096
                    await asyncio.sleep(0)
                pytest.fail("the session read 1 MiB of garbage without closing")
            except ConnectionError:
                pass
            finally:
                writer.close()
            assert sent < 1 * MiB
        finally:
            await seeder.close()

    run(main())
