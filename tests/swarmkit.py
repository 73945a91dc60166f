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
    tree = with_values(Settings(), {"network.bind": "127.0.0.1", "network.listen_port": 0})
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
