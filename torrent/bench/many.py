"""``torrent bench --torrents N``: one session seeding N small torrents, idle, ours and libtorrent's.

Each client runs as its own process hosting all N (``many_peer.py``, ``lt_many_peer.py``), with
nothing queued. One run of a client is two lives of that process: the first adds the N torrents
(hashing their data), the second restores the session the first saved when it was stopped with
SIGTERM. Each life is measured from process start to "every torrent seeding", then over an idle
window after ``settle`` seconds (CPU user and system apart, as a share of one core; resident
memory), then stopped cleanly. Our restored life also says how many bytes its checks hashed:
fast resume should make that 0.
"""

from __future__ import annotations

import random
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torrent.bench import lt_peer
from torrent.bench.processes import Child
from torrent.bench.swarm import BENCH_CONFIG, OURS, READY_TIMEOUT, free_port, link_config
from torrent.core.errors import BenchError
from torrent.create import create_torrent

PIECE_SIZE = 32 * 1024
MIN_SIZE, MAX_SIZE = 64 * 1024, 256 * 1024  # each torrent's payload: 2 to 8 pieces
STOP_TIMEOUT = 120.0  # a clean stop saves every torrent's resume data
TARGETS = {"idle_cpu_pct": 2.0, "rss_mb": 300.0, "restore_s": 10.0}  # issue 15, for 1 000 torrents
_READY = re.compile(rb"^seeding (\d+)(?: hashed (\d+))?$", re.MULTILINE)

# Our client on its defaults but for the bench's loopback and link, and with queueing off.
MANY_CONFIG = ("# torrent bench --torrents: our client on its default settings, nothing queued\n"
               + BENCH_CONFIG + link_config(False, "tcp")
               + "\n[queue]\nmax_active_seeds = -1\nmax_active_downloads = -1\n")


@dataclass(frozen=True)
class Life:
    """One process life: started, every torrent seeding, idle for a window, stopped."""

    ready_seconds: float  # process start → every torrent seeding
    hashed: int | None  # payload bytes its checks hashed (None: the client does not say)
    idle_user: float  # CPU seconds over the idle window
    idle_sys: float
    idle_seconds: float  # the window, as measured
    idle_rss: int  # resident bytes at the end of the window
    peak_rss: int  # over the whole life
    stop_seconds: float  # SIGTERM → exit (state saved)

    @property
    def user_pct(self) -> float:
        return 100 * self.idle_user / self.idle_seconds

    @property
    def sys_pct(self) -> float:
        return 100 * self.idle_sys / self.idle_seconds

    @property
    def cpu_pct(self) -> float:
        return self.user_pct + self.sys_pct


@dataclass(frozen=True)
class ManyRun:
    first: Life  # added the torrents, hashing their data
    restored: Life  # restored what the first life saved


def prepare(work: Path, count: int) -> tuple[Path, Path, int]:
    """``count`` distinct small torrents and their payloads (one directory), reused when present; the
    torrents' directory, the payloads' and their bytes in all."""
    base = work / "many"
    payload = base / "payload"
    torrents = base / f"torrents-{count}"
    payload.mkdir(parents=True, exist_ok=True)
    torrents.mkdir(exist_ok=True)
    total = 0
    for i in range(count):
        rng = random.Random(i)
        size = rng.randrange(MIN_SIZE, MAX_SIZE + 1)
        data = payload / f"many-{i:05d}.bin"
        torrent = torrents / f"many-{i:05d}.torrent"
        if not (data.exists() and data.stat().st_size == size):
            data.write_bytes(rng.randbytes(size))
            torrent.unlink(missing_ok=True)
        if not torrent.exists():
            torrent.write_bytes(create_torrent(data, piece_length=PIECE_SIZE, threads=1))
        total += size
    return torrents, payload, total


class ManyBench:
    """Runs each client's lives over the N torrents in ``work``."""

    def __init__(self, work: Path, torrents: Path, payload: Path, count: int, *, idle_seconds: float,
                 settle: float, lt_python: str | None, env: dict[str, str]) -> None:
        self.work = work
        self.torrents = torrents
        self.payload = payload
        self.count = count
        self.idle_seconds = idle_seconds
        self.settle = settle
        self.lt_python = lt_python
        self._env = env
        self._config = work / "many-config.toml"
        self._config.write_text(MANY_CONFIG)
        self._runs = 0

    def run(self, client: str, note: Callable[[str], None]) -> ManyRun:
        """Both lives of ``client``, from an empty state directory; BenchError if one fails."""
        self._runs += 1
        run_dir = self.work / f"many-run-{self._runs}"
        shutil.rmtree(run_dir, ignore_errors=True)  # left by a bench that failed in this work directory
        run_dir.mkdir()
        state = run_dir / "state"
        first = self._life(client, "add", state, run_dir)
        note(f"first start: {self._describe(first)}")
        time.sleep(self.settle)
        restored = self._life(client, "restore", state, run_dir)
        note(f"restored: {self._describe(restored)}")
        shutil.rmtree(run_dir, ignore_errors=True)
        return ManyRun(first, restored)

    def _life(self, client: str, mode: str, state: Path, run_dir: Path) -> Life:
        port = free_port()
        log = run_dir / f"{client}-{mode}.log"
        if client == OURS:
            argv = [sys.executable, "-m", "torrent.bench.many_peer", mode, str(self.torrents), str(self.payload),
                    str(state), str(port), str(self._config)]
            child = Child(f"our session ({mode})", argv, log, self._env)
        else:
            if self.lt_python is None:
                raise BenchError("libtorrent is not installed: pip install 'torrent[bench]' "
                                 "(or apt install python3-libtorrent)")
            script = str(Path(lt_peer.__file__).with_name("lt_many_peer.py"))
            argv = [self.lt_python, script, mode, str(self.torrents), str(self.payload), str(state), str(port)]
            child = Child(f"libtorrent session ({mode})", argv, log)
        try:
            child.wait_for_line("seeding", READY_TIMEOUT + self.count * 0.5)
            ready = time.perf_counter() - child.started
            match = _READY.search(log.read_bytes())
            if match is None or int(match[1]) != self.count:
                raise BenchError(f"{child.role}: not every torrent is seeding: {child.tail()}")
            hashed = int(match[2]) if match[2] is not None else None
            time.sleep(self.settle)
            user0, sys0 = child.cpu_now()
            start = time.perf_counter()
            time.sleep(self.idle_seconds)
            user1, sys1 = child.cpu_now()
            window = time.perf_counter() - start
            rss = _resident(child.pid)
            stopping = time.perf_counter()
            child.stop(STOP_TIMEOUT)
            stop_seconds = time.perf_counter() - stopping
        finally:
            child.stop()
        if child.exit_code != 0:
            raise BenchError(f"{child.role} did not stop cleanly (exit code {child.exit_code}): {child.tail()}")
        # The kernel updates the high-water mark lazily: it may read a little under a sample of the RSS.
        return Life(ready, hashed, user1 - user0, sys1 - sys0, window, rss, max(child.peak_rss, rss), stop_seconds)

    @staticmethod
    def _describe(life: Life) -> str:
        hashed = f", {life.hashed / 1e6:.1f} MB hashed" if life.hashed is not None else ""
        return (f"seeding in {life.ready_seconds:.2f} s{hashed}; idle {life.user_pct:.2f}% user "
                f"{life.sys_pct:.2f}% sys of a core, {life.idle_rss / 1e6:.0f} MB; stopped in "
                f"{life.stop_seconds:.2f} s")


def _resident(pid: int) -> int:
    """Resident bytes now (VmRSS)."""
    with open(f"/proc/{pid}/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
