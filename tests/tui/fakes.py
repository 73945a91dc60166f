"""Deterministic snapshots and a fake session for driving the TUI without an engine.

``make_torrent`` / ``make_peer`` / ``make_file`` / ``make_tracker`` build API rows
with plausible defaults and any field overridden. ``FakeSession`` offers the
session's read methods (and records its commands), so widgets and the app are
fed fixed values: screenshots and key flows come out the same on every run.
"""

from __future__ import annotations

from typing import Any

from torrent.session import (
    FileSnapshot,
    PeerSnapshot,
    PieceDetail,
    PieceMap,
    PieceState,
    SessionSnapshot,
    TorrentSnapshot,
    TorrentState,
    TrackerSnapshot,
    UnknownTorrentError,
)
from torrent.session.api import BlockDetail
from torrent.session.events import EventBus, Subscription

MiB = 1 << 20
NOW = 1_764_000_000.0  # a fixed "now" (2025-11-24) so dates render the same everywhere


def make_torrent(**over: Any) -> TorrentSnapshot:
    values: dict[str, Any] = dict(
        id="0123456789abcdef0123456789abcdef01234567", name="debian-13.2.0-amd64-netinst.iso",
        state=TorrentState.DOWNLOADING.value, progress=0.42, total_size=700 * MiB, wanted_size=700 * MiB,
        verified=294 * MiB, wanted_verified=294 * MiB, down_rate=3.2 * MiB, up_rate=410 * 1024.0, eta=127.0,
        ratio=0.12, downloaded=294 * MiB, uploaded=36 * MiB, wasted=0, peers=12, seeds=7, peers_known=58,
        seeds_known=130, save_path="/home/user/Downloads", added_at=NOW - 3600, completed_at=None,
        queue_position=0, forced=False, sequential=False, first_last=False, max_down=0, max_up=0,
        max_peers=80, upload_slots=8, last_error=None, waiting_on=(), checking_progress=None, hashed=0,
        hash_failures=0, banned=0, seeding_time=0.0, piece_length=256 * 1024, num_pieces=2800,
        creation_date=int(NOW - 86400 * 30), created_by="mktorrent 1.1", comment="Debian CD from cdimage.debian.org",
        private=False,
        magnet="magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=debian-13.2.0-amd64-netinst.iso",
    )
    values.update(over)
    return TorrentSnapshot(**values)


def make_peer(**over: Any) -> PeerSnapshot:
    values: dict[str, Any] = dict(
        address="127.0.0.1:51413", client="Transmission 4.0.6", status="connected", source="tracker",
        incoming=False, am_choking=False, am_interested=True, peer_choking=False, peer_interested=False,
        snubbed=False, down_rate=512 * 1024.0, up_rate=0.0, downloaded=12 * MiB, uploaded=0, progress=1.0,
        requests_out=64, requests_in=0, connected_for=95.0, failures=0, next_attempt=None, last_error=None,
    )
    values.update(over)
    return PeerSnapshot(**values)


def make_file(**over: Any) -> FileSnapshot:
    values: dict[str, Any] = dict(index=0, path="debian.iso", size=700 * MiB, verified=294 * MiB, priority="normal",
                                  progress=0.42, padding=False)
    values.update(over)
    return FileSnapshot(**values)


def make_tracker(**over: Any) -> TrackerSnapshot:
    values: dict[str, Any] = dict(url="http://bttracker.debian.org:6969/announce", tier=0, status="working",
                                  last_announce=NOW - 600, next_announce=NOW + 1200, seeders=130, leechers=12,
                                  peers=50, last_error=None, message=None)
    values.update(over)
    return TrackerSnapshot(**values)


def make_session_snapshot(**over: Any) -> SessionSnapshot:
    values: dict[str, Any] = dict(down_rate=3.2 * MiB, up_rate=410 * 1024.0, downloaded=294 * MiB,
                                  uploaded=36 * MiB, listen_addresses=("0.0.0.0:6881", "[::]:6881"), connections=12,
                                  torrents=1, states=(("downloading", 1),),
                                  free_space=(("/home/user/Downloads", 120 * 1024 * MiB),), max_down=0, max_up=0,
                                  alt_speed=False, events_dropped=0, dht_nodes=0, dht_lookups=0, udp_port=6881,
                                  port_mapping="off", external_address=None, lsd="on")
    values.update(over)
    return SessionSnapshot(**values)


