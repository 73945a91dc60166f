"""Session snapshots of a big live torrent, as a front end refreshing twice a second reads them.

One torrent of 100 000 pieces of 256 KiB (20 files, 3 of them skipped, 2 high;
3 trackers in 2 tiers) in a real ``Session`` started on a uvloop event loop
(``state_dir=None``), activated by the queue's own ``activate()``: its ``Swarm``
holds 200 ``PeerConnection`` objects without transports (150 dialled, 50
incoming, 20 of them seeds), 160 pieces in progress in the picker (40 peers
unchoked us and got 64 blocks each, half of them delivered), 5 pieces that
failed their hash check, and candidates that are known, failed or being
dialled; one tracker has answered, one has failed, one was never asked. We have
60 000 pieces (60 %, all of them wanted; 83 % of the torrent is wanted).

Everything is built in a module fixture, outside the timed calls; the timed
call is always one public ``Session`` snapshot method (or the five a UI reads
at each refresh), run on the session's event loop. Each test then checks what
came back against the live objects, so the benchmark measured the real thing.

``cython``/``python``: the compiled Bitfield or its pure twin all through the
torrent (ours, wanted, the picker's, the peers'), what ``TORRENT_PURE_PYTHON=1``
would select at import time. Snapshots that read bitfields run both.

Targets (issue): torrent, peers, files and trackers under 1 ms each; the piece
map under 5 ms.

    .venv/bin/python -m pytest benchmarks/test_snapshot_bench.py --benchmark-only -q \\
        --benchmark-columns=min,median,mean,rounds -p no:cacheprovider
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from torrent.codec.metainfo import FileEntry, Metainfo
from torrent.core.settings import DEFAULT_SETTINGS, with_values
from torrent.peer.connection import PeerConnection
from torrent.session import FilePriority, PeerSource, PieceState, Session, TorrentState
from torrent.session.managed import ManagedTorrent
from torrent.session.state import TorrentRecord
from torrent.storage.files import Storage
from torrent.tracker import AnnounceResponse, TrackerError, TrackerTiers

try:
    import uvloop

    new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
except ImportError:  # the engine runs on uvloop; asyncio's loop does as well here
    new_loop = asyncio.new_event_loop

N = 100_000
PIECE = 256 * 1024
SHORT_LAST = 77_777  # bytes missing from the last piece
PEERS = 200
SEEDS = 20  # every tenth peer
INCOMING = 50  # every fourth peer
UNCHOKED_US = 40  # peers that unchoked us: requests outstanding at them
UPLOAD_SLOTS = 4  # peers we unchoked, some of them with requests queued
SNUBBED = 2
PICK = 64  # blocks picked per unchoked peer (4 pieces of 16 blocks)
HASH_FAILED = 5
KNOWN = 250  # candidate addresses never tried (not shown as rows)
FAILED = 10  # candidates whose last attempt failed (shown)
CONNECTING = 3  # candidates being dialled (shown)
SEED = 0x5A9_5407

TIERS = (("udp://tracker.example.org:1337/announce", "http://tracker.example.net:6969/announce"),
         ("https://tracker.example.com/announce",))
CLIENTS = (b"-qB4520-", b"-LT2110-", b"-TR3000-", b"-DE13F0-", b"-UT355S-", b"-AZ5770-", b"-lt0D80-",
           b"-BC0200-")
SOURCES = (PeerSource.TRACKER, PeerSource.TRACKER, PeerSource.DHT, PeerSource.PEX)

SETTINGS = with_values(DEFAULT_SETTINGS, {
    "network.listen_port": 0, "network.bind": "127.0.0.1",
    "torrent.max_peers": 250, "network.max_connections": 500,
})


# ---- the torrent ------------------------------------------------------------------------------


def _files(rng: random.Random) -> list[tuple[str, int, FilePriority]]:
    """20 files in payload order: 5 small ones (one exactly a piece long) among 15
    episodes of varied sizes; the sample and two episodes skipped, two episodes high."""
    small = {0: ("README.txt", 3_412), 1: ("cover.jpg", 1_843_221), 6: ("Season 1/Episode 05.srt", 48_213),
             12: ("info.nfo", 517), 19: ("sample.mkv", PIECE)}
    total = N * PIECE - SHORT_LAST
    weights = [rng.uniform(0.3, 3.0) for _ in range(20 - len(small))]
    rest = total - sum(size for _, size in small.values())
    big = [int(rest * w / sum(weights)) for w in weights]
    big[-1] += rest - sum(big)
    skip = {4, 9, 19}
    high = {2, 3}
    out, episodes = [], iter(big)
    for index in range(20):
        if index in small:
            path, size = small[index]
        else:
            size = next(episodes)
            path = f"Season {1 + index // 8}/Episode {index:02}.mkv"
        priority = FilePriority.SKIP if index in skip else FilePriority.HIGH if index in high else FilePriority.NORMAL
        out.append((path, size, priority))
    return out


def _metainfo(files: list[tuple[str, int, FilePriority]], rng: random.Random) -> Metainfo:
    """Built in memory, as ``tests/unit/test_storage.py::make_torrent`` does; the piece
    hashes are made up (nothing is hashed here)."""
    name = "The.Collection.2024.1080p"
    entries, offset = [], 0
    for path, length, _ in files:
        entries.append(FileEntry((name, *path.split("/")), length, offset))
        offset += length
    pieces = rng.randbytes(20 * N)
    meta = Metainfo(info_hash=hashlib.sha1(pieces).digest(), name=name, piece_length=PIECE, pieces=pieces,
                    files=tuple(entries), multi_file=True, trackers=TIERS, comment="snapshot benchmark",
                    created_by="mktorrent 1.1", creation_date=1_700_000_000)
    assert meta.num_pieces == meta.geometry.num_pieces == N
    return meta


@pytest.fixture(scope="module")
def wire_fields() -> list[bytes]:
    """The peers' bitfields (wire bytes), shared by both implementations: fill
    between about 6 % and 94 % (an AND or OR of one to four random fields)."""
    rng = random.Random(SEED)
    fields = []
    for k in range(PEERS):
        value = rng.getrandbits(N)
        for _ in range(k % 4):
            value = (value & rng.getrandbits(N)) if k % 8 < 4 else (value | rng.getrandbits(N))
        fields.append(value.to_bytes(N // 8, "big"))
    return fields


# ---- the live session -------------------------------------------------------------------------


@dataclass
class World:
    impl: str
    loop: asyncio.AbstractEventLoop
    session: Session
    torrent: ManagedTorrent
    id: str
    expected_states: bytes = b""
    expected_file_verified: list[int] = field(default_factory=list)
    expected_verified: int = 0

    def traffic(self) -> None:
        """Top up every peer's rate meters (bytes now), so the rates a snapshot
        reads are live ones in each benchmark (meters forget after 5 s)."""
        now = time.monotonic()
        assert self.torrent.swarm is not None
        for k, peer in enumerate(self.torrent.swarm.peers):
            peer.downloaded.add(16384 * (1 + k % 7), now)
            if not peer.am_choking:
                peer.uploaded.add(16384 * 3, now)


async def _build(cls: type, wire: list[bytes], root: Path, impl: str) -> World:
    rng = random.Random(SEED)
    session = Session(SETTINGS, state_dir=None)
    await session.start()
    # The one-second ticker would time peers out, rechoke and dial the candidates
    # between benchmarks: stop it, so every benchmark reads the same state.
    for task in list(session._tasks):
        task.cancel()
    await asyncio.gather(*session._tasks, return_exceptions=True)
    assert session._servers and not session._tasks

    files = _files(rng)
    meta = _metainfo(files, rng)
    record = TorrentRecord(id=meta.info_hash_hex, save_path=str(root), added_at=time.time() - 7200)
    t = ManagedTorrent(session, record, metainfo=meta, source=None, magnet=None)
    t.init_priorities(given=[p for _, _, p in files])
    session._insert(t)

    # Our pieces: 60 % of all, every one of them wanted; all bitfields in ``cls``.
    wanted = cls.from_bytes(t.wanted_pieces().to_bytes(), N)  # type: ignore[union-attr]
    t._wanted = wanted
    wanted_indexes = list(wanted.iter_set())
    have = cls(N)
    for i in rng.sample(wanted_indexes, 60_000):
        have.set(i)
    t.have = have
    t.storage = Storage(meta, root, settings=session.settings.storage, file_wanted=t.file_wanted)
    t.uploaded_before, t.downloaded_before = 3 * 2**30, 9 * 2**30

    # The queue's path: ``activate`` builds the Swarm as the session does, spawns the
    # announcer and dials (no candidates yet); the announcer is cancelled before it
    # runs, so nothing talks to the made-up trackers.
    t.state = TorrentState.QUEUED
    t.activate()
    for task in list(t.tasks):
        task.cancel()
    await asyncio.gather(*t.tasks, return_exceptions=True)
    swarm = t.swarm
    assert swarm is not None and t.state is TorrentState.DOWNLOADING
    assert type(swarm.picker.have) is cls
    picker = swarm.picker

    # 200 connections without transports.
    now = time.monotonic()
    for k in range(PEERS):
        if k % 25 == 7:
            address = (f"2001:db8:{k:x}::{rng.randrange(1, 0xffff):x}", rng.randrange(1024, 65536))
        else:
            address = (f"10.{k % 7}.{rng.randrange(256)}.{rng.randrange(1, 255)}", rng.randrange(1024, 65536))
        if k % 4 == 0:  # incoming: the listener's protocol, the torrent found by the handshake's info-hash
            peer = PeerConnection(None, resolver=session._resolve, listen_port=session.listen_port,
                                  settings=session.settings)
            peer.address = address
            peer.owner = session._resolve(meta.info_hash)
            peer._parser.num_pieces = N
        else:  # dialled, as ManagedTorrent._dial makes them
            source = SOURCES[k % len(SOURCES)]
            t.candidates.add(address, source, now)
            t.candidates.dialling(address, now)
            peer = PeerConnection(swarm, address=address, listen_port=session.listen_port,
                                  settings=session.settings)
            peer.source = source.value
            peer.on_close = t.peer_closed
        peer.remote_id = CLIENTS[k % len(CLIENTS)] + rng.randbytes(12)
        peer.supports_fast = peer.supports_extensions = True
        peer.connected_at = now - rng.uniform(5.0, 3600.0)
        assert swarm.attach(peer) is None
        if k % 10 == 0:
            bitfield = cls(N)
            bitfield.set_all()
        else:
            bitfield = cls.from_bytes(wire[k], N)
        peer.bitfield = bitfield
        peer.set_interested(picker.peer_bitfield(peer, bitfield))
        peer.peer_interested = k % 3 == 0
        for s in range(5):  # five seconds of traffic
            peer.downloaded.add(16384 * (k % 9) * (s + 1), now - 4 + s)
    peers = list(swarm.peers)
    assert len(peers) == PEERS

    # Requests: peers that unchoked us got PICK blocks each and sent half of them.
    for peer in [p for p in peers if p.am_interested][:UNCHOKED_US]:
        peer.peer_choking = False
        blocks = picker.pick(peer, PICK, now=now)
        for b in blocks[: len(blocks) // 2]:
            assert picker.block_received(peer, b.index, b.begin).new
    # Uploads: we unchoked a few interested peers, some have requests queued with us.
    for k, peer in enumerate([p for p in peers if p.peer_interested][:UPLOAD_SLOTS]):
        peer.am_choking = False
        for i in list(have.iter_set())[k * 100: k * 100 + 6]:
            swarm.peers[peer].serving.append((i, 0, 16384))
        for s in range(5):
            peer.uploaded.add(65536 * (s + 1), now - 4 + s)
    for peer in [p for p in peers if not p.peer_choking][:SNUBBED]:
        swarm.peers[peer].snubbed = True
    assert len(picker.partials()) > 100

    # Pieces that failed their hash check, not in progress.
    in_progress = {p.index for p in picker.partials()}
    failed = [i for i in wanted_indexes if not have.get(i) and i not in in_progress][::997][:HASH_FAILED]
    swarm.hash_failed.update(failed)
    swarm.hash_failures = len(failed)
    swarm.wasted = len(failed) * PIECE + 5 * 16384
    swarm.downloaded, swarm.uploaded = 1_500 * PIECE, 400 * PIECE
    swarm.banned.add("198.51.100.66")

    # Candidates: known and never tried, failed, being dialled.
    for k in range(KNOWN + FAILED + CONNECTING):
        address = (f"192.0.{2 + k // 200}.{k % 200 + 1}", 6881 + k)
        t.candidates.add(address, SOURCES[k % len(SOURCES)], now)
        if k >= KNOWN:
            t.candidates.dialling(address, now)
            if k < KNOWN + FAILED:
                t.candidates.failed(address, "connection refused" if k % 2 else "timed out", now)
            else:
                t.connecting.add(address)

    # Trackers: the first of tier 0 answered, the second failed, tier 1 never asked.
    t.tiers.on_success(TIERS[0][0], AnnounceResponse(
        interval=1800, min_interval=900, complete=812, incomplete=95,
        peers=tuple((f"192.0.2.{i}", 6881) for i in range(1, 51))), now - 300)
    t.tiers.on_failure(TIERS[0][1], TrackerError("connection timed out"), now - 200)

    world = World(impl, asyncio.get_running_loop(), session, t, t.id)
    _expectations(world)
    return world


def _expectations(world: World) -> None:
    """What the snapshots should say, worked out piece by piece (slowly, once)."""
    t = world.torrent
    meta, have, wanted, swarm = t.metainfo, t.have, t.wanted_pieces(), t.swarm
    assert meta is not None and have is not None and wanted is not None and swarm is not None
    geometry = meta.geometry
    states = bytearray(N)
    for i in range(N):
        if have.get(i):
            states[i] = PieceState.HAVE
        elif not wanted.get(i):
            states[i] = PieceState.SKIPPED
    for p in swarm.picker.partials():
        states[p.index] = PieceState.DOWNLOADING if p.received else PieceState.REQUESTED
    for i in swarm.hash_failed:
        states[i] = PieceState.FAILED
    world.expected_states = bytes(states)
    world.expected_verified = sum(geometry.piece_size(i) for i in have.iter_set())
    verified = []
    for entry in meta.files:
        first, last = entry.offset // PIECE, (entry.offset + entry.length - 1) // PIECE
        got = 0
        for i in range(first, last + 1):
            if have.get(i):
                got += min(entry.offset + entry.length, (i + 1) * PIECE) - max(entry.offset, i * PIECE)
        verified.append(got)
    world.expected_file_verified = verified


async def _close(world: World) -> None:
    world.torrent.tiers = TrackerTiers([])  # no ``stopped`` announce to the made-up trackers
    await world.session.close()


@pytest.fixture(scope="module")
def world(twin, wire_fields: list[bytes], tmp_path_factory: pytest.TempPathFactory):
    """The torrent with the twin's Bitfield all through (root conftest.py: ``cython`` / ``python``)."""
    loop = new_loop()
    root = tmp_path_factory.mktemp(f"snapshot-{twin.name}")
    try:
        w = loop.run_until_complete(_build(twin.Bitfield, wire_fields, root, twin.name))
        yield w
        loop.run_until_complete(_close(w))
    finally:
        loop.close()


