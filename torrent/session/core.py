"""The session: many torrents, the listening sockets, limits, queue, saved state.

One session per process. It owns the listeners, our peer id, the global rate
limiters, the worker pool for disk and hashing, the event bus, the settings
tree and the saved session; each torrent is a ``ManagedTorrent``. Front ends
use only the public methods here: commands (async), snapshots (plain values
from ``api``) and ``subscribe()`` for events.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import os
import random
import socket
import time
import weakref
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from torrent import __version__
from torrent.codec import metainfo as metainfo_codec
from torrent.codec import mse
from torrent.codec.magnet import Magnet, parse_magnet
from torrent.codec.metainfo import Metainfo
from torrent.core.errors import BlocklistError, ListenError, MetainfoError, StorageError, TorrentError
from torrent.core.settings import (
    DEFAULT_SETTINGS,
    Settings,
    check_relations,
    host_ports,
    parse_value,
    with_values,
)
from torrent.dht.node import DhtNode
from torrent.engine.ratelimit import RateLimiter
from torrent.lsd.service import LocalDiscovery
from torrent.peer.connection import PeerConnection
from torrent.portmap import PortMapper
from torrent.session import queueing, views
from torrent.session.api import (
    DhtLookup,
    DhtSnapshot,
    DuplicateTorrentError,
    Event,
    FilePriority,
    FileSnapshot,
    InvalidArgumentError,
    InvalidStateError,
    PeerSnapshot,
    PeerSource,
    PieceDetail,
    PieceMap,
    QueueMove,
    SessionSnapshot,
    TorrentAdded,
    TorrentId,
    TorrentRemoved,
    TorrentSnapshot,
    TorrentState,
    TrackerSnapshot,
    UnknownTorrentError,
    format_address,
)
from torrent.session.binding import resolve_bind
from torrent.session.blocklist import BlocklistState, GuardedConnection
from torrent.session.dht_service import DhtService
from torrent.session.events import EventBus, Subscription
from torrent.session.managed import ACTIVE, ManagedTorrent
from torrent.session.schedule import effective_limits
from torrent.session.state import SavedTorrent, StateStore, TorrentRecord
from torrent.session.udp import UdpEndpoint
from torrent.session.utp import UtpSocket
from torrent.storage.journal import journal_path
from torrent.storage.resume import resume_path
from torrent.tracker.client import open_datagram_endpoint
from torrent.tracker.tiers import SUPPORTED_SCHEMES

log = logging.getLogger("torrent.session")

TICK = 1.0  # seconds between the session's periodic passes
SEEDING_TIME_SAVE = 60.0  # seconds between saves of seeding times


def make_peer_id() -> bytes:
    """Azureus-style: ``-TO0100-`` then 12 random bytes (BEP 20)."""
    digits = "".join(f"{int(p):d}" for p in __version__.split(".")[:3]).ljust(4, "0")[:4]
    return f"-TO{digits}-".encode() + os.urandom(12)


class Session:
    """``state_dir``: where resume data and (with ``remember``) the saved
    session live; None keeps nothing. ``restore``: at start, bring back every
    torrent saved there. ``saved_settings``: the settings changed at run time
    in an earlier run (already part of ``settings``), kept so they are saved again.
    """

    def __init__(self, settings: Settings = DEFAULT_SETTINGS, *, state_dir: str | os.PathLike[str] | None = None,
                 remember: bool = True, restore: bool = True, saved_settings: Mapping[str, Any] | None = None) -> None:
        check_relations(settings)
        self._settings = settings
        self.store = StateStore(state_dir) if state_dir is not None else None
        self.remember = remember and self.store is not None
        self.restore = restore and self.store is not None
        self.runtime_settings: dict[str, Any] = dict(saved_settings or {})
        self.peer_id = make_peer_id()
        self.key = random.getrandbits(32)
        # One generator for every torrent's picker, choker and tracker shuffle: each one seeded
        # from os.urandom costs 12 µs, two per torrent in a restore of thousands.
        self.rng = random.Random()
        self.download_limiter = RateLimiter(0)
        self.upload_limiter = RateLimiter(0)
        self.alt_speed = False
        # Hashing, writes, reads for serving and a leecher's blocks written as they arrive share these: with
        # two, a verifier's trips held the block writes up, and reading from 16 capped seeders stalled on it.
        self.executor = ThreadPoolExecutor(max(4, os.cpu_count() or 2), thread_name_prefix="disk")
        self.check_slot = asyncio.Semaphore(1)  # one check at a time: the disk reads sequentially
        self._torrents: dict[TorrentId, ManagedTorrent] = {}
        self._order: list[TorrentId] = []  # queue order, top first
        self._bus = EventBus()
        self.listen_port: int | None = None
        self.bind_address: str | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._self_addresses: set[tuple[str, int]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping: set[asyncio.Task[Any]] = set()
        self._dirty: set[TorrentId] = set()
        self._settings_dirty = False
        self._save_handle: asyncio.TimerHandle | None = None
        self._requeue_scheduled = False
        self._seeding_saved = time.monotonic()  # when seeding times were last marked for saving
        self._started = False
        self._closed = False
        self.warnings: list[str] = []  # from loading the saved session
        self._retired_up = 0  # totals of torrents removed during this run
        self._retired_down = 0
        self._skeys: dict[bytes, bytes] = {}  # HASH('req2', info-hash) -> info-hash: MSE finds a torrent in one probe
        self._udp: dict[int, UdpEndpoint] = {}  # address family → the shared UDP endpoint
        self._utp: dict[int, UtpSocket] = {}  # address family → the uTP connections on that endpoint
        self._dht: DhtService | None = None
        self.dht_port: int | None = None  # our DHT node's UDP port, told to peers (None: no DHT)
        self.lsd: LocalDiscovery | None = None
        self.port_mapper: PortMapper | None = None
        self.blocklist = BlocklistState()  # network.blocklist: checked at accept and before every dial
        self._incoming: weakref.WeakSet[PeerConnection] = weakref.WeakSet()  # to drop when a new list names them

    # ---- lifecycle --------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._settings

    async def start(self) -> None:
        """Load the blocklist, listen, apply the limits, restore the saved torrents. A blocklist
        that cannot be used is a ``BlocklistError``: nothing starts without the list asked for."""
        loop = asyncio.get_running_loop()
        self.bind_address = resolve_bind(self._settings.network.bind)
        await self._load_blocklist()

        factory = self._incoming_connection
        port = self._settings.network.listen_port

        async def listen(on: str, at: int) -> asyncio.base_events.Server:
            try:
                return await loop.create_server(factory, on, at, reuse_address=True)
            except OSError as exc:
                reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
                raise ListenError(f"cannot listen on {on}:{at}: {reason} "
                                  "(is another client using it? choose another with --port)") from exc

        if self.bind_address is not None:
            self._servers = [await listen(self.bind_address, port)]
            self.listen_port = self._servers[0].sockets[0].getsockname()[1]
        else:
            # IPv4 first (a free port is picked there when port is 0), then IPv6
            # on the same port if the machine has it.
            self._servers = [await listen("0.0.0.0", port)]
            self.listen_port = self._servers[0].sockets[0].getsockname()[1]
            try:
                self._servers.append(await loop.create_server(factory, "::", self.listen_port, reuse_address=True))
            except OSError as exc:
                log.info("not listening on IPv6: %s", exc)
        await self._open_udp()
        self._apply_rate_limits()
        self._started = True
        self.spawn(self._ticker())
        if self.restore:
            await self._restore_saved()

    def _incoming_connection(self) -> PeerConnection:
        """The protocol of a connection a peer opened, over TCP or uTP."""
        conn = GuardedConnection(self.blocklist, resolver=self._resolve, listen_port=self.listen_port,
                                 settings=self._settings, skey_lookup=self._skeys.get)
        self._incoming.add(conn)
        return conn

    def _apply_transports(self) -> None:
        """Incoming uTP is accepted while ``network.transports`` names it (refused at once otherwise)."""
        accept = self._incoming_connection if "utp" in self._settings.network.transports else None
        for utp in self._utp.values():
            utp.on_accept = accept
            utp.max_connections = self._settings.network.max_connections

    def utp_socket(self, host: str) -> UtpSocket | None:
        """The uTP socket that reaches ``host`` (None: no UDP endpoint of its family)."""
        return self._utp.get(socket.AF_INET6 if ":" in host else socket.AF_INET)

    async def _open_udp(self) -> None:
        """The UDP endpoint on the listen port's number (another port if that one is taken), and the DHT."""
        assert self.listen_port is not None
        hosts = [self.bind_address] if self.bind_address is not None else ["0.0.0.0", "::"]
        for host in hosts:
            endpoint = None
            for port in (self.listen_port, 0):
                try:
                    endpoint = await UdpEndpoint.open(host, port, self._on_krpc)
                    break
                except OSError as exc:
                    log.log(logging.WARNING if host != "::" else logging.INFO,
                            "cannot use UDP port %d on %s: %s", port, host, exc.strerror or exc)
            if endpoint is not None:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                self._udp[family] = endpoint
                utp = UtpSocket(endpoint.sendto, sockname=(host, endpoint.port),
                                recv_window=utp_window(endpoint.receive_buffer))
                endpoint.on_utp = utp.datagram_received
                self._utp[family] = utp
        self._apply_transports()
        discovery = self._settings.discovery
        first = next(iter(self._udp.values()), None)
        if discovery.dht and first is not None:
            self._dht = DhtService(discovery, state_dir=self.store.directory if self.store else None,
                                   bind_address=self.bind_address)
            self._dht.start({6 if family == socket.AF_INET6 else 4: endpoint.sender()
                             for family, endpoint in self._udp.items()})
            self.dht_port = first.port
        if discovery.lsd:
            await self._start_lsd()
        if discovery.port_map:
            self._start_port_mapping()

    def _start_port_mapping(self) -> None:
        discovery = self._settings.discovery
        gateway = host_ports(discovery.port_map_gateway)[:1]
        (ssdp,) = host_ports(discovery.port_map_ssdp)[:1] or [("239.255.255.250", 1900)]
        loopback = self.bind_address is not None and ipaddress.ip_address(self.bind_address).is_loopback
        if loopback and not gateway and not ipaddress.ip_address(ssdp[0]).is_loopback:
            return  # a session kept on 127.0.0.1 has no router to ask
        try:
            self.port_mapper = PortMapper(self.listen_port or 0, local_address=self.bind_address,
                                          ssdp_address=ssdp, natpmp_gateway=gateway[0] if gateway else None)
        except ValueError as exc:
            log.warning("port mapping is off: %s", exc)
            return
        self.spawn(self._map_port(self.port_mapper))

    async def _map_port(self, mapper: PortMapper) -> None:
        status = await mapper.start()
        if status.state == "mapped":
            log.info("port %d mapped by %s: %s:%s", status.internal_port, status.method, status.external_address,
                     status.external_tcp_port)
        else:
            log.info("port mapping: %s", status.error or status.state)

    async def _start_lsd(self) -> None:
        discovery = self._settings.discovery
        (group, group_port), = host_ports(discovery.lsd_address)[:1] or [("239.192.152.143", 6771)]
        bind = self.bind_address
        interface = bind if bind is not None and ":" not in bind else ""
        try:
            lsd = LocalDiscovery(self.listen_port or 0, self._lsd_peer, group=group, group_port=group_port,
                                 interface=interface, announce_interval=discovery.lsd_interval)
        except ValueError as exc:
            log.warning("local peer discovery is off: %s", exc)
            return
        if await lsd.start():
            self.lsd = lsd

    def _lsd_peer(self, info_hash: bytes, address: tuple[str, int]) -> None:
        torrent = self._torrents.get(info_hash.hex())
        if torrent is not None and not torrent.private and torrent.peer_owner is not None and \
                not self.is_self(address):
            torrent.add_peers([address], PeerSource.LSD)

    def _on_krpc(self, data: bytes, addr: tuple[str, int]) -> None:
        node = self._dht.node if self._dht is not None else None
        if node is not None:
            node.datagram_received(data, addr)

    async def close(self) -> None:
        """Stop every torrent (``stopped`` announces, resume saved), save the session, close sockets."""
        if self._closed:
            return
        self._closed = True
        for server in self._servers:
            server.close()
        await asyncio.gather(*(t.close() for t in list(self._torrents.values())), return_exceptions=True)
        if self._stopping:
            # The ``stopped`` announces have their own short timeout; let them go out.
            await asyncio.wait(list(self._stopping), timeout=self._settings.tracker.stopped_timeout + 1)
        if self._dht is not None:
            await self._dht.close()
        if self.lsd is not None:
            self.lsd.close()
        if self.port_mapper is not None:
            await self.port_mapper.close()
        for utp in self._utp.values():
            utp.close()
        for endpoint in self._udp.values():
            endpoint.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._flush_saves()
        self._bus.close()
        self.executor.shutdown(wait=True)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, stopping: bool = False) -> None:
        """Run ``coro`` as a task the session cancels at close (``stopping``: a
        ``stopped`` announce, which close waits for, briefly)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        if stopping:
            self._stopping.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._stopping.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("internal error: %r", task.exception(), exc_info=task.exception())

    # ---- helpers for torrents -----------------------------------------------------------

    def publish(self, event: Event) -> None:
        self._bus.publish(event)

    def resume_path(self, torrent_id: TorrentId) -> Path | None:
        return resume_path(self.store.resume_dir, bytes.fromhex(torrent_id)) if self.store else None

    def journal_path(self, torrent_id: TorrentId) -> Path | None:
        return journal_path(self.store.resume_dir, bytes.fromhex(torrent_id)) if self.store else None

    def connection_count(self) -> int:
        return sum(len(t.peer_owner.peers) for t in self._torrents.values() if t.peer_owner is not None)

    def connection_allowed(self) -> bool:
        return self.connection_count() < self._settings.network.max_connections

    def note_self_address(self, address: tuple[str, int] | None) -> None:
        if address:
            self._self_addresses.add(address)

    def is_self(self, address: tuple[str, int]) -> bool:
        return address in self._self_addresses or (address[1] == self.listen_port and
                                                     address[0] in ("127.0.0.1", "::1", self.bind_address))

    def can_reach(self, address: tuple[str, int]) -> bool:
        """Bound to one address, we only dial peers of its family."""
        if self.bind_address is None:
            return True
        return (":" in address[0]) == (":" in self.bind_address)

    async def _load_blocklist(self) -> None:
        """Put ``network.blocklist`` in force and drop the peers and addresses it names."""
        if not await self.blocklist.load(self._settings.network.blocklist, self._settings.limits.blocklist_max_size):
            return  # a later change of the setting won
        refuses = self.blocklist.refuses
        peers = set(self._incoming)
        forgotten = 0
        for torrent in self._torrents.values():
            forgotten += torrent.candidates.drop_blocked()
            if torrent.peer_owner is not None:
                peers.update(torrent.peer_owner.peers)
        dropped = [peer for peer in peers if not peer.closed and peer.address is not None and refuses(peer.address[0])]
        for peer in dropped:
            peer.close("blocked by the IP filter")
        if dropped or forgotten:
            log.info("blocklist: %d connected peers dropped, %d known addresses forgotten", len(dropped), forgotten)

    async def _reload_blocklist(self) -> None:
        try:
            await self._load_blocklist()
        except BlocklistError as exc:  # the snapshot's ``blocklist`` says so too; the previous list stays
            log.error("%s", exc)

    def local_addr(self) -> tuple[str, int] | None:
        return (self.bind_address, 0) if self.bind_address else None

    @property
    def dht(self) -> DhtNode | None:
        return self._dht.node if self._dht is not None else None

    @property
    def dht_ready(self) -> asyncio.Event:
        assert self._dht is not None
        return self._dht.ready

    async def dht_search(self, info_hash: bytes) -> list[tuple[str, int]]:
        if self._dht is None:
            return []
        return await self._dht.search(info_hash, self.listen_port or 0)

    def dht_node_heard(self, host: str, port: int) -> None:
        if self._dht is not None:
            self._dht.node_heard(host, port)

    def dht_status(self) -> DhtSnapshot | None:
        """The DHT node's numbers, or None when the DHT is off."""
        if self._dht is None or self._dht.node is None:
            return None
        stats = self._dht.node.stats()
        values = {name: getattr(stats, name) for name in DhtSnapshot._fields if hasattr(stats, name)}
        return DhtSnapshot(**values, port=self.dht_port or 0, bootstrap=self._dht.describe_bootstrap(),
                           bootstrapped=self._dht.ready.is_set())

    async def dht_ping(self, host: str, port: int) -> tuple[str, float]:
        """Ping a DHT node: its id (hex) and the round trip in seconds. ``InvalidStateError`` when the DHT is
        off; ``TorrentError`` when the node does not answer."""
        node = self._dht_node("ping a DHT node")
        started = time.monotonic()
        node_id = await node.ping((host, port))
        return node_id.hex(), time.monotonic() - started

    async def dht_lookup(self, info_hash: bytes) -> DhtLookup:
        """A get_peers lookup for ``info_hash`` (no announce): the peers and how it went."""
        node = self._dht_node("look up peers in the DHT")
        await self._dht.ready.wait()  # type: ignore[union-attr]
        started = time.monotonic()
        peers, lookup = await node.get_peers(info_hash)
        return DhtLookup(info_hash.hex(), tuple(format_address(h, p) for h, p in peers), lookup.queries,
                         len(lookup.result()), time.monotonic() - started)

    def _dht_node(self, doing: str) -> DhtNode:
        node = self.dht
        if node is None:
            raise InvalidStateError(f"cannot {doing}: the DHT is off (discovery.dht, or no UDP port)")
        return node

    async def udp_tracker_socket(self, family: int, addr: tuple[Any, ...]) -> Any:
        """UDP trackers are asked from the shared endpoint (a fresh socket if there is none of that family)."""
        endpoint = self._udp.get(family)
        if endpoint is None:
            return await open_datagram_endpoint(family, addr, self.bind_address)
        return await endpoint.tracker_socket(family, addr)

    def _index_skey(self, torrent: ManagedTorrent) -> None:
        self._skeys[mse.req2_key(torrent.info_hash)] = torrent.info_hash

    def _resolve(self, info_hash: bytes) -> Any:
        torrent = self._torrents.get(info_hash.hex())
        return torrent.peer_owner if torrent is not None else None

    def _get(self, torrent_id: TorrentId) -> ManagedTorrent:
        torrent = self._torrents.get(str(torrent_id).lower())
        if torrent is None:
            raise UnknownTorrentError(f"no torrent {torrent_id!r} in this session")
        return torrent

    def _with_metadata(self, torrent_id: TorrentId, doing: str) -> ManagedTorrent:
        torrent = self._get(torrent_id)
        if torrent.metainfo is None:
            raise InvalidStateError(f"cannot {doing} {torrent.name}: its metadata is not known yet")
        return torrent

    # ---- adding --------------------------------------------------------------------------

    async def add(self, source: str | bytes | os.PathLike[str], *, save_path: str | os.PathLike[str],
                  paused: bool = False,
                  file_priorities: Sequence[FilePriority] | Mapping[int, FilePriority] | None = None,
                  peers: Sequence[tuple[str, int]] = (), recheck: bool = False, sequential: bool = False,
                  first_last: bool = False) -> TorrentId:
        """Add a ``.torrent`` (path or bytes) or a magnet link; returns its id.

        Its data is checked first (fast resume when it holds), then it joins the
        queue. A magnet link stays in state ``metadata``. ``peers`` are dialled
        as well as the trackers'.
        """
        meta: Metainfo | None
        magnet: Magnet | None = None
        raw: bytes | None
        if isinstance(source, str) and source.lower().startswith("magnet:"):
            magnet = parse_magnet(source)
            if magnet.info_hash is None:
                raise InvalidArgumentError("this magnet link has only a v2 hash (btmh); v2 torrents are not "
                                           "supported yet")
            meta, raw, torrent_id = None, None, magnet.info_hash.hex()
        else:
            limits = self._settings.limits

            def load() -> tuple[bytes, Metainfo]:  # off the loop: a torrent of 100 000 files takes a second
                data = source if isinstance(source, bytes) else metainfo_codec.read_file(source, limits=limits)
                return data, metainfo_codec.parse(data, limits=limits)

            raw, meta = await asyncio.get_running_loop().run_in_executor(None, load)
            for warning in meta.warnings:  # renamed files, ignored bytes
                log.warning("%s: %s", meta.name, warning)
            torrent_id = meta.info_hash_hex
        if torrent_id in self._torrents:
            raise DuplicateTorrentError(f"{self._torrents[torrent_id].name} is already in the session")
        for host, port in peers:
            if not 0 < port < 65536:
                raise InvalidArgumentError(f"invalid peer port {port}")
        record = None
        if self.store is not None:
            warnings: list[str] = []
            saved = await asyncio.get_running_loop().run_in_executor(None, self.store.load_torrent, torrent_id,
                                                                     warnings)
            for warning in warnings:
                log.warning("%s", warning)
            if saved is not None:
                record = saved.record
        save = str(Path(save_path).expanduser().resolve())
        if record is None or record.save_path != save:
            record = TorrentRecord(id=torrent_id, save_path=save, added_at=time.time())
        record = dataclasses.replace(record, paused=paused, position=len(self._order),
                                     peers=tuple(dict.fromkeys(record.peers + tuple(peers))),
                                     magnet=source if magnet is not None else None,
                                     sequential=sequential or record.sequential,
                                     first_last=first_last or record.first_last)
        torrent = ManagedTorrent(self, record, metainfo=meta, source=raw, magnet=magnet)
        if meta is not None:
            torrent.init_priorities(_priority_list(meta, file_priorities))
        torrent.add_peers(list(peers), PeerSource.MANUAL)
        self._insert(torrent)
        self.publish(TorrentAdded(torrent_id, time.time(), torrent.name))
        if meta is not None:
            self.spawn(torrent.check(recheck=recheck))
        elif not paused:
            torrent.fetch_metadata()
        return torrent_id

    def _insert(self, torrent: ManagedTorrent) -> None:
        self._torrents[torrent.id] = torrent
        self._index_skey(torrent)
        self._order.append(torrent.id)  # last, where its record says: nothing else moves
        self.mark_dirty(torrent)

    async def _restore_saved(self) -> None:
        assert self.store is not None
        loaded = await asyncio.get_running_loop().run_in_executor(None, self.store.load)
        for warning in loaded.warnings:
            log.warning("%s", warning)
        self.warnings.extend(loaded.warnings)
        for saved in loaded.torrents:
            try:
                await self._restore_one(saved)
            except TorrentError as exc:
                message = f"saved torrent {saved.record.id} could not be restored: {exc}"
                log.warning("%s", message)
                self.warnings.append(message)

    async def _restore_one(self, saved: SavedTorrent) -> None:
        record = saved.record
        if record.id in self._torrents:
            return
        meta = magnet = None
        if saved.source is not None:
            meta = metainfo_codec.parse(saved.source, limits=self._settings.limits)
            if meta.info_hash_hex != record.id:
                raise MetainfoError("its saved .torrent has another info-hash")
        elif record.magnet is not None:
            magnet = parse_magnet(record.magnet)
        torrent = ManagedTorrent(self, record, metainfo=meta, source=saved.source, magnet=magnet)
        if meta is not None:
            torrent.init_priorities(None)
        self._torrents[torrent.id] = torrent
        self._index_skey(torrent)
        self._order.append(torrent.id)
        self.publish(TorrentAdded(torrent.id, time.time(), torrent.name))
        if meta is not None:
            self.spawn(torrent.check())
        elif not record.paused:
            torrent.fetch_metadata()

    # ---- commands ------------------------------------------------------------------------

    async def pause(self, torrent_id: TorrentId) -> None:
        torrent = self._get(torrent_id)
        if torrent.record.paused:
            raise InvalidStateError(f"{torrent.name} is already paused")
        torrent.update_record(paused=True, forced=False)
        if torrent.state in ACTIVE:
            await torrent.deactivate(TorrentState.PAUSED)
        elif torrent.metadata_swarm is not None:
            await torrent.deactivate(TorrentState.PAUSED)
        elif torrent.state in (TorrentState.QUEUED, TorrentState.ERROR, TorrentState.METADATA):
            torrent.set_state(TorrentState.PAUSED)
        self.requeue()

    async def resume(self, torrent_id: TorrentId) -> None:
        torrent = self._get(torrent_id)
        if not torrent.record.paused and torrent.state is not TorrentState.ERROR:
            raise InvalidStateError(f"{torrent.name} is not paused (it is {torrent.state})")
        torrent.update_record(paused=False)
        torrent.stop_reason = None
        if torrent.metainfo is None:
            torrent.fetch_metadata()
        elif torrent.state in (TorrentState.PAUSED, TorrentState.ERROR):
            # Files may have changed while it was stopped: fast resume tells at little cost.
            self.spawn(torrent.check())
        self.requeue()

    async def remove(self, torrent_id: TorrentId, *, delete_data: bool = False) -> None:
        torrent = self._get(torrent_id)
        self._torrents.pop(torrent.id)
        self._skeys.pop(mse.req2_key(torrent.info_hash), None)
        self._order.remove(torrent.id)
        self._renumber()
        await torrent.close()
        self._retired_up += torrent.uploaded
        self._retired_down += torrent.downloaded
        if delete_data:
            await torrent.delete_data()
        if self.store is not None:
            store = self.store
            paths = [self.resume_path(torrent.id), self.journal_path(torrent.id)]

            def forget() -> None:
                for path in paths:
                    for p in (path, Path(f"{path}.old")) if path else ():
                        try:
                            p.unlink()
                        except FileNotFoundError:
                            pass
                if self.remember:
                    store.delete_torrent(torrent.id)

            await asyncio.get_running_loop().run_in_executor(None, forget)
        self._dirty.discard(torrent.id)
        self.publish(TorrentRemoved(torrent.id, time.time(), delete_data))
        self.requeue()

    async def recheck(self, torrent_id: TorrentId) -> None:
        torrent = self._with_metadata(torrent_id, "recheck")
        if torrent.state is TorrentState.CHECKING:
            raise InvalidStateError(f"{torrent.name} is being checked already")
        if torrent.state in ACTIVE:
            await torrent.deactivate(TorrentState.CHECKING)
        torrent.set_state(TorrentState.CHECKING)  # from now: a resume meanwhile must not start a second check
        if torrent.journal is not None:
            torrent.journal.discard()  # a full recheck replaces every record
        self.spawn(torrent.check(recheck=True))

    async def move_data(self, torrent_id: TorrentId, directory: str | os.PathLike[str]) -> None:
        torrent = self._with_metadata(torrent_id, "move the data of")
        if torrent.state is TorrentState.CHECKING:
            raise InvalidStateError(f"wait until {torrent.name} is checked before moving its data")
        was = torrent.state
        if was in ACTIVE:
            await torrent.deactivate(TorrentState.CHECKING, "moving its data")
        try:
            await torrent.move_data(Path(directory))
        finally:
            self.spawn(torrent.check())
        log.info("%s: data moved to %s (was %s)", torrent.name, directory, was)

    async def set_file_priorities(self, torrent_id: TorrentId,
                                  priorities: Mapping[int, FilePriority | str] | Sequence[FilePriority | str]) -> None:
        torrent = self._with_metadata(torrent_id, "set file priorities of")
        items = priorities.items() if isinstance(priorities, Mapping) else enumerate(priorities)
        torrent.set_file_priorities({int(i): _priority(p) for i, p in items})

    async def set_sequential(self, torrent_id: TorrentId, on: bool) -> None:
        torrent = self._with_metadata(torrent_id, "set sequential download of")
        torrent.update_record(sequential=bool(on))
        torrent.priorities_changed()

    async def set_first_last(self, torrent_id: TorrentId, on: bool) -> None:
        torrent = self._with_metadata(torrent_id, "set first-and-last-piece priority of")
        torrent.update_record(first_last=bool(on))
        torrent.priorities_changed()

    async def add_tracker(self, torrent_id: TorrentId, url: str, tier: int | None = None) -> None:
        torrent = self._get(torrent_id)
        _check_tracker_url(url)
        tiers = [list(t) for t in torrent.tiers.tiers]
        if any(url in t for t in tiers):
            raise InvalidArgumentError(f"{torrent.name} already has the tracker {url}")
        if tier is None or tier >= len(tiers):
            tiers.append([url])
        elif tier < 0:
            raise InvalidArgumentError(f"tier {tier} does not exist")
        else:
            tiers[tier].append(url)
        torrent.set_trackers(tiers)

    async def remove_tracker(self, torrent_id: TorrentId, url: str) -> None:
        torrent = self._get(torrent_id)
        tiers = [[u for u in t if u != url] for t in torrent.tiers.tiers]
        if sum(map(len, tiers)) == sum(map(len, torrent.tiers.tiers)):
            raise InvalidArgumentError(f"{torrent.name} has no tracker {url}")
        torrent.set_trackers(tiers)

    async def edit_tracker(self, torrent_id: TorrentId, old_url: str, new_url: str) -> None:
        torrent = self._get(torrent_id)
        _check_tracker_url(new_url)
        tiers = [list(t) for t in torrent.tiers.tiers]
        if not any(old_url in t for t in tiers):
            raise InvalidArgumentError(f"{torrent.name} has no tracker {old_url}")
        torrent.set_trackers([[new_url if u == old_url else u for u in t] for t in tiers])

    async def announce(self, torrent_id: TorrentId) -> None:
        torrent = self._get(torrent_id)
        if torrent.state not in ACTIVE:
            raise InvalidStateError(f"{torrent.name} is not running ({torrent.state}): resume it first")
        if not torrent.tiers.has_trackers:
            raise InvalidStateError(f"{torrent.name} has no tracker to announce to")
        torrent.force_announce()

    async def add_peers(self, torrent_id: TorrentId, peers: Sequence[tuple[str, int]]) -> None:
        torrent = self._get(torrent_id)
        for host, port in peers:
            if not host or not 0 < int(port) < 65536:
                raise InvalidArgumentError(f"invalid peer address {host}:{port}")
        torrent.add_peers([(h, int(p)) for h, p in peers], PeerSource.MANUAL)
        torrent.update_record(peers=tuple(dict.fromkeys(torrent.record.peers + tuple(peers))))

    async def set_torrent_limits(self, torrent_id: TorrentId, *, max_down: int | None = None,
                                 max_up: int | None = None, max_peers: int | None = None,
                                 upload_slots: int | None = None) -> None:
        """Per-torrent limits (bytes/s; peers); 0 means none of its own."""
        self._get(torrent_id).set_limits(max_down=max_down, max_up=max_up, max_peers=max_peers,
                                         upload_slots=upload_slots)

    async def set_rate_limits(self, *, max_down: int | None = None, max_up: int | None = None,
                              alt_max_down: int | None = None, alt_max_up: int | None = None) -> None:
        """The session's limits in bytes/s (0 = none), normal and alternative."""
        values = {f"rates.{k}": v for k, v in (("max_down", max_down), ("max_up", max_up),
                                                ("alt_max_down", alt_max_down), ("alt_max_up", alt_max_up))
                  if v is not None}
        await self.update_settings(values)

    async def set_alt_speed(self, on: bool) -> None:
        await self.update_settings({"rates.alt_enabled": bool(on)})

    async def set_connection_limits(self, *, max_connections: int | None = None, max_peers: int | None = None,
                                    max_half_open: int | None = None) -> None:
        """The session's connection limits; ``max_peers`` is the default per torrent."""
        values = {k: v for k, v in (("network.max_connections", max_connections), ("torrent.max_peers", max_peers),
                                    ("network.max_half_open", max_half_open)) if v is not None}
        await self.update_settings(values)

    async def queue_move(self, torrent_id: TorrentId, how: QueueMove | str) -> None:
        torrent = self._get(torrent_id)
        try:
            move = QueueMove(how)
        except ValueError:
            raise InvalidArgumentError(f"unknown queue move {how!r}: use top, up, down or bottom") from None
        self._order = queueing.moved(self._order, torrent.id, move.value)
        self._renumber()
        self.requeue()

    async def force_start(self, torrent_id: TorrentId, on: bool = True) -> None:
        torrent = self._get(torrent_id)
        if torrent.metainfo is None and on:
            raise InvalidStateError(f"cannot force-start {torrent.name}: its metadata is not known yet")
        was_paused = torrent.record.paused
        torrent.update_record(forced=bool(on), paused=False if on else torrent.record.paused)
        if on and was_paused and torrent.state in (TorrentState.PAUSED, TorrentState.ERROR):
            self.spawn(torrent.check())
        self.requeue()

    async def update_settings(self, values: Mapping[str, Any]) -> None:
        """Change settings while running (dotted keys; values as in the config
        file or as text). The whole tree is replaced at once, and the change is
        saved with the session so it survives a restart. Listening changes
        (``network.listen_port``, ``network.bind``) and turning the DHT, local
        discovery or port mapping on or off (``discovery.dht``, ``.lsd``,
        ``.port_map`` and their addresses) apply at the next start; PEX and the
        DHT's intervals apply at once. A new ``network.blocklist`` is read in
        the background and then replaces the list in force (which stays if the
        new one cannot be used)."""
        parsed = {key: parse_value(key, value) for key, value in values.items()}
        new = with_values(self._settings, parsed)
        check_relations(new)
        reload = self._started and (new.network.blocklist, new.limits.blocklist_max_size) != (
            self._settings.network.blocklist, self._settings.limits.blocklist_max_size)
        self._settings = new
        if reload:
            self.spawn(self._reload_blocklist())
        self.runtime_settings.update(parsed)
        self._settings_dirty = True
        self._schedule_save()
        self._apply_rate_limits()
        self._apply_transports()
        for torrent in self._torrents.values():
            torrent.apply_settings()
        self.requeue()

    def subscribe(self, maxlen: int = 1000) -> Subscription:
        """Events from now on, in order; a subscriber that falls more than
        ``maxlen`` behind loses its oldest (``Subscription.dropped`` counts them)."""
        return self._bus.subscribe(maxlen)

    # ---- snapshots ---------------------------------------------------------------------

    def ids(self) -> tuple[TorrentId, ...]:
        """Torrent ids in queue order."""
        return tuple(self._order)

    def snapshot(self) -> SessionSnapshot:
        return views.session_snapshot(self, list(self._torrents.values()))

    def torrent(self, torrent_id: TorrentId) -> TorrentSnapshot:
        return views.torrent_snapshot(self._get(torrent_id), time.monotonic())

    def torrents(self) -> tuple[TorrentSnapshot, ...]:
        now = time.monotonic()
        connections = self.connection_count()  # once, not once per torrent: it walks them all
        return tuple(views.torrent_snapshot(self._torrents[t], now, connections) for t in self._order)

    def peers(self, torrent_id: TorrentId) -> tuple[PeerSnapshot, ...]:
        return views.peer_snapshots(self._get(torrent_id), time.monotonic())

    def files(self, torrent_id: TorrentId) -> tuple[FileSnapshot, ...]:
        return views.file_snapshots(self._with_metadata(torrent_id, "list the files of"))

    def trackers(self, torrent_id: TorrentId) -> tuple[TrackerSnapshot, ...]:
        return views.tracker_snapshots(self._get(torrent_id), time.monotonic())

    def piece_map(self, torrent_id: TorrentId) -> PieceMap:
        return views.piece_map(self._with_metadata(torrent_id, "map the pieces of"))

    def piece_detail(self, torrent_id: TorrentId, index: int) -> PieceDetail:
        torrent = self._with_metadata(torrent_id, "describe a piece of")
        assert torrent.metainfo is not None
        if not 0 <= index < torrent.metainfo.num_pieces:
            raise InvalidArgumentError(f"{torrent.name} has no piece {index} "
                                       f"(pieces are 0..{torrent.metainfo.num_pieces - 1})")
        return views.piece_detail(torrent, index)

    # ---- the queue -----------------------------------------------------------------------

    def requeue(self) -> None:
        """Re-decide which torrents run, once per loop iteration however many changes."""
        if not self._requeue_scheduled and not self._closed:
            self._requeue_scheduled = True
            asyncio.get_running_loop().call_soon(self._requeue)

    def _requeue(self) -> None:
        self._requeue_scheduled = False
        if self._closed:
            return
        queue = self._settings.queue
        if queue.max_active_downloads < 0 and queue.max_active_seeds < 0:
            # No queue: what is queued starts, without ranking every torrent (a pass per finished check
            # made each restart quadratic: a second of ranking in a restart of 1 000 torrents).
            for torrent_id in self._order:
                t = self._torrents[torrent_id]
                if t.state is TorrentState.QUEUED and not t.record.paused:
                    t.activate()
            return
        entries = []
        for position, torrent_id in enumerate(self._order):
            t = self._torrents[torrent_id]
            if t.state in (TorrentState.QUEUED, *ACTIVE) and not t.record.paused:
                entries.append(queueing.QueueEntry(torrent_id, position, t.is_complete(), t.record.forced))
        allowed = queueing.allowed(entries, self._settings.queue)
        for entry in entries:
            t = self._torrents[entry.id]
            if entry.id in allowed and t.state is TorrentState.QUEUED:
                t.activate()
            elif entry.id not in allowed and t.state in ACTIVE:
                self.spawn(t.deactivate(TorrentState.QUEUED))

    def _renumber(self) -> None:
        for position, torrent_id in enumerate(self._order):
            t = self._torrents[torrent_id]
            if t.record.position != position:
                t.update_record(position=position)

    # ---- timers ------------------------------------------------------------------------

    async def _ticker(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            self._tick(now, now - last)
            last = now

    def _tick(self, now: float, elapsed: float) -> None:
        """One pass of the periodic work: the limits' schedule, then every torrent's timers."""
        self._apply_rate_limits()
        for torrent in list(self._torrents.values()):
            try:
                torrent.tick(now, elapsed)
            except Exception:  # one torrent's bug must not stop the others' timers
                log.exception("%s: internal error in its periodic work", torrent.name)
        if now - self._seeding_saved >= SEEDING_TIME_SAVE:
            # Seeding time advances every second; it is saved this often.
            self._seeding_saved = now
            for torrent in self._torrents.values():
                if torrent.state is TorrentState.SEEDING:
                    self.mark_dirty(torrent)

    def _apply_rate_limits(self) -> None:
        down, up, alt = effective_limits(self._settings.rates, datetime.now())
        self.alt_speed = alt
        if self.download_limiter.rate != down:
            self.download_limiter.set_rate(down)
        if self.upload_limiter.rate != up:
            self.upload_limiter.set_rate(up)

    # ---- saving the session -------------------------------------------------------------

    def mark_dirty(self, torrent: ManagedTorrent) -> None:
        if not self.remember or torrent.id not in self._torrents:
            return
        self._dirty.add(torrent.id)
        self._schedule_save()

    def _schedule_save(self) -> None:
        if not self.remember or self._closed:
            return  # close() saves what is left
        if self._save_handle is not None:
            self._save_handle.cancel()
        self._save_handle = asyncio.get_running_loop().call_later(self._settings.storage.save_delay,
                                                                  self._save_now)

    def save_resume_soon(self, torrent: ManagedTorrent) -> None:
        self.spawn(torrent.save_resume())

    def _save_now(self) -> None:
        self._save_handle = None
        self.spawn(self._flush_saves())

    async def _flush_saves(self) -> None:
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        if not self.remember or self.store is None:
            return
        store = self.store
        records = [(self._torrents[t].saved_record(), self._torrents[t].source) for t in self._dirty
                   if t in self._torrents]
        self._dirty.clear()
        settings = dict(self.runtime_settings) if self._settings_dirty else None
        self._settings_dirty = False

        def save() -> None:
            for record, source in records:
                store.save_torrent(record, source)
            if settings is not None:
                store.save_settings(settings)

        try:
            await asyncio.get_running_loop().run_in_executor(None, save)
        except StorageError as exc:
            log.warning("%s", exc)


# ---- helpers ----------------------------------------------------------------------------


def _priority(value: FilePriority | str) -> FilePriority:
    try:
        return FilePriority(value)
    except ValueError:
        raise InvalidArgumentError(f"unknown file priority {value!r}: use skip, normal or high") from None


def _priority_list(meta: Metainfo, given: Sequence[FilePriority] | Mapping[int, FilePriority] | None
                   ) -> list[FilePriority] | None:
    if given is None:
        return None
    count = len(meta.files)
    if isinstance(given, Mapping):
        out = [FilePriority.NORMAL] * count
        items = given.items()
    else:
        if len(given) != count:
            raise InvalidArgumentError(f"{len(given)} file priorities for {meta.name}, which has {count} files")
        out = [FilePriority.NORMAL] * count
        items = enumerate(given)
    for index, value in items:
        if not 0 <= index < count:
            raise InvalidArgumentError(f"{meta.name} has no file {index} (its files are 0..{count - 1})")
        out[index] = _priority(value)
    return out


def _check_tracker_url(url: str) -> None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port
    except ValueError:
        raise InvalidArgumentError(f"invalid tracker URL {url!r}") from None
    if parts.scheme.lower() not in SUPPORTED_SCHEMES or not parts.hostname:
        raise InvalidArgumentError(f"invalid tracker URL {url!r}: use http://, https:// or udp:// with a host")


__all__ = ["Session", "make_peer_id"]


def utp_window(receive_buffer: int) -> int:
    """The receive window each uTP connection advertises: what the UDP socket's buffer can hold, so that a
    peer sending a whole window while our loop is busy loses nothing in the kernel (libtorrent's sender
    bursts a window at once; against the default 208 KiB buffer a 1 MiB window lost a packet in twenty and
    timed out every second). A quarter of the kernel's figure: half of it is bookkeeping, and a datagram is
    charged about twice its payload on top."""
    return max(32 * 1024, min(1024 * 1024, receive_buffer // 4))

