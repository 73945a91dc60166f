"""The session's DHT node: bootstrapped, saved between runs, searched by the torrents.

It runs on the session's UDP endpoint. Routers come from ``discovery.dht_bootstrap``; a session bound to a
loopback address uses only loopback routers (and resolves no names but ``localhost``), so a client kept on
127.0.0.1 never reaches out. Nodes that peers announce in ``port`` messages are pinged, a bounded number
at once, and join the table when they answer. The table is saved in the state directory at exit.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from pathlib import Path

from torrent.core.errors import TorrentError
from torrent.core.settings import DiscoverySettings, host_ports
from torrent.dht.node import DhtNode, DhtQueryError
from torrent.storage.atomic import atomic_write

log = logging.getLogger("torrent.dht")

STATE_FILE = "dht.dat"
MAX_STATE = 1 << 20  # bytes: a full table of both families is ~60 KB
MAX_PORT_PINGS = 8  # pings of nodes heard from peers in flight
MAX_PORT_QUEUE = 64  # and waiting
# Torrents' searches at once: a session restoring a thousand torrents must not send a thousand lookups
# (each up to dht_lookup_max_queries queries) in the same second.
SEARCHES_AT_ONCE = 4


class DhtService:
    def __init__(self, settings: DiscoverySettings, *, state_dir: Path | None, bind_address: str | None) -> None:
        self.settings = settings
        self.state_path = state_dir / STATE_FILE if state_dir is not None else None
        self.bind_address = bind_address
        self.node: DhtNode | None = None
        self.ready = asyncio.Event()  # bootstrapped (or given up trying): lookups may start
        self.bootstrap_error: str | None = None
        self.searches = 0  # lookups for torrents, all time
        self._tasks: set[asyncio.Task[None]] = set()
        self._port_queue: dict[tuple[str, int], None] = {}
        self._pinging = 0
        self._search_slots = asyncio.Semaphore(SEARCHES_AT_ONCE)

    def start(self, transports: dict[int, object]) -> DhtNode:
        """``transports``: address family (4, 6) → a send-only transport on the shared endpoint."""
        s = self.settings
        saved = self._read_state()
        kwargs = dict(timeout=s.dht_query_timeout, query_rate=s.dht_query_rate, alpha=s.dht_lookup_alpha,
                      max_queries=s.dht_lookup_max_queries, lookup_timeout=s.dht_lookup_timeout,
                      enforce_node_ids=s.dht_enforce_node_id)
        node = DhtNode.from_state(saved, **kwargs) if saved else DhtNode(**kwargs)
        for family, transport in transports.items():
            node.attach(transport, family=family)  # type: ignore[arg-type]
        self.node = node
        self._spawn(self._bootstrap())
        return node

    def _spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _read_state(self) -> bytes | None:
        if self.state_path is None:
            return None
        try:
            with open(self.state_path, "rb") as f:
                data = f.read(MAX_STATE + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read the saved DHT table %s: %s", self.state_path, exc.strerror or exc)
            return None
        return data if len(data) <= MAX_STATE else None

    async def _routers(self) -> list[tuple[str, int]]:
        """The configured routers we may reach, resolved."""
        loop = asyncio.get_running_loop()
        local_only = self.bind_address is not None and _is_loopback(self.bind_address)
        out: list[tuple[str, int]] = []
        for host, port in host_ports(self.settings.dht_bootstrap):
            literal = _is_ip(host)
            if local_only and not (host == "localhost" or (literal and _is_loopback(host))):
                continue
            if literal:
                out.append((host, port))
                continue
            try:
                infos = await loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM)
            except (OSError, UnicodeError) as exc:
                log.info("DHT router %s: %s", host, exc)
                continue
            out.extend((info[4][0], info[4][1]) for info in infos[:1])
        return out

    async def _bootstrap(self) -> None:
        node = self.node
        assert node is not None
        try:
            routers = await self._routers()
            if routers or len(node.table):
                count = await node.bootstrap(routers)
                log.info("DHT: %d nodes after bootstrap from %d routers", count, len(routers))
            else:
                self.bootstrap_error = "no DHT router configured or reachable; waiting for peers' port messages"
        except (TorrentError, OSError) as exc:
            self.bootstrap_error = f"DHT bootstrap failed: {exc}"
            log.warning("%s", self.bootstrap_error)
        finally:
            self.ready.set()
        await node.maintain(self._routers)

    def describe_bootstrap(self) -> str:
        routers = self.settings.dht_bootstrap
        if self.bootstrap_error:
            return self.bootstrap_error
        return routers or "no routers (the saved table and peers' port messages only)"

    async def search(self, info_hash: bytes, port: int) -> list[tuple[str, int]]:
        """Peers for ``info_hash``, and our announce to the nodes nearest it."""
        node = self.node
        if node is None:
            return []
        async with self._search_slots:
            self.searches += 1
            peers, _ = await node.find_and_announce(info_hash, port)
        return peers

    def node_heard(self, host: str, port: int) -> None:
        """A peer's ``port`` message: its node may join our table once it answers a ping."""
        if self.node is None or len(self._port_queue) >= MAX_PORT_QUEUE:
            return
        self._port_queue[(host, port)] = None
        if self._pinging < MAX_PORT_PINGS:
            self._spawn(self._ping_heard())

    async def _ping_heard(self) -> None:
        self._pinging += 1
        try:
            while self._port_queue and self.node is not None:
                addr = next(iter(self._port_queue))
                del self._port_queue[addr]
                try:
                    await self.node.ping(addr)
                except DhtQueryError:
                    pass
        finally:
            self._pinging -= 1

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        node, self.node = self.node, None
        if node is None:
            return
        node.close()
        if self.state_path is not None:
            data = node.save_state()
            path = self.state_path
            try:
                await asyncio.get_running_loop().run_in_executor(None, atomic_write, path, data)
            except (OSError, TorrentError) as exc:
                log.warning("cannot save the DHT table: %s", exc)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
