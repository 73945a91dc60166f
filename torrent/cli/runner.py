"""Run one torrent to completion (and on, while seeding) for the CLI.

Owns the event loop choice (uvloop), signal handling for a clean shutdown,
and the progress display: a rich live line on a terminal, plain lines every
few seconds otherwise, nothing but errors with ``--quiet``. It drives the
engine through the session API alone: commands, snapshots and events.
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
from typing import Any

import uvloop

from torrent.core.text import printable
from torrent.core.units import format_size
from torrent.session import (
    Event,
    FilePriority,
    MetadataReceived,
    PieceState,
    Session,
    Settings,
    StateChanged,
    StorageFailed,
    TorrentCompleted,
    TorrentSnapshot,
    TorrentState,
)

PLAIN_EVERY = 5.0  # seconds between progress lines when not on a terminal
SETTLED = {TorrentState.QUEUED.value, TorrentState.DOWNLOADING.value, TorrentState.SEEDING.value,
           TorrentState.PAUSED.value}


@dataclass
class RunOptions:
    download_dir: Path
    seed: bool = True
    peers: Sequence[tuple[str, int]] = ()
    only_files: Sequence[int] | None = None
    file_count: int = 0  # files in the torrent (for ``only_files``)
    recheck: bool = False
    quiet: bool = False
    verbose: int = 0
    state_dir: Path | None = None
    saved_settings: dict[str, Any] | None = None
    snapshot_hz: float = 0.0  # build every snapshot this often (the bench's observer load)


def run(torrent: Path | str, options: RunOptions, settings: Settings) -> int:
    """Download (and seed) until done or interrupted; returns the exit code."""
    setup_logging(options.quiet, options.verbose)
    return uvloop.run(_main(torrent, options, settings))


def setup_logging(quiet: bool, verbose: int) -> None:
    """One line per message on stderr: warnings (tracker failures, bans, disk
    errors) by default, errors only when quiet, more with each -v."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrintableFormatter("torrent: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


class _PrintableFormatter(logging.Formatter):
    """Log messages quote trackers, peers and torrents: their control characters are escaped (a
    traceback, formatted apart from the message, keeps its lines). Errors read ``torrent: error: …``,
    as the CLI's own error lines do."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        line = super().formatMessage(record)
        if record.levelno >= logging.ERROR:
            line = line.replace("torrent: ", "torrent: error: ", 1)
        return printable(line)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _main(torrent: Path | str, options: RunOptions, settings: Settings) -> int:
    stop = _stop_on_signals()
    session = Session(settings, state_dir=options.state_dir, remember=False, restore=False,
                      saved_settings=options.saved_settings)
    await session.start()
    display = _Display(enabled=not options.quiet and sys.stderr.isatty())
    observer = _Observer(session, options.snapshot_hz) if options.snapshot_hz > 0 else None
    code = 0
    try:
        events = session.subscribe()
        priorities = _only(options, options.file_count) if options.file_count else None
        torrent_id = await session.add(torrent, save_path=options.download_dir, peers=options.peers,
                                       file_priorities=priorities, recheck=options.recheck)
        code = await _drive(session, torrent_id, options, stop, display, events)
    finally:
        display.close()
        if observer is not None:
            observer.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.close(), 15)
    return code


async def _drive(session: Session, torrent_id: str, options: RunOptions, stop: asyncio.Event,
                 display: _Display, events: Any) -> int:
    """Show progress and react to events until done; the exit code."""
    announced_ready = False
    last_plain = 0.0
    plain = not options.quiet and not display.enabled
    while not stop.is_set():
        while (event := events.get_nowait()) is not None:
            outcome = await _react_async(session, torrent_id, event, options)
            if outcome is not None:
                return outcome
        snap = session.torrent(torrent_id)
        if not announced_ready and snap.state in SETTLED:
            announced_ready = True
            verified = session.piece_map(torrent_id).states.count(PieceState.HAVE)
            # The bench waits for "listening on port" before it starts a leecher.
            if not options.quiet:
                print(f"{printable(snap.name)}: listening on port {session.listen_port}, {verified} of "
                      f"{snap.num_pieces} pieces verified on disk", file=sys.stderr, flush=True)
        if snap.state == TorrentState.SEEDING.value and not options.seed:
            if not options.quiet:  # it was complete on disk
                print(f"{printable(snap.name)}: {_complete_line(session, snap, 0)}", file=sys.stderr)
            return 0
        if display.enabled:
            display.update(snap)
        elif plain and time.monotonic() - last_plain >= PLAIN_EVERY and (
                announced_ready or snap.state == TorrentState.METADATA.value):
            print(_line(snap), file=sys.stderr, flush=True)
            last_plain = time.monotonic()
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(events.get())]
        done, pending = await asyncio.wait(waits, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
        for w in pending:
            w.cancel()
        for w in done:
            if w is waits[1] and not w.cancelled() and w.exception() is None:
                outcome = await _react_async(session, torrent_id, w.result(), options)
                if outcome is not None:
                    return outcome
    snap = session.torrent(torrent_id)
    if not options.quiet:
        print(f"{printable(snap.name)}: stopping", file=sys.stderr)
    return 0 if snap.state == TorrentState.SEEDING.value else 130


def _only(options: RunOptions, file_count: int) -> dict[int, FilePriority] | None:
    if options.only_files is None:
        return None
    wanted = set(options.only_files)
    return {i: FilePriority.NORMAL if i in wanted else FilePriority.SKIP for i in range(file_count)}


async def _metadata_received(session: Session, torrent_id: str, options: RunOptions) -> int | None:
    """A magnet's metadata arrived: say what it is, apply ``--only``."""
    snap = session.torrent(torrent_id)
    files = session.files(torrent_id)
    if not options.quiet:
        print(printable(f"{snap.name}: metadata received ({len(files)} files, {format_size(snap.total_size)}); "
                        f"saved as {Path(snap.save_path) / snap.name}.torrent"), file=sys.stderr, flush=True)
    if options.only_files is not None:
        bad = [i for i in options.only_files if not 0 <= i < len(files)]
        if bad:
            print(f"torrent: error: no file #{bad[0]}: the torrent has files 0..{len(files) - 1}", file=sys.stderr)
            return 2
        priorities = _only(options, len(files))
        assert priorities is not None
        await session.set_file_priorities(torrent_id, priorities)
    return None


