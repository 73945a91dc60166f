"""What drawing the TUI costs the engine: one download, headless and in the TUI, on 127.0.0.1.

Each run downloads the payload (default 1 GiB of random bytes, 256 KiB pieces, made once and kept in the
work directory like ``torrent bench``'s) from our own seeder (a ``torrent seed`` process, started afresh
for each run, with resume data kept across runs so it never hashes again), by one of:

- ``headless``: ``torrent download FILE -o OUT --no-seed`` with its output in a log file, as ``torrent
  bench`` runs it (a plain status line every few seconds);
- ``tui``: ``torrent tui FILE -o OUT --exit-when-complete`` in a real pseudo-terminal of 200x60 with
  ``TERM=xterm-256color``, the wide layout (list, detail, speed graph, log), refreshing at 1 Hz (the
  default); a thread of this script reads the terminal all the time and throws the bytes away.

Both leechers get a fresh download directory and state directory per run, the same settings (an empty
config file, so the user's is ignored, ``network.bind=127.0.0.1``, explicit ports, the seeder as
``--peer``), and both exit by themselves: the headless one when the download is complete, the TUI at the
first refresh after every torrent is complete and seeding (so up to one refresh period later).

Runs are interleaved (one of each mode a round), the order swapped each round so neither always runs
after the other, with ``--settle`` seconds of pause before each run; every download is verified against
the torrent's hashes and then deleted. Measured for the leecher process:

- whole life, from ``wait4`` when it is reaped: user and system CPU seconds, peak RSS, and the wall time
  from its start to its exit (MB/s is the payload over that), start-up and exit included, as a user pays
  them;
- the transfer: from the first byte on disk to the last (the file's allocated size, polled every 5 ms), its
  CPU read from /proc/PID/stat at both ends (10 ms ticks). This leaves out start-up (importing Textual and
  drawing the first screen is a fixed cost, not a cost per GiB) and the finish (the TUI notices completion
  at its next refresh, then both save their state and exit), which are shown apart as user CPU "before"
  the first byte and "after" the last.

MB is 10^6 bytes, GiB 2^30. The figure to judge is the TUI/headless ratio of user CPU per GiB (target: at
most 1.10), whole life and over the transfer: user CPU is what the extra Python work of drawing costs;
system CPU on this VM follows the host's memory state (see torrent/bench/processes.py) and is reported but
not judged. ``--json FILE`` keeps every run.

    .venv/bin/python benchmarks/tui_vs_headless.py --size 1G --runs 5 --settle 3
    .venv/bin/python benchmarks/tui_vs_headless.py --size 64M --runs 1 --settle 0   # a quick check
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tui_pty, beside this script
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project, when run from elsewhere

from tui_pty import PtyChild  # noqa: E402

from torrent.bench import _compile_bytecode, _prepare  # noqa: E402  (the payload and torrent, bytecode)
from torrent.bench.processes import Child  # noqa: E402
from torrent.bench.swarm import LOOPBACK_CONFIG, free_port  # noqa: E402
from torrent.codec.metainfo import Metainfo  # noqa: E402
from torrent.core import hashing  # noqa: E402
from torrent.core.errors import BenchError  # noqa: E402
from torrent.core.units import format_size, parse_size  # noqa: E402

MODES = ("headless", "tui")
GIB = 1 << 30
READY_TIMEOUT = 300.0  # the seeder hashing the payload the first time, on a slow disk
LOCAL = "network.bind=127.0.0.1"


@dataclass(frozen=True)
class Run:
    mode: str
    round: int
    position: int  # 0: first of its round
    wall_s: float  # leecher started -> exited
    data_s: float | None  # leecher started -> every byte on disk
    user_s: float
    sys_s: float
    peak_rss: int
    size: int
    terminal_bytes: int  # what the TUI wrote to its terminal (0 headless)
    transfer_s: float | None  # first byte on disk -> every byte on disk
    transfer_user_s: float | None  # user CPU over that window (/proc, 10 ms ticks)
    transfer_sys_s: float | None
    startup_user_s: float | None  # user CPU before the first byte on disk (imports, session, the first screen)

    @property
    def mb_per_s(self) -> float:
        return self.size / self.wall_s / 1e6

    @property
    def data_mb_per_s(self) -> float | None:
        return self.size / self.data_s / 1e6 if self.data_s else None

    @property
    def transfer_mb_per_s(self) -> float | None:
        return self.size / self.transfer_s / 1e6 if self.transfer_s else None

    @property
    def transfer_user_per_gib(self) -> float | None:
        return self.transfer_user_s * GIB / self.size if self.transfer_user_s is not None else None

    @property
    def user_per_gib(self) -> float:
        return self.user_s * GIB / self.size

    @property
    def sys_per_gib(self) -> float:
        return self.sys_s * GIB / self.size


class Bench:
    def __init__(self, work: Path, torrent: Path, meta: Metainfo, payload_dir: Path, refresh: float) -> None:
        self.work = work
        self.torrent = torrent
        self.meta = meta
        self.payload_dir = payload_dir
        self.refresh = refresh
        self.config = work / "tui-vs-headless-config.toml"
        self.config.write_text("# benchmarks/tui_vs_headless.py runs our client on its default settings\n"
                               + LOOPBACK_CONFIG)
        self.seeder_state = work / "seeder-resume"  # kept: later seeders start without hashing
        self.runs = 0

    def _ours(self, command: str, *options: str) -> list[str]:
        return [sys.executable, "-m", "torrent", command, str(self.torrent), *options, "--config", str(self.config),
                "--set", LOCAL]

    def seeder(self, port: int, log: Path) -> Child:
        argv = self._ours("seed", "--dir", str(self.payload_dir), "--port", str(port),
                          "--state-dir", str(self.seeder_state))
        return Child("seeder", argv, log)

    def leecher(self, mode: str, port: int, seed_port: int, out: Path, state: Path, log: Path) -> Child:
        common = ["-o", str(out), "--port", str(port), "--state-dir", str(state), "--peer", f"127.0.0.1:{seed_port}"]
        if mode == "headless":
            return Child("headless leecher", self._ours("download", *common, "--no-seed"), log)
        argv = self._ours("tui", *common, "--exit-when-complete", "--refresh", f"{self.refresh:g}")
        return PtyChild("tui leecher", argv, log, columns=200, rows=60, term="xterm-256color")

    def run(self, mode: str, round_: int, position: int) -> Run:
        self.runs += 1
        run_dir = self.work / f"run-{self.runs}-{mode}"
        shutil.rmtree(run_dir, ignore_errors=True)
        out, state = run_dir / "out", run_dir / "state"
        out.mkdir(parents=True)
        state.mkdir()
        size = self.meta.payload_length
        seed_port, leech_port = free_port(), free_port()
        seeder = self.seeder(seed_port, run_dir / "seeder.log")
        leecher: Child | None = None
        try:
            seeder.wait_for_line("listening on port", READY_TIMEOUT)
            leecher = self.leecher(mode, leech_port, seed_port, out, state, run_dir / "leecher.log")
            deadline = time.monotonic() + 120 + size / 5e6  # 5 MB/s: something is wrong
            first: tuple[float, tuple[float, float]] | None = None  # (time, CPU) at the first byte on disk
            last: tuple[float, tuple[float, float]] | None = None  # ... at the last
            target = out / self.meta.name
            while not leecher.poll():
                if last is None:
                    allocated = _allocated(target)
                    if first is None and allocated > 0:
                        first = (time.perf_counter(), leecher.cpu_now())
                    if allocated >= size:
                        last = (time.perf_counter(), leecher.cpu_now())
                if time.monotonic() > deadline:
                    raise BenchError(f"{mode}: download not finished in time ({leecher.tail()})")
                time.sleep(0.005)
            if leecher.exit_code != 0:
                raise BenchError(f"{mode}: the leecher exited with code {leecher.exit_code}: {leecher.tail()}")
        finally:
            for child in (leecher, seeder):
                if child is not None:
                    child.stop()  # SIGTERM to its PID, SIGKILL after 10 s; reaped either way
        self._verify(target, mode)
        assert leecher.ended is not None
        result = Run(mode=mode, round=round_, position=position, wall_s=leecher.ended - leecher.started,
                     data_s=(last[0] - leecher.started) if last else None, user_s=leecher.user_seconds,
                     sys_s=leecher.system_seconds, peak_rss=leecher.peak_rss, size=size,
                     terminal_bytes=getattr(leecher, "output_bytes", 0),
                     transfer_s=(last[0] - first[0]) if first and last else None,
                     transfer_user_s=(last[1][0] - first[1][0]) if first and last else None,
                     transfer_sys_s=(last[1][1] - first[1][1]) if first and last else None,
                     startup_user_s=first[1][0] if first else None)
        shutil.rmtree(run_dir, ignore_errors=True)
        return result

    def _verify(self, path: Path, mode: str) -> None:
        """Every piece against the torrent's hashes."""
        piece_length = self.meta.piece_length
        digests = []
        try:
            with open(path, "rb") as fh:
                while chunk := fh.read(piece_length * 64):
                    digests.append(hashing.sha1_pieces(chunk, piece_length))
        except OSError as exc:
            raise BenchError(f"{mode}: cannot read the download: {exc}") from exc
        if b"".join(digests) != self.meta.pieces:
            raise BenchError(f"{mode}: the downloaded data differs from the torrent")