def piece_map_for(num_pieces: int, have_every: int = 3) -> PieceMap:
    """A deterministic map: a run of verified pieces, some in flight, a failed one, availability varying."""
    states = bytearray(num_pieces)
    for i in range(num_pieces):
        if i % have_every == 0 or i < num_pieces // 4:
            states[i] = PieceState.HAVE
        elif i % 17 == 1:
            states[i] = PieceState.DOWNLOADING
        elif i % 19 == 2:
            states[i] = PieceState.REQUESTED
    if num_pieces > 5:
        states[5] = PieceState.FAILED
    availability = bytes((i * 7) % 13 for i in range(num_pieces))
    return PieceMap(num_pieces, bytes(states), availability)


class FakeSession:
    """The session's read methods over fixed rows; commands are recorded in ``calls``."""

    def __init__(self, torrents: tuple[TorrentSnapshot, ...] = (), *, peers: dict[str, tuple[PeerSnapshot, ...]] | None
                 = None, files: dict[str, tuple[FileSnapshot, ...]] | None = None,
                 trackers: dict[str, tuple[TrackerSnapshot, ...]] | None = None,
                 session: SessionSnapshot | None = None) -> None:
        self.rows = {t.id: t for t in torrents}
        self.peer_rows = peers or {}
        self.file_rows = files or {}
        self.tracker_rows = trackers or {}
        self.session_row = session or make_session_snapshot(torrents=len(self.rows))
        self.calls: list[tuple[Any, ...]] = []
        self.bus = EventBus()  # the engine's own event stream: bounded, awaited as the real one is
        self.started = False
        self.closed = False
        self.listen_port = 6881
        self.warnings: list[str] = []

    # lifecycle
    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True
        self.bus.close()

    def subscribe(self, maxlen: int = 1000) -> Subscription:
        return self.bus.subscribe(maxlen)

    def publish(self, event: Any) -> None:
        self.bus.publish(event)

    # reads
    def _get(self, torrent_id: str) -> TorrentSnapshot:
        try:
            return self.rows[torrent_id]
        except KeyError:
            raise UnknownTorrentError(f"no torrent {torrent_id}") from None

    def ids(self) -> tuple[str, ...]:
        return tuple(self.rows)

    def snapshot(self) -> SessionSnapshot:
        return self.session_row

    def torrent(self, torrent_id: str) -> TorrentSnapshot:
        return self._get(torrent_id)

    def torrents(self) -> tuple[TorrentSnapshot, ...]:
        return tuple(self.rows.values())

    def peers(self, torrent_id: str) -> tuple[PeerSnapshot, ...]:
        self._get(torrent_id)
        return self.peer_rows.get(torrent_id, ())

    def files(self, torrent_id: str) -> tuple[FileSnapshot, ...]:
        self._get(torrent_id)
        return self.file_rows.get(torrent_id, ())

    def trackers(self, torrent_id: str) -> tuple[TrackerSnapshot, ...]:
        self._get(torrent_id)
        return self.tracker_rows.get(torrent_id, ())

    def piece_map(self, torrent_id: str) -> PieceMap:
        return piece_map_for(self._get(torrent_id).num_pieces)

    def piece_detail(self, torrent_id: str, index: int) -> PieceDetail:
        pm = self.piece_map(torrent_id)
        blocks = tuple(BlockDetail(b * 16384, 16384, ("have", "received", "requested", "free")[b % 4],
                                   ("127.0.0.1:51413",) if b % 4 == 2 else (),
                                   "127.0.0.1:51413" if b % 4 == 1 else None) for b in range(16))
        return PieceDetail(index, pm.states[index], pm.availability[index],
                           blocks if pm.states[index] == PieceState.DOWNLOADING else (),
                           tuple(p.address for p in self.peer_rows.get(torrent_id, ())))

    # commands: recorded, and where a row shows the effect, applied
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        async def command(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, *args, *sorted(kwargs.items())))
            return None

        return command

    async def pause(self, torrent_id: str) -> None:
        self.calls.append(("pause", torrent_id))
        self.rows[torrent_id] = self._get(torrent_id)._replace(state=TorrentState.PAUSED.value, down_rate=0.0,
                                                               up_rate=0.0)

    async def resume(self, torrent_id: str) -> None:
        self.calls.append(("resume", torrent_id))
        self.rows[torrent_id] = self._get(torrent_id)._replace(state=TorrentState.DOWNLOADING.value)

    async def remove(self, torrent_id: str, *, delete_data: bool = False) -> None:
        self.calls.append(("remove", torrent_id, ("delete_data", delete_data)))
        self._get(torrent_id)
        del self.rows[torrent_id]

    async def set_file_priorities(self, torrent_id: str, priorities: dict[int, str]) -> None:
        self.calls.append(("set_file_priorities", torrent_id, dict(priorities)))
        self.file_rows[torrent_id] = tuple(f._replace(priority=str(priorities.get(f.index, f.priority)))
                                           for f in self.file_rows.get(torrent_id, ()))


