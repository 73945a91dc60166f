"""Our engine end to end on 127.0.0.1, through the session API: ours → ours,
lying peers, protocol violations, SIGKILL and resume, dead trackers, limits,
file selection.

The misbehaving peers are small asyncio servers speaking the real wire
protocol through ``torrent.codec.wire``; the honest seeder and the leecher
are full ``Session`` instances, observed through snapshots and events.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import loopback_config_home
from swarmkit import (
    PIECE,
    PeerServer,
    count_writes,
    drain,
    local_settings,
    make_torrent,
    run,
    same_tree,
    start_session,
    wait_complete,
    wait_for,
    wait_state,
)

from torrent.codec import wire
from torrent.codec.metainfo import Metainfo
from torrent.core.units import format_size
from torrent.session import FilePriority, PeerBanned, PieceState
from torrent.storage.files import Storage


def test_ours_to_ours(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 3 * 1024 * 1024 + 12345)

    async def main() -> None:
        seeder, leecher = await start_session(tmp_path, "s"), await start_session(tmp_path, "l")
        try:
            sid = await seeder.add(torrent, save_path=data)
            seeded = await wait_for(seeder, sid, lambda s: s.state == "seeding", what="seeding")
            assert seeded.verified == meta.payload_length and seeded.progress == 1.0
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seeder.listen_port)])
            snap = await wait_complete(leecher, lid)
            assert snap.hash_failures == 0 and snap.banned == 0
            assert snap.downloaded >= meta.payload_length
        finally:
            await leecher.close()
            await seeder.close()
        assert same_tree(data / "payload", tmp_path / "out" / "payload")

    run(main())


# ---- misbehaving peers ---------------------------------------------------------------


class FakePeer(PeerServer):
    """A seeder that speaks the protocol but answers requests with ``answer``."""

    def __init__(self, meta: Metainfo, data: bytes, answer: Callable[[FakePeer, wire.Request], None]) -> None:
        super().__init__()
        self.meta = meta
        self.data = data  # the whole payload, concatenated
        self.answer = answer
        self.peer_id = b"-FK0001-" + os.urandom(12)
        self.requests = 0
        self.refuse = 0  # connections to close at once, before reading anything (as qBittorrent 4.5 does)
        self.connections = 0

    def block(self, index: int, begin: int, length: int) -> bytes:
        start = index * self.meta.piece_length + begin
        return self.data[start:start + length]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.connections <= self.refuse:
            writer.close()
            return
        self.writers.append(writer)
        parser = wire.WireParser(num_pieces=self.meta.num_pieces)
        self.writer = writer
        try:
            while chunk := await reader.read(65536):
                for event in parser.feed(chunk):
                    if isinstance(event, wire.Handshake):
                        writer.write(wire.Handshake(self.meta.info_hash, self.peer_id).to_bytes())
                        writer.write(wire.build_have_all())
                        writer.write(wire.build_unchoke())
                    elif isinstance(event, wire.Request):
                        self.requests += 1
                        self.answer(self, event)
                await writer.drain()
        except (ConnectionError, wire.ProtocolError):
            pass


    async def dial(self, port: int) -> None:
        """Connect to a leecher (it sees an incoming peer) and serve it as ``answer`` says."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self.writers.append(writer)
        self.writer = writer
        writer.write(wire.Handshake(self.meta.info_hash, self.peer_id).to_bytes())
        writer.write(wire.build_have_all() + wire.build_unchoke())
        parser = wire.WireParser(num_pieces=self.meta.num_pieces)
        try:
            while chunk := await reader.read(65536):
                for event in parser.feed(chunk):
                    if isinstance(event, wire.Request):
                        self.requests += 1
                        self.answer(self, event)
                await writer.drain()
        except (ConnectionError, wire.ProtocolError):
            pass


def honest(peer: FakePeer, r: wire.Request) -> None:
    peer.writer.write(wire.build_piece(r.index, r.begin, peer.block(r.index, r.begin, r.length)))


