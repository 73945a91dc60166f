"""The ``torrent`` command: argument parsing and output, nothing else.

Errors a user can fix (bad torrent, bad magnet, missing file, bad option)
print one line and exit 2; the engine's exceptions carry the message.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torrent import __version__
from torrent.core import speedups
from torrent.core.errors import TorrentError, UsageError
from torrent.core.memory import limit_malloc_arenas
from torrent.core.text import printable, printable_json
from torrent.core.units import format_size, parse_size

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

    download = sub.add_parser("download", help="download a torrent, then seed it")
    download.add_argument("torrent", metavar="FILE.torrent|MAGNET")
    download.add_argument("-o", "--output", default=".", metavar="DIR", help="download directory (default: here)")
    download.add_argument("--seed", action=argparse.BooleanOptionalAction, default=True,
                          help="keep seeding after the download completes (default: yes)")
    download.add_argument("--seed-ratio", metavar="R", help="stop seeding at this upload ratio (queue.seed_ratio)")
    download.add_argument("--only", metavar="FILE-INDEXES", help="download only these files, e.g. 0,2,5")
    download.add_argument("--recheck", action="store_true", help="hash the data on disk again, ignore resume data")
    _add_network_options(download)

    seed = sub.add_parser("seed", help="verify existing data and seed it")
    seed.add_argument("torrent", metavar="FILE.torrent")
    seed.add_argument("--dir", required=True, metavar="D", help="directory holding the torrent's data")
    seed.add_argument("--recheck", action="store_true", help="hash the data on disk again, ignore resume data")
    _add_network_options(seed)

    tui = sub.add_parser("tui", help="the terminal UI: watch the swarm, download and seed (keeps its torrents)")
    tui.add_argument("sources", nargs="*", metavar="FILE.torrent|MAGNET", help="torrents to add at start")
    tui.add_argument("-o", "--output", default=".", metavar="DIR",
                     help="download directory for torrents added here (default: here)")
    tui.add_argument("--seed", action="append", default=[], metavar="FILE.torrent",
                     help="seed this torrent from --dir (repeatable)")
    tui.add_argument("--dir", metavar="D", help="directory holding the data of the --seed torrents")
    tui.add_argument("--refresh", type=float, default=1.0, metavar="HZ",
                     help="screen refreshes per second (default 1)")
    tui.add_argument("--exit-when-complete", action="store_true", help=argparse.SUPPRESS)  # for benchmarks
    _add_network_options(tui)

    config = sub.add_parser("config", help="show the effective settings and where each came from")
    config.add_argument("--json", action="store_true", help="machine-readable output")
    _add_settings_options(config)

    dht = sub.add_parser(
        "dht", help="the DHT: our node's status, ping a node, look up the peers of a torrent",
        description="status (the default): start a node from the saved routing table and the routers, wait for "
                    "the bootstrap, describe it. ping HOST:PORT: ask a node for its id. peers INFOHASH|MAGNET: a "
                    "get_peers lookup (no announce). The routing table is saved in the state directory at exit.")
    dht.add_argument("action", nargs="?", default="status", choices=("status", "ping", "peers"),
                     help="what to do (default: status)")
    dht.add_argument("target", nargs="?", metavar="HOST:PORT|INFOHASH|MAGNET",
                     help="ping: the node's address; peers: the torrent's info-hash or magnet link")
    dht.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                     help="status: wait at most this long for the bootstrap (default 10)")
    dht.add_argument("--json", action="store_true", help="machine-readable output")
    dht.add_argument("-v", "--verbose", action="count", default=0, help="log what the node does (-vv: everything)")
    _add_settings_options(dht)

    demo = sub.add_parser("demo", help="make a sample torrent and download it from a local seeder")
    demo.add_argument("--dir", metavar="DIR", help="where to put the sample (default: a new temporary directory)")
    demo.add_argument("--size", default="256M", help="payload size (default 256M)")

    bench = sub.add_parser("bench", help="measure downloads on 127.0.0.1: ours and libtorrent, every pairing")
    # The download bench's own options default to None, so that --torrents can tell they were given.
    bench.add_argument("--size", help="payload size (default 1G)")
    bench.add_argument("--piece-size", help="piece size (default 256K)")
    bench.add_argument("--seeders", type=int, metavar="N", help="seeders per run (default 1)")
    bench.add_argument("--leechers", type=int, metavar="N", help="leechers per run (default 1)")
    bench.add_argument("--runs", type=int, default=3, metavar="N", help="runs of each scenario (default 3)")
    bench.add_argument("--scenario", action="append", metavar="NAME",
                       help="ours-ours, lt-ours, ours-lt or lt-lt; repeatable (default: all)")
    bench.add_argument("--pure-python", action="store_true",
                       help="run our client with the pure-Python twins instead of the compiled speedups")
    bench.add_argument("--settle", type=float, default=3.0, metavar="SECONDS",
                       help="pause before each run so every run starts from the same memory state (default 3)")
    bench.add_argument("--no-ceilings", action="store_true", default=None,
                       help="skip measuring the machine's ceilings")
    bench.add_argument("--snapshots", type=float, metavar="HZ",
                       help="also run each scenario with our client 'observed': it builds every API snapshot HZ "
                            "times a second, as a front end would (what observing costs, within one run)")
    bench.add_argument("--dir", metavar="DIR", help="work directory, kept with its payload for the next bench "
                       "(default: a temporary directory, removed)")
    bench.add_argument("--encryption", action="store_true", default=None,
                       help="every peer (libtorrent's too) requires RC4 over the whole stream (MSE/PE)")
    bench.add_argument("--seeder-max-up", metavar="RATE",
                       help="cap each seeder's upload (ours and libtorrent's alike), e.g. 20M: many slow peers "
                            "rather than a few fast ones (default: no cap)")
    bench.add_argument("--transport", choices=("tcp", "utp"),
                       help="tcp (default) or utp: every peer (libtorrent's too) speaks that alone")
    bench.add_argument("--torrents", type=int, metavar="N",
                       help="instead of downloads: one session seeding N small torrents, idle, nothing queued "
                            "(start-up, restart from the saved session, idle CPU and memory; ours and libtorrent)")
    bench.add_argument("--idle-seconds", type=float, metavar="SECONDS",
                       help="with --torrents: the idle window measured (default 30)")
    bench.add_argument("--json", action="store_true", help="machine-readable results on stdout")
    bench.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    return parser


def _add_settings_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="settings file (default: config.toml in the platform's "
                   "config directory, e.g. ~/.config/torrent)")
    p.add_argument("--state-dir", metavar="DIR", help="where resume data and the saved session live (default: the "
                   "platform's data directory, e.g. ~/.local/share/torrent)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting, e.g. --set peer.max_requests=250 (see torrent config)")
    p.add_argument("--port", type=int, metavar="P", help="listening port (0: any free port; network.listen_port)")
    p.add_argument("--bind", metavar="ADDRESS|INTERFACE", help="use only this address or interface for every "
                   "socket, e.g. tun0 behind a VPN (network.bind)")
    p.add_argument("--blocklist", metavar="FILE", help="refuse and never dial the addresses in this IP blocklist: "
                   "eMule .dat or PeerGuardian .p2p, gzip accepted (network.blocklist)")
    p.add_argument("--encryption", choices=("prefer", "require", "allow", "disable"),
                   help="protocol encryption (MSE/PE): prefer (default: encrypted handshake first, plain-text "
                        "peers too), require (RC4 only), allow (plain first), disable (network.encryption)")
    p.add_argument("--transports", choices=("utp,tcp", "tcp,utp", "tcp", "utp"),
                   help="peer transports in the order they are dialled (default utp,tcp: uTP first, TCP if it "
                        "fails; network.transports)")
    p.add_argument("--max-down", metavar="RATE", help="download limit in bytes/s, e.g. 2M (rates.max_down)")
    p.add_argument("--max-up", metavar="RATE", help="upload limit in bytes/s, e.g. 500K (rates.max_up)")
    p.add_argument("--max-peers", type=int, metavar="N", help="connections per torrent (torrent.max_peers)")
    p.add_argument("--upload-slots", type=int, metavar="N", help="peers uploaded to at once (torrent.upload_slots)")
    p.add_argument("--dht-bootstrap", action="append", metavar="HOST:PORT",
                   help="DHT router to bootstrap from; repeatable, replaces the default routers "
                        "(discovery.dht_bootstrap)")
    p.add_argument("--no-dht", dest="dht", action="store_false", default=None,
                   help="stay out of the DHT (discovery.dht)")
    p.add_argument("--no-pex", dest="pex", action="store_false", default=None,
                   help="no peer exchange (discovery.pex)")
    p.add_argument("--no-lsd", dest="lsd", action="store_false", default=None,
                   help="no local peer discovery (discovery.lsd)")
    p.add_argument("--no-port-map", dest="port_map", action="store_false", default=None,
                   help="do not map the listen port on the router with UPnP or NAT-PMP (discovery.port_map)")


def _add_network_options(p: argparse.ArgumentParser) -> None:
    _add_settings_options(p)
    p.add_argument("--peer", action="append", default=[], metavar="HOST:PORT", help="connect to this peer too")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="errors only: no progress display or status lines (tui: only errors in its log panel)")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="also log connection failures, bans and tracker replies (-vv: everything)")
    p.add_argument("--snapshots", type=float, default=0.0, metavar="HZ", help=argparse.SUPPRESS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    limit_malloc_arenas()  # before any thread: the disk threads' buffers share one arena
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
        if args.command == "bench":
            return cmd_bench(args)
        if args.command in ("download", "seed"):
            return cmd_transfer(args)
        if args.command == "config":
            return cmd_config(args)
        if args.command == "tui":
            return cmd_tui(args)
        if args.command == "dht":
            return cmd_dht(args)
        parser.error("missing command: use 'info', 'create', 'download', 'seed', 'tui', 'dht', 'config', 'demo' or "
                     "'bench' (see torrent --help)")
    except TorrentError as exc:  # the message may quote a torrent, a magnet link or a peer: escaped
        print(f"torrent: error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("torrent: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `torrent info X | head`: the reader is gone, there is no one to tell
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the flush at exit must not fail again
        return 1


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
        from torrent.codec.magnet import parse_magnet

        data = _magnet_dict(parse_magnet(args.source))
    else:
        from torrent.codec import metainfo

        meta = metainfo.load(args.source)
        for warning in meta.warnings:  # renamed files, ignored bytes: stderr, so --json stays JSON
            print(f"torrent: warning: {warning}", file=sys.stderr)
        data = _metainfo_dict(meta)
        del meta  # 100 000 files are not held while their list prints
    if args.json:
        print(printable_json(json.dumps(data, indent=2, ensure_ascii=False)))
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
    """The human form; every text from the torrent or magnet goes through ``printable`` (no raw control
    characters reach the terminal)."""
    p = printable
    rows: list[tuple[str, str]] = [("Name", p(d["name"]) if d["name"] else "(unknown until metadata arrives)")]
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
                rows.append((label, p(d[key])))
        if d["creation_date"] is not None:  # the codec keeps only dates datetime can show (else None)
            from datetime import datetime, timezone

            when = datetime.fromtimestamp(d["creation_date"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
            rows.append(("Created on", when))
    width = max(len(k) for k, _ in rows) + 2
    out = [f"{k + ':':<{width}}{v}" for k, v in rows]

    if d["kind"] == "torrent":
        files = [f for f in d["files"] if not f["padding"]]
        out.append(f"Files ({len(files)}):")
        out += [f"  {format_size(f['length']):>10}  {p(f['path'])}" for f in files]
    if d["trackers"]:
        out.append("Trackers:")
        for i, tier in enumerate(d["trackers"], 1):
            out += [f"  tier {i}: {p(url)}" for url in tier]
    if d.get("peers"):
        out.append("Peers:")
        out += [f"  {p(peer)}" for peer in d["peers"]]
    if d["web_seeds"]:
        out.append("Web seeds:")
        out += [f"  {p(u)}" for u in d["web_seeds"]]
    if d.get("select_only") is not None:
        out.append(f"Select only: files {', '.join(map(str, d['select_only']))}")
    out.append(f"Magnet: {p(d['magnet'])}")
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


def cmd_transfer(args: argparse.Namespace) -> int:
    from torrent.cli.runner import RunOptions, run
    from torrent.codec import metainfo

    seeding = args.command == "seed"
    is_magnet = args.torrent.lower().startswith("magnet:")
    if is_magnet and seeding:
        raise UsageError("seed needs the .torrent file: a magnet link does not say what the data is")
    effective = effective_settings(args)
    if is_magnet:
        from torrent.codec.magnet import parse_magnet

        magnet = parse_magnet(args.torrent)
        if magnet.info_hash is None:
            raise UsageError("this magnet link has only a v2 hash (btmh); v2 torrents are not supported yet")
        file_count = 0
    else:  # a regular file within limits.bencode_max_size, or a one-line error
        file_count = len(metainfo.load(args.torrent, limits=effective.settings.limits).files)
    only = _parse_indexes(args.only) if not seeding and args.only else None
    if only is not None and file_count:
        bad = [i for i in only if not 0 <= i < file_count]
        if bad:
            raise UsageError(f"no file #{bad[0]}: the torrent has files 0..{file_count - 1} (see torrent info)")
    options = RunOptions(
        download_dir=Path(args.dir if seeding else args.output),
        seed=True if seeding else args.seed,
        peers=[_parse_peer(p) for p in args.peer],
        only_files=only, file_count=file_count,
        recheck=args.recheck, quiet=args.quiet, verbose=args.verbose, state_dir=effective.state_dir,
        saved_settings=effective.saved, snapshot_hz=args.snapshots)
    if seeding and not options.download_dir.is_dir():
        raise TorrentError(f"{options.download_dir} is not a directory")
    return run(args.torrent if is_magnet else Path(args.torrent), options, effective.settings)


def effective_settings(args: argparse.Namespace) -> Any:
    """The settings tree from defaults < config file < saved session < command line."""
    from torrent.session.config import effective_settings as resolve_settings

    command_line = {}
    for option, key in (("port", "network.listen_port"), ("bind", "network.bind"),
                        ("encryption", "network.encryption"), ("transports", "network.transports"),
                        ("max_down", "rates.max_down"),
                        ("max_up", "rates.max_up"), ("max_peers", "torrent.max_peers"),
                        ("upload_slots", "torrent.upload_slots"), ("seed_ratio", "queue.seed_ratio")):
        value = getattr(args, option, None)
        if value is not None:
            command_line[key] = str(value)
    if getattr(args, "blocklist", None):  # relative to where the command was typed, shown so by torrent config
        command_line["network.blocklist"] = os.path.abspath(os.path.expanduser(args.blocklist))
    for option in ("dht", "pex", "lsd", "port_map"):
        if getattr(args, option, None) is False:
            command_line[f"discovery.{option}"] = "false"
    if getattr(args, "dht_bootstrap", None):
        command_line["discovery.dht_bootstrap"] = ",".join(args.dht_bootstrap)
    effective = resolve_settings(config_file=Path(args.config) if args.config else None,
                                 state_dir=Path(args.state_dir) if args.state_dir else None,
                                 command_line=[f"{k}={v}" for k, v in command_line.items()] + list(args.set))
    for warning in effective.warnings:
        print(f"torrent: warning: {warning}", file=sys.stderr)
    return effective


def cmd_tui(args: argparse.Namespace) -> int:
    from torrent.cli.tui_runner import run_tui

    if args.seed and not args.dir:
        raise UsageError("--seed needs --dir D, the directory holding the data")
    if args.dir and not Path(args.dir).is_dir():
        raise TorrentError(f"{args.dir} is not a directory")
    if not 0.1 <= args.refresh <= 30:
        raise UsageError("--refresh must be between 0.1 and 30 per second")
    from torrent.codec import magnet, metainfo

    effective = effective_settings(args)
    for source in [*args.sources, *args.seed]:  # bad input is a one-line error before the screen opens
        if source.lower().startswith("magnet:"):
            magnet.parse_magnet(source)
        else:
            metainfo.load(source, limits=effective.settings.limits)
    return run_tui([str(Path(s).resolve()) if not s.lower().startswith("magnet:") else s for s in args.sources],
                   download_dir=Path(args.output).resolve(),
                   seed=[(str(Path(s).resolve()), Path(args.dir).resolve()) for s in args.seed],
                   peers=[_parse_peer(p) for p in args.peer], settings=effective.settings,
                   state_dir=effective.state_dir, saved_settings=effective.saved, refresh_hz=args.refresh,
                   exit_when_complete=args.exit_when_complete,
                   log_level=logging.ERROR if args.quiet else (logging.WARNING, logging.INFO,
                                                                               logging.DEBUG)[min(args.verbose, 2)])


def cmd_dht(args: argparse.Namespace) -> int:
    from torrent.cli.dht import DhtOptions, parse_info_hash, parse_node_address, run_dht
    from torrent.cli.runner import setup_logging

    target: tuple[str, int] | bytes | None = None
    if args.action == "status":
        if args.target is not None:
            raise UsageError(f"torrent dht status takes no argument (got {args.target!r}); "
                             "did you mean 'torrent dht ping HOST:PORT' or 'torrent dht peers INFOHASH'?")
    elif args.target is None:
        raise UsageError("torrent dht ping needs the node's HOST:PORT" if args.action == "ping"
                         else "torrent dht peers needs an info-hash or a magnet link")
    elif args.action == "ping":
        target = parse_node_address(args.target)
    else:
        target = parse_info_hash(args.target)
    if not 0 <= args.wait <= 600:
        raise UsageError("--wait must be between 0 and 600 seconds")
    if args.dht is False:
        raise UsageError("--no-dht cannot go with torrent dht: the command looks at the DHT")
    effective = effective_settings(args)
    if not effective.settings.discovery.dht:
        source = effective.sources.get("discovery.dht", "the settings")
        raise UsageError(f"torrent dht needs the DHT, which is off (discovery.dht = false, from {source})")
    setup_logging(False, args.verbose)
    return run_dht(DhtOptions(action=args.action, target=target, wait=args.wait, json=args.json,
                              state_dir=effective.state_dir, saved_settings=effective.saved), effective.settings)


def cmd_config(args: argparse.Namespace) -> int:
    from torrent.session.config import render_json, render_text

    effective = effective_settings(args)
    if args.json:
        print(json.dumps(render_json(effective.settings, effective.sources), indent=2))
    else:
        print(render_text(effective.settings, effective.sources))
    return 0


def _parse_peer(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TorrentError(f"invalid peer {text!r}: use HOST:PORT, e.g. 127.0.0.1:6881")
    return host, int(port)


def _parse_indexes(text: str) -> list[int]:
    try:
        return sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise TorrentError(f"invalid file list {text!r}: use indexes such as 0,2,5 (see torrent info)") from None


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from torrent.cli.demo import make_payload
    from torrent.cli.runner import run_demo
    from torrent.codec.metainfo import load
    from torrent.core.settings import DEFAULT_SETTINGS

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="torrent-demo-"))
    size = parse_size(args.size)
    print(f"Writing a {format_size(size)} sample payload to {root / 'seed' / 'sample'}")
    payload = make_payload(root / "seed" / "sample", size)
    output = root / "sample.torrent"
    _write_torrent(payload, output, quiet=False, piece_length=256 * 1024)
    print()
    cmd_info(argparse.Namespace(source=str(output), json=False))
    print("\nStarting a seeder and a leecher on 127.0.0.1 (no internet needed)...")
    code = run_demo(output, root / "seed", root / "download", DEFAULT_SETTINGS)
    if code == 0:
        same = all((root / "seed" / Path(*f.path)).read_bytes() == (root / "download" / Path(*f.path)).read_bytes()
                   for f in load(output).files)
        print("The downloaded files match the originals byte for byte." if same
              else "The downloaded files differ from the originals!")
        return 0 if same else 1
    return code


# The download bench's options (argparse dests): --torrents N, the many-torrents bench, uses none of them.
_DOWNLOAD_ONLY = ("size", "piece_size", "seeders", "leechers", "scenario", "no_ceilings", "snapshots", "encryption",
                  "seeder_max_up", "transport")


def cmd_bench(args: argparse.Namespace) -> int:
    from torrent.bench import BenchOptions, run_bench
    from torrent.create import check_piece_length

    given = {name: value for name in _DOWNLOAD_ONLY if (value := getattr(args, name)) is not None}
    if args.torrents is not None and given:
        flag = "--" + next(iter(given)).replace("_", "-")
        raise UsageError(f"--torrents N (idle seeding) does not use {flag}: leave it out")
    if args.torrents is None and args.idle_seconds is not None:
        raise UsageError("--idle-seconds is for --torrents N only")
    for name, count in (("seeders", args.seeders), ("leechers", args.leechers), ("runs", args.runs)):
        if count is not None and count < 1:
            raise UsageError(f"--{name} must be at least 1")
    if not 0 <= args.settle <= 600:
        raise UsageError("--settle must be between 0 and 600 seconds")
    if args.snapshots is not None and not 0 <= args.snapshots <= 100:
        raise UsageError("--snapshots must be between 0 and 100 per second")
    if args.torrents is not None and not 1 <= args.torrents <= 100_000:
        raise UsageError("--torrents must be between 1 and 100000")
    if args.idle_seconds is not None and not 0 < args.idle_seconds <= 3600:
        raise UsageError("--idle-seconds must be more than 0 and at most 3600")
    # What is not given keeps BenchOptions' default.
    chosen: dict[str, Any] = {field: given[name] for name, field in (
        ("seeders", "seeders"), ("leechers", "leechers"), ("snapshots", "snapshot_hz"), ("encryption", "encrypted"),
        ("transport", "transport")) if name in given}
    if "size" in given:
        chosen["size"] = parse_size(given["size"])
        if chosen["size"] < 1:
            raise UsageError("--size must be at least 1 byte")
    if "piece_size" in given:
        chosen["piece_size"] = check_piece_length(parse_size(given["piece_size"]))
    if "scenario" in given:
        chosen["scenarios"] = tuple(given["scenario"])
    if "no_ceilings" in given:
        chosen["measure_ceilings"] = False
    if "seeder_max_up" in given:
        chosen["seeder_max_up"] = parse_size(given["seeder_max_up"])
    if args.idle_seconds is not None:
        chosen["idle_seconds"] = args.idle_seconds
    options = BenchOptions(runs=args.runs, pure_python=args.pure_python, work_dir=Path(args.dir) if args.dir else None,
                           progress=not args.quiet, settle=args.settle, torrents=args.torrents or 0, **chosen)
    report = run_bench(options)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return 0


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

    from torrent.codec.metainfo import parse

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
            from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

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
