"""What one hostile peer costs a seeder, attack by attack.

Each attack runs against a fresh ``torrent seed`` process on 127.0.0.1 (any
interpreter: ``--python`` points at another checkout's venv to measure the
code before a fix). The kernel's counters for the seeder give the figures:

- RSS: peak resident memory during the attack, less the idle figure before it;
- CPU: user + system seconds during the attack, per 10 MB the attacker sent;
- disk: bytes the seeder read from files (``rchar`` less what it read from its
  sockets, which is what the attacker sent), against the bytes the attacker
  requested and did not cancel;
- honest: seconds for an honest leecher (our CLI, always this checkout's) to
  download the whole torrent while the attacker is still connected.

The targets (issue 13): RSS within 32 MiB of idle, under 1 CPU second per
10 MB sent, disk reads under twice the bytes requested and not cancelled.

    .venv/bin/python benchmarks/attacks.py                     # this checkout
    .venv/bin/python benchmarks/attacks.py --python /tmp/old/.venv/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from torrent.bench.swarm import LOOPBACK_CONFIG
from torrent.codec import wire
from torrent.codec.metainfo import Metainfo, parse

MB = 1_000_000
MiB = 1 << 20
BLOCK = 16384


@dataclass
class Figures:
    attack: str
    sent: int = 0  # bytes the attacker got into the seeder's socket
    requested: int = 0  # bytes requested and not cancelled
    rss_idle: int = 0
    rss_peak: int = 0
    cpu: float = 0.0
    disk: int = 0
    seconds: float = 0.0  # how long the attack ran
    honest: float | None = None  # seconds for the honest download; None: it never finished
    dropped: bool = False  # the seeder closed the attacker's connection

    def row(self) -> str:
        per_10mb = self.cpu / max(self.sent, 1) * 10 * MB
        disk_ratio = f"{self.disk / self.requested:7.2f}" if self.requested else f"{self.disk / MiB:5.1f}M"
        honest = f"{self.honest:6.2f}" if self.honest is not None else " never"
        return (f"{self.attack:<16} {self.sent / MB:8.2f} {(self.rss_peak - self.rss_idle) / MiB:8.1f} "
                f"{self.cpu:6.2f} {per_10mb:8.2f} {self.disk / MiB:9.1f} {disk_ratio:>8} {honest:>7} "
                f"{'yes' if self.dropped else 'no':>7} {self.seconds:6.1f}")


HEADER = (f"{'attack':<16} {'sent MB':>8} {'ΔRSS MiB':>8} {'CPU s':>6} {'s/10MB':>8} {'disk MiB':>9} "
          f"{'disk/req':>8} {'honest':>7} {'dropped':>7} {'time':>6}")


class Seeder:
    """A ``torrent seed`` process and the kernel's counters for it."""

    def __init__(self, python: str, torrent: Path, data: Path, work: Path) -> None:
        self.port = _free_port()
        config = work / "config.toml"
        config.write_text(LOOPBACK_CONFIG)
        self.log = open(work / "seeder.log", "wb")
        self.proc = subprocess.Popen(
            [python, "-m", "torrent", "seed", str(torrent), "--dir", str(data), "--port", str(self.port),
             "--bind", "127.0.0.1", "--config", str(config), "--state-dir", str(work / "state"), "-q"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=work)  # not ours

    def rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def cpu(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rchar(self) -> int:
        with open(f"/proc/{self.proc.pid}/io") as fh:
            return int(next(line for line in fh if line.startswith("rchar:")).split()[1])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Attacker:
    """One raw connection speaking the wire protocol, counting what it sent."""

    def __init__(self, meta: Metainfo, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.meta = meta
        self.reader = reader
        self.writer = writer
        self.queued = 0
        self.port = 0
        self.background: list[asyncio.Future[None]] = []  # stopped after the honest download

    @classmethod
    async def connect(cls, meta: Metainfo, port: int, *, rcvbuf: int | None = None) -> Attacker:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        self = cls(meta, reader, writer)
        self.port = port
        self.write(wire.Handshake(meta.info_hash, b"-AT0001-" + os.urandom(12)).to_bytes())
        return self

    def write(self, data: bytes) -> None:
        self.writer.write(data)
        self.queued += len(data)

    @property
    def sent(self) -> int:
        """Bytes that left this process (the rest waits in our own buffer)."""
        return self.queued - self.writer.transport.get_write_buffer_size()

    @property
    def closed(self) -> bool:
        return self.writer.transport.is_closing() or self.reader.at_eof()

    async def until_unchoked(self) -> None:
        self.write(wire.build_interested())
        parser = wire.WireParser(num_pieces=self.meta.num_pieces)
        while not any(isinstance(e, wire.Unchoke) for e in parser.feed(await self._read())):
            pass

    async def _read(self) -> bytes:
        data = await asyncio.wait_for(self.reader.read(1 << 20), 30)
        if not data:
            raise ConnectionError("the seeder closed the connection")
        return data

    async def flush(self, seconds: float) -> None:
        """Push what is queued for at most ``seconds`` (a seeder that stopped reading leaves it queued)."""
        try:
            await asyncio.wait_for(self.writer.drain(), seconds)
        except (asyncio.TimeoutError, ConnectionError):
            pass

    async def drain_replies(self, until: bytes, seconds: float) -> None:
        got = b""
        deadline = time.monotonic() + seconds
        while until not in got[-(1 << 20):] and time.monotonic() < deadline:
            got = got[-(1 << 20):] + await self._read()

    def close(self) -> None:
        for task in self.background:
            task.cancel()
        self.writer.close()


# ---- the attacks: each returns the bytes it requested and left standing ------------------------------------


async def request_cancel(a: Attacker, rng: random.Random) -> int:
    """Requests for blocks all over the torrent, each cancelled at once (issue 13, 1)."""
    await a.until_unchoked()
    n = a.meta.num_pieces
    for _ in range(4):
        chunk = []
        for _ in range(10_000):
            index = rng.randrange(n)
            begin = rng.randrange(a.meta.geometry.piece_size(index) // BLOCK) * BLOCK
            chunk.append(wire.build_request(index, begin, BLOCK) + wire.build_cancel(index, begin, BLOCK))
        a.write(b"".join(chunk))
        await a.flush(30)
    a.write(wire.build_request(0, 0, BLOCK))  # one honest request: answered once all before it was handled
    await a.drain_replies(wire.build_piece_header(0, 0, BLOCK), 30)
    return BLOCK


async def sparse_requests(a: Attacker, rng: random.Random) -> int:
    """One block from each piece, pieces in random order, replies read: every request is honest, but a
    whole-piece read for each would read the torrent many times over for a trickle of requests."""
    await a.until_unchoked()
    n = a.meta.num_pieces
    order = [i for _ in range(2) for i in rng.sample(range(n), n)]
    for start in range(0, len(order), 64):
        batch = order[start:start + 64]
        begins = [rng.randrange(a.meta.geometry.piece_size(i) // BLOCK) * BLOCK for i in batch]
        a.write(b"".join(wire.build_request(i, b, BLOCK) for i, b in zip(batch, begins)))
        await a.drain_replies(wire.build_piece_header(batch[-1], begins[-1], BLOCK), 30)
    return len(order) * BLOCK


async def choked_flood(a: Attacker, rng: random.Random) -> int:
    """Requests while choked (each answered with a reject), never reading the answers (issue 13, 2)."""
    a.write(wire.build_request(1, 0, BLOCK) * 2_000_000)
    await a.flush(20)
    return 0


async def interest_toggle(a: Attacker, rng: random.Random) -> int:
    """Interested / not interested, hundreds of thousands of times, never reading (issue 13, 2)."""
    a.write((wire.build_interested() + wire.build_not_interested()) * 2_000_000)
    await a.flush(20)
    return 0


CROWD = 60  # the seeder's default torrent.max_peers
CROWD_IDLE = 61.0  # seconds the crowd idles before the honest leecher comes: past torrent.evict_idle_after


async def idle_crowd(a: Attacker, rng: random.Random) -> int:
    """As many connections as the seeder takes, each interested and then sending only keep-alives, reading
    what it is sent (so no back-pressure applies): slot exhaustion (issue 13, 3)."""

    async def idle(peer: Attacker) -> None:
        peer.write(wire.build_interested())
        while True:
            peer.write(wire.build_keepalive())
            try:
                if not await asyncio.wait_for(peer.reader.read(1 << 16), 5):
                    return
            except asyncio.TimeoutError:
                pass

    crowd = [a] + [await Attacker.connect(a.meta, a.port) for _ in range(CROWD - 1)]
    a.background = [asyncio.ensure_future(idle(peer)) for peer in crowd]
    await asyncio.sleep(CROWD_IDLE)
    return 0


ATTACKS: dict[str, Callable[[Attacker, random.Random], Awaitable[int]]] = {
    "request-cancel": request_cancel,
    "sparse-requests": sparse_requests,
    "choked-flood": choked_flood,
    "interest-toggle": interest_toggle,
    "idle-crowd": idle_crowd,
}
NEVER_READS = {"choked-flood", "interest-toggle"}


# ---- running them --------------------------------------------------------------------------------------------


async def honest_download(torrent: Path, port: int, work: Path, timeout: float) -> float | None:
    """Seconds for this checkout's CLI to download everything from the seeder; None if it did not finish."""
    config = work / "leecher.toml"
    config.write_text(LOOPBACK_CONFIG)
    out = work / "honest"
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "torrent", "download", str(torrent), "-o", str(out), "--no-seed", "-q",
        "--peer", f"127.0.0.1:{port}", "--port", "0", "--bind", "127.0.0.1", "--config", str(config),
        "--state-dir", str(work / "honest-state"), stdin=subprocess.DEVNULL, cwd=work,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        code = await asyncio.wait_for(proc.wait(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return time.perf_counter() - started if code == 0 else None


async def wait_listening(seeder: Seeder, meta: Metainfo, timeout: float = 60) -> None:
    """Until the seeder answers a handshake with its bitfield (it has checked its data)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if seeder.proc.poll() is not None:
            raise SystemExit(f"the seeder exited with code {seeder.proc.returncode}")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", seeder.port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.write(wire.Handshake(meta.info_hash, b"-PR0001-" + os.urandom(12)).to_bytes())
        try:
            data = await asyncio.wait_for(reader.read(1 << 16), 5)
        except (asyncio.TimeoutError, ConnectionError):
            data = b""
        writer.close()
        if len(data) > 68:
            return
        await asyncio.sleep(0.1)
    raise SystemExit("the seeder never answered")


async def run_attack(name: str, python: str, torrent: Path, meta: Metainfo, data: Path, work: Path,
                     seed: int) -> Figures:
    seeder = Seeder(python, torrent, data, work)
    figures = Figures(name)
    try:
        await wait_listening(seeder, meta)
        await asyncio.sleep(1.0)  # let start-up settle before the idle figure
        figures.rss_idle = figures.rss_peak = seeder.rss()
        cpu0, rchar0 = seeder.cpu(), seeder.rchar()
        done = asyncio.Event()

        async def sample() -> None:
            while not done.is_set():
                figures.rss_peak = max(figures.rss_peak, seeder.rss())
                await asyncio.sleep(0.02)

        sampler = asyncio.ensure_future(sample())
        started = time.perf_counter()
        attacker = await Attacker.connect(meta, seeder.port, rcvbuf=4096 if name in NEVER_READS else None)
        try:
            figures.requested = await ATTACKS[name](attacker, random.Random(seed))
        except ConnectionError:
            pass
        figures.seconds = time.perf_counter() - started
        await asyncio.sleep(0.5)  # what it queued is handled
        figures.cpu = seeder.cpu() - cpu0
        figures.sent = attacker.sent
        figures.disk = max(0, seeder.rchar() - rchar0 - figures.sent)
        done.set()
        await sampler
        figures.rss_peak = max(figures.rss_peak, seeder.rss())
        figures.honest = await honest_download(torrent, seeder.port, work, timeout=60)
        figures.dropped = attacker.closed
        attacker.close()
    finally:
        seeder.stop()
    return figures


def make_payload(work: Path, size: int, piece: int) -> tuple[Path, Path, Metainfo]:
    data = work / "data"
    data.mkdir()
    rng = random.Random(1)
    with open(data / "payload.bin", "wb") as fh:
        left = size
        while left:
            chunk = min(left, 8 * MiB)
            fh.write(rng.randbytes(chunk))
            left -= chunk
    torrent = work / "payload.torrent"
    subprocess.run([sys.executable, "-m", "torrent", "create", str(data / "payload.bin"), "-o", str(torrent),
                    "--piece-size", str(piece), "-q"], check=True, cwd=work)
    return torrent, data, parse(torrent.read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the seeder's interpreter (another checkout)")
    parser.add_argument("--only", nargs="*", choices=sorted(ATTACKS), help="attacks to run (default: all)")
    parser.add_argument("--size", type=int, default=128, help="torrent size in MiB")
    parser.add_argument("--piece", type=int, default=1024, help="piece size in KiB")
    parser.add_argument("--seed", type=int, default=13, help="random seed of the attacks")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    names = args.only or list(ATTACKS)
    results = []
    with tempfile.TemporaryDirectory(prefix="attacks-") as tmp:
        work = Path(tmp)
        torrent, data, meta = make_payload(work, args.size * MiB, args.piece * 1024)
        print(f"seeder: {args.python}; torrent {args.size} MiB in {meta.num_pieces} pieces of {args.piece} KiB")
        print(HEADER, flush=True)
        for k, name in enumerate(names):
            run_dir = work / f"run-{k}"
            run_dir.mkdir()
            time.sleep(2)  # the run before leaves the page cache and CPU busy for a moment
            figures = asyncio.run(run_attack(name, args.python, torrent, meta, data, run_dir, args.seed))
            results.append(figures)
            print(figures.row(), flush=True)
    if args.json:
        args.json.write_text(json.dumps([asdict(f) for f in results], indent=1))
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
