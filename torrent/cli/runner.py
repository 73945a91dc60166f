"""Run one torrent to completion (and on, while seeding) for the CLI.

Owns the event loop choice (uvloop), signal handling for a clean shutdown,
and the progress display: a rich live line on a terminal, plain lines every
few seconds otherwise. It uses only ``Session``'s public API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import uvloop

from torrent.codec.metainfo import Metainfo
from torrent.session.core import Session, Settings, TorrentStats
from torrent.core.units import format_size

PLAIN_EVERY = 5.0  # seconds between progress lines when not on a terminal


@dataclass
class RunOptions:
    download_dir: Path
    seed: bool = True
    seed_ratio: float | None = None
    peers: Sequence[tuple[str, int]] = ()
    only_files: Sequence[int] | None = None
    recheck: bool = False
    quiet: bool = False


def run(metainfo: Metainfo, options: RunOptions, settings: Settings) -> int:
    """Download (and seed) until done or interrupted; returns the exit code."""
    _log_to_stderr()
    return uvloop.run(_main(metainfo, options, settings))


def _log_to_stderr() -> None:
    """Warnings (tracker failures, bans, disk errors) as one line each."""
    logging.basicConfig(level=logging.WARNING, format="torrent: %(message)s", stream=sys.stderr)


async def _main(metainfo: Metainfo, options: RunOptions, settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    session = Session(settings)
    await session.start()
    display = _Display(enabled=not options.quiet and sys.stderr.isatty())
    code = 0
    try:
        swarm = await session.add(metainfo, options.download_dir, peers=options.peers,
                                  only_files=options.only_files, recheck=options.recheck)
        print(f"{metainfo.name}: listening on port {session.listen_port}, "
              f"{swarm.have.count()} of {metainfo.num_pieces} pieces verified on disk", file=sys.stderr)
        code = await _drive(session, metainfo, options, stop, display)
    finally:
        display.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.close(), 15)
    return code


async def _drive(session: Session, metainfo: Metainfo, options: RunOptions, stop: asyncio.Event,
                 display: _Display) -> int:
    swarm = session.torrents[metainfo.info_hash].swarm
    announced_done = swarm.completed.is_set()
    last_plain = 0.0
    while not stop.is_set():
        stats = session.stats(metainfo.info_hash)
        now = time.monotonic()
        if display.enabled:
            display.update(stats)
        elif now - last_plain >= PLAIN_EVERY or (stats.complete and not announced_done):
            print(_line(stats), file=sys.stderr, flush=True)
            last_plain = now
        if stats.complete and not announced_done:
            announced_done = True
            print(f"{metainfo.name}: download complete ({format_size(stats.total)})", file=sys.stderr)
        if stats.complete:
            if not options.seed:
                return 0
            if options.seed_ratio is not None and stats.uploaded >= options.seed_ratio * stats.total:
                print(f"{metainfo.name}: seed ratio {options.seed_ratio} reached", file=sys.stderr)
                return 0
        while not session.errors.empty():
            print(f"torrent: error: {session.errors.get_nowait()}", file=sys.stderr)
            return 1
        waits = [asyncio.ensure_future(stop.wait())]
        if not announced_done:
            waits.append(asyncio.ensure_future(swarm.completed.wait()))
        _, pending = await asyncio.wait(waits, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
        for w in pending:
            w.cancel()
    print(f"{metainfo.name}: stopping", file=sys.stderr)
    return 0 if swarm.completed.is_set() else 130


def run_demo(metainfo: Metainfo, data_parent: Path, download_dir: Path, *, quiet: bool = False) -> int:
    """A seeder and a leecher in one process on 127.0.0.1, showing the leecher."""
    _log_to_stderr()
    return uvloop.run(_demo(metainfo, data_parent, download_dir, quiet))


async def _demo(metainfo: Metainfo, data_parent: Path, download_dir: Path, quiet: bool) -> int:
    settings = dict(listen_host="127.0.0.1", listen_port=0)
    seeder = Session(Settings(**settings))
    leecher = Session(Settings(**settings))
    await seeder.start()
    await leecher.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    display = _Display(enabled=not quiet and sys.stderr.isatty())
    try:
        await seeder.add(metainfo, data_parent)
        print(f"seeder: 127.0.0.1:{seeder.listen_port}, leecher: 127.0.0.1:{leecher.listen_port}",
              file=sys.stderr)
        started = time.monotonic()
        await leecher.add(metainfo, download_dir, peers=[("127.0.0.1", seeder.listen_port)])
        code = await _drive(leecher, metainfo, RunOptions(download_dir, seed=False), stop, display)
        elapsed = time.monotonic() - started
        if code == 0:
            print(f"downloaded {format_size(metainfo.payload_length)} in {elapsed:.2f} s "
                  f"({metainfo.payload_length / elapsed / 1e6:.0f} MB/s) into {download_dir}", file=sys.stderr)
        return code
    finally:
        display.close()
        await leecher.close()
        await seeder.close()


def _line(s: TorrentStats) -> str:
    pct = 100.0 * s.have / s.total if s.total else 100.0
    return (f"{s.name}: {pct:5.1f}%  down {format_size(s.down_rate)}/s  up {format_size(s.up_rate)}/s  "
            f"peers {s.peers} (seeds {s.seeds})  ETA {_eta(s)}"
            + (f"  banned {s.banned}" if s.banned else "")
            + (f"  [{s.tracker_error}]" if s.tracker_error else ""))


def _eta(s: TorrentStats) -> str:
    if s.complete:
        return "done"
    if s.down_rate <= 0:
        return "-"
    seconds = int((s.total - s.have) / s.down_rate)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _Display:
    """A rich progress bar with rates, peers and ETA; nothing when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress = None
        self._task = None

    def update(self, s: TorrentStats) -> None:
        if self._progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                      DownloadColumn(binary_units=True), TextColumn("{task.fields[info]}"),
                                      console=Console(stderr=True))
            self._progress.start()
            self._task = self._progress.add_task(s.name, total=s.total, info="")
        info = (f"↓ {format_size(s.down_rate)}/s ↑ {format_size(s.up_rate)}/s  "
                f"peers {s.peers} seeds {s.seeds}  ETA {_eta(s)}")
        if s.banned:
            info += f"  banned {s.banned}"
        self._progress.update(self._task, completed=s.have, info=info)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
