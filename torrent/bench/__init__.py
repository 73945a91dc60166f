"""``torrent bench``: complete downloads on 127.0.0.1, ours and libtorrent's,
in every pairing, against the machine's ceilings measured in the same run.

Runs are interleaved (run 1 of every scenario, then run 2, ...) so that each
scenario sees the same drift of a shared machine, and each round starts one
scenario later, so none always runs after the same one; the ratio to
libtorrent → libtorrent, and user CPU per GiB, are what stay meaningful from
one run of the bench to the next.
"""

from __future__ import annotations

import compileall
import dataclasses
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from torrent.codec import metainfo
from torrent.core import speedups
from torrent.bench import ceilings, many
from torrent.bench.many_report import ManyReport, ManySummary
from torrent.bench.report import Report, Summary
from torrent.bench.swarm import (LIBTORRENT, OURS, SCENARIOS, BenchSwarm, RunResult, Scenario, libtorrent_python,
                                 libtorrent_version)
from torrent.create import create_torrent
from torrent.core.errors import BenchError
from torrent.core.units import format_size

__all__ = ["SCENARIOS", "BenchOptions", "run_bench"]

PAYLOAD_NAME = "bench.bin"


@dataclass(frozen=True)
class BenchOptions:
    size: int = 1 << 30
    piece_size: int = 256 * 1024
    seeders: int = 1
    leechers: int = 1
    runs: int = 3
    scenarios: tuple[str, ...] = ()  # keys; empty: every scenario that can run here
    pure_python: bool = False
    measure_ceilings: bool = True
    settle: float = 3.0  # seconds between runs (see the module docstring)
    work_dir: Path | None = None  # kept (with the payload) when given
    progress: bool = True
    snapshot_hz: float = 0.0  # also run each scenario with our client observed: every API snapshot this often
    encrypted: bool = False  # every peer requires RC4 over the whole stream (MSE/PE)
    transport: str = "tcp"  # "utp": every peer speaks uTP alone
    seeder_max_up: int = 0  # bytes/s each seeder may upload (ours and libtorrent's alike); 0: no cap
    torrents: int = 0  # N > 0: the many-torrents scenario (N idle seeding torrents) instead of downloads
    idle_seconds: float = 30.0  # its idle window


def run_bench(options: BenchOptions) -> Report | ManyReport:
    lt_python = libtorrent_python()
    if options.torrents:
        return _run_many(options, lt_python)
    scenarios = _choose(options.scenarios, lt_python is not None)
    if options.snapshot_hz:
        # Each scenario with our client runs twice a round, observed and not,
        # so the cost of observing is a difference within one run of the bench.
        scenarios += [dataclasses.replace(s, observed=options.snapshot_hz) for s in scenarios if s.has_ours]
    _compile_bytecode()
    with _work_dir(options.work_dir) as work, _Progress(options.progress) as progress:
        progress.note(f"payload: {format_size(options.size)} in {work}")
        meta, torrent, payload_dir = _prepare(work, options.size, options.piece_size)
        found = tuple(ceilings.measure_all(work, options.size, options.settle)) if options.measure_ceilings else ()
        bench = BenchSwarm(meta, torrent, payload_dir, work, seeders=options.seeders, leechers=options.leechers,
                           pure_python=options.pure_python, lt_python=lt_python, encrypted=options.encrypted,
                           transport=options.transport, seeder_max_up=options.seeder_max_up)
        results: dict[Scenario, list[RunResult]] = {s: [] for s in scenarios}
        for n in range(1, options.runs + 1):
            # Each round starts one scenario later: a run's speed depends on the
            # one before it (system CPU follows the memory state that run left),
            # so no scenario always follows the same one.
            shift = (n - 1) % len(scenarios)
            for scenario in scenarios[shift:] + scenarios[:shift]:
                label = f"{scenario.title}, run {n}/{options.runs}"
                time.sleep(options.settle)
                result = bench.run(scenario, progress.bar(label))
                progress.done(label, result)
                results[scenario].append(result)
    settings = {
        "size": options.size, "size_text": format_size(options.size),
        "piece_size": options.piece_size, "piece_size_text": format_size(options.piece_size),
        "seeders": options.seeders, "leechers": options.leechers, "runs": options.runs,
        "settle_s": options.settle,
        "snapshot_hz": options.snapshot_hz,
        "encryption": "RC4 required by every peer" if options.encrypted else "defaults (no RC4 on the stream)",
        "transport": options.transport,
        "seeder_max_up": options.seeder_max_up,
        "speedups": _speedups_text(options.pure_python),
        "libtorrent": libtorrent_version(lt_python),
    }
    return Report(settings, found, tuple(Summary(s, tuple(r)) for s, r in results.items()))


