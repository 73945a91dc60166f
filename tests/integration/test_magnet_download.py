"""Magnet links end to end on 127.0.0.1 (BEP 9 over BEP 10): the metadata from peers, checked against the
info-hash, saved as a .torrent; then the download over the same connections. Liars and mute peers among
them cost nothing but time."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path

from helpers import loopback_config_home
from swarmkit import drain, local_settings, make_torrent, run, same_tree, start_session, wait_complete, wait_for

from torrent.codec import bencoding, metadata, wire
from torrent.dht.node import DhtNode
from torrent.peer.extensions import OUR_IDS
from torrent.session import MetadataReceived, PeerSource


def magnet_of(meta, *, peers: list[int] = ()) -> str:
    uri = f"magnet:?xt=urn:btih:{meta.info_hash_hex}&dn={meta.name}"
    return uri + "".join(f"&x.pe=127.0.0.1:{port}" for port in peers)


def test_a_magnet_with_a_peer_downloads_everything(tmp_path: Path) -> None:
    meta, data_parent, torrent_file = make_torrent(tmp_path, 3_000_000, files=4)

    async def main() -> None:
        seeder = await start_session(tmp_path, "seed")
        leecher = await start_session(tmp_path, "leech")
        try:
            await seeder.add(torrent_file, save_path=data_parent)
            await wait_for(seeder, meta.info_hash_hex, lambda s: s.state == "seeding")
            events = leecher.subscribe()
            tid = await leecher.add(magnet_of(meta, peers=[seeder.listen_port]), save_path=tmp_path / "down")
            assert leecher.torrent(tid).state == "metadata"
            done = await wait_complete(leecher, tid)
            assert done.total_size == meta.payload_length and done.num_pieces == meta.num_pieces
            received = [e for e in drain(events) if isinstance(e, MetadataReceived)]
            assert [e.name for e in received] == [meta.name]
            saved = tmp_path / "down" / f"{meta.name}.torrent"
            decoded = bencoding.decode(saved.read_bytes())
            assert bencoding.encode(decoded[b"info"]) == meta.info_bytes
            # The peer that gave the metadata gave the data too: one connection, not two (it has ended
            # since: two seeds part).
            (peer,) = leecher.peers(tid)
            assert peer.source == PeerSource.MANUAL.value
            assert leecher._torrents[tid].candidates.get(("127.0.0.1", seeder.listen_port)).attempts == 1
        finally:
            await leecher.close()
            await seeder.close()
        assert same_tree(data_parent / meta.name, tmp_path / "down" / meta.name)

        # Restarted, the session knows the torrent from its saved metadata: no magnet phase again.
        again = await start_session(tmp_path, "leech")
        try:
            snap = again.torrent(meta.info_hash_hex)
            assert snap.total_size == meta.payload_length
            await wait_for(again, meta.info_hash_hex, lambda s: s.state == "seeding")
        finally:
            await again.close()

    run(main())


class FakeMetadataPeer:
    """A peer that says it has the metadata, then lies about it (``mode="lie"``) or never sends it
    (``mode="mute"``)."""

    def __init__(self, meta, mode: str) -> None:
        self.meta = meta
        self.mode = mode
        self.requests = 0
        self.closed_by_them = asyncio.Event()
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        info = self.meta.info_bytes
        try:
            await reader.readexactly(68)
            writer.write(wire.Handshake(self.meta.info_hash, b"-XX0001-" + os.urandom(12)).to_bytes())
            writer.write(wire.build_extended_handshake({"ut_metadata": 5}, metadata_size=len(info)))
            await writer.drain()
            parser = wire.WireParser(expect_handshake=False)
            while data := await reader.read(65536):
                for event in parser.feed(data):
                    if type(event) is wire.Extended and event.ext_id == 5:  # the id its handshake gave
                        message = metadata.parse(event.payload)
                        if message.kind != metadata.REQUEST:
                            continue
                        self.requests += 1
                        if self.mode == "lie":
                            bogus = bytearray(metadata.data(message.piece, info))
                            bogus[-1] ^= 0xFF
                            writer.write(wire.build_extended(OUR_IDS["ut_metadata"], bytes(bogus)))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed_by_them.set()
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def test_a_liar_and_a_mute_peer_do_not_stop_a_magnet(tmp_path: Path) -> None:
    meta, data_parent, torrent_file = make_torrent(tmp_path, 1_000_000, files=2)

    async def main() -> None:
        liar, mute = FakeMetadataPeer(meta, "lie"), FakeMetadataPeer(meta, "mute")
        ports = [await liar.start(), await mute.start()]
        seeder = await start_session(tmp_path, "seed")
        # The fakes speak plain text only: dialled so first, they are asked as early as the seeder.
        leecher = await start_session(tmp_path, "leech", local_settings(peer__metadata_timeout=1.0,
                                                                        network__encryption="allow"))
        try:
            await seeder.add(torrent_file, save_path=data_parent)
            await wait_for(seeder, meta.info_hash_hex, lambda s: s.state == "seeding")
            tid = await leecher.add(magnet_of(meta, peers=ports), save_path=tmp_path / "down")
            # The liars first, alone: the leecher asks them and gets nothing usable.
            await asyncio.wait_for(liar.closed_by_them.wait(), 10)
            assert liar.requests >= 1
            snap = leecher.torrent(tid)
            assert snap.state == "metadata" and "metadata" in snap.waiting_on[0]
            await leecher.add_peers(tid, [("127.0.0.1", seeder.listen_port)])
            await wait_complete(leecher, tid, timeout=30)
            assert mute.requests >= 1
        finally:
            await leecher.close()
            await seeder.close()
            liar.close()
            mute.close()
        assert same_tree(data_parent / meta.name, tmp_path / "down" / meta.name)

    run(main())


def test_a_magnet_without_peers_says_what_it_is_doing(tmp_path: Path) -> None:
    async def main() -> None:
        session = await start_session(tmp_path, "s")
        try:
            tid = await session.add("magnet:?xt=urn:btih:" + "cd" * 20, save_path=tmp_path / "d")
            snap = await wait_for(session, tid, lambda s: bool(s.waiting_on))
            assert snap.state == "metadata"
            assert snap.waiting_on[0].startswith("metadata: searching the DHT (")
            assert "no peers yet" in snap.waiting_on[0]
            await session.pause(tid)
            assert session.torrent(tid).state == "paused"
            await session.resume(tid)
            assert session.torrent(tid).state == "metadata"
        finally:
            await session.close()

    run(main())


def test_the_cli_downloads_a_magnet_and_applies_only(tmp_path: Path) -> None:
    meta, data_parent, torrent_file = make_torrent(tmp_path, 2_000_000, files=3)

    async def main() -> None:
        seeder = await start_session(tmp_path, "seed")
        try:
            await seeder.add(torrent_file, save_path=data_parent)
            await wait_for(seeder, meta.info_hash_hex, lambda s: s.state == "seeding")
            env = {**os.environ, "XDG_CONFIG_HOME": loopback_config_home(tmp_path / "cfg")}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "torrent", "download", magnet_of(meta), "--no-seed", "--port", "0",
                "--peer", f"127.0.0.1:{seeder.listen_port}", "-o", str(tmp_path / "out"), "--only", "1",
                "--state-dir", str(tmp_path / "cli-state"), stderr=asyncio.subprocess.PIPE, env=env)
            _, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            await seeder.close()
        text = err.decode()
        assert proc.returncode == 0, text
        assert f"{meta.name}: metadata received (3 files, " in text
        assert "download complete: 1 of 3 files selected" in text
        out = tmp_path / "out"
        assert (out / f"{meta.name}.torrent").read_bytes().endswith(b"4:info" + meta.info_bytes + b"e")
        chosen = meta.files[1]
        assert (out.joinpath(*chosen.path)).read_bytes() == data_parent.joinpath(*chosen.path).read_bytes()

    run(main())


def test_a_magnet_alone_finds_its_seeder_through_the_dht(tmp_path: Path) -> None:
    """No tracker, no x.pe, no --peer: a router node on 127.0.0.1, a seeder and a leecher bootstrapped
    from it. The seeder announces itself; the leecher's get_peers finds it."""
    meta, data_parent, torrent_file = make_torrent(tmp_path, 1_500_000, files=2)

    async def main() -> None:
        router = DhtNode()
        host, port = await router.open("127.0.0.1", 0)
        settings = local_settings(discovery__dht_bootstrap=f"{host}:{port}", discovery__dht_search_interval=5.0)
        seeder = await start_session(tmp_path, "seed", settings)
        leecher = await start_session(tmp_path, "leech", settings)
        try:
            await seeder.add(torrent_file, save_path=data_parent)
            await wait_for(seeder, meta.info_hash_hex, lambda s: s.state == "seeding")
            # The seeder's announce reached the router before the leecher asks.
            for _ in range(100):
                if router.store.peers(meta.info_hash, time.monotonic()):
                    break
                await asyncio.sleep(0.1)
            tid = await leecher.add(magnet_of(meta), save_path=tmp_path / "down")
            await wait_complete(leecher, tid, timeout=60)
            assert [p.source for p in leecher.peers(tid)] == [PeerSource.DHT.value]  # the one peer it knew
            assert leecher.snapshot().dht_nodes >= 1
        finally:
            await leecher.close()
            await seeder.close()
            router.close()
        assert same_tree(data_parent / meta.name, tmp_path / "down" / meta.name)
        # The routing table was saved with the session, for the next run.
        assert (tmp_path / "state-leech" / "dht.dat").stat().st_size > 20

    run(main())