def _bench(benchmark: Any, world: World, fn: Callable[[], Any]) -> Any:
    """Time ``fn`` on the session's loop (a UI asks from a loop callback); returns its result."""
    benchmark.group = "snapshot"
    benchmark.extra_info.update(pieces=N, peers=PEERS, bitfield=world.impl)
    world.traffic()

    async def on_loop() -> Any:
        return benchmark(fn)

    return world.loop.run_until_complete(on_loop())


cython_only = pytest.mark.parametrize("twin", ["cython"], indirect=True)


# ---- benchmarks -------------------------------------------------------------------------------


def test_torrent(benchmark, world):
    """``session.torrent(id)``: target under 1 ms."""
    session, tid = world.session, world.id
    snap = _bench(benchmark, world, lambda: session.torrent(tid))
    assert snap.num_pieces == N and snap.state == "downloading"
    assert snap.peers == PEERS and snap.seeds == SEEDS
    assert snap.verified == snap.wanted_verified == world.expected_verified
    assert 0.5 < snap.progress < 1.0 and snap.seeds_known == 812
    # Every candidate address (the dialled peers' included) and the incoming peers.
    assert snap.peers_known == (PEERS - INCOMING) + KNOWN + FAILED + CONNECTING + INCOMING
    assert snap.hash_failures == HASH_FAILED and snap.banned == 1 and snap.magnet.startswith("magnet:?")


