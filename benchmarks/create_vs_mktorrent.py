"""Time ``torrent create`` against ``mktorrent -t 2`` on the same file, in one run.

Both commands run as whole processes (start-up included), alternating, on a
payload already in the page cache, so the ratio is fair on a shared machine:

    .venv/bin/python benchmarks/create_vs_mktorrent.py --size 1G --runs 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from torrent.core.units import format_size, parse_size


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1G")
    parser.add_argument("--piece-size", default="256K")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not shutil.which("mktorrent"):
        print("mktorrent is not installed (apt-get install mktorrent)", file=sys.stderr)
        return 2
    size, piece = parse_size(args.size), parse_size(args.piece_size)
    log2 = piece.bit_length() - 1
    with tempfile.TemporaryDirectory(prefix="bench-create-") as tmp:
        payload = Path(tmp, "payload.bin")
        with open(payload, "wb") as fh:
            for _ in range(0, size, 1 << 24):
                fh.write(os.urandom(min(1 << 24, size - fh.tell())))
        ours_cmd = [sys.executable, "-m", "torrent", "create", str(payload), "--piece-size", str(piece),
                    "--threads", str(args.threads), "-q", "-f", "-o", str(Path(tmp, "ours.torrent"))]
        mk_cmd = ["mktorrent", "-t", str(args.threads), "-l", str(log2), "-o", str(Path(tmp, "mk.torrent")),
                  str(payload)]
        timed(ours_cmd)  # warm the page cache and the interpreter's bytecode cache
        ours, mk = [], []
        for _ in range(args.runs):
            Path(tmp, "mk.torrent").unlink(missing_ok=True)
            mk.append(timed(mk_cmd))
            ours.append(timed(ours_cmd))
        from torrent.codec import metainfo

        same = metainfo.load(Path(tmp, "ours.torrent")).pieces == metainfo.load(Path(tmp, "mk.torrent")).pieces
    o, m = statistics.median(ours), statistics.median(mk)
    print(f"payload {format_size(size)}, pieces {format_size(piece)}, {args.threads} threads, {args.runs} runs "
          f"(median; min..max)")
    print(f"  torrent create   {o:6.3f} s  {size / o / 1e6:7.0f} MB/s   ({min(ours):.3f}..{max(ours):.3f})")
    print(f"  mktorrent -t {args.threads}    {m:6.3f} s  {size / m / 1e6:7.0f} MB/s   ({min(mk):.3f}..{max(mk):.3f})")
    print(f"  speed ratio torrent/mktorrent: {m / o:.2f}x   piece hashes identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
