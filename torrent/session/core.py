"""The session: the listener, the torrents, trackers, connections and timers.

One session per process. It owns the listening socket, our peer id, the
global rate limiters and the worker pool for disk and hashing, and drives
each torrent's ``Swarm``: announces, outgoing connections, the one-second
tick, rechokes and periodic resume saves. Front ends use ``add``,
``stop`` and ``stats``; they never touch a swarm's internals.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from torrent import __version__
from torrent.storage import resume
from torrent.engine.choker import INTERVAL as RECHOKE_INTERVAL
from torrent.core.errors import ListenError, StorageError, TorrentError
from torrent.codec.metainfo import Metainfo
from torrent.peer.connection import PeerConnection
from torrent.engine.ratelimit import RateLimiter
from torrent.core.settings import DEFAULT_LIMITS, Limits
from torrent.storage.files import Storage
from torrent.engine.swarm import Swarm
from torrent.tracker import AnnounceRequest, Event, TrackerError, TrackerTiers, announce

log = logging.getLogger(__name__)

RESUME_EVERY = 30.0
CONNECT_TIMEOUT = 10.0
RECONNECT_AFTER = 60.0  # a candidate that failed is tried again after this long
MAX_CANDIDATES = 2000  # peer addresses remembered per torrent; the oldest go first


def make_peer_id() -> bytes:
    """Azureus-style: ``-TO0100-`` then 12 random bytes (BEP 20)."""
    digits = "".join(f"{int(p):d}" for p in __version__.split(".")[:3]).ljust(4, "0")[:4]
    return f"-TO{digits}-".encode() + os.urandom(12)


@dataclass
class Settings:
    listen_host: str | None = None  # None: every IPv4 and IPv6 address
    listen_port: int = 6881  # 0: any free port
    max_peers: int = 60  # per torrent
    max_connections: int = 200  # for the whole session
    max_half_open: int = 20  # outgoing connection attempts at once, per torrent
    upload_slots: int = 4
    max_down: int = 0  # bytes/s, 0 = unlimited
    max_up: int = 0
    resume_dir: Path | None = None
    limits: Limits = DEFAULT_LIMITS


@dataclass(frozen=True, slots=True)
class TorrentStats:
    """An immutable view of one torrent for a front end."""

    name: str
    info_hash: str
    total: int
    have: int  # bytes verified
    wanted: int
    down_rate: float
    up_rate: float
    downloaded: int
    uploaded: int
    peers: int
    seeds: int
    complete: bool
    hash_failures: int
    banned: int
    tracker_error: str | None


@dataclass(eq=False)
class _Running:
    swarm: Swarm
    metainfo: Metainfo
    tiers: TrackerTiers
    candidates: dict[tuple[str, int], float] = field(default_factory=dict)  # address → not before
    connecting: set[tuple[str, int]] = field(default_factory=set)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    resume_path: Path | None = None
    stopped_event_sent: bool = False
    last_tracker_error: str | None = None


class Session:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.limits = self.settings.limits
        self.peer_id = make_peer_id()
        self.upload_limiter = RateLimiter(self.settings.max_up)
        self.download_limiter = RateLimiter(self.settings.max_down)
        self.executor = ThreadPoolExecutor(max(2, os.cpu_count() or 2), thread_name_prefix="disk")
        self.torrents: dict[bytes, _Running] = {}
        self.listen_port: int | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._self_addresses: set[tuple[str, int]] = set()
        self.errors: asyncio.Queue[str] = asyncio.Queue(maxsize=100)
        self._key = random.getrandbits(32)

    # ---- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def factory() -> PeerConnection:
            return PeerConnection(None, resolver=self._resolve, listen_port=self.listen_port, limits=self.limits)

        host, port = self.settings.listen_host, self.settings.listen_port

        async def listen(on: str) -> asyncio.AbstractServer:
            try:
                return await loop.create_server(factory, on, port, reuse_address=True)
            except OSError as exc:
                reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
                raise ListenError(f"cannot listen on {on}:{port}: {reason} "
                                  "(is another client using it? choose another with --port)") from exc

        if host is not None:
            self._servers = [await listen(host)]
            self.listen_port = self._servers[0].sockets[0].getsockname()[1]
            return
        # IPv4 first (a free port is picked there when port is 0), then IPv6 on
        # the same port if the machine has it.
        self._servers = [await listen("0.0.0.0")]
        self.listen_port = self._servers[0].sockets[0].getsockname()[1]
        try:
            self._servers.append(await loop.create_server(factory, "::", self.listen_port, reuse_address=True))
        except OSError as exc:
            log.info("not listening on IPv6: %s", exc)

    def connection_allowed(self) -> bool:
        return sum(len(r.swarm.peers) for r in self.torrents.values()) < self.settings.max_connections

    def set_rate_limits(self, *, max_down: int | None = None, max_up: int | None = None) -> None:
        """Change the global limits while transfers run (bytes/s, 0 = unlimited)."""
        if max_down is not None:
            self.download_limiter.set_rate(max_down)
        if max_up is not None:
            self.upload_limiter.set_rate(max_up)

    async def close(self) -> None:
        """Stop every torrent: ``stopped`` announces, resume saved, sockets closed."""
        for info_hash in list(self.torrents):
            await self.remove(info_hash)
        for server in self._servers:
            server.close()
        self.executor.shutdown(wait=True)

    def _resolve(self, info_hash: bytes) -> Swarm | None:
        running = self.torrents.get(info_hash)
        return running.swarm if running else None

    # ---- torrents ----------------------------------------------------------------

    async def add(self, metainfo: Metainfo, download_dir: str | os.PathLike[str], *,
                  peers: Sequence[tuple[str, int]] = (), only_files: Sequence[int] | None = None,
                  recheck: bool = False) -> Swarm:
        """Check what is on disk, then join the swarm."""
        if metainfo.info_hash in self.torrents:
            raise TorrentError(f"{metainfo.name} is already running")
        storage = Storage(metainfo, download_dir, executor=self.executor)
        if only_files is not None:
            bad = [i for i in only_files if not 0 <= i < len(metainfo.files)]
            if bad:
                raise TorrentError(f"no file #{bad[0]}: the torrent has files 0..{len(metainfo.files) - 1}")
            storage.set_wanted_files([i in set(only_files) for i in range(len(metainfo.files))])
        resume_file = (resume.resume_path(self.settings.resume_dir, metainfo.info_hash)
                       if self.settings.resume_dir else None)
        loop = asyncio.get_running_loop()

        def restore() -> resume.Restored:
            data = resume.load(resume_file, metainfo=metainfo) if resume_file and not recheck else None
            return resume.restore(storage, data, recheck=recheck)

        restored = await loop.run_in_executor(None, restore)
        log.info("%s: %s", metainfo.name, restored.reason)
        await loop.run_in_executor(self.executor, storage.create_empty_files)

        swarm = Swarm(metainfo, storage, restored.have, peer_id=self.peer_id, listen_port=self.listen_port,
                      session=self, max_peers=self.settings.max_peers, upload_slots=self.settings.upload_slots)
        running = _Running(swarm, metainfo, TrackerTiers(metainfo.trackers), resume_path=resume_file)
        self.torrents[metainfo.info_hash] = running
        for address in peers:
            _add_candidate(running, address)
        running.tasks = [
            loop.create_task(self._timers(running)),
            loop.create_task(self._announcer(running)),
        ]
        self._connect_more(running, time.monotonic())
        return swarm

    async def remove(self, info_hash: bytes) -> None:
        running = self.torrents.pop(info_hash, None)
        if running is None:
            return
        for task in running.tasks:
            task.cancel()
        await asyncio.gather(*running.tasks, return_exceptions=True)
        running.swarm.close()
        await self._save_resume(running)
        await self._announce_stopped(running)
        running.swarm.storage.close()

    def add_peers(self, info_hash: bytes, peers: Sequence[tuple[str, int]]) -> None:
        running = self.torrents.get(info_hash)
        if running is not None:
            for address in peers:
                _add_candidate(running, address)
            self._connect_more(running, time.monotonic())

    # ---- SwarmHost -----------------------------------------------------------------

    def note_self_address(self, address: tuple[str, int] | None) -> None:
        if address:
            self._self_addresses.add(address)

    def torrent_completed(self, swarm: Swarm) -> None:
        running = self.torrents.get(swarm.info_hash)
        if running is not None:
            running.tasks.append(asyncio.get_running_loop().create_task(
                self._announce_once(running, Event.COMPLETED)))
            running.tasks.append(asyncio.get_running_loop().create_task(self._save_resume(running)))

    def storage_failed(self, swarm: Swarm, exc: StorageError) -> None:
        message = f"{swarm.metainfo.name}: {exc}"
        log.error("%s", message)
        try:
            self.errors.put_nowait(message)
        except asyncio.QueueFull:
            pass

    # ---- timers ----------------------------------------------------------------------

    async def _timers(self, running: _Running) -> None:
        swarm = running.swarm
        last_rechoke = last_resume = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            swarm.tick(now)
            if now - last_rechoke >= RECHOKE_INTERVAL or _needs_quick_rechoke(swarm):
                swarm.rechoke(now)
                last_rechoke = now
            if now - last_resume >= RESUME_EVERY:
                await self._save_resume(running)
                last_resume = now
            self._connect_more(running, now)

    def _connect_more(self, running: _Running, now: float) -> None:
        swarm = running.swarm
        if swarm.completed.is_set() and not swarm.have.all():
            return  # done with what the user wanted; others will dial us
        connected = set(swarm.connected_addresses())
        total = sum(len(r.swarm.peers) for r in self.torrents.values())
        room = min(swarm.max_peers - len(swarm.peers), self.settings.max_half_open - len(running.connecting),
                   self.settings.max_connections - total)
        for address, not_before in list(running.candidates.items()):
            if room <= 0:
                break
            if (not_before > now or address in connected or address in running.connecting
                    or address in self._self_addresses or address == ("127.0.0.1", self.listen_port)):
                continue
            running.connecting.add(address)
            running.candidates[address] = now + RECONNECT_AFTER
            room -= 1
            running.tasks.append(asyncio.get_running_loop().create_task(self._connect(running, address)))
        running.tasks = [t for t in running.tasks if not t.done()]

    async def _connect(self, running: _Running, address: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.create_connection(
                lambda: PeerConnection(running.swarm, address=address, listen_port=self.listen_port,
                                       limits=self.limits), *address), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:
            log.debug("connect to %s:%d failed: %s", *address, exc)
        finally:
            running.connecting.discard(address)

    # ---- trackers ---------------------------------------------------------------------

    def _request(self, running: _Running, event: Event, url: str) -> AnnounceRequest:
        swarm = running.swarm
        return AnnounceRequest(info_hash=swarm.info_hash, peer_id=self.peer_id, port=self.listen_port or 0,
                               uploaded=swarm.uploaded, downloaded=swarm.downloaded, left=swarm.left,
                               event=event, key=self._key, tracker_id=running.tiers.tracker_id(url),
                               numwant=200 if event != Event.STOPPED else 0)

    async def _announcer(self, running: _Running) -> None:
        if not running.tiers.has_trackers:
            return
        event = Event.STARTED
        while True:
            if await self._announce_once(running, event):
                event = Event.NONE
            plan = running.tiers.next_announce(time.monotonic())
            if plan is None:
                return
            await asyncio.sleep(max(1.0, plan[1] - time.monotonic()))

    async def _announce_once(self, running: _Running, event: Event) -> bool:
        plan = running.tiers.next_announce(time.monotonic(), urgent=event != Event.NONE)
        if plan is None:
            return False
        url = plan[0]
        try:
            response = await announce(url, self._request(running, event, url), timeout=30.0, limits=self.limits)
        except TrackerError as exc:
            running.tiers.on_failure(url, exc, time.monotonic())
            running.last_tracker_error = str(exc)
            log.warning("%s", exc)
            return False
        running.tiers.on_success(url, response, time.monotonic())
        running.last_tracker_error = None
        for address in response.peers:
            _add_candidate(running, (address[0], address[1]))
        self._connect_more(running, time.monotonic())
        return True

    async def _announce_stopped(self, running: _Running) -> None:
        if not running.tiers.has_trackers or running.stopped_event_sent:
            return
        running.stopped_event_sent = True
        plan = running.tiers.next_announce(time.monotonic(), urgent=True)
        if plan is None:
            return
        try:
            await announce(plan[0], self._request(running, Event.STOPPED, plan[0]), timeout=5.0,
                           limits=self.limits)
        except TrackerError as exc:
            log.info("stopped announce failed: %s", exc)

    async def _save_resume(self, running: _Running) -> None:
        if running.resume_path is None:
            return
        swarm = running.swarm
        loop = asyncio.get_running_loop()
        have = swarm.have.copy()  # taken on the loop: the swarm keeps changing it
        uploaded, downloaded = swarm.uploaded, swarm.downloaded

        def save() -> None:
            # No fsync of the payload: a killed process loses nothing from the
            # page cache, and syncing gigabytes would stall every exit (libtorrent
            # does not either). Only a power cut can leave resume data ahead of
            # the disk, and a recheck (--recheck) repairs that.
            data = resume.snapshot(swarm.storage, have, uploaded=uploaded, downloaded=downloaded)
            running.resume_path.parent.mkdir(parents=True, exist_ok=True)
            resume.save(running.resume_path, data)

        try:
            await loop.run_in_executor(self.executor, save)
        except (OSError, TorrentError) as exc:
            log.warning("could not save resume data: %s", exc)

    # ---- numbers for front ends ----------------------------------------------------------

    def stats(self, info_hash: bytes) -> TorrentStats:
        running = self.torrents[info_hash]
        swarm = running.swarm
        now = time.monotonic()
        meta = running.metainfo
        have_bytes = meta.total_length - swarm.left
        peers = list(swarm.peers)
        return TorrentStats(
            name=meta.name, info_hash=meta.info_hash_hex, total=meta.payload_length, have=have_bytes,
            wanted=swarm.picker.wanted_remaining, down_rate=sum(p.downloaded.rate(now) for p in peers),
            up_rate=sum(p.uploaded.rate(now) for p in peers), downloaded=swarm.downloaded,
            uploaded=swarm.uploaded, peers=len(peers),
            seeds=sum(1 for p in peers if p.bitfield is not None and p.bitfield.all()),
            complete=swarm.completed.is_set(), hash_failures=swarm.hash_failures, banned=len(swarm.banned),
            tracker_error=running.last_tracker_error)


def _add_candidate(running: _Running, address: tuple[str, int]) -> None:
    if address in running.candidates:
        return
    if len(running.candidates) >= MAX_CANDIDATES:
        del running.candidates[next(iter(running.candidates))]
    running.candidates[address] = 0.0


def _needs_quick_rechoke(swarm: Swarm) -> bool:
    """Unchoke interested newcomers at once while we still have free slots."""
    return swarm.unchoked_count() < swarm.choker.upload_slots and any(
        p.peer_interested and p.am_choking for p in swarm.peers)