def test_peers(benchmark, world):
    """``session.peers(id)``: 200 connected rows plus failed and connecting candidates; target under 1 ms."""
    session, tid, swarm = world.session, world.id, world.torrent.swarm
    rows = _bench(benchmark, world, lambda: session.peers(tid))
    status = Counter(r.status for r in rows)
    assert status == {"connected": PEERS, "failed": FAILED, "connecting": CONNECTING}
    connected = [r for r in rows if r.status == "connected"]
    assert sum(r.progress == 1.0 for r in connected) == SEEDS
    assert sum(r.incoming for r in connected) == INCOMING
    assert sum(r.requests_out for r in connected) == sum(swarm.picker.num_outstanding(p) for p in swarm.peers) > 0
    assert sum(r.requests_in for r in connected) > 0 and sum(r.snubbed for r in connected) == SNUBBED
    assert {r.client.split()[0] for r in connected} >= {"qBittorrent", "libtorrent", "Transmission", "Deluge"}
    assert any(r.address.startswith("[2001:db8:") for r in connected)


def test_files(benchmark, world):
    """``session.files(id)``: 20 files; target under 1 ms."""
    session, tid = world.session, world.id
    rows = _bench(benchmark, world, lambda: session.files(tid))
    assert len(rows) == 20
    assert [r.verified for r in rows] == world.expected_file_verified
    assert sum(r.size for r in rows) == N * PIECE - SHORT_LAST
    assert Counter(r.priority for r in rows) == {"normal": 15, "skip": 3, "high": 2}
    assert all(r.progress < 0.01 for r in rows if r.priority == "skip")  # at most a piece shared with a wanted file