def corrupt(peer: FakePeer, r: wire.Request) -> None:
    data = bytearray(peer.block(r.index, r.begin, r.length))
    data[len(data) // 2] ^= 0xFF
    peer.writer.write(wire.build_piece(r.index, r.begin, bytes(data)))


def unrequested(peer: FakePeer, r: wire.Request) -> None:
    # Garbage at an offset we never request (not block-aligned), then the honest answer.
    peer.writer.write(wire.build_piece(random.randrange(peer.meta.num_pieces), 8000, os.urandom(8000)))
    honest(peer, r)


def silent(peer: FakePeer, r: wire.Request) -> None:
    pass


def test_swarm_with_liars_completes_and_bans_only_the_corrupter(tmp_path: Path) -> None:
    """One honest seeder (ours), one peer corrupting blocks, one sending blocks
    nobody asked for, one that unchokes and never answers."""
    meta, data, torrent = make_torrent(tmp_path, 4 * 1024 * 1024)
    payload = b"".join((data / Path(*f.path)).read_bytes() for f in meta.files)
    # The fakes speak plain text only: dialled so first, they are asked as early as the honest seeder.
    quick = local_settings(peer__request_timeout=3.0, peer__snub_time=4.0, network__encryption="allow")

    async def main() -> None:
        fakes = {name: FakePeer(meta, payload, fn)
                 for name, fn in (("corrupt", corrupt), ("unrequested", unrequested), ("silent", silent))}
        for fake in fakes.values():
            await fake.start()
        seeder = await start_session(tmp_path, "s")
        leecher = await start_session(tmp_path, "l", quick)
        events = leecher.subscribe()
        try:
            await seeder.add(torrent, save_path=data)
            peers = [("127.0.0.1", f.port) for f in fakes.values()] + [("127.0.0.1", seeder.listen_port)]
            random.shuffle(peers)
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=peers)
            snap = await wait_complete(leecher, lid, timeout=60)
            banned = set()
            while (event := events.get_nowait()) is not None:
                if isinstance(event, PeerBanned):
                    banned.add(event.address)
            assert f"127.0.0.1:{fakes['corrupt'].port}" in banned
            assert f"127.0.0.1:{seeder.listen_port}" not in banned
            assert f"127.0.0.1:{fakes['unrequested'].port}" not in banned  # wasteful, not lying
            assert snap.banned == 1 and snap.hash_failures >= 1
            assert fakes["corrupt"].requests > 0 and fakes["silent"].requests > 0
            assert snap.wasted > 0  # the unrequested blocks were dropped, not written
        finally:
            await leecher.close()
            await seeder.close()
            for fake in fakes.values():
                fake.close()
        assert same_tree(data / "payload", tmp_path / "out" / "payload")

    run(main())


def test_a_liar_that_dialled_in_is_banned_alone(tmp_path: Path) -> None:
    """On loopback every peer has our IP: the ban must name the liar's own address, not our listen port,
    or the honest seeder dialling in after it is refused too."""
    meta, data, torrent = make_torrent(tmp_path, 2 * 1024 * 1024)
    payload = b"".join((data / Path(*f.path)).read_bytes() for f in meta.files)

    async def main() -> None:
        liar = FakePeer(meta, payload, corrupt)
        seeder = await start_session(tmp_path, "s")
        leecher = await start_session(tmp_path, "l")
        events = leecher.subscribe()
        dialled = None
        try:
            await seeder.add(torrent, save_path=data)
            lid = await leecher.add(torrent, save_path=tmp_path / "out")
            await wait_for(leecher, lid, lambda s: s.state == "downloading")
            dialled = asyncio.ensure_future(liar.dial(leecher.listen_port))
            await wait_for(leecher, lid, lambda s: s.banned == 1, timeout=20, what="the liar's ban")
            await seeder.add_peers(meta.info_hash_hex, [("127.0.0.1", leecher.listen_port)])
            snap = await wait_complete(leecher, lid, timeout=30)
            assert snap.banned == 1
            banned = [e for e in drain(events) if isinstance(e, PeerBanned)]
            assert len(banned) == 1 and banned[0].address != f"127.0.0.1:{leecher.listen_port}"
        finally:
            await leecher.close()
            await seeder.close()
            liar.close()
            if dialled is not None:
                dialled.cancel()
        assert same_tree(data / "payload", tmp_path / "out" / "payload")

    run(main())


