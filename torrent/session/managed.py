"""One torrent in the session: its state, its files, its swarm while it runs.

A ``ManagedTorrent`` owns the facts a user sets (save path, file priorities,
limits, queue position: the ``TorrentRecord`` and the priorities saved in
resume data) and the running parts (storage, swarm, announcer, candidate
peers). It moves through the states of ``api.TorrentState``; the session
decides when it may run (the queue) and calls ``activate``/``deactivate``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import shutil
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING

from torrent.codec import bencoding
from torrent.codec import metainfo as metainfo_codec
from torrent.codec.geometry import BLOCK_SIZE
from torrent.codec.magnet import Magnet
from torrent.codec.metainfo import Metainfo
from torrent.codec.paths import sanitize_component
from torrent.core.bitfield import Bitfield
from torrent.core.errors import StorageError, TorrentError
from torrent.core.settings import Settings
from torrent.engine.metadata_swarm import MetadataSwarm
from torrent.engine.picker import piece_priorities
from torrent.engine.ratelimit import LimiterChain, RateLimiter
from torrent.engine.swarm import BOTH_SEEDS, Swarm
from torrent.peer.connection import PeerConnection
from torrent.peer.encryption import EncryptionPolicy
from torrent.peer.extensions import PeerExtensions
from torrent.peer.ut_metadata import MetadataExtension
from torrent.peer.ut_pex import PexExtension
from torrent.session.api import (
    FilePriority,
    InvalidArgumentError,
    MetadataReceived,
    PeerBanned,
    PeerSource,
    StateChanged,
    StorageFailed,
    TorrentCompleted,
    TorrentState,
    TrackerFailed,
    format_address,
)
from torrent.session.candidates import USEFUL_AFTER, Candidates
from torrent.session.state import TorrentRecord
from torrent.storage import resume
from torrent.storage.atomic import atomic_write
from torrent.storage.files import DiskFullError, FileState, Storage
from torrent.storage.journal import PieceJournal, read_journal
from torrent.tracker import AnnounceRequest, Event, TrackerError, TrackerTiers, announce

if TYPE_CHECKING:
    from torrent.session.core import Session

log = logging.getLogger("torrent.session")

Address = tuple[str, int]

# Picker priorities for the user's file priorities; the first and last piece
# of a wanted file get the picker's highest (7) when first_last is on.
PICKER_PRIORITY = {FilePriority.SKIP: 0, FilePriority.NORMAL: 1, FilePriority.HIGH: 6}
SAVED_PRIORITY = {FilePriority.SKIP: 0, FilePriority.NORMAL: 1, FilePriority.HIGH: 2}  # in resume data
FROM_SAVED = {v: k for k, v in SAVED_PRIORITY.items()}

ACTIVE = (TorrentState.DOWNLOADING, TorrentState.SEEDING)
# Grace for our own writes when judging whether a file changed under a
# seeding torrent (mtime granularity and the write in flight at a save).
_MTIME_SLACK_NS = 2_000_000_000


class ManagedTorrent:
    def __init__(self, session: Session, record: TorrentRecord, *, metainfo: Metainfo | None,
                 source: bytes | None, magnet: Magnet | None) -> None:
        self.session = session
        self.id = record.id
        self.info_hash = bytes.fromhex(record.id)
        self.record = record  # its seeding_time is that of the start; ``seeding_time`` counts on
        self.seeding_time = record.seeding_time  # seconds spent seeding, all-time
        self.metainfo = metainfo
        self.source = source
        self.magnet = magnet
        self.state = TorrentState.CHECKING
        if metainfo is None:
            self.state = TorrentState.PAUSED if record.paused else TorrentState.METADATA
        self.last_error: str | None = None
        self.stop_reason: str | None = None  # why it was paused by policy (seed ratio, time)
        self.have: Bitfield | None = None
        self.file_priorities: list[FilePriority] = []
        self.storage: Storage | None = None
        self.swarm: Swarm | None = None
        self.metadata_swarm: MetadataSwarm | None = None  # a magnet's peers while its metadata is fetched
        self.metadata = MetadataExtension(self.info_hash, metainfo.info_bytes if metainfo else None,
                                          on_metadata=self._metadata_received,
                                          request_timeout=session.settings.peer.metadata_timeout)
        self.pex = PexExtension(connected=lambda: self.peer_owner.peers if self.peer_owner is not None else (),
                                on_peers=self._pex_peers,
                                enabled=lambda: not self.private and self.settings.discovery.pex)
        pex_on = session.settings.discovery.pex and not self.private  # BEP 27: no PEX on private torrents
        extensions = [self.metadata, self.pex] if pex_on else [self.metadata]
        self.extensions = PeerExtensions(extensions, dht_port=None if self.private else session.dht_port,
                                         on_dht_node=session.dht_node_heard)
        self.dht_searching = False  # a DHT lookup for this torrent is running
        self.dht_peers_found = 0  # peers the last DHT lookup returned
        self.journal: PieceJournal | None = None
        self.tiers = TrackerTiers(self._tracker_tiers(), rng=session.rng, settings=session.settings.tracker)
        self.candidates = Candidates(session.settings.network, session.blocklist.refuses)
        self.connecting: set[Address] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.down_limiter = RateLimiter(record.max_down)
        self.up_limiter = RateLimiter(record.max_up)
        self.checking_progress: float | None = None
        self.waiting_for_check = False
        self.closed = False  # removed from the session, or the session is closing
        self.hashed = 0
        # All-time totals before this run (from resume data), plus what past swarms of this run did.
        self.uploaded_before = 0
        self.downloaded_before = 0
        self.wasted_before = 0
        self.hash_failures_before = 0
        self.banned: set[object] = set()
        self.announcing: str | None = None
        self._announce_now = asyncio.Event()
        self._last_resume = 0.0
        self._last_rechoke = 0.0
        self._saved_states: list[FileState | None] | None = None
        self._saved_contents: tuple[object, ...] | None = None  # of the resume data last written
        self._downloaded_at_save = 0
        self._wanted: Bitfield | None = None
        self._wanted_size = 0
        self._checks = 0  # checks started, so that only the latest applies its result
        self._priorities_bytes: bytes | None = None
        self._priorities_given = False
        for host, port in record.peers:
            self.candidates.add((host, port), PeerSource.MANUAL)
        if magnet is not None:
            for address in magnet.peers:
                self.candidates.add(address, PeerSource.MANUAL)

    # ---- facts -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        if self.metainfo is not None:
            return self.metainfo.name
        return (self.magnet.display_name if self.magnet and self.magnet.display_name else self.id)

    @property
    def private(self) -> bool:
        """BEP 27: peers only from the trackers (no DHT, PEX or local discovery)."""
        return self.metainfo is not None and self.metainfo.private

    @property
    def peer_owner(self) -> Swarm | MetadataSwarm | None:
        return self.swarm if self.swarm is not None else self.metadata_swarm

    @property
    def save_path(self) -> Path:
        return Path(self.record.save_path)

    @property
    def settings(self) -> Settings:
        return self.session.settings

    @property
    def executor(self) -> Executor:
        return self.session.executor

    @property
    def uploaded(self) -> int:
        return self.uploaded_before + (self.swarm.uploaded if self.swarm else 0)

    @property
    def downloaded(self) -> int:
        return self.downloaded_before + (self.swarm.downloaded if self.swarm else 0)

    @property
    def wanted_size(self) -> int:
        return self._wanted_size

    def wanted_pieces(self) -> Bitfield | None:
        return self._wanted

    def wanted_remaining(self) -> int:
        """Wanted pieces not verified yet."""
        if self._wanted is None or self.have is None:
            return 0
        return self._wanted.and_not(self.have).count()

    def is_complete(self) -> bool:
        """Every wanted piece verified."""
        return self.have is not None and self._wanted is not None and not self._wanted.any_and_not(self.have)

    def ratio(self) -> float:
        down = self.downloaded or self._wanted_size
        return self.uploaded / down if down else 0.0

    def update_record(self, **changes: object) -> None:
        self.record = dataclasses.replace(self.record, **changes)
        self.session.mark_dirty(self)

    def _tracker_tiers(self) -> Sequence[Sequence[str]]:
        if self.record.trackers is not None:
            return self.record.trackers
        if self.metainfo is not None:
            return self.metainfo.trackers
        if self.magnet is not None:
            return [[url] for url in self.magnet.trackers]
        return []

    # ---- state ------------------------------------------------------------------------------

    def set_state(self, state: TorrentState, reason: str | None = None) -> None:
        if state == self.state:
            return
        old, self.state = self.state, state
        log.info("%s: %s → %s%s", self.name, old, state, f" ({reason})" if reason else "")
        self.session.publish(StateChanged(self.id, time.time(), old.value, state.value, reason))

    # ---- file priorities (the one owner; saved in resume data) -----------------------------

    def init_priorities(self, given: Sequence[FilePriority] | None) -> None:
        """The user's priorities, or all normal until ``check`` reads the saved ones."""
        assert self.metainfo is not None
        files = self.metainfo.files
        self._priorities_given = given is not None
        prios = list(given) if given is not None else [FilePriority.NORMAL] * len(files)
        self.file_priorities = [FilePriority.SKIP if f.is_padding else p for f, p in zip(files, prios)]
        self._derive_wanted()

    def _apply_saved_priorities(self, saved: Sequence[int]) -> None:
        """Priorities from resume data at the first check, unless the user gave
        some (when adding, or since): from then on the torrent's own are the truth."""
        assert self.metainfo is not None
        if not self._priorities_given and len(saved) == len(self.metainfo.files):
            self.init_priorities([FROM_SAVED.get(p, FilePriority.NORMAL) for p in saved])
        self._priorities_given = True

    def _derive_wanted(self) -> None:
        assert self.metainfo is not None
        prio = piece_priorities(self.metainfo.geometry, [PICKER_PRIORITY[p] for p in self.file_priorities],
                                first_last=self.record.first_last)
        self._priorities_bytes = bytes(prio)
        n = self.metainfo.num_pieces
        wanted = Bitfield.from_bytes(_bits_of(prio, n), n)
        self._wanted = wanted
        geometry = self.metainfo.geometry
        count = wanted.count()
        size = count * geometry.piece_length
        if n and wanted.get(n - 1):
            size -= geometry.piece_length - geometry.piece_size(n - 1)
        self._wanted_size = size - self.metainfo.pad_bytes(wanted)

    def file_wanted(self, index: int) -> bool:
        return self.file_priorities[index] is not FilePriority.SKIP

    def set_file_priorities(self, priorities: dict[int, FilePriority]) -> None:
        assert self.metainfo is not None
        count = len(self.metainfo.files)
        for index, priority in priorities.items():
            if not 0 <= index < count:
                raise InvalidArgumentError(f"{self.name} has no file {index} (its files are 0..{count - 1})")
            if not isinstance(priority, FilePriority):
                raise InvalidArgumentError(f"unknown file priority {priority!r}: use skip, normal or high")
        for index, priority in priorities.items():
            if not self.metainfo.files[index].is_padding:
                self.file_priorities[index] = priority
        self.priorities_changed()

    def priorities_changed(self) -> None:
        """File priorities, sequential or first-and-last changed: tell the picker,
        re-judge completion, save."""
        was_complete = self.is_complete()
        self._derive_wanted()
        if self.swarm is not None:
            assert self._priorities_bytes is not None
            self.swarm.set_priorities(self._priorities_bytes, self.record.sequential)
        if self.state in ACTIVE:
            complete = self.is_complete()
            if complete and not was_complete:
                self._became_complete()
            elif was_complete and not complete:
                self.set_state(TorrentState.DOWNLOADING, "more files selected")
                self.session.requeue()
        self.session.save_resume_soon(self)

    # ---- checking what is on disk ----------------------------------------------------------

    async def check(self, *, recheck: bool = False) -> None:
        """Restore from resume data (hashing only what it does not cover), then
        hand the torrent to the queue (or leave it paused)."""
        assert self.metainfo is not None
        meta = self.metainfo
        self.set_state(TorrentState.CHECKING)
        self.last_error = None
        self._checks += 1
        this_check = self._checks  # a later check supersedes this one: it must not apply what it found
        loop = asyncio.get_running_loop()
        if self.storage is None:
            # Off the loop: proving 100 000 paths stay inside the download directory takes seconds.
            settings, save_path = self.settings.storage, self.save_path
            try:
                storage = await loop.run_in_executor(None, lambda: Storage(meta, save_path, settings=settings,
                                                                           file_wanted=self.file_wanted))
            except (StorageError, OSError) as exc:
                self.fail(str(exc) if isinstance(exc, StorageError) else f"cannot open the files: {exc}")
                return
            if self.storage is None:
                self.storage = storage
        storage = self.storage
        resume_file = self.session.resume_path(self.id)
        journal_file = self.session.journal_path(self.id)
        total = max(meta.payload_length, 1)
        progress_done = 0

        def progress(n: int) -> None:
            nonlocal progress_done
            progress_done += n
            loop.call_soon_threadsafe(self._set_checking, min(progress_done / total, 1.0))

        def work() -> tuple[resume.Restored, resume.ResumeData | None]:
            data = resume.load(resume_file, metainfo=meta) if resume_file and not recheck else None
            records = read_journal(journal_file, meta.info_hash, meta.num_pieces, download_dir=storage.root) \
                if journal_file and not recheck else None
            restored = resume.restore(storage, data, recheck=recheck, progress=progress, journal=records)
            return restored, data

        self.waiting_for_check = True
        self.checking_progress = 0.0
        try:
            async with self.session.check_slot:
                self.waiting_for_check = False
                restored, data = await loop.run_in_executor(None, work)
                self._apply_saved_priorities(data.priorities if data is not None else ())  # before empty files
                await loop.run_in_executor(self.executor, storage.create_empty_files)
        except (StorageError, OSError) as exc:
            self.checking_progress = None
            self.waiting_for_check = False
            self.fail(str(exc) if isinstance(exc, StorageError) else f"cannot check the files: {exc}")
            return
        if self.closed or this_check != self._checks:
            return
        self.checking_progress = None
        self.hashed = restored.hashed
        log.info("%s: %s", meta.name, restored.reason)
        if data is not None:
            self.uploaded_before = max(self.uploaded_before, data.uploaded)
            self.downloaded_before = max(self.downloaded_before, data.downloaded)
        self.have = restored.have
        if data is not None:
            # What the resume file holds now: the next periodic save writes it again only if that changed.
            self._saved_contents = (data.have, data.uploaded, data.downloaded, data.priorities, data.download_dir)
            self._saved_states = list(data.files)
        if journal_file is not None:
            if self.journal is not None:
                self.journal.close()
            # Records count from now on only if nothing on disk contradicted the
            # records we trusted (else after the next resume save: see journal.py).
            self.journal = PieceJournal(journal_file, meta.info_hash, meta.num_pieces, download_dir=storage.root,
                                        armed=restored.refuted == 0 and not recheck)
        if self.state is not TorrentState.CHECKING:
            return  # paused, removed or moved meanwhile
        lost = data.bitfield().and_not(restored.have) if data is not None else None
        if (not recheck and lost is not None and not lost.none() and self.record.completed_at is not None
                and self._wanted is not None and not self._wanted.and_(lost).none()):
            missing = restored.reason
            self.fail(f"files missing or changed since they were verified ({missing}): move the data back, "
                      "point the torrent at it with move_data, or recheck to download what is missing")
            return
        if restored.checked or (data is None and restored.have.count()):
            await self.save_resume()
        if self.record.paused:
            self.set_state(TorrentState.PAUSED, self.stop_reason)
        else:
            self.set_state(TorrentState.QUEUED)
        self.session.requeue()

    def _set_checking(self, fraction: float) -> None:
        if self.checking_progress is not None:
            self.checking_progress = fraction

    # ---- running ----------------------------------------------------------------------------

    def activate(self) -> None:
        """Join the swarm: create it, announce, dial."""
        assert self.metainfo is not None and self.have is not None and self.storage is not None
        if self.swarm is None:
            s = self.session
            self.swarm = Swarm(self.metainfo, self.storage, self.have, peer_id=s.peer_id, listen_port=s.listen_port,
                               host=self, settings=self.settings, piece_priorities=self._priorities_bytes,
                               sequential=self.record.sequential, max_peers=self.record.max_peers or None,
                               upload_slots=self.record.upload_slots or None,
                               down_limiter=LimiterChain(s.download_limiter, self.down_limiter),
                               up_limiter=LimiterChain(s.upload_limiter, self.up_limiter),
                               journal=self.journal, extensions=self.extensions, rng=s.rng)
            self.swarm.banned.update(self.banned)
        if self.metadata_swarm is not None:
            self.swarm.adopt(self.metadata_swarm.hand_over())
            self.metadata_swarm = None
        now = time.monotonic()
        self._last_resume = self._last_rechoke = now
        self.set_state(TorrentState.SEEDING if self.is_complete() else TorrentState.DOWNLOADING)
        self.stop_reason = None
        self._start_peer_sources()
        self.connect_more(now)

    def _start_peer_sources(self) -> None:
        self._spawn(self._announcer())
        if not self.private and self.session.dht is not None:
            self._spawn(self._dht_loop())
        if not self.private and self.session.lsd is not None:
            self.session.lsd.add(self.info_hash)

    # ---- a magnet's metadata ----------------------------------------------------------------

    def fetch_metadata(self) -> None:
        """Find peers (trackers, DHT, the magnet's x.pe) and fetch the info dictionary from them."""
        if self.metadata_swarm is not None or self.metainfo is not None:
            return
        self.metadata_swarm = MetadataSwarm(self.info_hash, peer_id=self.session.peer_id, host=self,
                                            extensions=self.extensions, settings=self.settings,
                                            max_peers=self.record.max_peers or None)
        self.set_state(TorrentState.METADATA)
        self._start_peer_sources()
        self.connect_more(time.monotonic())

    def _metadata_received(self, info: bytes) -> None:
        """The verified info dictionary: become a torrent like one added from a file, keeping the peers."""
        tiers = [list(t) for t in self._tracker_tiers()]
        source = _torrent_file(info, tiers)
        try:
            meta = metainfo_codec.parse(source, limits=self.settings.limits)
        except TorrentError as exc:  # it hashes to the info-hash, so the torrent itself is bad
            self.fail(f"the torrent's metadata is unusable: {exc}")
            return
        self.metainfo, self.source = meta, source
        log.info("%s: metadata received (%d bytes, %d files)", meta.name, len(info), len(meta.files))
        for warning in meta.warnings:  # renamed files, as for a torrent added from a file
            log.warning("%s: %s", meta.name, warning)
        for task in list(self.tasks):  # the metadata phase's announcer and searches; activate starts them again
            task.cancel()
        self.init_priorities(None)
        self.session.mark_dirty(self)
        self.session.publish(MetadataReceived(self.id, time.time(), meta.name))
        self._spawn(self._save_torrent_file(source))
        self.session.spawn(self.check())

    async def _save_torrent_file(self, source: bytes) -> None:
        """A copy of the .torrent beside the download, as a user of a magnet link expects."""
        assert self.metainfo is not None
        target = self.save_path / f"{sanitize_component(self.metainfo.name) or self.id}.torrent"

        def write() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                atomic_write(target, source)

        try:
            await asyncio.get_running_loop().run_in_executor(None, write)
        except (OSError, TorrentError) as exc:
            log.warning("%s: cannot save %s: %s", self.name, target, exc)

    async def deactivate(self, state: TorrentState, reason: str | None = None) -> None:
        """Leave the swarm (peers closed, ``stopped`` announced, resume saved) and
        settle in ``state``."""
        was_running = self.swarm is not None
        self.set_state(state, reason)
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        swarm = self.swarm
        if swarm is not None:
            swarm.close()
            self._retire(swarm)
            self.swarm = None
        if self.metadata_swarm is not None:
            self.metadata_swarm.close()
            self.metadata_swarm = None
        if self.session.lsd is not None:
            self.session.lsd.remove(self.info_hash)
        if was_running:
            await self.save_resume()
            self.session.spawn(self._announce_stopped(), stopping=True)

    def _retire(self, swarm: Swarm) -> None:
        """Keep the totals of a swarm that is going away."""
        self.uploaded_before += swarm.uploaded
        self.downloaded_before += swarm.downloaded
        self.wasted_before += swarm.wasted
        self.hash_failures_before += swarm.hash_failures
        self.banned |= swarm.banned

    def _spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def fail(self, message: str) -> None:
        """Storage trouble: stop running, keep what is verified, say why — once:
        the writes still in flight when the disk filled fail the same way."""
        if self.state is TorrentState.ERROR:
            log.debug("%s: also: %s", self.name, message)
            return
        self.last_error = message
        log.error("%s: %s", self.name, message)
        self.session.publish(StorageFailed(self.id, time.time(), message))
        running = self.swarm is not None or bool(self.tasks)
        self.set_state(TorrentState.ERROR, message)  # at once: failures until the swarm is gone are this one
        if running:
            self.session.spawn(self.deactivate(TorrentState.ERROR, message))
        self.session.requeue()

    # ---- SwarmHost -------------------------------------------------------------------------

    def connection_allowed(self) -> bool:
        return self.session.connection_allowed()

    def note_self_address(self, address: Address | None) -> None:
        self.session.note_self_address(address)

    def torrent_completed(self, swarm: Swarm) -> None:
        self._became_complete()

    def _became_complete(self) -> None:
        if self.record.completed_at is None:
            self.update_record(completed_at=time.time())
        downloaded = self.swarm.downloaded if self.swarm else 0
        self.session.publish(TorrentCompleted(self.id, time.time(), self._wanted_size, downloaded))
        self.set_state(TorrentState.SEEDING)
        if self.have is not None and self.have.all():
            self._spawn(self._announce_once(Event.COMPLETED))
        self.session.save_resume_soon(self)
        self.session.requeue()

    def storage_failed(self, swarm: Swarm, exc: StorageError) -> None:
        message = str(exc)
        if isinstance(exc, DiskFullError):
            message = f"{exc} (verified data is kept; free some space and resume)"
        self.fail(message)

    def peer_banned(self, swarm: Swarm, identity: object, reason: str) -> None:
        self.banned.add(identity)
        host, port = identity if isinstance(identity, tuple) else (str(identity), 0)
        self.session.publish(PeerBanned(self.id, time.time(), format_address(str(host), int(port)), reason))

    def peer_attached(self, swarm: Swarm, peer: PeerConnection) -> None:
        if peer.outgoing and peer.address is not None:
            self.candidates.connected(peer.address, encrypted=peer.dialled_encrypted)

    def peer_closed(self, peer: PeerConnection) -> None:
        """Any outgoing connection we made ended (before or after its handshake)."""
        address = peer.address
        if address is None or not peer.outgoing:
            return
        now = time.monotonic()
        if peer.remote_id is None and peer.transport is not None:  # connected, never answered our handshake
            other = EncryptionPolicy(self.settings.network.encryption).fallback(peer.dialled_encrypted)
            if other is not None and self.candidates.switch_handshake(address, other, now):
                log.info("%s: %s closed during the %s handshake (%s); dialling it again with the %s one",
                         self.name, format_address(*address), "encrypted" if peer.dialled_encrypted else "plain",
                         peer.close_reason, "encrypted" if other else "plain")
                asyncio.get_running_loop().call_soon(lambda: self.connect_more(time.monotonic()))
                return
        if peer.bitfield is not None and peer.bitfield.all():
            self.candidates.mark_seeds((address,))  # not dialled again while we seed
        useful = bool(peer.downloaded.total or peer.uploaded.total) or now - peer.connected_at > USEFUL_AFTER \
            or peer.close_reason == BOTH_SEEDS
        delay = self.candidates.closed(address, peer.close_reason or "closed", now, useful=useful)
        log.info("%s: connection to %s ended (%s)%s", self.name, format_address(*address), peer.close_reason,
                 f"; next attempt in {delay:g} s" if delay is not None else "")

    # ---- periodic work (the session's one-second tick) -------------------------------------

    def tick(self, now: float, elapsed: float) -> None:
        swarm = self.swarm
        if swarm is None:
            if self.metadata_swarm is not None:
                self.metadata_swarm.tick(now)
                self.metadata.tick()
                self.pex.tick()
                self.connect_more(now)
            return
        if swarm.peers or swarm.down_rate or swarm.up_rate:
            # Peers to time out, keep alive, rechoke and tell of others. An empty swarm has none of that
            # once its rates read 0: skipping it was most of what 1 000 idle seeds cost a second.
            self.pex.tick()
            swarm.tick(now)
            if now - self._last_rechoke >= self.settings.torrent.rechoke_interval or swarm.needs_quick_rechoke():
                swarm.rechoke(now)
                self._last_rechoke = now
        if self.state is TorrentState.SEEDING:
            self.update_seeding_time(elapsed)
            self._check_seed_limits()
        if now - self._last_resume >= self.settings.storage.resume_every:
            self._last_resume = now
            self._spawn(self.save_resume(watch_files=self.state is TorrentState.SEEDING))
        self.connect_more(now)

    def update_seeding_time(self, elapsed: float) -> None:
        # A float, not a new record each second: for 1 000 seeds that was half the session's idle work.
        self.seeding_time += elapsed

    def saved_record(self) -> TorrentRecord:
        """The record as it is saved: with the seeding time up to now."""
        return dataclasses.replace(self.record, seeding_time=self.seeding_time)

    def _check_seed_limits(self) -> None:
        queue = self.settings.queue
        reason = None
        if queue.seed_ratio >= 0 and self.ratio() >= queue.seed_ratio:
            reason = f"seed ratio {queue.seed_ratio:g} reached"
        elif queue.seed_time >= 0 and self.seeding_time >= queue.seed_time * 60:
            reason = f"seeding time of {queue.seed_time:g} min reached"
        if reason is not None and not self.record.forced:
            self.stop_reason = reason
            self.update_record(paused=True)
            self.session.spawn(self.deactivate(TorrentState.PAUSED, reason))
            self.session.requeue()

    # ---- peers ----------------------------------------------------------------------------

    def add_peers(self, peers: Sequence[Address], source: PeerSource, seeds: Collection[Address] = ()) -> None:
        """``seeds``: those said to have every piece (PEX flags), never dialled while we seed."""
        now = time.monotonic()
        for address in peers:
            self.candidates.add(address, source, now)
        self.candidates.mark_seeds(seeds)
        if self.peer_owner is not None:
            self.connect_more(now)

    def _pex_peers(self, peers: Sequence[Address], seeds: Collection[Address] = ()) -> None:
        """Addresses other peers gave us, up to ``discovery.max_pex_peers`` remembered at once: a peer's
        word costs us memory and connection attempts, so it is bounded apart from the trackers'."""
        room = self.settings.discovery.max_pex_peers - sum(
            1 for _, c in self.candidates.items() if c.source is PeerSource.PEX)
        if room > 0:
            self.add_peers(list(peers)[:room], PeerSource.PEX, seeds)

    def connect_more(self, now: float) -> None:
        swarm = self.peer_owner
        if swarm is None or (self.swarm is not None and self.swarm.completed and self.have is not None
                             and not self.have.all()):
            return  # done with what the user wanted; others will dial us
        due = self.candidates.due(now, seeds=self.have is None or not self.have.all())
        first = next(due, None)
        if first is None:
            # Nobody to dial: the session-wide count below walks every torrent, and this runs for
            # every torrent every second (1 000 idle seeds: a million steps a second).
            return
        session = self.session
        connected = set(swarm.connected_addresses())
        room = min(swarm.max_peers - len(swarm.peers),
                   self.settings.network.max_half_open - len(self.connecting),
                   self.settings.network.max_connections - session.connection_count())
        if room <= 0:
            return
        for address in itertools.chain((first,), due):
            if room <= 0:
                break
            if address in connected or address in self.connecting or session.is_self(address):
                continue
            if not session.can_reach(address):
                continue
            self.connecting.add(address)
            self.candidates.dialling(address, now)
            room -= 1
            self._spawn(self._dial(address))

    async def _dial(self, address: Address) -> None:
        swarm = self.peer_owner
        candidate = self.candidates.get(address)
        if swarm is None or candidate is None:
            self.connecting.discard(address)
            return
        session = self.session

        def make() -> PeerConnection:
            encrypted = candidate.encrypted
            if encrypted is None:
                encrypted = EncryptionPolicy(self.settings.network.encryption).dial_encrypted
            conn = PeerConnection(swarm, address=address, listen_port=session.listen_port, settings=self.settings,
                                  encrypted=encrypted)
            conn.source = candidate.source.value
            conn.on_close = self.peer_closed
            return conn

        order = dial_order(self.settings.network.transports, candidate.transport)
        try:
            for i, kind in enumerate(order):
                try:
                    await self._connect_over(kind, address, make)
                except (OSError, asyncio.TimeoutError, OverflowError, ValueError) as exc:
                    reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else (
                        exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc))
                    if i + 1 < len(order):  # the next transport now, and first from now on
                        candidate.transport = order[i + 1]
                        log.debug("%s: %s to %s failed (%s); trying %s", self.name, kind, format_address(*address),
                                  reason, candidate.transport)
                        continue
                    delay = self.candidates.failed(address, f"{reason} ({'/'.join(order)})", time.monotonic())
                    log.info("%s: connect to %s failed: %s%s", self.name, format_address(*address), reason,
                             f"; next attempt in {delay:g} s" if delay is not None else "; forgotten")
                    return
                candidate.transport = kind
                return
        finally:
            self.connecting.discard(address)

    async def _connect_over(self, kind: str, address: Address, make: Callable[[], PeerConnection]) -> None:
        """One connection attempt over ``kind`` ("utp" or "tcp"); OSError or TimeoutError if it fails."""
        network = self.settings.network
        if kind == "utp":
            utp = self.session.utp_socket(address[0])
            if utp is None:
                raise OSError("no UDP socket of that address family")
            await utp.connect(address, make, timeout=min(network.utp_connect_timeout, network.connect_timeout))
        else:
            await asyncio.wait_for(asyncio.get_running_loop().create_connection(
                make, *address, local_addr=self.session.local_addr()), network.connect_timeout)

    # ---- trackers -------------------------------------------------------------------------

    def set_trackers(self, tiers: Sequence[Sequence[str]]) -> None:
        self.update_record(trackers=tuple(tuple(t) for t in tiers if t))
        self.tiers = TrackerTiers(self._tracker_tiers(), rng=self.session.rng, settings=self.settings.tracker)
        self._announce_now.set()

    def force_announce(self) -> None:
        self._announce_now.set()

    def _request(self, event: Event, url: str) -> AnnounceRequest:
        # Before the metadata, ``left`` is unknown: a positive guess keeps us a leecher to the tracker.
        left = self.swarm.left if self.swarm is not None else (0 if self.metainfo is not None else 1 << 14)
        return AnnounceRequest(info_hash=self.info_hash, peer_id=self.session.peer_id,
                               port=self.session.listen_port or 0, uploaded=self.uploaded,
                               downloaded=self.downloaded, left=left, event=event, key=self.session.key,
                               tracker_id=self.tiers.tracker_id(url),
                               numwant=self.settings.tracker.numwant if event != Event.STOPPED else 0)

    async def _announcer(self) -> None:
        if not self.tiers.has_trackers:
            return
        event = Event.STARTED
        while True:
            urgent = self._announce_now.is_set()
            self._announce_now.clear()
            if await self._announce_once(event, urgent=urgent):
                event = Event.NONE
            plan = self.tiers.next_announce(time.monotonic())
            if plan is None:
                return
            try:
                await asyncio.wait_for(self._announce_now.wait(), max(1.0, plan[1] - time.monotonic()))
            except asyncio.TimeoutError:
                pass

    async def _announce_once(self, event: Event, *, urgent: bool = False) -> bool:
        plan = self.tiers.next_announce(time.monotonic(), urgent=urgent or event != Event.NONE)
        if plan is None:
            return False
        url = plan[0]
        self.announcing = url
        try:
            response = await announce(url, self._request(event, url), timeout=self.settings.tracker.announce_timeout,
                                      limits=self.settings.limits, local_host=self.session.bind_address,
                                      udp_base_timeout=self.settings.tracker.udp_base_timeout,
                                      udp_socket_factory=self.session.udp_tracker_socket)
        except TrackerError as exc:
            self.tiers.on_failure(url, exc, time.monotonic())
            log.warning("%s: %s", self.name, exc)
            self.session.publish(TrackerFailed(self.id, time.time(), url, exc.reason))
            return False
        finally:
            self.announcing = None
        self.tiers.on_success(url, response, time.monotonic())
        log.info("%s: tracker %s: %d peers, next announce in %d s", self.name, url, len(response.peers),
                 response.interval)
        self.add_peers([(p[0], p[1]) for p in response.peers], PeerSource.TRACKER)
        return True

    async def _announce_stopped(self) -> None:
        if not self.tiers.has_trackers:
            return
        plan = self.tiers.next_announce(time.monotonic(), urgent=True)
        if plan is None:
            return
        try:
            await announce(plan[0], self._request(Event.STOPPED, plan[0]),
                           timeout=self.settings.tracker.stopped_timeout,
                           limits=self.settings.limits, local_host=self.session.bind_address,
                           udp_socket_factory=self.session.udp_tracker_socket)
        except TrackerError as exc:
            log.info("%s: stopped announce failed: %s", self.name, exc)

    # ---- resume data --------------------------------------------------------------------

    async def save_resume(self, *, watch_files: bool = False) -> None:
        """Save fast-resume data (pieces, file states, priorities, totals). With
        ``watch_files``, a seeding torrent whose files changed on disk since the
        last save (it writes nothing itself) goes to the error state."""
        storage, have = self.storage, self.have
        if storage is None or have is None or self.metainfo is None:
            return
        path = self.session.resume_path(self.id)
        if path is None:
            return
        snapshot = have.copy()  # taken on the loop: the swarm keeps changing it
        uploaded, downloaded = self.uploaded, self.downloaded
        priorities = [SAVED_PRIORITY[p] for p in self.file_priorities]
        journal = self.journal
        previous = self._saved_states if watch_files and self.downloaded == self._downloaded_at_save else None
        downloaded_now = self.downloaded
        # What the file holds besides the files' states: when neither changed since it was written,
        # it is not written again (an idle seed would rewrite and fsync the same bytes every period).
        contents = (snapshot.to_bytes(), uploaded, downloaded, tuple(priorities), str(storage.root))
        written = self._saved_states if contents == self._saved_contents else None

        def save() -> list[FileState | None]:
            if written is not None:
                states = storage.file_states()
                if states == written:
                    return states
            if journal is not None:
                journal.rotate()  # records from here on go to a fresh file; the old one goes at commit
            data = resume.snapshot(storage, snapshot, uploaded=uploaded, downloaded=downloaded,
                                   priorities=priorities)
            resume.save(path, data)
            if journal is not None:
                journal.commit()
            return list(data.files)

        try:
            states = await asyncio.get_running_loop().run_in_executor(self.executor, save)
        except (OSError, TorrentError) as exc:
            log.warning("%s: could not save resume data: %s", self.name, exc)
            return
        self._downloaded_at_save = downloaded_now
        self._saved_states = states
        self._saved_contents = contents
        if previous is not None:
            changed = self._changed_file(previous, states)
            if changed is not None and self.state is TorrentState.SEEDING:
                self.fail(f"{changed} changed on disk while seeding: recheck to verify it")

    def _changed_file(self, before: list[FileState | None], after: list[FileState | None]) -> str | None:
        assert self.metainfo is not None
        for index, (old, new) in enumerate(zip(before, after)):
            if old == new or not self.file_wanted(index) or self.metainfo.files[index].is_padding:
                continue
            if old is not None and new is not None and old.size == new.size and \
                    abs(new.mtime_ns - old.mtime_ns) <= _MTIME_SLACK_NS:
                continue
            return str(self.save_path.joinpath(*self.metainfo.files[index].path))
        return None

    # ---- moving and removing data ---------------------------------------------------------

    async def move_data(self, target: Path) -> None:
        """Move the torrent's files (only those) under ``target``; on failure the
        files already moved go back."""
        assert self.metainfo is not None
        meta = self.metainfo
        source_root = self.save_path
        target = target.expanduser().resolve()
        if target == source_root.resolve():
            return
        paths = [Path(*f.path) for f in meta.files if not f.is_padding]

        def work() -> None:
            moved: list[Path] = []
            try:
                for rel in paths:
                    src = source_root / rel
                    if not src.exists():
                        continue
                    dst = target / rel
                    if dst.exists():
                        raise StorageError(f"cannot move to {target}: {dst} already exists")
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(src, dst)
                    moved.append(rel)
            except (OSError, StorageError) as exc:
                for rel in reversed(moved):
                    try:
                        shutil.move(target / rel, source_root / rel)
                    except OSError:
                        pass
                if isinstance(exc, StorageError):
                    raise
                raise StorageError(f"cannot move the data to {target}: {exc.strerror or exc}") from exc
            _remove_empty_dirs(source_root, paths)

        if self.storage is not None:
            self.storage.close()
            self.storage = None
        await asyncio.get_running_loop().run_in_executor(None, work)
        self.update_record(save_path=str(target))

    async def delete_data(self) -> None:
        if self.metainfo is None:
            return
        root = self.save_path
        paths = [Path(*f.path) for f in self.metainfo.files if not f.is_padding]

        def work() -> None:
            for rel in paths:
                try:
                    (root / rel).unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.warning("%s: cannot delete %s: %s", self.name, root / rel, exc.strerror or exc)
            _remove_empty_dirs(root, paths)

        await asyncio.get_running_loop().run_in_executor(None, work)

    # ---- limits ---------------------------------------------------------------------------

    def set_limits(self, *, max_down: int | None, max_up: int | None, max_peers: int | None,
                   upload_slots: int | None) -> None:
        for name, value in (("max_down", max_down), ("max_up", max_up), ("max_peers", max_peers),
                            ("upload_slots", upload_slots)):
            if value is not None and value < 0:
                raise InvalidArgumentError(f"{name} must be 0 (no limit) or more, not {value}")
        changes = {k: v for k, v in (("max_down", max_down), ("max_up", max_up), ("max_peers", max_peers),
                                     ("upload_slots", upload_slots)) if v is not None}
        self.update_record(**changes)
        self.down_limiter.set_rate(self.record.max_down)
        self.up_limiter.set_rate(self.record.max_up)
        if self.swarm is not None:
            self.swarm.apply(self.settings, max_peers=self.record.max_peers or None,
                             upload_slots=self.record.upload_slots or None)

    def apply_settings(self) -> None:
        self.tiers.settings = self.settings.tracker
        self.candidates.settings = self.settings.network
        if self.storage is not None:
            self.storage.settings = self.settings.storage
        if self.swarm is not None:
            self.swarm.apply(self.settings, max_peers=self.record.max_peers or None,
                             upload_slots=self.record.upload_slots or None)

    # ---- what holds it back --------------------------------------------------------------

    def waiting_on(self, connections: int | None = None) -> tuple[str, ...]:
        """``connections``: the session's count, when the caller has it (it walks every torrent)."""
        out: list[str] = []
        state = self.state
        if state is TorrentState.METADATA:
            out.append(self._metadata_status())
        elif state is TorrentState.QUEUED:
            out.append("queue")
        elif state is TorrentState.CHECKING and self.waiting_for_check:
            out.append("checking queue")
        swarm = self.swarm
        if swarm is None:
            return tuple(out)
        if swarm.backlog > self.settings.torrent.write_backlog_bytes:
            out.append("disk")
        if state is TorrentState.DOWNLOADING and swarm.down_limiter.rate and \
                swarm.down_limiter.available() < BLOCK_SIZE:
            out.append("download limit")
        if swarm.up_limiter.rate and swarm.up_limiter.available() < BLOCK_SIZE and \
                any(s.serving for s in swarm.peers.values()):
            out.append("upload limit")
        if connections is None:
            connections = self.session.connection_count()
        if len(swarm.peers) >= swarm.max_peers or connections >= self.settings.network.max_connections:
            out.append("peer limit")
        return tuple(out)

    def _metadata_status(self) -> str:
        peers = len(self.metadata_swarm.peers) if self.metadata_swarm is not None else 0
        got, total = self.metadata.progress()
        if total:
            return f"metadata: {got} of {total} pieces from {peers} peers"
        if peers:
            return f"metadata: {peers} peers connected, none has sent the metadata size yet"
        sources = []
        dht = self.session.dht
        if dht is not None:
            sources.append(f"searching the DHT ({len(dht.table)} nodes)")
        if self.tiers.has_trackers:
            sources.append("asking the trackers")
        known = len(self.candidates)
        tail = f"{known} addresses known, none connected" if known else "no peers yet"
        return f"metadata: {', '.join(sources) or 'no DHT, trackers or peers to ask'}; {tail}"

    # ---- DHT ------------------------------------------------------------------------------

    async def _dht_loop(self) -> None:
        """Search the DHT for peers and announce ourselves: often while short of peers, else every
        ``dht_announce_interval``."""
        session = self.session
        settings = self.settings.discovery
        while session.dht is not None:
            await session.dht_ready.wait()
            self.dht_searching = True
            try:
                peers = await session.dht_search(self.info_hash)
            finally:
                self.dht_searching = False
            self.dht_peers_found = len(peers)
            if peers:
                log.info("%s: DHT: %d peers", self.name, len(peers))
                self.add_peers(peers, PeerSource.DHT)
            owner = self.peer_owner
            # Short of peers: a magnet, or a download nobody serves; a seed waits for leechers to find it.
            short = self.metainfo is None or (not self.is_complete() and (owner is None or not owner.peers))
            await asyncio.sleep(settings.dht_search_interval if short else settings.dht_announce_interval)

    # ---- closing --------------------------------------------------------------------------

    async def close(self) -> None:
        """For session shutdown and removal: stop everything, save, release files."""
        self.closed = True
        if self.swarm is not None or self.metadata_swarm is not None or self.tasks:
            await self.deactivate(self.state if self.state not in ACTIVE else TorrentState.PAUSED)
        else:
            await self.save_resume()
        if self.journal is not None:
            self.journal.close()
        if self.storage is not None:
            self.storage.close()
            self.storage = None


