"""``torrent dht``: look at the DHT through a session of our own, on uvloop.

``status`` starts a session (the saved routing table in the state directory, the configured routers),
waits a bounded time for the bootstrap to settle and describes the node; ``ping`` asks one node for its
id; ``peers`` runs a get_peers lookup without announcing. The session is closed at the end, which saves
the routing table for the next run. Like the rest of the CLI it speaks only the session API.

Exit codes: 0 done; 1 the DHT did not answer (no node after the bootstrap, a ping unanswered, no node to
ask); 2 what was typed cannot be used (``torrent.cli.main`` checks it before a session starts); 130
interrupted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import signal
import socket
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from torrent.core.errors import TorrentError, UsageError
from torrent.core.text import printable
from torrent.session import DhtLookup, DhtSnapshot, Session, SessionSnapshot, Settings, to_jsonable

T = TypeVar("T")
EXIT_FAILED = 1  # the DHT did not answer: not the user's typing
POLL = 0.1  # seconds between looks at the node while waiting for the bootstrap


@dataclass(frozen=True)
class DhtOptions:
    action: str  # "status", "ping" or "peers"
    target: tuple[str, int] | bytes | None = None  # ping: (host, port); peers: the info-hash
    wait: float = 10.0  # status: seconds to wait for the bootstrap
    json: bool = False
    state_dir: Path | None = None
    saved_settings: dict[str, Any] | None = None


class DhtFailed(TorrentError):
    """The DHT did not give an answer (exit 1, not a usage error)."""


class _Interrupted(Exception):
    """SIGINT or SIGTERM while waiting: the session still closes (and saves its table)."""


def parse_node_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) of a DHT node."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"invalid DHT node {text!r}: use HOST:PORT, e.g. router.bittorrent.com:6881 or "
                         "127.0.0.1:6881")
    return host, int(port)


def parse_info_hash(text: str) -> bytes:
    """A v1 info-hash from 40 hex digits, 32 base32 characters, or a magnet link."""
    text = text.strip()
    if text.lower().startswith("magnet:"):
        from torrent.codec.magnet import parse_magnet

        magnet = parse_magnet(text)
        if magnet.info_hash is None:
            raise UsageError("this magnet link has only a v2 hash (btmh); the DHT is searched by v1 info-hash")
        return magnet.info_hash
    if len(text) == 40:
        with contextlib.suppress(ValueError):
            return bytes.fromhex(text)
    if len(text) == 32:
        with contextlib.suppress(binascii.Error, ValueError):
            return base64.b32decode(text.upper())
    raise UsageError(f"invalid info-hash {text[:60]!r}: give 40 hex digits, 32 base32 characters or a magnet link")


def run_dht(options: DhtOptions, settings: Settings) -> int:
    """Run one ``torrent dht`` action; the exit code."""
    return uvloop.run(_main(options, settings))


async def _main(options: DhtOptions, settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    session = Session(settings, state_dir=options.state_dir, remember=False, restore=False,
                      saved_settings=options.saved_settings)
    try:
        await session.start()
        if session.dht_status() is None:
            raise DhtFailed("the DHT node could not start: no UDP port could be opened (see the warnings above)")
        action = {"status": _status, "ping": _ping, "peers": _peers}[options.action]
        return await _unless_stopped(action(session, options), stop)
    except DhtFailed as exc:  # may quote a node's error message
        print(f"torrent: error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except _Interrupted:
        print("torrent: interrupted", file=sys.stderr)
        return 130
    finally:
        with contextlib.suppress(Exception):  # closing saves the routing table; a failure there is logged
            await asyncio.wait_for(session.close(), 15)


async def _unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T:
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise _Interrupted
    return task.result()


# ---- status -----------------------------------------------------------------------------------


async def _status(session: Session, options: DhtOptions) -> int:
    first = _dht(session)
    restored = first.nodes  # before any reply: what the saved table gave
    started = time.monotonic()
    settled = await _wait_for_bootstrap(session, options.wait)
    waited = time.monotonic() - started
    status = _dht(session)
    snap = session.snapshot()
    if options.json:
        out = to_jsonable(status)
        out.update(bootstrap_settled=settled, waited=round(waited, 3), restored_nodes=restored,
                   port_mapping=snap.port_mapping, external_address=snap.external_address)
        print(json.dumps(out, indent=2))
    else:
        print(render_status(status, snap, restored=restored, waited=waited, settled=settled))
    if not status.nodes:
        raise DhtFailed(f"no DHT node answered in {waited:.1f} s (bootstrap: {status.bootstrap})")
    return 0


async def _wait_for_bootstrap(session: Session, limit: float) -> bool:
    """Until the node's first bootstrap is over; False when ``limit`` seconds pass first."""
    deadline = time.monotonic() + limit
    while not _dht(session).bootstrapped:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL)
    return True