async def _raw_peer(port: int, meta: Metainfo, messages: list[bytes], *, info_hash: bytes | None = None) -> bytes:
    """Connect as a peer, send ``messages`` after the handshake, return what we read
    until the other side closes (bounded)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(wire.Handshake(info_hash or meta.info_hash, b"-RAW001-" + os.urandom(12)).to_bytes())
    for m in messages:
        writer.write(m)
    await writer.drain()
    received = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            received += chunk
    except (asyncio.TimeoutError, ConnectionError):
        pass
    writer.close()
    return received


@pytest.mark.parametrize("name, messages", [
    ("wrong info-hash", []),
    ("oversized length", [b"\x7f\xff\xff\xff\x07"]),
    ("request beyond the piece", [wire.build_interested(), wire.build_request(0, PIECE - 16, 16384)]),
    ("piece index out of range", [wire.build_have(10**6)]),
    ("bitfield spare bits", [wire.build_bitfield(b"\xff" * 200)]),
])
def test_protocol_violations_disconnect_and_the_seeder_keeps_serving(tmp_path: Path, name: str,
                                                                     messages: list[bytes]) -> None:
    meta, data, torrent = make_torrent(tmp_path, 1024 * 1024 + 7, files=1)

    async def main() -> None:
        seeder = await start_session(tmp_path, "s")
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_for(seeder, sid, lambda s: s.state == "seeding", what="seeding")
            t0 = time.monotonic()
            await _raw_peer(seeder.listen_port, meta, messages,
                            info_hash=b"\x01" * 20 if name == "wrong info-hash" else None)
            assert time.monotonic() - t0 < 5, "the connection was not dropped"
            assert not [p for p in seeder.peers(sid) if p.status == "connected"]
            # An honest leecher is still served afterwards.
            leecher = await start_session(tmp_path, "l")
            try:
                lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seeder.listen_port)])
                await wait_complete(leecher, lid)
            finally:
                await leecher.close()
        finally:
            await seeder.close()
        assert same_tree(data / "payload", tmp_path / "out" / "payload")

    run(main())


def test_sigkill_mid_download_resumes_without_refetching(tmp_path: Path) -> None:
    """Kill the CLI leecher with SIGKILL part-way; the restart keeps verified
    pieces (resume data and the journal of pieces verified since) and finishes
    correctly, fetching only what it did not have."""
    meta, data, torrent_file = make_torrent(tmp_path, 24 * 1024 * 1024, files=2)

    async def seed_and_leech() -> None:
        seeder = await start_session(tmp_path, "s")
        await seeder.set_rate_limits(max_up=4 * 1024 * 1024)  # slow enough to kill mid-way
        try:
            sid = await seeder.add(torrent_file, save_path=data)
            await wait_for(seeder, sid, lambda s: s.state == "seeding", what="seeding")
            cmd = [sys.executable, "-m", "torrent", "download", str(torrent_file), "-o", str(tmp_path / "out"),
                   "--no-seed", "--port", "0", "--peer", f"127.0.0.1:{seeder.listen_port}",
                   "--state-dir", str(tmp_path / "state-cli"), "-v"]
            env = {**os.environ, "XDG_CONFIG_HOME": loopback_config_home(tmp_path / "xdg")}
            first = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                    on_disk = sum(p.stat().st_blocks * 512 for p in (tmp_path / "out").rglob("*") if p.is_file())
                    if on_disk > 8 * 1024 * 1024:
                        break
                os.kill(first.pid, signal.SIGKILL)
            finally:
                first.wait(10)
            await seeder.set_rate_limits(max_up=0)
            await asyncio.sleep(0.5)  # the killed connection's queued blocks drain or die
            uploaded_before = seeder.torrent(sid).uploaded
            second = await asyncio.create_subprocess_exec(*cmd, stderr=asyncio.subprocess.PIPE,
                                                          env={**env, "PYTHONFAULTHANDLER": "1"})
            try:
                _, err = await asyncio.wait_for(second.communicate(), 60)
            except asyncio.TimeoutError:
                second.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
                _, err = await second.communicate()
                raise AssertionError(f"restart did not finish: {err.decode()[:1500]}\nseeder peers: "
                                     f"{seeder.peers(sid)}") from None
            text = err.decode()
            assert second.returncode == 0, text
            # The restart found verified data on disk instead of starting from zero.
            verified = int(text.split(" of ")[0].rsplit(" ", 1)[1])
            assert verified > 0, text
            # Only the missing pieces were fetched again (endgame may duplicate a few blocks).
            missing = (meta.num_pieces - verified) * meta.piece_length
            sent = seeder.torrent(sid).uploaded - uploaded_before
            assert sent <= missing + 8 * 16384, (sent, missing)
        finally:
            await seeder.close()

    run(seed_and_leech())
    assert same_tree(data / "payload", tmp_path / "out" / "payload")


def test_dead_and_lying_trackers_do_not_stop_the_download(tmp_path: Path) -> None:
    """Tier 1 answers garbage, tier 2 returns a failure reason, tier 3 is a UDP
    port nobody listens on: the errors are recorded, peers still work."""

    async def main() -> None:
        async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot bcode")
            await writer.drain()
            writer.close()

        async def failure(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            body = b"d14:failure reason13:go away, sire"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            writer.close()

        servers = [await asyncio.start_server(h, "127.0.0.1", 0) for h in (garbage, failure)]
        ports = [s.sockets[0].getsockname()[1] for s in servers]
        tiers = [[f"http://127.0.0.1:{ports[0]}/announce"], [f"http://127.0.0.1:{ports[1]}/announce"],
                 ["udp://127.0.0.1:9/announce"]]
        meta, data, torrent = make_torrent(tmp_path, 2 * 1024 * 1024, files=2, trackers=tiers)
        seeder, leecher = await start_session(tmp_path, "s"), await start_session(tmp_path, "l")
        try:
            await seeder.add(torrent, save_path=data)
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seeder.listen_port)])
            await wait_complete(leecher, lid)
            # The download may finish before the announcer has reached tier 2; after tier 2 it goes back to
            # tier 1 (BEP 12), whose status is "updating" while it retries: wait for both to show their error.
            for _ in range(200):
                statuses = {s.url: s for s in leecher.trackers(lid)}
                if statuses[tiers[1][0]].status == "error" and statuses[tiers[0][0]].status == "error":
                    break
                await asyncio.sleep(0.1)
            assert statuses[tiers[0][0]].status == "error" and statuses[tiers[0][0]].last_error
            assert statuses[tiers[1][0]].status == "error" and "go away" in statuses[tiers[1][0]].last_error
            assert [s.tier for s in leecher.trackers(lid)] == [0, 1, 2]
        finally:
            await leecher.close()
            await seeder.close()
            for s in servers:
                s.close()
        assert same_tree(data / "payload", tmp_path / "out" / "payload")

    run(main())


def test_download_limit_holds_and_can_be_lifted_while_running(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 3 * 1024 * 1024, files=1)

    async def main() -> None:
        seeder, leecher = await start_session(tmp_path, "s"), await start_session(tmp_path, "l")
        await leecher.set_rate_limits(max_down=512 * 1024)
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_for(seeder, sid, lambda s: s.state == "seeding", what="seeding")
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seeder.listen_port)])
            await wait_for(leecher, lid, lambda s: s.state == "downloading", what="downloading")
            started = time.monotonic()
            await asyncio.sleep(2.0)
            # 512 KiB/s plus a one-second burst: at most ~1.5 MiB in two seconds.
            snap = leecher.torrent(lid)
            assert snap.verified <= 512 * 1024 * 3 + 2 * meta.piece_length, snap.verified
            assert snap.verified > 0
            assert leecher.snapshot().max_down == 512 * 1024
            await leecher.set_rate_limits(max_down=0)
            await wait_complete(leecher, lid)
            assert time.monotonic() - started >= 2.0
        finally:
            await leecher.close()
            await seeder.close()
        assert same_tree(data / "payload", tmp_path / "out" / "payload")

    run(main())


def test_only_selected_files_are_downloaded(tmp_path: Path) -> None:
    """Deselected files are skipped; a piece shared with a wanted file still comes."""
    meta, data, torrent = make_torrent(tmp_path, 3 * 1024 * 1024 + 777, files=3)
    wanted = 1

    async def main() -> None:
        seeder, leecher = await start_session(tmp_path, "s"), await start_session(tmp_path, "l")
        try:
            await seeder.add(torrent, save_path=data)
            priorities = [FilePriority.SKIP] * len(meta.files)
            priorities[wanted] = FilePriority.NORMAL
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seeder.listen_port)],
                                    file_priorities=priorities)
            await wait_complete(leecher, lid)
            states = leecher.piece_map(lid).states
            needed = set(meta.geometry.file_pieces(wanted))
            assert {i for i, s in enumerate(states) if s == PieceState.HAVE} == needed
            assert {i for i, s in enumerate(states) if s == PieceState.SKIPPED} == set(range(meta.num_pieces)) - needed
            files = leecher.files(lid)
            assert files[wanted].verified == files[wanted].size and files[wanted].priority == "normal"
            assert all(f.priority == "skip" for i, f in enumerate(files) if i != wanted)
        finally:
            await leecher.close()
            await seeder.close()
        rel = Path(*meta.files[wanted].path)
        assert (tmp_path / "out" / rel).read_bytes() == (data / rel).read_bytes()
        for i, f in enumerate(meta.files):
            if i != wanted and not set(meta.geometry.file_pieces(i)) & set(meta.geometry.file_pieces(wanted)):
                assert not (tmp_path / "out" / Path(*f.path)).exists()

    run(main())


def test_a_peer_that_closes_the_first_connection_is_retried_on_schedule(tmp_path: Path) -> None:
    """Like qBittorrent 4.5 after adding a torrent: the first connection is closed at
    once. The peer shows as failed, with the reason and the first scheduled retry
    (network.retry_first), and the download completes over the next attempt."""
    meta, data, torrent = make_torrent(tmp_path, 1024 * 1024, files=1)
    payload = b"".join((data / Path(*f.path)).read_bytes() for f in meta.files)

    async def main() -> None:
        fake = FakePeer(meta, payload, honest)
        fake.refuse = 1
        await fake.start()
        # Plain text only: a close during the handshake is then a failure like any other (with encryption
        # allowed, it is a switch to the other handshake, tested apart).
        leecher = await start_session(tmp_path, "l", local_settings(network__retry_first=2.0,
                                                                    network__encryption="disable"))
        try:
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", fake.port)])
            row = None
            for _ in range(200):
                rows = [p for p in leecher.peers(lid) if p.status == "failed"]
                if rows:
                    (row,) = rows
                    break
                await asyncio.sleep(0.01)
            assert row is not None, leecher.peers(lid)
            assert row.address == f"127.0.0.1:{fake.port}" and row.failures == 1 and row.source == "manual"
            assert row.last_error == "connection closed by peer"
            assert row.next_attempt is not None and 0 < row.next_attempt <= 2.0
            await wait_complete(leecher, lid)
            assert fake.connections == 2  # the retry, once
        finally:
            await leecher.close()
            fake.close()
        assert same_tree(data / "payload", tmp_path / "out" / "payload")

    run(main())


def test_cli_says_what_was_selected_and_quiet_prints_nothing(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 3 * 1024 * 1024 + 777, files=3)

    async def main() -> None:
        seeder = await start_session(tmp_path, "s")
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_for(seeder, sid, lambda s: s.state == "seeding", what="seeding")
            env = {**os.environ, "XDG_CONFIG_HOME": loopback_config_home(tmp_path / "cfg")}
            base = [sys.executable, "-m", "torrent", "download", str(torrent), "--no-seed", "--port", "0",
                    "--peer", f"127.0.0.1:{seeder.listen_port}"]
            chosen = await asyncio.create_subprocess_exec(
                *base, "-o", str(tmp_path / "some"), "--only", "1", "--state-dir", str(tmp_path / "st1"),
                stderr=asyncio.subprocess.PIPE, env=env)
            _, err = await asyncio.wait_for(chosen.communicate(), 60)
            assert chosen.returncode == 0, err
            size = meta.files[1].length
            line = next(x for x in err.decode().splitlines() if "download complete" in x)
            assert line.startswith(f"{meta.name}: download complete: 1 of 3 files selected (")
            assert f"({format_size(size)} of {format_size(meta.payload_length)}); " in line
            assert line.endswith("fetched from peers")
            quiet = await asyncio.create_subprocess_exec(
                *base, "-o", str(tmp_path / "all"), "-q", "--state-dir", str(tmp_path / "st2"),
                stderr=asyncio.subprocess.PIPE, env=env)
            _, err = await asyncio.wait_for(quiet.communicate(), 60)
            assert quiet.returncode == 0 and err == b""  # quiet: errors only, and there were none
        finally:
            await seeder.close()
        assert same_tree(data / "payload", tmp_path / "all" / "payload")

    run(main())


def test_request_and_cancel_pairs_and_sparse_requests_cost_the_seeder_no_extra_disk_reads(tmp_path: Path) -> None:
    """The amplification attacks: 20 000 requests, each cancelled at once, for pieces all over the torrent;
    then one block asked from each piece. A read starts only for requests at the head of a peer's queue
    when their turn comes, so cancelled ones cost nothing (they used to start a whole-piece read each), and
    a peer asking single blocks gets them read exactly (a whole-piece read each was 16 times what it asked)."""
    meta, data, torrent = make_torrent(tmp_path, 4 * 1024 * 1024, piece_length=256 * 1024)

    async def main() -> None:
        seeder = await start_session(tmp_path, "s")
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_for(seeder, sid, lambda s: s.state == "seeding")
            storage = seeder._torrents[sid].storage  # the engine's own, to count its reads
            read: list[int] = []
            read_piece, read_block = storage.read_piece, storage.read_block
            storage.read_piece = lambda index: (read.append(meta.geometry.piece_size(index)), read_piece(index))[1]
            storage.read_block = lambda i, b, n: (read.append(n), read_block(i, b, n))[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", seeder.listen_port)
            writer.write(wire.Handshake(meta.info_hash, b"-AT0001-" + os.urandom(12)).to_bytes())
            writer.write(wire.build_interested())
            parser = wire.WireParser(num_pieces=meta.num_pieces)
            while not any(isinstance(e, wire.Unchoke) for e in parser.feed(await reader.read(65536))):
                pass
            attack = b"".join(wire.build_request(k % meta.num_pieces, 0, 16384) +
                              wire.build_cancel(k % meta.num_pieces, 0, 16384) for k in range(20_000))
            writer.write(attack)
            await writer.drain()
            writer.write(wire.build_request(5, 0, 16384))  # one honest request after it: still served
            await writer.drain()
            got = b""
            while wire.build_piece_header(5, 0, 16384) not in got:
                got += await asyncio.wait_for(reader.read(1 << 20), 10)
            assert sum(read) <= 2 * 16384, f"{sum(read)} bytes read for 0 requests left standing and 1 block"
            read.clear()
            sparse = [(i, 16384 * (i % 16), 16384) for i in range(meta.num_pieces)]
            writer.write(b"".join(wire.build_request(*r) for r in sparse))
            last = wire.build_piece_header(*sparse[-1])
            got = b""
            while last not in got:
                got = got[-64:] + await asyncio.wait_for(reader.read(1 << 20), 10)
            writer.close()
            asked = len(sparse) * 16384
            assert 0 < sum(read) <= 2 * asked, f"{sum(read)} bytes read for {asked} asked"
        finally:
            await seeder.close()

    run(main())


def test_a_peer_that_never_reads_its_rejects_is_paused_then_dropped(tmp_path: Path) -> None:
    """300 000 requests while choked, each answered with a reject the attacker never reads: past
    peer.write_buffer_max queued the seeder stops reading from it (its memory stops growing), and after
    peer.write_stall_timeout it drops it; an honest leecher is served all along."""
    meta, data, torrent = make_torrent(tmp_path, 2 * 1024 * 1024)
    limits = local_settings(peer__write_high_water=64 * 1024, peer__write_buffer_max=256 * 1024,
                            peer__write_stall_timeout=3.0)

    async def main() -> None:
        seeder = await start_session(tmp_path, "s", limits)
        leecher = await start_session(tmp_path, "l")
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_for(seeder, sid, lambda s: s.state == "seeding")
            reader, writer = await asyncio.open_connection("127.0.0.1", seeder.listen_port)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read: the rejects pile up
            writer.write(wire.Handshake(meta.info_hash, b"-AT0001-" + os.urandom(12)).to_bytes())
            flood = wire.build_request(1, 0, 16384) * 300_000  # 5.1 MB
            writer.write(flood)
            swarm = seeder._torrents[sid].swarm  # the engine's own, to see the connection's backlog
            peak = 0
            seen = False
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                attackers = [p for p in swarm.peers if p.remote_id and p.remote_id.startswith(b"-AT")]
                seen = seen or bool(attackers)
                if seen and not attackers:
                    break
                if not attackers:
                    await asyncio.sleep(0.01)
                    continue
                peak = max(peak, attackers[0].transport.get_write_buffer_size())
                await asyncio.sleep(0.02)
            assert not attackers, "the attacker was never dropped"
            # The queue stopped growing at most one read's worth of rejects past the limit (the kernel's
            # buffers take a few MB of the 5.1 MB; without the limit the rest would queue here).
            assert 256 * 1024 < peak < 256 * 1024 + 1024 * 1024
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seeder.listen_port)])
            await wait_complete(leecher, lid, timeout=30)
            writer.close()
        finally:
            await leecher.close()
            await seeder.close()

    run(main())


def test_interest_flips_are_answered_by_nothing(tmp_path: Path) -> None:
    """200 000 interested / not-interested pairs: each flip used to be answered with an unchoke or a
    choke (2 MB for a peer that need not read them, until back-pressure stopped the seeder reading);
    now a peer keeps its slot until the next rechoke takes it back, and a flip costs no byte sent."""
    meta, data, torrent = make_torrent(tmp_path, 1024 * 1024)

    async def main() -> None:
        seeder = await start_session(tmp_path, "s")
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_for(seeder, sid, lambda s: s.state == "seeding")
            reader, writer = await asyncio.open_connection("127.0.0.1", seeder.listen_port)
            writer.write(wire.Handshake(meta.info_hash, b"-AT0001-" + os.urandom(12)).to_bytes())
            writer.write((wire.build_interested() + wire.build_not_interested()) * 200_000 + wire.build_interested())
            await asyncio.wait_for(writer.drain(), 30)
            received = 0
            while True:  # everything it was sent, until it goes quiet
                try:
                    got = await asyncio.wait_for(reader.read(1 << 20), 1.0)
                except asyncio.TimeoutError:
                    break
                assert got, "the seeder closed the connection"
                received += len(got)
            swarm = seeder._torrents[sid].swarm  # the engine's own, to see the connection
            attacker = next(p for p in swarm.peers if p.remote_id and p.remote_id.startswith(b"-AT"))
            assert attacker.peer_interested and not attacker.am_choking  # all read; the last word has its slot
            assert received < 1024, f"{received} bytes answered the flips"  # handshake, bitfield, one unchoke
            writer.close()
        finally:
            await seeder.close()

    run(main())


def test_an_idle_crowd_does_not_shut_an_honest_leecher_out(tmp_path: Path) -> None:
    """Slot exhaustion: as many connections as the seeder allows, each saying "interested" and then only
    keep-alives. A newcomer takes the place of one that moved nothing, and the choker's drawn ties give
    it a slot; the rest of the crowd stays connected."""
    meta, data, torrent = make_torrent(tmp_path, 1024 * 1024)
    crowd_size = 10
    settings = local_settings(torrent__max_peers=crowd_size, torrent__evict_idle_after=1.0,
                              torrent__rechoke_interval=1.0)

    async def idle_peer(port: int, stop: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(wire.Handshake(meta.info_hash, b"-ID0001-" + os.urandom(12)).to_bytes())
        writer.write(wire.build_interested())
        try:
            while not stop.is_set():
                writer.write(wire.build_keepalive())
                try:
                    await asyncio.wait_for(reader.read(65536), 0.5)  # read, so no back-pressure applies
                except asyncio.TimeoutError:
                    pass
        finally:
            writer.close()

    async def main() -> None:
        seeder = await start_session(tmp_path, "s", settings)
        leecher = await start_session(tmp_path, "l")
        stop = asyncio.Event()
        crowd = []
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_for(seeder, sid, lambda s: s.state == "seeding")
            crowd = [asyncio.ensure_future(idle_peer(seeder.listen_port, stop)) for _ in range(crowd_size)]
            await wait_for(seeder, sid, lambda s: s.peers == crowd_size)
            await asyncio.sleep(1.5)  # the crowd is now idle for longer than evict_idle_after
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seeder.listen_port)])
            await wait_complete(leecher, lid, timeout=30)
            # One idle peer made room; the rest stayed. The leecher, a seed now, leaves: two seeds part.
            await wait_for(seeder, sid, lambda s: s.peers == crowd_size - 1, what="the leecher leaving")
        finally:
            stop.set()
            await asyncio.gather(*crowd, return_exceptions=True)
            await leecher.close()
            await seeder.close()
        assert same_tree(data / "payload", tmp_path / "out" / "payload")

    run(main())


FAN_IN_PIECE = 128 * 1024


def fan_in_sampled(tmp_path: Path, size: int, seeders: int, sample: Callable[[Any], None],
                   settings: Any) -> tuple[Any, int]:
    """``seeders`` of ours feed one leecher (with ``settings``) a payload of ``size`` bytes in
    FAN_IN_PIECE pieces; ``sample`` sees the leecher's swarm at every loop iteration until the download is
    verified. Returns that swarm and the distinct peers it had; the download is checked whole."""
    meta, data, torrent = make_torrent(tmp_path, size, piece_length=FAN_IN_PIECE)

    async def main() -> tuple[Any, int]:
        sessions = [await start_session(tmp_path, f"s{n}") for n in range(seeders)]
        leecher = await start_session(tmp_path, "l", settings)
        try:
            for seeder in sessions:
                sid = await seeder.add(torrent, save_path=data)
                await wait_state(seeder, sid, "seeding")
            lid = await leecher.add(torrent, save_path=tmp_path / "out",
                                    peers=[("127.0.0.1", s.listen_port) for s in sessions])
            swarm = None
            while leecher.torrent(lid).wanted_verified < meta.payload_length:
                running = leecher._torrents[lid].swarm
                if running is not None:
                    swarm = running
                    sample(swarm)
                await asyncio.sleep(0)
            return swarm, len({p.address for p in leecher.peers(lid)})
        finally:
            await leecher.close()
            for seeder in sessions:
                await seeder.close()

    swarm, peers = run(main())
    assert swarm is not None and same_tree(data / "payload", tmp_path / "out" / "payload")
    return swarm, peers


def test_pieces_past_the_assembly_budget_go_to_disk_as_they_arrive_whatever_the_peer_count(tmp_path: Path) -> None:
    """Six seeders feed one leecher whose memory budget is 4 pieces and that requests up to 48: the
    buffers in memory (assembling and spare) never exceed the budget, whatever the peer count (counting
    only pieces with a block in let every peer's pipeline start its own pieces: memory grew with the
    peers), the pieces past it have their blocks written to disk as they arrive, the blocks queued for
    the disk stay bounded, and the download is whole."""
    budget, requested, backlog = 4, 48, 1024 * 1024
    most = dict(in_progress=0, buffers=0, on_disk=0, queued=0)

    def sample(swarm: Any) -> None:
        most["in_progress"] = max(most["in_progress"], swarm.picker.num_in_progress())
        most["buffers"] = max(most["buffers"], len(swarm.partial) + len(swarm._spare))
        most["on_disk"] = max(most["on_disk"], len(swarm.on_disk))
        most["queued"] = max(most["queued"], swarm.spill.queued_bytes)

    settings = local_settings(torrent__assembly_bytes=budget * FAN_IN_PIECE,
                              torrent__requested_bytes=requested * FAN_IN_PIECE,
                              torrent__write_backlog_bytes=backlog)
    swarm, peers = fan_in_sampled(tmp_path, 8 * 1024 * 1024, 6, sample, settings)
    assert peers >= 2
    assert budget < most["in_progress"] <= requested
    assert 0 < most["buffers"] <= budget
    assert most["on_disk"] > 0 and swarm.spill.written_bytes > 0
    # what one read of each peer brings past the limit, at most
    assert most["queued"] <= backlog // 4 + 6 * swarm.settings.peer.recv_buffer


def test_fast_peers_wait_for_a_slow_verifier_rather_than_spill_to_disk(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Fast seeders outrun the verifier: complete pieces waiting for it fill the assembly budget. Writing
    the next pieces' blocks to disk would only add a write and a read back to the disk that is behind,
    so reading from the peers waits for the verifier instead: little is spilled (what the reads under
    way bring), memory stays in the budget, and the download is whole."""
    budget, size = 16, 16 * 1024 * 1024
    slow = Storage.verify_and_write_many

    def slow_verify(self: Storage, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.01)
        return slow(self, *args, **kwargs)

    monkeypatch.setattr(Storage, "verify_and_write_many", slow_verify)
    seen = dict(held=0, buffers=0)

    def sample(swarm: Any) -> None:
        seen["held"] += swarm._held_for_verifier
        seen["buffers"] = max(seen["buffers"], len(swarm.partial) + swarm._verifying)

    swarm, _ = fan_in_sampled(tmp_path, size, 3, sample, local_settings(torrent__assembly_bytes=budget * FAN_IN_PIECE))
    # Before the hold: 10 of the 16 MiB went to disk.
    assert swarm.spill.written_bytes <= size // 16
    assert seen["held"] > 0 and seen["buffers"] <= budget


