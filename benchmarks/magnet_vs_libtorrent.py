"""A magnet link and nothing else: how fast our leecher and libtorrent's find a libtorrent seeder through
the DHT, fetch the metadata and complete the download, on 127.0.0.1 in the same run.

Each run starts afresh: a DHT router (our ``DhtNode``, in this process), a libtorrent seeder bootstrapped
from it (``magnet_peer.py lt-seed``, waited on until it has checked its data and its announce reached the
router), then one leecher given only ``magnet:?xt=urn:btih:…`` and the router's address
(``magnet_peer.py lt-leech`` or ``ours-leech``), timed inside its process from the moment the magnet is
added: to the first connected peer, to the verified metadata, to the last piece. Runs alternate between
the two leechers, the order swapped each round, with ``--settle`` seconds of pause before each; every
download is checked against the torrent's hashes.

    .venv/bin/python benchmarks/magnet_vs_libtorrent.py --size 24M --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from torrent.bench.swarm import free_port  # noqa: E402
from torrent.cli.demo import make_payload  # noqa: E402
from torrent.codec.metainfo import parse  # noqa: E402
from torrent.core import hashing  # noqa: E402
from torrent.core.units import parse_size  # noqa: E402
from torrent.create import create_torrent  # noqa: E402
from torrent.dht.node import DhtNode  # noqa: E402

PEER = str(Path(__file__).resolve().parent / "magnet_peer.py")
MARKS = ("first_peer", "metadata", "complete")
LEECHERS = ("lt", "ours")


async def one_run(leecher: str, torrent: Path, meta, payload_parent: Path, work: Path, settle: float) -> dict:
    router = DhtNode()
    host, port = await router.open("127.0.0.1", 0)
    route = f"{host}:{port}"
    seed_port, leech_port = free_port(), free_port()
    seeder = await asyncio.create_subprocess_exec(sys.executable, PEER, "lt-seed", str(torrent),
                                                  str(payload_parent), str(seed_port), route,
                                                  stdout=asyncio.subprocess.PIPE)
    out = work / f"out-{leecher}"
    shutil.rmtree(out, ignore_errors=True)
    try:
        assert seeder.stdout is not None
        line = await asyncio.wait_for(seeder.stdout.readline(), 120)
        if line.strip() != b"ready":
            raise SystemExit(f"the libtorrent seeder did not start: {line!r}")
        deadline = time.monotonic() + 60
        while not router.store.peers(meta.info_hash, time.monotonic()):
            if time.monotonic() > deadline:
                raise SystemExit("the libtorrent seeder never announced to the router")
            await asyncio.sleep(0.05)
        await asyncio.sleep(settle)
        magnet = f"magnet:?xt=urn:btih:{meta.info_hash_hex}"
        proc = await asyncio.create_subprocess_exec(sys.executable, PEER, f"{leecher}-leech", magnet, str(out),
                                                    str(leech_port), route, stdout=asyncio.subprocess.PIPE)
        stdout, _ = await asyncio.wait_for(proc.communicate(), 300)
        if proc.returncode != 0:
            raise SystemExit(f"the {leecher} leecher failed (exit {proc.returncode})")
        marks = json.loads(stdout.decode().strip().splitlines()[-1])
    finally:
        seeder.kill()
        await seeder.wait()
        router.close()
    verify(out, meta)
    shutil.rmtree(out, ignore_errors=True)
    return marks


def verify(out: Path, meta) -> None:
    data = b"".join((out.joinpath(*f.path)).read_bytes() for f in meta.files)
    size = meta.piece_length
    for index in range(meta.num_pieces):
        if hashing.sha1(data[index * size:(index + 1) * size]) != meta.piece_hash(index):
            raise SystemExit(f"piece {index} of the download is wrong")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="24M")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="magnet-bench-"))
    try:
        payload_parent = work / "seed"
        make_payload(payload_parent / "payload", parse_size(args.size), files=1, seed=7)
        raw = create_torrent(payload_parent / "payload", piece_length=256 * 1024)
        torrent = work / "payload.torrent"
        torrent.write_bytes(raw)
        meta = parse(raw)
        results: dict[str, list[dict]] = {name: [] for name in LEECHERS}
        for round_ in range(args.runs):
            order = LEECHERS if round_ % 2 == 0 else LEECHERS[::-1]
            for leecher in order:
                marks = uvloop.run(one_run(leecher, torrent, meta, payload_parent, work, args.settle))
                results[leecher].append(marks)
                print(f"round {round_ + 1} {leecher:4}: " + "  ".join(f"{m} {marks[m]:.3f} s" for m in MARKS),
                      file=sys.stderr, flush=True)
        print(f"\n{args.size} payload, {args.runs} runs each, seconds from adding the magnet "
              "(median, min-max); ratio = ours / libtorrent (below 1: ours is faster)")
        print(f"{'':12}" + "".join(f"{m:>24}" for m in MARKS))
        medians = {}
        for leecher in LEECHERS:
            cells = []
            for m in MARKS:
                values = [r[m] for r in results[leecher]]
                medians[(leecher, m)] = statistics.median(values)
                cells.append(f"{medians[(leecher, m)]:.3f} ({min(values):.3f}-{max(values):.3f})")
            print(f"{leecher + ' leecher':12}" + "".join(f"{c:>24}" for c in cells))
        print(f"{'ratio':12}" + "".join(f"{medians[('ours', m)] / medians[('lt', m)]:>24.2f}" for m in MARKS))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