def render_status(d: DhtSnapshot, s: SessionSnapshot, *, restored: int, waited: float, settled: bool) -> str:
    if settled:
        outcome = f"done in {waited:.1f} s"
    else:
        outcome = f"still running after {waited:.1f} s, {d.queries_in_flight} queries in flight"
    if restored:
        outcome += f"; started with {restored} nodes from the saved table"
    nodes = f"{d.nodes} ({d.nodes_good} good, {d.nodes_questionable} questionable; {d.nodes_ipv6} IPv6)"
    rows = [
        ("Node id", d.node_id),
        ("UDP port", str(d.port)),
        ("External IP", f"{d.external_ip} (as the nodes that answered see us)" if d.external_ip
         else "unknown (no node has told us yet)"),
        ("Nodes", nodes if d.nodes else "none: no node has answered"),
        ("Buckets", str(d.buckets)),
        ("Bootstrap", f"{d.bootstrap} ({outcome})"),
        ("Queries out", f"{d.queries_out} ({d.replies_in} answered, {d.timeouts} timed out)"),
        ("Queries in", f"{d.queries_in} ({d.replies_out} replies; {d.dropped} datagrams dropped)"),
        ("Stored", f"{d.peers} peers for {d.info_hashes} torrents announced to us"),
        ("Port mapping", s.port_mapping + (f" ({s.external_address})" if s.external_address else "")),
    ]
    width = max(len(k) for k, _ in rows) + 2
    return "\n".join(f"{k + ':':<{width}}{printable(v)}" for k, v in rows)


def _dht(session: Session) -> DhtSnapshot:
    status = session.dht_status()
    if status is None:
        raise DhtFailed("the DHT node stopped")
    return status


# ---- ping -------------------------------------------------------------------------------------


async def _ping(session: Session, options: DhtOptions) -> int:
    assert isinstance(options.target, tuple)
    host, port = options.target
    address = await _resolve(host, port)
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        node_id, seconds = await session.dht_ping(*address)
    except TorrentError as exc:
        raise DhtFailed(f"DHT ping of {shown} failed: {exc}") from None
    if options.json:
        print(json.dumps({"address": shown, "ip": address[0], "node_id": node_id, "seconds": round(seconds, 6)},
                         indent=2))
    else:
        print(printable(f"{shown}: node {node_id} answered in {seconds * 1000:.1f} ms"))
    return 0


async def _resolve(host: str, port: int) -> tuple[str, int]:
    """An IP address for ``host``: replies are matched by the address a query went to (IPv4 first)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as exc:
        raise DhtFailed(f"cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    if not infos:
        raise DhtFailed(f"cannot resolve {host}: no address")
    sockaddr = infos[0][4]
    return str(sockaddr[0]), int(sockaddr[1])


# ---- peers ------------------------------------------------------------------------------------


async def _peers(session: Session, options: DhtOptions) -> int:
    assert isinstance(options.target, bytes)
    lookup: DhtLookup = await session.dht_lookup(options.target)
    if not lookup.nodes_asked:
        raise DhtFailed(f"no DHT node to ask ({_dht(session).bootstrap}); check --dht-bootstrap or the network")
    print(json.dumps(to_jsonable(lookup), indent=2) if options.json else render_lookup(lookup))
    return 0


def render_lookup(lookup: DhtLookup) -> str:
    found = f"{len(lookup.peers)} peer{'s' if len(lookup.peers) != 1 else ''}" if lookup.peers else "no peers"
    lines = [f"{lookup.info_hash}: {found}"]
    lines += [f"  {printable(str(peer))}" for peer in lookup.peers]
    took = f"{lookup.seconds:.2f} s" if lookup.seconds >= 1 else f"{lookup.seconds * 1000:.0f} ms"
    lines.append(f"asked {lookup.nodes_asked} nodes, {lookup.nodes_answered} answered, in {took}")
    return "\n".join(lines)