def test_a_choke_rejects_every_request_still_queued_for_a_fast_peer(tmp_path: Path) -> None:
    """BEP 6: with the fast extension a choke no longer drops a peer's requests, so each one queued when
    the choke comes is answered by a reject. Dropped silently, they stayed outstanding at libtorrent for
    good: 16 libtorrent leechers fed by our seeder left one to four of them stalled, unchoked and asking
    for nothing more."""
    meta, data, torrent = make_torrent(tmp_path, 4 * 1024 * 1024, piece_length=256 * 1024)
    slow = local_settings(rates__max_up=256 * 1024)  # most requests still queued when the choke comes

    async def main() -> None:
        seeder = await start_session(tmp_path, "s", slow)
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_for(seeder, sid, lambda s: s.state == "seeding")
            reader, writer = await asyncio.open_connection("127.0.0.1", seeder.listen_port)
            writer.write(wire.Handshake(meta.info_hash, b"-AT0001-" + os.urandom(12),
                                        wire.build_reserved(fast=True)).to_bytes())
            writer.write(wire.build_interested())
            parser = wire.WireParser(num_pieces=meta.num_pieces)
            while not any(isinstance(e, wire.Unchoke) for e in parser.feed(await reader.read(65536))):
                pass
            asked = [(i, b * 16384, 16384) for i in range(8) for b in range(16)]
            writer.write(b"".join(wire.build_request(*r) for r in asked))
            await writer.drain()
            swarm = seeder._torrents[sid].swarm
            (peer,) = swarm.peers
            for _ in range(100):
                if len(swarm.peers[peer].serving) > 64:
                    break
                await asyncio.sleep(0.01)
            peer.set_choking(True)
            answered: set[tuple[int, int, int]] = set()
            while len(answered) < len(asked):
                events = parser.feed(await asyncio.wait_for(reader.read(1 << 20), 10))
                answered.update((e.index, e.begin, len(e.data)) for e in events if isinstance(e, wire.Piece))
                answered.update((e.index, e.begin, e.length) for e in events if isinstance(e, wire.Reject))
            assert answered == set(asked)
            writer.close()
        finally:
            await seeder.close()

    run(main())