def _react(session: Session, torrent_id: str, event: Event, options: RunOptions) -> int | None:
    """What an event means for the run: an exit code, or None to go on."""
    if event.torrent_id != torrent_id:
        return None
    snap = session.torrent(torrent_id)
    if isinstance(event, TorrentCompleted):
        if not options.quiet:
            print(f"{printable(snap.name)}: {_complete_line(session, snap, event.downloaded)}", file=sys.stderr,
                  flush=True)
        return None if options.seed else 0
    if isinstance(event, StorageFailed):
        return 1  # the engine's error record was the one line (``torrent: error: NAME: …``)
    if isinstance(event, StateChanged):
        if event.new == TorrentState.ERROR.value:
            print(printable(f"torrent: error: {snap.name}: {event.reason or snap.last_error}"), file=sys.stderr,
                  flush=True)
            return 1
        if event.new == TorrentState.PAUSED.value and event.reason:
            if not options.quiet:
                print(printable(f"{snap.name}: {event.reason}"), file=sys.stderr, flush=True)
            return 0
    return None


async def _react_async(session: Session, torrent_id: str, event: Event, options: RunOptions) -> int | None:
    if isinstance(event, MetadataReceived) and event.torrent_id == torrent_id:
        return await _metadata_received(session, torrent_id, options)
    return _react(session, torrent_id, event, options)


def _complete_line(session: Session, snap: TorrentSnapshot, fetched: int) -> str:
    files = session.files(snap.id)
    real = [f for f in files if not f.padding]
    chosen = [f for f in real if f.priority != FilePriority.SKIP.value]
    got = f"{format_size(fetched)} fetched from peers"
    if len(chosen) == len(real):
        return f"download complete ({format_size(snap.total_size)}; {got})"
    return (f"download complete: {len(chosen)} of {len(real)} files selected "
            f"({format_size(sum(f.size for f in chosen))} of {format_size(snap.total_size)}); {got}")


class _Observer:
    """Builds every snapshot ``hz`` times a second, as a front end would (the
    bench's ``--snapshots``), and counts the CPU time that takes."""

    def __init__(self, session: Session, hz: float) -> None:
        self.rounds = 0
        self.cpu = 0.0
        self._task = asyncio.get_running_loop().create_task(self._loop(session, hz))

    async def _loop(self, session: Session, hz: float) -> None:
        while True:
            await asyncio.sleep(1 / hz)
            started = time.thread_time()
            session.snapshot()
            for snap in session.torrents():
                session.peers(snap.id)
                session.trackers(snap.id)
                if snap.num_pieces:
                    session.files(snap.id)
                    session.piece_map(snap.id)
            self.cpu += time.thread_time() - started
            self.rounds += 1

    def cancel(self) -> None:
        self._task.cancel()
        print(f"snapshots: {self.rounds} rounds, {1000 * self.cpu:.1f} ms of CPU", file=sys.stderr)


