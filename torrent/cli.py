"""The ``torrent`` command: argument parsing and output, nothing else.

Errors a user can fix (bad torrent, bad magnet, missing file, bad option)
print one line and exit 2; the engine's exceptions carry the message.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torrent import __version__, speedups
from torrent.errors import TorrentError
from torrent.units import format_size, parse_size

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other bad input
        self.exit(EXIT_USAGE, f"torrent: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="torrent", description="A fast BitTorrent client.")
    parser.add_argument("--version", action="store_true", help="show versions and which speedups are active")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    info = sub.add_parser("info", help="describe a .torrent file or a magnet link")
    info.add_argument("source", metavar="FILE.torrent|MAGNET")
    info.add_argument("--json", action="store_true", help="machine-readable output")

    create = sub.add_parser("create", help="make a .torrent from a file or directory")
    create.add_argument("path", metavar="PATH")
    create.add_argument("-t", "--tracker", action="append", default=[], metavar="URL[,URL...]",
                        help="announce URL; repeat for more tiers, separate with commas within a tier")
    create.add_argument("--piece-size", default="auto", metavar="auto|N",
                        help="piece size: auto, bytes, or with a unit (256K, 1M)")
    create.add_argument("--private", action="store_true", help="set the private flag (BEP 27)")
    create.add_argument("-w", "--web-seed", action="append", default=[], metavar="URL", help="web seed (BEP 19)")
    create.add_argument("-c", "--comment")
    create.add_argument("-s", "--source", help="source tag (changes the info-hash, for private trackers)")
    create.add_argument("-o", "--output", metavar="OUT.torrent", help="default: NAME.torrent here")
    create.add_argument("-f", "--force", action="store_true", help="overwrite the output file")
    create.add_argument("--threads", type=int, default=None, help="hashing threads (default: one per core)")
    create.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    demo = sub.add_parser("demo", help="make a sample payload and its torrent, then describe it")
    demo.add_argument("--dir", metavar="DIR", help="where to put the sample (default: a new temporary directory)")
    demo.add_argument("--size", default="64M", help="payload size (default 64M)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.version:
            print(version_text())
            return 0
        if args.command == "info":
            return cmd_info(args)
        if args.command == "create":
            return cmd_create(args)
        if args.command == "demo":
            return cmd_demo(args)
        parser.error("missing command: use 'info', 'create' or 'demo' (see torrent --help)")
    except TorrentError as exc:
        print(f"torrent: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("torrent: interrupted", file=sys.stderr)
        return 130


def version_text() -> str:
    from importlib import metadata  # ~0.1 s to import: only --version pays it

    def dist(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    status = speedups.status()
    compiled = all(v == "compiled" for v in status.values())
    lines = [
        f"torrent {__version__}",
        f"{platform.python_implementation()} {platform.python_version()}, bencode.py {dist('bencode.py')}, "
        f"uvloop {dist('uvloop')}, textual {dist('textual')}",
        f"speedups: {'compiled (Cython)' if compiled else 'pure Python'}",
    ]
    lines += [f"  {name}: {how}" for name, how in sorted(status.items())]
    return "\n".join(lines)


# ---- info -----------------------------------------------------------------

def cmd_info(args: argparse.Namespace) -> int:
    if args.source.lower().startswith("magnet:"):
        from torrent.magnet import parse_magnet

        data = _magnet_dict(parse_magnet(args.source))
    else:
        from torrent import metainfo

        data = _metainfo_dict(metainfo.load(args.source))
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(_render_info(data))
    return 0


def _metainfo_dict(m: Any) -> dict[str, Any]:
    return {
        "kind": "torrent",
        "name": m.name,
        "info_hash": m.info_hash_hex,
        "total_size": m.payload_length,
        "piece_length": m.piece_length,
        "num_pieces": m.num_pieces,
        "private": m.private,
        "hybrid_v2": m.has_v2,
        "files": [
            {"path": f.display_path, "length": f.length, "padding": f.is_padding} for f in m.files
        ],
        "trackers": [list(tier) for tier in m.trackers],
        "web_seeds": list(m.web_seeds),
        "comment": m.comment,
        "created_by": m.created_by,
        "creation_date": m.creation_date,
        "source": m.source,
        "magnet": m.magnet(),
    }


def _magnet_dict(m: Any) -> dict[str, Any]:
    return {
        "kind": "magnet",
        "name": m.display_name,
        "info_hash": m.info_hash.hex() if m.info_hash else None,
        "info_hash_v2": m.info_hash_v2.hex() if m.info_hash_v2 else None,
        "total_size": m.exact_length,
        "trackers": [[t] for t in m.trackers],
        "peers": [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in m.peers],
        "web_seeds": list(m.web_seeds),
        "select_only": list(m.select_only) if m.select_only is not None else None,
        "magnet": m.to_uri(),
    }


def _render_info(d: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = [("Name", d["name"] or "(unknown until metadata arrives)")]
    rows.append(("Info-hash", d["info_hash"] or "-"))
    if d.get("info_hash_v2"):
        rows.append(("Info-hash v2", d["info_hash_v2"]))
    if d.get("total_size") is not None:
        rows.append(("Size", f"{format_size(d['total_size'])} ({d['total_size']:,} bytes)"))
    if d["kind"] == "torrent":
        rows.append(("Pieces", f"{d['num_pieces']:,} × {format_size(d['piece_length'])}"))
        rows.append(("Private", "yes" if d["private"] else "no"))
        if d["hybrid_v2"]:
            rows.append(("Format", "hybrid v1 + v2 (v1 part used)"))
        for key, label in (("comment", "Comment"), ("created_by", "Created by"), ("source", "Source")):
            if d[key]:
                rows.append((label, d[key]))
        if d["creation_date"] is not None:
            from datetime import datetime, timezone

            when = datetime.fromtimestamp(d["creation_date"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
            rows.append(("Created on", when))
    width = max(len(k) for k, _ in rows) + 2
    out = [f"{k + ':':<{width}}{v}" for k, v in rows]

    if d["kind"] == "torrent":
        files = [f for f in d["files"] if not f["padding"]]
        out.append(f"Files ({len(files)}):")
        out += [f"  {format_size(f['length']):>10}  {f['path']}" for f in files]
    if d["trackers"]:
        out.append("Trackers:")
        for i, tier in enumerate(d["trackers"], 1):
            out += [f"  tier {i}: {url}" for url in tier]
    if d.get("peers"):
        out.append("Peers:")
        out += [f"  {p}" for p in d["peers"]]
    if d["web_seeds"]:
        out.append("Web seeds:")
        out += [f"  {u}" for u in d["web_seeds"]]
    if d.get("select_only") is not None:
        out.append(f"Select only: files {', '.join(map(str, d['select_only']))}")
    out.append(f"Magnet: {d['magnet']}")
    return "\n".join(out)


# ---- create ---------------------------------------------------------------

def cmd_create(args: argparse.Namespace) -> int:
    from torrent.create import check_piece_length, collect_files

    piece_length = None if args.piece_size == "auto" else check_piece_length(parse_size(args.piece_size))
    tiers = [[u.strip() for u in t.split(",") if u.strip()] for t in args.tracker]
    name, _, _ = collect_files(args.path)
    output = Path(args.output) if args.output else Path(f"{name}.torrent")
    if output.exists() and not args.force:
        raise TorrentError(f"{output} already exists (use --force to overwrite)")
    _write_torrent(args.path, output, quiet=args.quiet, trackers=tiers, piece_length=piece_length,
                   private=args.private, comment=args.comment, web_seeds=args.web_seed, source=args.source,
                   threads=args.threads)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from torrent.demo import make_payload

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="torrent-demo-"))
    size = parse_size(args.size)
    print(f"Writing a {format_size(size)} sample payload to {root / 'sample'}")
    payload = make_payload(root / "sample", size)
    output = root / "sample.torrent"
    _write_torrent(payload, output, quiet=False, trackers=[["udp://127.0.0.1:6969/announce"]])
    print()
    return cmd_info(argparse.Namespace(source=str(output), json=False))


def _write_torrent(path: str | os.PathLike[str], output: Path, *, quiet: bool, **options: Any) -> None:
    """Hash ``path`` with a progress bar and write the .torrent atomically."""
    from torrent.create import create_torrent

    with _HashProgress(enabled=not quiet and sys.stderr.isatty()) as progress:
        data = create_torrent(path, progress=progress.advance, on_start=progress.start, **options)
    tmp = output.with_name(output.name + ".part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TorrentError(f"cannot write {output}: {exc.strerror or exc}") from exc

    from torrent.metainfo import parse

    m = parse(data)
    print(f"{output}: {m.name}, {format_size(m.payload_length)} in {m.num_pieces:,} pieces of "
          f"{format_size(m.piece_length)}, info-hash {m.info_hash_hex}")


class _HashProgress:
    """A rich progress bar on stderr while hashing; silent when not a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _HashProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, DownloadColumn, Progress, TimeRemainingColumn,
                                       TransferSpeedColumn)

            self._progress = Progress(
                "[progress.description]{task.description}", BarColumn(), DownloadColumn(binary_units=True),
                TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=True,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def start(self, total: int) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task("hashing", total=total)

    def advance(self, n: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)