def test_a_leecher_keeps_a_quarter_of_the_read_cache_until_it_completes(tmp_path: Path) -> None:
    """The assembly budget is a leecher's memory; its read cache (serving other leechers the pieces it
    verified last) takes a quarter of the setting until the download completes, then all of it; and only
    then are its reads for serving done on the loop."""
    meta, data, torrent = make_torrent(tmp_path, 4 * 1024 * 1024, piece_length=128 * 1024)
    cache = 4 * 1024 * 1024
    settings = local_settings(torrent__read_cache_bytes=cache)

    async def main() -> None:
        seeder = await start_session(tmp_path, "s")
        leecher = await start_session(tmp_path, "l", settings)
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_state(seeder, sid, "seeding")
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seeder.listen_port)])
            sizes = set()
            while leecher.torrent(lid).state != "seeding":
                swarm = leecher._torrents[lid].swarm
                if swarm is not None and not swarm.completed:
                    sizes.add((swarm.uploads.cache_max, swarm.uploads.read_on_loop))
                await asyncio.sleep(0)
            assert sizes == {(cache // 4 // meta.piece_length, False)}
            uploads = leecher._torrents[lid].swarm.uploads
            assert (uploads.cache_max, uploads.read_on_loop) == (cache // meta.piece_length, True)
        finally:
            await leecher.close()
            await seeder.close()

    run(main())


class TrickleSeeder(PeerServer):
    """A seed sending one block a write, a moment apart (a capped seeder at its finest), once ``go`` is set."""

    def __init__(self, meta: Metainfo, payload: bytes) -> None:
        super().__init__()
        self.meta, self.payload = meta, payload
        self.queue: asyncio.Queue[wire.Request] = asyncio.Queue()
        self.go = asyncio.Event()
        self.sent = 0

    async def _send(self, writer: asyncio.StreamWriter) -> None:
        await self.go.wait()
        while True:
            r = await self.queue.get()
            start = r.index * self.meta.piece_length + r.begin
            writer.write(wire.build_piece(r.index, r.begin, self.payload[start:start + r.length]))
            self.sent += 1
            await writer.drain()
            await asyncio.sleep(0.002)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        parser = wire.WireParser(num_pieces=self.meta.num_pieces)
        sender = None
        try:
            while chunk := await reader.read(65536):
                for event in parser.feed(chunk):
                    if isinstance(event, wire.Handshake):
                        writer.write(wire.Handshake(self.meta.info_hash, b"-TS0001-" + os.urandom(12)).to_bytes())
                        writer.write(wire.build_have_all() + wire.build_unchoke())
                        sender = asyncio.get_running_loop().create_task(self._send(writer))
                    elif isinstance(event, wire.Request):
                        self.queue.put_nowait(event)
        except (ConnectionError, wire.ProtocolError):
            pass
        finally:
            if sender is not None:
                sender.cancel()


def test_a_leecher_tops_a_peer_up_once_an_eighth_of_its_pipeline_is_free_not_after_every_block(
        tmp_path: Path) -> None:
    """Blocks arriving one a read: the leecher's requests go out once an eighth of the peer's pipeline
    is free, not in a write after every block, which woke the seeder and cost the leecher a fill a read."""
    meta, data, torrent = make_torrent(tmp_path, 8 * 1024 * 1024, files=1, piece_length=64 * 1024)
    payload = b"".join((data / Path(*f.path)).read_bytes() for f in meta.files)

    async def main() -> None:
        seeder = TrickleSeeder(meta, payload)
        await seeder.start()
        leecher = await start_session(tmp_path, "l", local_settings(network__encryption="allow"))
        writes: list[int] = []
        try:
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seeder.port)])
            while True:  # the first requests are out: count the leecher's writes from here on
                swarm = leecher._torrents[lid].swarm
                if swarm is not None and swarm.peers and seeder.queue.qsize() >= 16:
                    break
                await asyncio.sleep(0.005)
            (peer,) = swarm.peers
            writes = count_writes(peer)
            seeder.go.set()
            await wait_complete(leecher, lid, timeout=30)
        finally:
            await leecher.close()
            seeder.close()
        blocks = meta.payload_length // 16384
        assert seeder.sent == blocks
        # 512 blocks, a pipeline of 250 (the seeder sends no reqq): a write per block was 250 and more
        assert len(writes) <= blocks // 8, f"{len(writes)} writes for {blocks} blocks received"

    run(main())
    assert same_tree(data / "payload", tmp_path / "out" / "payload")