def _torrent_file(info: bytes, tiers: list[list[str]]) -> bytes:
    """A .torrent around ``info`` exactly as received (re-encoding could change its hash)."""
    top: dict[bytes, object] = {}
    urls = [url for tier in tiers for url in tier]
    if urls:
        top[b"announce"] = urls[0].encode()
        if len(urls) > 1:
            top[b"announce-list"] = [[url.encode() for url in tier] for tier in tiers if tier]
    # Keys sort before "info", so the dictionary stays canonical with info appended last.
    head = bencoding.encode(top)[:-1]
    return head + b"4:info" + info + b"e"


def _bits_of(priorities: bytes | bytearray, n: int) -> bytes:
    """BEP 3 bitfield bytes of the pieces whose priority is not 0 (string ops in C)."""
    bits = bytes(priorities).translate(bytes([0x30] + [0x31] * 255)) + b"0" * (-n % 8)
    return int(bits, 2).to_bytes((n + 7) >> 3, "big") if n else b""


def _remove_empty_dirs(root: Path, files: Sequence[Path]) -> None:
    """Remove the directories of ``files`` under ``root`` that are now empty (deepest first)."""
    dirs = sorted({p for rel in files for p in rel.parents if p != Path(".")}, key=lambda p: -len(p.parts))
    for rel in dirs:
        try:
            os.rmdir(root / rel)
        except OSError:
            pass


def dial_order(transports: str, remembered: str | None) -> list[str]:
    """The transports to dial a peer with, in order (``network.transports``), the one that last worked
    with it first."""
    order = transports.split(",")
    if remembered in order:
        order.remove(remembered)
        order.insert(0, remembered)
    return order