SHOWCASE_ID = "0123456789abcdef0123456789abcdef01234567"


def showcase_session() -> FakeSession:
    """A session with torrents in every state, one of them richly detailed: the screenshots' content."""
    g = 1 << 30
    rows = (
        make_torrent(),
        make_torrent(id="1" * 40, name="archlinux-2026.12.01-x86_64.iso", state="seeding", progress=1.0,
                     total_size=1_200 * MiB, wanted_size=1_200 * MiB, verified=1_200 * MiB,
                     wanted_verified=1_200 * MiB, down_rate=0.0, up_rate=1.4 * MiB, eta=None, ratio=3.42, peers=9,
                     seeds=0, peers_known=40, seeds_known=812, queue_position=1, seeding_time=86400 * 3.0),
        make_torrent(id="2" * 40, name="Big Buck Bunny (1080p)", state="downloading", progress=0.873,
                     total_size=885 * MiB, wanted_size=700 * MiB, down_rate=12.6 * MiB, up_rate=2.1 * MiB, eta=9.0,
                     ratio=0.31, peers=31, seeds=24, peers_known=140, seeds_known=None, queue_position=2,
                     sequential=True),
        make_torrent(id="3" * 40, name="ubuntu-26.04-desktop-amd64.iso", state="paused", progress=0.12,
                     total_size=6 * g, wanted_size=6 * g, down_rate=0.0, up_rate=0.0, eta=None, ratio=0.0, peers=0,
                     seeds=0, peers_known=12, seeds_known=2400, queue_position=3),
        make_torrent(id="4" * 40, name="LibreOffice_25.8_Linux_x86-64_deb.tar.gz", state="queued", progress=0.0,
                     total_size=240 * MiB, wanted_size=240 * MiB, down_rate=0.0, up_rate=0.0, eta=None, ratio=0.0,
                     peers=0, seeds=0, peers_known=0, seeds_known=None, queue_position=4, waiting_on=("queue",)),
        make_torrent(id="5" * 40, name="fedora-workstation-43.iso", state="checking", progress=0.4,
                     checking_progress=0.63, total_size=2 * g, wanted_size=2 * g, down_rate=0.0, up_rate=0.0,
                     eta=None, ratio=0.0, peers=0, seeds=0, queue_position=5),
        make_torrent(id="6" * 40, name="magnet 66666666…", state="metadata", progress=0.0, total_size=0,
                     wanted_size=0, verified=0, wanted_verified=0, down_rate=0.0, up_rate=0.0, eta=None, ratio=0.0,
                     peers=0, seeds=0, peers_known=0, seeds_known=None, queue_position=6, num_pieces=0,
                     piece_length=0,
                     waiting_on=("metadata: searching the DHT (312 nodes), asking the trackers; no peers yet",)),
        make_torrent(id="7" * 40, name="wikipedia-en-2026-11.zim", state="error", progress=0.55,
                     total_size=110 * g, wanted_size=110 * g, down_rate=0.0, up_rate=0.0, eta=None, ratio=0.02,
                     peers=0, seeds=0, queue_position=7, last_error="disk full writing wikipedia-en-2026-11.zim"),
    )
    clients = ("qBittorrent 5.1.2", "Transmission 4.0.6", "libtorrent 2.0.11", "aria2 1.37.0", "Deluge 2.1.1",
               "rtorrent 0.10.0", "torrent 0.1.0", "BiglyBT 3.8.0")
    peers = tuple(
        make_peer(address=f"10.0.{i // 3}.{10 + i}:{51413 + i}", client=clients[i % len(clients)],
                  source=("tracker", "incoming", "manual")[i % 3], incoming=i % 3 == 1,
                  peer_choking=i % 4 == 3, peer_interested=i % 2 == 0, am_choking=i % 2 == 1, snubbed=i == 7,
                  down_rate=(900 - 70 * i) * 1024.0 if i % 4 != 3 else 0.0, up_rate=(40 * i) * 1024.0 * (i % 2 == 0),
                  downloaded=(30 - i) * MiB, uploaded=i * 2 * MiB, progress=(1.0, 0.5, 0.93, 0.07)[i % 4],
                  requests_out=0 if i % 4 == 3 else 48 + i, requests_in=3 * (i % 2 == 0), connected_for=60.0 * i + 5,
                  encryption=("handshake", "", "rc4")[i % 3], transport="utp" if i % 5 == 2 else "tcp")
        for i in range(12))
    files = (
        make_file(index=0, path="debian-13.2.0/debian-13.2.0-amd64-netinst.iso", size=680 * MiB,
                  verified=280 * MiB, progress=280 / 680),
        make_file(index=1, path="debian-13.2.0/SHA256SUMS", size=2048, verified=2048, progress=1.0,
                  priority="high"),
        make_file(index=2, path="debian-13.2.0/SHA256SUMS.sign", size=833, verified=833, progress=1.0),
        make_file(index=3, path="debian-13.2.0/firmware/firmware.tar.gz", size=20 * MiB, verified=0,
                  progress=0.0, priority="skip"),
    )
    trackers = (
        make_tracker(),
        make_tracker(url="udp://tracker.opentrackr.org:1337/announce", tier=1, status="error", last_announce=None,
                     seeders=None, leechers=None, peers=None, last_error="timed out after 15 s"),
        make_tracker(url="https://ipv6.torrent.ubuntu.com/announce", tier=2, status="not contacted",
                     last_announce=None, next_announce=None, seeders=None, leechers=None, peers=None),
    )
    session = FakeSession(rows, peers={SHOWCASE_ID: peers}, files={SHOWCASE_ID: files},
                          trackers={SHOWCASE_ID: trackers},
                          session=make_session_snapshot(torrents=len(rows), down_rate=15.8 * MiB, up_rate=3.9 * MiB,
                                                        connections=52, max_up=4 * MiB, dht_nodes=312,
                                                        dht_lookups=2, port_mapping="mapped by upnp",
                                                        external_address="203.0.113.7:6881",
                                                        states=(("downloading", 2), ("seeding", 1), ("paused", 1),
                                                                ("queued", 1), ("checking", 1), ("metadata", 1),
                                                                ("error", 1))))
    return session


def fill_history(app: object, seconds: int = 300) -> None:
    """Deterministic rate history up to NOW, as if the app had watched for ``seconds``."""
    import math

    book = app.history  # type: ignore[attr-defined]
    for k in range(seconds):
        at = NOW - seconds + k
        down = (3.0 + 1.5 * math.sin(k / 17) + (k % 23) / 23) * MiB
        up = (0.4 + 0.2 * math.cos(k / 11)) * MiB
        book.record(at, down * 4, up * 3, [(SHOWCASE_ID, down, up), ("2" * 40, down * 3, up * 5)])


async def click_button(pilot: Any, selector: str) -> None:
    """Click a button once it can take a click: Textual ignores one while the last press still shows
    (class ``-active``, about 0.2 s), so two quick clicks in a test would otherwise lose the second."""
    button = pilot.app.screen.query_one(selector)
    for _ in range(100):
        if not button.has_class("-active"):
            break
        await pilot.pause(0.02)
    await pilot.click(selector)
