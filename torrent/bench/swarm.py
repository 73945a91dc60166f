"""One bench run: seeders and leechers as separate processes on 127.0.0.1,
timed from the leechers' start to the last one's exit, then the bytes checked.

Each side is a whole process, started the way a user starts it, so the
figures include what a user waits for (start-up, verification, exit) and
nothing the bench itself does.
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from torrent.bench import lt_peer
from torrent.bench.processes import Child
from torrent.codec.metainfo import Metainfo
from torrent.core import hashing
from torrent.core.errors import BenchError

OURS = "ours"
LIBTORRENT = "libtorrent"
READY_TIMEOUT = 300.0  # a seeder hashing a large payload on a slow disk


# Discovery kept on 127.0.0.1: no public DHT router, no multicast, no router discovery (the tests that
# run ``python -m torrent`` use it too, some with a DHT of their own).
LOOPBACK_CONFIG = """
[discovery]
dht_bootstrap = ""
lsd = false
port_map = false
"""
# The bench's peers: peers only from the command line, no DHT node at all, as lt_peer.py's
# LOOPBACK_SETTINGS for libtorrent: a bench measures the transfer alone.
BENCH_CONFIG = """
[discovery]
dht = false
lsd = false
port_map = false
"""


TRANSPORTS = ("tcp", "utp")


def link_config(encrypted: bool, transport: str) -> str:
    """Our settings for the bench's link, as lt_peer.py configures libtorrent: one transport alone (our
    default dials uTP first, which a TCP-only libtorrent would leave unanswered for utp_connect_timeout),
    and RC4 over every byte if asked."""
    if transport not in TRANSPORTS:
        raise BenchError(f"unknown transport {transport!r}: choose from {', '.join(TRANSPORTS)}")
    lines = [f'transports = "{transport}"'] + (['encryption = "require"'] if encrypted else [])
    return "\n[network]\n" + "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Scenario:
    seeder: str
    leecher: str
    observed: float = 0.0  # our processes build every API snapshot this many times a second

    @property
    def key(self) -> str:
        short = {OURS: "ours", LIBTORRENT: "lt"}
        return f"{short[self.seeder]}-{short[self.leecher]}" + (f"@{self.observed:g}hz" if self.observed else "")

    @property
    def title(self) -> str:
        return f"{self.seeder} → {self.leecher}" + (f" (observed {self.observed:g} Hz)" if self.observed else "")

    @property
    def has_ours(self) -> bool:
        return OURS in (self.seeder, self.leecher)

    @property
    def needs_libtorrent(self) -> bool:
        return LIBTORRENT in (self.seeder, self.leecher)


SCENARIOS = (Scenario(OURS, OURS), Scenario(LIBTORRENT, OURS), Scenario(OURS, LIBTORRENT),
             Scenario(LIBTORRENT, LIBTORRENT))
REFERENCE = Scenario(LIBTORRENT, LIBTORRENT)


@dataclass(frozen=True)
class RunResult:
    seconds: float  # first leecher started → last leecher exited
    bytes: int  # payload bytes downloaded, over all leechers
    leecher_user: float  # user CPU seconds, all leechers, whole process lives
    leecher_sys: float  # system CPU seconds, likewise
    seeder_user: float  # user CPU seconds, all seeders, while the leechers ran
    seeder_sys: float
    leecher_rss: int  # peak resident bytes, the largest leecher
    seeder_rss: int

    @property
    def bytes_per_second(self) -> float:
        return self.bytes / self.seconds

    @property
    def leecher_cpu(self) -> float:
        return self.leecher_user + self.leecher_sys

    @property
    def seeder_cpu(self) -> float:
        return self.seeder_user + self.seeder_sys


def libtorrent_python() -> str | None:
    """An interpreter that can import libtorrent: ours (PyPI wheel) first,
    then Debian's python3-libtorrent."""
    if importlib.util.find_spec("libtorrent") is not None:
        return sys.executable
    system = shutil.which("python3", path="/usr/bin")
    if system and subprocess.run([system, "-c", "import libtorrent"], check=False, capture_output=True).returncode == 0:
        return system
    return None


def libtorrent_version(lt_python: str | None) -> str | None:
    """What runs the libtorrent peers, as the report names it: libtorrent's version and the Python under it."""
    if lt_python is None:
        return None
    done = subprocess.run([lt_python, lt_peer.__file__, "version"], check=False, capture_output=True, text=True,
                          timeout=60)
    return done.stdout.strip() if done.returncode == 0 else f"{lt_python} (its version unreadable)"


_PORTS = random.SystemRandom()