# ---- the demo ------------------------------------------------------------------------------


def run_demo(torrent: Path, data_parent: Path, download_dir: Path, settings: Settings, *,
             quiet: bool = False) -> int:
    """A seeder and a leecher in one process on 127.0.0.1, showing the leecher."""
    setup_logging(quiet, 0)
    return uvloop.run(_demo(torrent, data_parent, download_dir, settings, quiet))


async def _demo(torrent: Path, data_parent: Path, download_dir: Path, settings: Settings, quiet: bool) -> int:
    from torrent.core.settings import with_values

    local = with_values(settings, {"network.bind": "127.0.0.1", "network.listen_port": 0})
    seeder = Session(local, remember=False, restore=False)
    leecher = Session(local, remember=False, restore=False)
    await seeder.start()
    await leecher.start()
    stop = _stop_on_signals()
    display = _Display(enabled=not quiet and sys.stderr.isatty())
    try:
        await seeder.add(torrent, save_path=data_parent)
        print(f"seeder: 127.0.0.1:{seeder.listen_port}, leecher: 127.0.0.1:{leecher.listen_port}",
              file=sys.stderr)
        events = leecher.subscribe()
        started = time.monotonic()
        torrent_id = await leecher.add(torrent, save_path=download_dir, peers=[("127.0.0.1", seeder.listen_port)])
        code = await _drive(leecher, torrent_id, RunOptions(download_dir, seed=False, quiet=quiet), stop, display,
                            events)
        elapsed = time.monotonic() - started
        if code == 0:
            size = leecher.torrent(torrent_id).total_size
            print(f"downloaded {format_size(size)} in {elapsed:.2f} s ({size / elapsed / 1e6:.0f} MB/s) "
                  f"into {download_dir}", file=sys.stderr)
        return code
    finally:
        display.close()
        await leecher.close()
        await seeder.close()


# ---- display -------------------------------------------------------------------------------


def _line(s: TorrentSnapshot) -> str:
    """A plain progress line; the name and the last error (from a tracker or a peer) are escaped."""
    return printable(_raw_line(s))


def _raw_line(s: TorrentSnapshot) -> str:
    if s.state == TorrentState.METADATA.value:
        return f"{s.name}: {s.waiting_on[0] if s.waiting_on else 'fetching metadata'}"
    return (f"{s.name}: {100 * s.progress:5.1f}%  down {format_size(s.down_rate)}/s  up {format_size(s.up_rate)}/s  "
            f"peers {s.peers} (seeds {s.seeds})  ETA {_eta(s)}"
            + (f"  banned {s.banned}" if s.banned else "")
            + (f"  [{s.last_error}]" if s.last_error else ""))


def _eta(s: TorrentSnapshot) -> str:
    if s.state == TorrentState.SEEDING.value:
        return "done"
    if s.eta is None:
        return "-"
    seconds = int(s.eta)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _Display:
    """A rich progress bar with rates, peers and ETA; nothing when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None

    def update(self, s: TorrentSnapshot) -> None:
        if self._progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

            # No markup: a name such as "[link=…]x" is shown as written, and printable escapes controls.
            self._progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                                      DownloadColumn(binary_units=True),
                                      TextColumn("{task.fields[info]}", markup=False),
                                      console=Console(stderr=True))
            self._progress.start()
            self._task = self._progress.add_task(printable(s.name), total=s.wanted_size or None, info="")
        info = (f"↓ {format_size(s.down_rate)}/s ↑ {format_size(s.up_rate)}/s  "
                f"peers {s.peers} seeds {s.seeds}  ETA {_eta(s)}")
        if s.state == TorrentState.CHECKING.value and s.checking_progress is not None:
            info = f"checking {100 * s.checking_progress:.0f}%"
        elif s.state == TorrentState.METADATA.value and s.waiting_on:
            info = printable(s.waiting_on[0])
        if s.banned:
            info += f"  banned {s.banned}"
        self._progress.update(self._task, completed=s.wanted_verified, total=s.wanted_size or None, info=info)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