def _run_many(options: BenchOptions, lt_python: str | None) -> ManyReport:
    """The many-torrents scenario for ours, and for libtorrent when it is installed; runs interleaved."""
    clients = [OURS, LIBTORRENT] if lt_python is not None else [OURS]
    if lt_python is None:
        print("torrent bench: libtorrent is not installed, so only our session runs "
              "(pip install 'torrent[bench]' for the reference)", file=sys.stderr)
    _compile_bytecode()
    env = dict(os.environ, TORRENT_PURE_PYTHON="1") if options.pure_python else dict(os.environ)
    with _work_dir(options.work_dir) as work, _Progress(options.progress) as progress:
        progress.note(f"{options.torrents} torrents in {work}")
        torrents, payload, total = many.prepare(work, options.torrents)
        bench = many.ManyBench(work, torrents, payload, options.torrents, idle_seconds=options.idle_seconds,
                               settle=options.settle, lt_python=lt_python, env=env)
        results: dict[str, list[many.ManyRun]] = {c: [] for c in clients}
        for n in range(1, options.runs + 1):
            shift = (n - 1) % len(clients)
            for client in clients[shift:] + clients[:shift]:
                time.sleep(options.settle)
                label = f"run {n}/{options.runs}, {client}"
                results[client].append(bench.run(client, lambda text: progress.note(f"{label}, {text}")))
    settings = {
        "torrents": options.torrents, "runs": options.runs, "idle_s": options.idle_seconds,
        "settle_s": options.settle, "payload_bytes": total, "payload_text": format_size(total),
        "piece_size": many.PIECE_SIZE, "piece_size_text": format_size(many.PIECE_SIZE),
        "targets": many.TARGETS, "speedups": _speedups_text(options.pure_python),
        "libtorrent": libtorrent_version(lt_python),
    }
    return ManyReport(settings, tuple(ManySummary(c, tuple(r)) for c, r in results.items()))


def _speedups_text(pure_python: bool) -> str:
    if pure_python:
        return "pure Python"
    return "compiled" if speedups.all_compiled() else "pure Python (compiled modules unavailable)"


def _compile_bytecode() -> None:
    """Byte-compile our package, as pip does at install: a run measures the
    client, not Python compiling its sources (which it does at every start
    when bytecode cannot be cached, e.g. under PYTHONDONTWRITEBYTECODE)."""
    package = Path(__file__).resolve().parent.parent
    compileall.compile_dir(package, quiet=2)


def _choose(keys: Sequence[str], have_libtorrent: bool) -> list[Scenario]:
    by_key = {s.key: s for s in SCENARIOS}
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        raise BenchError(f"unknown scenario {unknown[0]!r}: choose from {', '.join(by_key)}")
    chosen = [by_key[k] for k in dict.fromkeys(keys)] if keys else list(SCENARIOS)
    if not have_libtorrent:
        if keys and any(s.needs_libtorrent for s in chosen):
            raise BenchError("libtorrent is not installed: pip install 'torrent[bench]' "
                             "(or apt install python3-libtorrent)")
        if not keys:
            print("torrent bench: libtorrent is not installed, so only ours → ours runs "
                  "(pip install 'torrent[bench]' for the others)", file=sys.stderr)
            chosen = [s for s in chosen if not s.needs_libtorrent]
    return chosen


@contextmanager
def _work_dir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    path = Path(tempfile.mkdtemp(prefix="torrent-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _prepare(work: Path, size: int, piece_size: int) -> tuple[metainfo.Metainfo, Path, Path]:
    """The payload and its torrent, reused from an earlier bench in the same
    directory when they match."""
    payload_dir = work / "payload"
    payload = payload_dir / PAYLOAD_NAME
    torrent = work / f"bench-{size}-{piece_size}.torrent"
    if not (payload.exists() and payload.stat().st_size == size):
        payload_dir.mkdir(exist_ok=True)
        rng = random.Random(size)
        chunk = 1 << 22
        with open(payload, "wb") as fh:
            for offset in range(0, size, chunk):
                fh.write(rng.randbytes(min(chunk, size - offset)))
        torrent.unlink(missing_ok=True)
    if not torrent.exists():
        torrent.write_bytes(create_torrent(payload, piece_length=piece_size))
    return metainfo.load(torrent), torrent, payload_dir


class _Progress:
    """A rich bar per run on a terminal; a plain line per finished run otherwise."""

    def __init__(self, enabled: bool) -> None:
        self._rich = None
        self._enabled = enabled
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self._rich = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
                                  TransferSpeedColumn(), console=Console(stderr=True), transient=True)
        self._task = None

    def __enter__(self) -> _Progress:
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()

    def note(self, text: str) -> None:
        if self._enabled:
            print(f"torrent bench: {text}", file=sys.stderr, flush=True)

    def bar(self, label: str) -> Callable[[int, int], None] | None:
        if self._rich is None:
            return None
        if self._task is not None:
            self._rich.remove_task(self._task)
        task = self._task = self._rich.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            self._rich.update(task, completed=min(done, total), total=total)

        return update

    def done(self, label: str, result: RunResult) -> None:
        if self._enabled:
            line = (f"{label}: {result.bytes_per_second / 1e6:.0f} MB/s in {result.seconds:.2f} s, "
                    f"leecher {result.leecher_user:.2f}+{result.leecher_sys:.2f} user+sys CPU-s "
                    f"{result.leecher_rss / 1e6:.0f} MB, seeder {result.seeder_user:.2f}+{result.seeder_sys:.2f}")
            if self._rich is not None:
                self._rich.console.print(line)
            else:
                print(f"torrent bench: {line}", file=sys.stderr, flush=True)