def _allocated(path: Path) -> int:
    """Bytes written so far (the leecher's file is sparse until complete)."""
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return 0


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def summary(runs: list[Run]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for mode in MODES:
        mine = [r for r in runs if r.mode == mode]
        if not mine:
            continue
        data = [r.data_mb_per_s for r in mine if r.data_mb_per_s]
        out[mode] = {
            "runs": len(mine),
            "mb_per_s": statistics.median(r.mb_per_s for r in mine),
            "mb_per_s_min": min(r.mb_per_s for r in mine),
            "mb_per_s_max": max(r.mb_per_s for r in mine),
            "data_mb_per_s": statistics.median(data) if data else None,
            "wall_s": statistics.median(r.wall_s for r in mine),
            "user_s_per_gib": statistics.median(r.user_per_gib for r in mine),
            "user_s_per_gib_min": min(r.user_per_gib for r in mine),
            "user_s_per_gib_max": max(r.user_per_gib for r in mine),
            "sys_s_per_gib": statistics.median(r.sys_per_gib for r in mine),
            "peak_rss_mb": max(r.peak_rss for r in mine) / 1e6,
            "transfer_mb_per_s": _median([r.transfer_mb_per_s for r in mine]),
            "transfer_user_s_per_gib": _median([r.transfer_user_per_gib for r in mine]),
            "startup_user_s": _median([r.startup_user_s for r in mine]),
            "after_user_s": _median([r.user_s - r.startup_user_s - r.transfer_user_s for r in mine
                                     if r.startup_user_s is not None and r.transfer_user_s is not None]),
        }
    if "tui" in out and "headless" in out:
        tui, headless = out["tui"], out["headless"]
        out["ratio"] = {key: (tui[key] / headless[key]  # type: ignore[operator]
                              if tui[key] and headless[key] else None)
                        for key in ("user_s_per_gib", "sys_s_per_gib", "mb_per_s", "transfer_user_s_per_gib",
                                    "transfer_mb_per_s")}
    return out


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(runs: list[Run], figures: dict[str, dict[str, float | None]], size: int) -> str:
    rounds = max((r.round for r in runs), default=0)
    lines = [f"{format_size(size)} from our seeder on 127.0.0.1, {rounds} run(s) a mode; medians (min-max). "
             "CPU is the leecher's: whole life from wait4; over the transfer (first to last byte on disk, from "
             "/proc); before the first byte (start-up) and after the last (finish, exit), in seconds.", ""]
    head = (f"{'mode':<9} {'MB/s':>5} {'(min-max)':>10} {'wall s':>7} {'user s/GiB':>10} {'(min-max)':>11} "
            f"{'sys s/GiB':>9} {'peak RSS':>9} | {'transfer MB/s':>13} {'user s/GiB':>10} | "
            f"{'user s before':>13} {'after':>5}")
    lines += [head, "-" * len(head)]
    for mode in MODES:
        f = figures.get(mode)
        if f is None:
            continue
        lines.append(f"{mode:<9} {f['mb_per_s']:>5.0f} {f['mb_per_s_min']:>4.0f}-{f['mb_per_s_max']:<5.0f} "
                     f"{f['wall_s']:>7.2f} {f['user_s_per_gib']:>10.2f} "
                     f"{f['user_s_per_gib_min']:>5.2f}-{f['user_s_per_gib_max']:<5.2f} {f['sys_s_per_gib']:>9.2f} "
                     f"{f['peak_rss_mb']:>6.0f} MB | {_num(f['transfer_mb_per_s'], '13.0f')} "
                     f"{_num(f['transfer_user_s_per_gib'], '10.2f')} | {_num(f['startup_user_s'], '13.2f')} "
                     f"{_num(f['after_user_s'], '5.2f')}")
    if "ratio" in figures:
        ratio = figures["ratio"]
        user = ratio["user_s_per_gib"]
        verdict = "within" if user is not None and user <= 1.10 else "OVER"
        lines += ["", f"TUI / headless, user CPU per GiB: x{_num(user, '.3f')} whole life ({verdict} the 1.10 "
                      f"target), x{_num(ratio['transfer_user_s_per_gib'], '.3f')} over the transfer; "
                      f"sys CPU per GiB x{_num(ratio['sys_s_per_gib'], '.3f')}; MB/s x{_num(ratio['mb_per_s'], '.3f')}"
                      f" (transfer x{_num(ratio['transfer_mb_per_s'], '.3f')})"]
    lines += ["", "runs, in the order they ran:"]
    for r in runs:
        lines.append(f"  round {r.round} #{r.position + 1} {r.mode:<9} {r.mb_per_s:5.0f} MB/s  wall {r.wall_s:6.2f} s"
                     f"  user {r.user_s:6.2f} s  sys {r.sys_s:5.2f} s  RSS {r.peak_rss / 1e6:4.0f} MB"
                     f"  | transfer {_num(r.transfer_s, '5.2f')} s {_num(r.transfer_mb_per_s, '4.0f')} MB/s"
                     f" user {_num(r.transfer_user_s, '5.2f')} s, before {_num(r.startup_user_s, '4.2f')} s"
                     + (f"  terminal {r.terminal_bytes / 1e6:.1f} MB" if r.mode == "tui" else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1G", help="payload size (default 1G)")
    parser.add_argument("--piece-size", default="256K", help="piece size (default 256K)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each mode (default 5)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of pause before each run (default 3)")
    parser.add_argument("--refresh", type=float, default=1.0, help="the TUI's refreshes a second (default 1)")
    parser.add_argument("--modes", default=",".join(MODES), help="modes to run, comma-separated (default both)")
    parser.add_argument("--dir", help="work directory, kept with its payload for the next run (default: a new "
                                      "temporary directory, deleted)")
    parser.add_argument("--json", metavar="FILE", help="also write every run and the summary to FILE")
    args = parser.parse_args(argv)
    size, piece_size = parse_size(args.size), parse_size(args.piece_size)
    modes = [m for m in args.modes.split(",") if m]
    if args.runs < 1 or not modes or any(m not in MODES for m in modes):
        parser.error(f"--runs must be at least 1 and --modes a list of {', '.join(MODES)}")

    _compile_bytecode()  # torrent/, as pip would at install
    compileall.compile_dir(Path(__file__).resolve().parent.parent / "tui", quiet=2)
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="tui-vs-headless-"))
    work.mkdir(parents=True, exist_ok=True)
    runs: list[Run] = []
    try:
        print(f"payload: {format_size(size)} in {work}", file=sys.stderr, flush=True)
        meta, torrent, payload_dir = _prepare(work, size, piece_size)
        bench = Bench(work, torrent, meta, payload_dir, args.refresh)
        for n in range(1, args.runs + 1):
            shift = (n - 1) % len(modes)  # each round starts with the other mode
            for position, mode in enumerate(modes[shift:] + modes[:shift]):
                time.sleep(args.settle)
                run = bench.run(mode, n, position)
                runs.append(run)
                print(f"round {n}/{args.runs} {mode:<8}: {run.mb_per_s:.0f} MB/s, wall {run.wall_s:.2f} s, "
                      f"user {run.user_s:.2f} s, sys {run.sys_s:.2f} s, RSS {run.peak_rss / 1e6:.0f} MB",
                      file=sys.stderr, flush=True)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    figures = summary(runs)
    print(table(runs, figures, size))
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "summary": figures,
                                               "runs": [asdict(r) for r in runs]}, indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"tui_vs_headless: error: {exc}", file=sys.stderr)
        sys.exit(1)