@cython_only
def test_trackers(benchmark, world):
    """``session.trackers(id)``: 3 trackers in 2 tiers; target under 1 ms."""
    session, tid = world.session, world.id
    rows = _bench(benchmark, world, lambda: session.trackers(tid))
    assert [(r.url, r.tier) for r in rows][0] == (TIERS[0][0], 0) and {r.tier for r in rows} == {0, 1}
    assert Counter(r.status for r in rows) == {"working": 1, "error": 1, "not contacted": 1}
    working = next(r for r in rows if r.status == "working")
    assert (working.seeders, working.leechers, working.peers) == (812, 95, 50)
    assert next(r for r in rows if r.status == "error").last_error == "connection timed out"


def test_piece_map(benchmark, world):
    """``session.piece_map(id)``: 100 000 states and availabilities; target under 5 ms."""
    session, tid, picker = world.session, world.id, world.torrent.swarm.picker
    pm = _bench(benchmark, world, lambda: session.piece_map(tid))
    assert pm.num_pieces == N and len(pm.states) == len(pm.availability) == N
    assert pm.states == world.expected_states
    counts = Counter(pm.states)
    assert counts[PieceState.HAVE] == 60_000 and counts[PieceState.FAILED] == HASH_FAILED
    assert counts[PieceState.SKIPPED] > 1000 and counts[PieceState.DOWNLOADING] >= UNCHOKED_US
    assert counts[PieceState.DOWNLOADING] + counts[PieceState.REQUESTED] == len(picker.partials()) > 100
    sample = random.Random(5).sample(range(N), 2000)
    assert [pm.availability[i] for i in sample] == [min(255, picker.availability(i)) for i in sample]
    assert min(pm.availability) >= SEEDS


@cython_only
def test_session(benchmark, world):
    """``session.snapshot()``: one torrent, its 200 connections, the listener, free space."""
    session = world.session
    snap = _bench(benchmark, world, session.snapshot)
    assert snap.torrents == 1 and snap.connections == PEERS and snap.states == (("downloading", 1),)
    assert snap.listen_addresses == (f"127.0.0.1:{session.listen_port}",)
    assert len(snap.free_space) == 1 and snap.downloaded == 1_500 * PIECE


def test_ui_refresh(benchmark, world):
    """What a UI reads at each 2 Hz refresh of a torrent's page: torrent, peers,
    files, trackers and the piece map, in one call."""
    session, tid = world.session, world.id

    def refresh() -> tuple[Any, ...]:
        return (session.torrent(tid), session.peers(tid), session.files(tid), session.trackers(tid),
                session.piece_map(tid))

    torrent, peers, files, trackers, pm = _bench(benchmark, world, refresh)
    assert torrent.peers == PEERS and len(peers) == PEERS + FAILED + CONNECTING
    assert len(files) == 20 and len(trackers) == 3 and pm.states == world.expected_states