def free_port(taken: Collection[int] = ()) -> int:
    """A port free for TCP and UDP (uTP) on every address, not in ``taken``, and below the kernel's range
    for outgoing connections: a port picked from that range could go to a leecher's dial before the peer
    it was picked for binds it (a bench of 16 seeders lost one so)."""
    low = _ephemeral_low()
    for _ in range(200):
        port = _PORTS.randrange(10_000, low) if low > 11_000 else _PORTS.randrange(low, 65_536)
        if port in taken:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                tcp.bind(("0.0.0.0", port))
                udp.bind(("0.0.0.0", port))
        except OSError:
            continue
        return port
    raise BenchError("no port free for both TCP and UDP: is the machine out of ports?")


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


class BenchSwarm:
    """Runs scenarios over one payload and torrent, in ``work_dir``."""

    def __init__(self, metainfo: Metainfo, torrent: Path, payload_dir: Path, work_dir: Path, *,
                 seeders: int = 1, leechers: int = 1, pure_python: bool = False,
                 lt_python: str | None = None, encrypted: bool = False, transport: str = "tcp",
                 seeder_max_up: int = 0) -> None:
        self.metainfo = metainfo
        self.torrent = torrent
        self.payload_dir = payload_dir
        self.work_dir = work_dir
        self.seeders = seeders
        self.leechers = leechers
        self.lt_python = lt_python
        # Our client runs on its defaults, whatever the user's config file says, but for the link asked
        # for: RC4 required, or uTP only, both sides configured alike (lt_peer.py's flags).
        self._config = work_dir / "bench-config.toml"
        self._config.write_text("# torrent bench runs our client on its default settings\n" + BENCH_CONFIG
                                + link_config(encrypted, transport))
        self._lt_flags = (["--encrypted"] if encrypted else []) + (["--utp"] if transport == "utp" else [])
        self.seeder_max_up = seeder_max_up  # bytes/s each seeder may upload; 0: no cap
        self._env = dict(os.environ)
        if pure_python:
            self._env["TORRENT_PURE_PYTHON"] = "1"
        self._runs = 0

    def run(self, scenario: Scenario, progress: Callable[[int, int], None] | None = None) -> RunResult:
        """One complete download by every leecher; raises BenchError if any
        peer fails, hangs, or ends with bytes that do not match the torrent."""
        self._runs += 1
        run_dir = self.work_dir / f"run-{self._runs}"
        shutil.rmtree(run_dir, ignore_errors=True)  # left by a bench that was interrupted
        run_dir.mkdir()
        size = self.metainfo.payload_length
        ports: list[int] = []
        for _ in range(self.seeders + self.leechers):
            ports.append(free_port(ports))
        seed_ports, leech_ports = ports[:self.seeders], ports[self.seeders:]
        seeders = [self._seeder(scenario, i, port, run_dir) for i, port in enumerate(seed_ports)]
        leechers: list[Child] = []
        try:
            # Ready means checked and serving: libtorrent's "ready" comes once it is seeding; ours says how
            # many pieces it verified once it listens, and only a whole payload will do.
            pieces = self.metainfo.num_pieces
            for child in seeders:
                child.wait_for_line("ready" if scenario.seeder == LIBTORRENT else
                                    f"listening on port {child.port}, {pieces} of {pieces} pieces verified",
                                    READY_TIMEOUT)
            seeder_cpu_before = _cpu_sum(seeders)
            out_dirs = []
            for i, port in enumerate(leech_ports):
                out = run_dir / f"leecher-{i}"
                out.mkdir()
                out_dirs.append(out)
                peers = [f"127.0.0.1:{p}" for p in seed_ports + leech_ports if p != port]
                leechers.append(self._leecher(scenario, i, port, out, peers, run_dir))
            started = min(child.started for child in leechers)
            deadline = time.monotonic() + 60 + size * self.leechers / 5e6  # 5 MB/s: something is wrong
            polls = 0
            while not all(child.poll() for child in leechers):
                # Reaping every 10 ms keeps the timing error under 1% of a 1 s run.
                polls += 1
                if progress is not None and polls % 10 == 0:
                    progress(sum(_allocated(out) for out in out_dirs), size * self.leechers)
                if time.monotonic() > deadline:
                    raise BenchError(f"{scenario.title}: download not finished in time ({leechers[0].tail()})")
                time.sleep(0.01)
            ended = max(child.ended for child in leechers)  # type: ignore[type-var]
            seeder_cpu_after = _cpu_sum(seeders)
            for child in leechers:
                if child.exit_code != 0:
                    raise BenchError(f"{scenario.title}: {child.role} exited with code {child.exit_code}: "
                                     f"{child.tail()}")
        finally:
            for child in leechers + seeders:
                child.stop()
        for out in out_dirs:
            self._verify(out / self.metainfo.name, scenario)
        shutil.rmtree(run_dir, ignore_errors=True)
        return RunResult(seconds=ended - started, bytes=size * self.leechers,
                         leecher_user=sum(c.user_seconds for c in leechers),
                         leecher_sys=sum(c.system_seconds for c in leechers),
                         seeder_user=seeder_cpu_after[0] - seeder_cpu_before[0],
                         seeder_sys=seeder_cpu_after[1] - seeder_cpu_before[1],
                         leecher_rss=max(c.peak_rss for c in leechers), seeder_rss=max(c.peak_rss for c in seeders))

    def _seeder(self, scenario: Scenario, i: int, port: int, run_dir: Path) -> Child:
        log = run_dir / f"seeder-{i}.log"
        cap = self.seeder_max_up
        if scenario.seeder == LIBTORRENT:
            flags = [f"--max-up={cap}"] if cap else []
            return Child(f"libtorrent seeder {i}", self._lt_argv("seed", self.payload_dir, port, *flags), log,
                         port=port)
        # The resume directory outlives the run: later runs start seeding
        # without hashing the payload again, as a user's seeder would.
        resume = self.work_dir / f"seeder-resume-{i}"
        argv = self._ours_argv(scenario, "seed", "--dir", str(self.payload_dir), "--port", str(port),
                               "--state-dir", str(resume), *(["--max-up", str(cap)] if cap else []))
        return Child(f"our seeder {i}", argv, log, self._env, port=port)

    def _leecher(self, scenario: Scenario, i: int, port: int, out: Path, peers: list[str], run_dir: Path) -> Child:
        log = run_dir / f"leecher-{i}.log"
        if scenario.leecher == LIBTORRENT:
            return Child(f"libtorrent leecher {i}", self._lt_argv("leech", out, port, *peers), log)
        argv = self._ours_argv(scenario, "download", "-o", str(out), "--no-seed", "--port", str(port),
                               "--state-dir", str(run_dir / f"leecher-state-{i}"))
        for peer in peers:
            argv += ["--peer", peer]
        return Child(f"our leecher {i}", argv, log, self._env)

    def _ours_argv(self, scenario: Scenario, command: str, *options: str) -> list[str]:
        # Not --quiet: the seeder's "listening on port" line says it is ready.
        # Status lines go to the log file every few seconds, which costs nothing.
        snapshots = ["--snapshots", f"{scenario.observed:g}"] if scenario.observed else []
        return [sys.executable, "-m", "torrent", command, str(self.torrent), *options, *snapshots,
                "--config", str(self._config)]

    def _lt_argv(self, mode: str, save: Path, port: int, *peers: str) -> list[str]:
        if self.lt_python is None:
            raise BenchError("libtorrent is not installed: pip install 'torrent[bench]' "
                             "(or apt install python3-libtorrent)")
        return [self.lt_python, lt_peer.__file__, mode, str(self.torrent), str(save), str(port), *self._lt_flags,
                *peers]

    def _verify(self, path: Path, scenario: Scenario) -> None:
        """Every piece of the download against the torrent's hashes."""
        piece_length = self.metainfo.piece_length
        batch = piece_length * 64
        expected = self.metainfo.pieces
        digests = []
        try:
            with open(path, "rb") as fh:
                while chunk := fh.read(batch):
                    digests.append(hashing.sha1_pieces(chunk, piece_length))
        except OSError as exc:
            raise BenchError(f"{scenario.title}: cannot read the download: {exc}") from exc
        got = b"".join(digests)
        if got != expected:
            bad = next((i for i in range(0, len(expected), 20) if got[i:i + 20] != expected[i:i + 20]), 0) // 20
            raise BenchError(f"{scenario.title}: downloaded data differs from the torrent (first bad piece {bad})")


def _cpu_sum(children: list[Child]) -> tuple[float, float]:
    """(user, system) CPU seconds of running children, summed."""
    times = [child.cpu_now() for child in children]
    return sum(t[0] for t in times), sum(t[1] for t in times)


def _allocated(directory: Path) -> int:
    """Bytes the leecher has written so far (its files are sparse)."""
    total = 0
    for entry in os.scandir(directory):
        if entry.is_file(follow_symlinks=False):
            total += entry.stat(follow_symlinks=False).st_blocks * 512
    return total
