"""Building blocks for tests that drive whole sessions through the public API
on 127.0.0.1: payloads and torrents, sessions, and waiting on snapshots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

from torrent.cli.demo import make_payload
from torrent.codec import metainfo
from torrent.codec.metainfo import Metainfo
from torrent.core.settings import Settings, with_values
from torrent.create import create_torrent
from torrent.session import Session, TorrentSnapshot

PIECE = 32 * 1024


def run(coro: Awaitable[Any], timeout: float = 120) -> Any:
    return uvloop.run(asyncio.wait_for(coro, timeout))


def make_torrent(tmp: Path, size: int, files: int = 3, *, name: str = "payload", trackers: Any = None,
                 piece_length: int = PIECE) -> tuple[Metainfo, Path, Path]:
    """A payload of ``size`` bytes under ``tmp/seed/<name>``; returns (metainfo, the
    seeder's save path, the .torrent file)."""
    data_parent = tmp / "seed"
    make_payload(data_parent / name, size, files=files, seed=size)
    raw = create_torrent(data_parent / name, piece_length=piece_length, trackers=trackers or ())
    path = tmp / f"{name}.torrent"
    path.write_bytes(raw)
    return metainfo.parse(raw), data_parent, path


def same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)


def local_settings(**values: Any) -> Settings:
    """Loopback only, any free port, plus ``values`` ("group.name" with dots as __)."""
    # No public DHT router, no multicast or router discovery on the LAN: tests that want them say so.
    # TCP alone: most peers in these tests are hand-written TCP servers, which a uTP-first dial would
    # reach only after network.utp_connect_timeout; the uTP tests ask for it.
    tree = with_values(Settings(), {"network.bind": "127.0.0.1", "network.listen_port": 0,
                                    "discovery.dht_bootstrap": "", "discovery.lsd": False,
                                    "discovery.port_map": False, "network.transports": "tcp"})
    return with_values(tree, {k.replace("__", "."): v for k, v in values.items()})


async def start_session(tmp: Path, name: str, settings: Settings | None = None, **kwargs: Any) -> Session:
    kwargs.setdefault("state_dir", tmp / f"state-{name}")
    session = Session(settings or local_settings(), **kwargs)
    await session.start()
    return session


async def wait_for(session: Session, torrent_id: str, predicate: Callable[[TorrentSnapshot], bool], *,
                   timeout: float = 60, what: str = "the condition") -> TorrentSnapshot:
    """Poll the torrent's snapshot until ``predicate`` holds; fail saying where it stood."""
    deadline = time.monotonic() + timeout
    while True:
        snap = session.torrent(torrent_id)
        if predicate(snap):
            return snap
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s; last snapshot: {snap}")
        await asyncio.sleep(0.05)


async def wait_state(session: Session, torrent_id: str, *states: str, timeout: float = 60) -> TorrentSnapshot:
    return await wait_for(session, torrent_id, lambda s: s.state in states, timeout=timeout,
                          what=f"state {' or '.join(states)}")


async def wait_complete(session: Session, torrent_id: str, timeout: float = 60) -> TorrentSnapshot:
    return await wait_for(session, torrent_id, lambda s: s.wanted_size > 0 and s.wanted_verified == s.wanted_size,
                          timeout=timeout, what="completion")


class FakeTracker:
    """An HTTP tracker on 127.0.0.1 answering every announce with ``peers``;
    it records each announce's query and the address it came from."""

    def __init__(self, peers: list[tuple[str, int]] | None = None, interval: int = 1800) -> None:
        self.peers = peers or []
        self.interval = interval
        self.announces: list[tuple[dict[str, str], tuple[str, int]]] = []
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/announce"

    async def start(self, host: str = "127.0.0.1") -> None:
        self.server = await asyncio.start_server(self._serve, host, 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from urllib.parse import parse_qsl, urlsplit

        from torrent.codec.bencoding import encode

        head = await reader.readuntil(b"\r\n\r\n")
        target = head.split(b" ", 2)[1].decode("latin-1")
        query = dict(parse_qsl(urlsplit(target).query, encoding="latin-1"))
        self.announces.append((query, writer.get_extra_info("peername")[:2]))
        compact = b"".join(bytes(map(int, h.split("."))) + p.to_bytes(2, "big") for h, p in self.peers)
        body = encode({b"interval": self.interval, b"complete": len(self.peers), b"incomplete": 0,
                       b"peers": compact})
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()


class PeerServer:
    """A hand-written peer listening on 127.0.0.1: subclasses answer each connection in ``_serve``."""

    def __init__(self) -> None:
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        for w in self.writers:
            w.close()
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


async def connected_row(session: Session, torrent_id: str, timeout: float = 20.0) -> Any:
    """The first connected peer row of a torrent (a ``PeerSnapshot``), polled until there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [p for p in session.peers(torrent_id) if p.status == "connected"]
        if rows:
            return rows[0]
        await asyncio.sleep(0.01)
    raise AssertionError(f"no connected peer within {timeout} s: {session.peers(torrent_id)}")


def drain(subscription: Any) -> list[Any]:
    """Every event a session subscription holds now, in order."""
    out = []
    while (event := subscription.get_nowait()) is not None:
        out.append(event)
    return out



def count_writes(peer: Any) -> list[int]:
    """Wrap a connection's transport so each write (and writelines) is counted, with its size."""
    writes: list[int] = []
    real = peer.transport

    class Counting:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def write(self, data: bytes) -> None:
            writes.append(len(data))
            real.write(data)

        def writelines(self, parts: list) -> None:
            writes.append(sum(len(p) for p in parts))
            real.writelines(parts)

    peer.transport = Counting()
    return writes