def test_a_magnets_peers_show_before_its_metadata(tmp_path: Path) -> None:
    meta, _, _ = make_torrent(tmp_path, 100_000, files=1)

    async def main() -> None:
        mute = FakeMetadataPeer(meta, "mute")
        port = await mute.start()
        session = await start_session(tmp_path, "s")
        try:
            tid = await session.add(magnet_of(meta, peers=[port]), save_path=tmp_path / "d")
            snap = await wait_for(session, tid, lambda s: s.peers == 1, timeout=10)
            assert snap.state == "metadata"
            (peer,) = [p for p in session.peers(tid) if p.status == "connected"]
            assert peer.address == f"127.0.0.1:{port}" and peer.source == PeerSource.MANUAL.value
            assert session.snapshot().connections == 1
            assert snap.waiting_on[0].startswith("metadata: 0 of 1 pieces from 1 peers")
        finally:
            await session.close()
            mute.close()

    run(main())


def test_the_cli_says_what_a_magnet_without_peers_is_doing(tmp_path: Path) -> None:
    async def main() -> None:
        router = DhtNode()
        host, port = await router.open("127.0.0.1", 0)
        env = {**os.environ, "XDG_CONFIG_HOME": loopback_config_home(tmp_path / "cfg")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "torrent", "download", "magnet:?xt=urn:btih:" + "ef" * 20 + "&dn=lonely",
            "--bind", "127.0.0.1", "--port", "0", "--dht-bootstrap", f"{host}:{port}", "-o", str(tmp_path / "out"),
            "--state-dir", str(tmp_path / "st"), stderr=asyncio.subprocess.PIPE, env=env)
        try:
            assert proc.stderr is not None
            line = await asyncio.wait_for(proc.stderr.readline(), 20)
            assert re.fullmatch(r"lonely: metadata: searching the DHT \(\d+ nodes\); no peers yet\n", line.decode())
        finally:
            proc.send_signal(signal.SIGINT)
            rest = await asyncio.wait_for(proc.stderr.read(), 20)  # type: ignore[union-attr]
            await proc.wait()
            router.close()
        assert proc.returncode == 130
        assert rest.decode().splitlines()[-1] == "lonely: stopping"

    run(main())
