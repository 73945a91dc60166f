"""Trackerless interop on 127.0.0.1: the DHT (BEP 5), magnet links (BEP 9) and peer exchange (BEP 11)
between our client and libtorrent 2.1 (the PyPI wheel, in-process), libtorrent 2.0 (Debian's
python3-libtorrent, a process under /usr/bin/python3) and aria2 1.36.

Nothing here leaves 127.0.0.1: every DHT starts from a router the test runs (our ``DhtNode`` or a
libtorrent session), our sessions get ``swarmkit.local_settings`` (no public router, no LSD, no port
mapping) and libtorrent ``lt_dht.LOOPBACK_DHT`` over ``LIBTORRENT_LOOPBACK`` (the same, plus the two
DHT restrictions that would keep all of 127.0.0.1 down to one node).

Our client runs in-process (``torrent.session.Session``, on this test's event loop) so that a test can
ask where it learned each peer (``PeerSnapshot.source``); libtorrent runs in-process on its own
threads; our CLI, Debian's libtorrent, aria2 and opentracker are processes, stopped by PID by the ``h``
harness (``clients.py``), which also prints everyone's log when a wait fails.

Transmission 3.00 is not here: nothing trackerless of it works on loopback. Tried with a ``dht.bootstrap``
file naming our router, it pings the router but drops the reply (its DHT, jech/dht, takes every datagram
from 127.0.0.0/8 for a "martian") and stays "IPv4 DHT not ready (broken, 0 nodes)"; given a magnet with
our seeder in ``x.pe`` it never dials it; and it does not dial loopback peers a tracker gives it either
(REFERENCE-CLIENTS.md). It could fetch a magnet only from a peer that dials it, which tests no discovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import pytest

if str(Path(__file__).parent) not in sys.path:  # --import-mode=importlib does not add it
    sys.path.insert(0, str(Path(__file__).parent))
import clients
from clients import Harness
from helpers import LIBTORRENT_LOOPBACK, loopback_config_home
from lt_dht import LOOPBACK_DHT, Address, LtDht, magnet, saved_info, start_lt, until
from swarmkit import local_settings, make_torrent, run, same_tree, start_session

from torrent.dht.node import DhtNode
from torrent.session import PeerSource, Session

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

MiB = 1024 * 1024
SIZE = 3 * MiB + 12_345  # 32 KiB pieces (swarmkit), the last one short
START = 30.0  # seconds for a client to check its data, or an announce to land
MANY_FILES = 500  # with 16 KiB pieces, an info dictionary of 2 ut_metadata pieces
TRANSFER = 60.0  # seconds for a magnet's metadata and a few MiB

DEBIAN_PYTHON = "/usr/bin/python3"  # with Debian's python3-libtorrent (2.0)

ROUTERS = pytest.mark.parametrize("router_kind", ["ours", "libtorrent"])


# ---- the pieces of a trackerless swarm -------------------------------------------------------

class Router:
    """The DHT node everyone bootstraps from: our ``DhtNode`` or a libtorrent session."""

    def __init__(self, address: Address, node: DhtNode | None = None, lt: LtDht | None = None) -> None:
        self.address = address
        self.node = node
        self.lt = lt

    @property
    def spec(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def holds(self, info_hash: bytes, port: int) -> bool:
        """Whether someone on ``port`` has announced ``info_hash`` to the router."""
        if self.node is not None:
            return ("127.0.0.1", port) in self.node.store.peers(info_hash, time.monotonic())
        assert self.lt is not None
        return any(("127.0.0.1", port) in s.peers for s in self.lt.find("incoming_announce", info_hash.hex()))


@contextlib.asynccontextmanager
async def dht_router(h: Harness, lt: ModuleType | None, kind: str) -> AsyncIterator[Router]:
    """Our ``DhtNode`` ("ours") or a libtorrent session ("libtorrent": needs ``lt``) on 127.0.0.1."""
    if kind == "ours":
        node = DhtNode()
        address = await node.open("127.0.0.1", 0)
        try:
            yield Router(address, node=node)
        finally:
            node.close()
    else:
        assert lt is not None
        peer = start_lt(h, lt, "lt-router", None)
        yield Router(peer.address, lt=peer)


async def our_session(stack: contextlib.AsyncExitStack, tmp: Path, name: str, router: Router | None,
                      **values: Any) -> Session:
    """Our session on 127.0.0.1, its DHT bootstrapped from ``router`` only, searching every 5 s while a
    torrent lacks peers; closed when ``stack`` unwinds."""
    values.setdefault("discovery__dht_bootstrap", router.spec if router else "")
    values.setdefault("discovery__dht_search_interval", 5.0)
    session = await start_session(tmp, name, local_settings(**values))
    stack.push_async_callback(session.close)
    return session


def complete(session: Session, tid: str) -> bool:
    snap = session.torrent(tid)
    return snap.wanted_size > 0 and snap.wanted_verified == snap.wanted_size


def seeding(session: Session, tid: str) -> bool:
    return session.torrent(tid).state == "seeding"


def describe(session: Session, tid: str) -> str:
    """Where our torrent stands, for a failure message."""
    snap = session.torrent(tid)
    peers = "\n".join(f"  {p.address} {p.source} {p.status} {p.last_error or ''}" for p in session.peers(tid))
    return (f"our {snap.name}: {snap.state}, {snap.wanted_verified}/{snap.wanted_size} bytes, waiting on "
            f"{snap.waiting_on}, DHT nodes {session.snapshot().dht_nodes}\n{peers}")


async def lt_seeding(h: Harness, peer: clients.LtPeer, handle: Any) -> None:
    await until(h, f"libtorrent {peer.name} to check the original data and seed it",
                lambda: handle.status().is_seeding or handle.status().errc.value() != 0, timeout=START)
    if not handle.status().is_seeding:
        h.fail(f"libtorrent {peer.name} cannot seed: {handle.status().errc.message()}")


# ---- 1, 2: a magnet found through the DHT ------------------------------------------------------

@ROUTERS
def test_our_magnet_finds_a_libtorrent_seeder_through_the_dht(h: Harness, lt: ModuleType, tmp_path: Path,
                                                               router_kind: str) -> None:
    """libtorrent seeds and announces itself to the router; our client, given a bare magnet link (no
    tracker, no x.pe, no peer), finds it with get_peers, fetches the metadata from it, then the data."""
    meta, data_parent, torrent_file = make_torrent(tmp_path, SIZE, files=MANY_FILES, piece_length=16 * 1024)
    assert len(meta.info_bytes) > 16 * 1024  # ut_metadata in more than one piece
    down = tmp_path / "down"

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            router = await stack.enter_async_context(dht_router(h, lt, router_kind))
            seeder = start_lt(h, lt, "lt-seed", router.address)
            await lt_seeding(h, seeder, seeder.add(torrent_file, data_parent))
            await until(h, "libtorrent's announce to reach the router",
                        lambda: router.holds(meta.info_hash, seeder.port), timeout=START)
            ours = await our_session(stack, tmp_path, "ours", router)
            tid = await ours.add(magnet(meta.info_hash_hex), save_path=down)
            assert ours.torrent(tid).state == "metadata"
            await until(h, "our client to fetch the magnet's metadata and data from libtorrent",
                        lambda: complete(ours, tid), timeout=TRANSFER, context=lambda: describe(ours, tid))
            sources = {p.address: p.source for p in ours.peers(tid)}
            assert sources == {f"127.0.0.1:{seeder.port}": PeerSource.DHT.value}, describe(ours, tid)
            assert (ours.snapshot().dht_nodes or 0) >= 1
        assert saved_info(down / f"{meta.name}.torrent") == meta.info_bytes
        assert same_tree(data_parent / meta.name, down / meta.name)

    run(main())


@ROUTERS
def test_libtorrent_fetches_a_magnet_from_our_seeder_through_the_dht(h: Harness, lt: ModuleType, tmp_path: Path,
                                                                      router_kind: str) -> None:
    """The reverse: our seeder announces itself; libtorrent, given the bare magnet link, finds us in the
    DHT and gets the metadata (ut_metadata) and every byte from us."""
    meta, data_parent, torrent_file = make_torrent(tmp_path, SIZE, files=MANY_FILES, piece_length=16 * 1024)
    assert len(meta.info_bytes) > 16 * 1024
    out = tmp_path / "lt"

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            router = await stack.enter_async_context(dht_router(h, lt, router_kind))
            ours = await our_session(stack, tmp_path, "ours", router)
            tid = await ours.add(torrent_file, save_path=data_parent)
            await until(h, "our seeder to check its data", lambda: seeding(ours, tid), timeout=START)
            await until(h, "our announce to reach the router", lambda: router.holds(meta.info_hash, ours.listen_port),
                        timeout=START)
            leecher = start_lt(h, lt, "lt-leech", router.address)
            handle = leecher.add_magnet(magnet(meta.info_hash_hex), out)
            await until(h, "libtorrent to download the magnet from our seeder", lambda: handle.status().is_seeding,
                        timeout=TRANSFER, context=leecher.progress_line)
            found = leecher.find("torrent_dht_reply", meta.info_hash_hex)
            assert any(r.count >= 1 for r in found), f"libtorrent's DHT searches found nobody: {found}"
            assert leecher.find("metadata_received", meta.info_hash_hex)
            assert bytes(handle.torrent_file().info_section()) == meta.info_bytes
            await until(h, "our seeder to count what it uploaded",
                        lambda: ours.torrent(tid).uploaded >= meta.payload_length, timeout=5)
            leecher.close()  # waits for libtorrent's disk threads: "finished" can precede the last write
        h.check_same(data_parent / meta.name, out / meta.name, "libtorrent (a magnet, from our seeder)")

    run(main())


def test_the_cli_downloads_a_magnet_from_libtorrent_through_the_dht(h: Harness, lt: ModuleType,
                                                                     tmp_path: Path) -> None:
    """What a user runs: ``torrent download MAGNET --dht-bootstrap HOST:PORT`` as a process, against a
    libtorrent seeder announced to our router."""
    meta, data_parent, torrent_file = make_torrent(tmp_path, SIZE, files=3)
    out = tmp_path / "cli"
    env = {**os.environ, "XDG_CONFIG_HOME": loopback_config_home(tmp_path / "config")}

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            router = await stack.enter_async_context(dht_router(h, None, "ours"))
            seeder = start_lt(h, lt, "lt-seed", router.address)
            await lt_seeding(h, seeder, seeder.add(torrent_file, data_parent))
            await until(h, "libtorrent's announce to reach the router",
                        lambda: router.holds(meta.info_hash, seeder.port), timeout=START)
            cli = h.spawn("ours-cli", clients.torrent_cmd(
                "download", magnet(meta.info_hash_hex, meta.name), "-o", out, "--no-seed", "--port", "0",
                "--bind", "127.0.0.1", "--dht-bootstrap", router.spec, "--no-lsd", "--no-port-map",
                "--set", "discovery.dht_search_interval=5", "--state-dir", tmp_path / "cli-state"), env=env)
            await until(h, "our CLI to download the magnet and exit", lambda: not cli.alive(), timeout=TRANSFER,
                        interval=0.2)
            if cli.popen.returncode != 0 or "Traceback" in cli.text():
                h.fail(f"our CLI exited with status {cli.popen.returncode}")
            assert f"{meta.name}: metadata received (3 files, " in cli.text()
        assert saved_info(out / f"{meta.name}.torrent") == meta.info_bytes
        h.check_same(data_parent / meta.name, out / meta.name, "our CLI (a magnet, from libtorrent)")

    run(main())


def test_debian_libtorrent_fetches_a_magnet_from_our_seeder_through_the_dht(h: Harness, tmp_path: Path) -> None:
    """The other libtorrent of this machine: Debian's python3-libtorrent (2.0), a process under
    /usr/bin/python3 (``lt_magnet_peer.py``), fetches a bare magnet from our seeder through the DHT."""
    meta, data_parent, torrent_file = make_torrent(tmp_path, SIZE, files=MANY_FILES, piece_length=16 * 1024)
    out = tmp_path / "lt20"

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            router = await stack.enter_async_context(dht_router(h, None, "ours"))
            ours = await our_session(stack, tmp_path, "ours", router)
            tid = await ours.add(torrent_file, save_path=data_parent)
            await until(h, "our seeder to check its data", lambda: seeding(ours, tid), timeout=START)
            await until(h, "our announce to reach the router", lambda: router.holds(meta.info_hash, ours.listen_port),
                        timeout=START)
            settings = {**LIBTORRENT_LOOPBACK, **LOOPBACK_DHT, "dht_bootstrap_nodes": router.spec}
            peer = h.spawn("lt20-leech", [DEBIAN_PYTHON, Path(__file__).with_name("lt_magnet_peer.py"),
                                          magnet(meta.info_hash_hex), out, json.dumps(settings)])
            await until(h, "Debian's libtorrent to download the magnet from our seeder and exit",
                        lambda: not peer.alive(), timeout=TRANSFER, interval=0.2)
            text = peer.text()
            if "No module named 'libtorrent'" in text:
                pytest.fail(f"{DEBIAN_PYTHON} cannot import libtorrent: install the Debian package "
                            "'python3-libtorrent' (scripts/test.sh installs it)", pytrace=False)
            if peer.popen.returncode != 0:
                h.fail(f"Debian's libtorrent exited with status {peer.popen.returncode}")
            lines = text.splitlines()
            assert lines[0].startswith("version 2.0"), lines[0]
            assert "metadata" in lines and lines[-1] == "done", lines
            assert any(line.startswith("dht-peers ") and int(line.split()[1]) >= 1 for line in lines), lines
        h.check_same(data_parent / meta.name, out / meta.name, "Debian's libtorrent (a magnet, from our seeder)")

    run(main())


# ---- 3: aria2 ----------------------------------------------------------------------------------

def test_aria2_fetches_a_magnet_from_our_seeder_through_the_dht(h: Harness, tmp_path: Path) -> None:
    """aria2, given the bare magnet and our router as its only DHT entry point, finds our seeder with
    get_peers, announces itself there, and fetches the metadata and the data from us. (aria2 takes no
    ``x.pe`` from a magnet: the DHT is its one way to us without a tracker.)"""
    meta, data_parent, torrent_file = make_torrent(tmp_path, SIZE, files=MANY_FILES, piece_length=16 * 1024)
    assert len(meta.info_bytes) > 16 * 1024
    out = tmp_path / "aria2"

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            router = await stack.enter_async_context(dht_router(h, None, "ours"))
            assert router.node is not None
            ours = await our_session(stack, tmp_path, "ours", router)
            tid = await ours.add(torrent_file, save_path=data_parent)
            await until(h, "our seeder to check its data", lambda: seeding(ours, tid), timeout=START)
            await until(h, "our announce to reach the router", lambda: router.holds(meta.info_hash, ours.listen_port),
                        timeout=START)
            cmd = clients.aria2_cmd(h, "aria2", magnet(meta.info_hash_hex, meta.name), out, seed=False,
                                    udp_tracker=False, dht_entry_point=router.address)
            cmd.insert(-1, "--bt-save-metadata=true")  # <info-hash>.torrent in --dir, which must exist
            out.mkdir()
            aria = h.spawn("aria2", cmd)
            await until(h, "aria2 to download the magnet from our seeder and exit", lambda: not aria.alive(),
                        timeout=TRANSFER, interval=0.2, context=lambda: describe(ours, tid))
            if aria.popen.returncode != 0:
                h.fail(f"aria2 exited with status {aria.popen.returncode} (0 = download complete)")
            announced = [p for p in router.node.store.peers(meta.info_hash, time.monotonic())
                         if p != ("127.0.0.1", ours.listen_port)]
            assert announced, "aria2 never announced itself to our router"
            assert ours.torrent(tid).uploaded >= meta.payload_length
        assert saved_info(out / f"{meta.info_hash_hex}.torrent") == meta.info_bytes
        h.check_same(data_parent / meta.name, out / meta.name, "aria2 (a magnet, from our seeder)")

    run(main())


# ---- 4: one DHT of both implementations --------------------------------------------------------

async def found_by(h: Harness, session: Session, info_hash: bytes, peer: str, *, timeout: float) -> None:
    """Our session's get_peers lookup (``Session.dht_lookup``) finds ``peer`` ("host:port") within
    ``timeout`` (an announce runs a lookup of its own first)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await session.dht_lookup(info_hash)
        if peer in result.peers:
            return
        if time.monotonic() >= deadline:
            h.fail(f"our get_peers for {info_hash.hex()} did not find {peer} within {timeout:g} s: {result}")
        await asyncio.sleep(0.3)


def test_a_dht_of_three_of_ours_and_libtorrent(h: Harness, lt: ModuleType, tmp_path: Path) -> None:
    """Our router node, two of our sessions and libtorrent form one DHT on 127.0.0.1. Lookups from each
    of ours end at the same nodes, libtorrent's table comes to hold all of ours, and an announce made by
    one implementation is found by the other's get_peers, both ways."""

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            router = await stack.enter_async_context(dht_router(h, None, "ours"))
            assert router.node is not None
            a = await our_session(stack, tmp_path, "a", router)
            b = await our_session(stack, tmp_path, "b", router)
            await a.dht_ready.wait()
            await b.dht_ready.wait()
            libtorrent = start_lt(h, lt, "lt-node", router.address)
            await until(h, "libtorrent to answer the router", lambda: any(
                c.port == libtorrent.port for c in router.node.table.contacts()), timeout=START)
            ours = {"router": router.node, "a": a.dht, "b": b.dht}
            ids = {name: node.node_id.hex() for name, node in ours.items() if node is not None}
            assert len(ids) == 3
            lt_id = libtorrent.node_id
            everyone = {*ids.values(), lt_id}

            # Lookups converge: from every one of ours, the nearest nodes to any target are everyone else.
            # Looking up libtorrent's own id ends at libtorrent.
            for target in (os.urandom(20), bytes.fromhex(lt_id)):
                for name, node in ours.items():
                    assert node is not None
                    lookup = await node.lookup(target)
                    answered = [c.id.hex() for c, _ in lookup.result()]
                    assert set(answered) == everyone - {ids[name]}, f"{name}'s lookup of {target.hex()}: {answered}"
                    if target.hex() == lt_id:
                        assert answered[0] == lt_id, f"{name}'s lookup of libtorrent's id: {answered}"
            # libtorrent's routing table holds our sessions' nodes, as nodes that answered it. (Never the
            # router: libtorrent keeps the nodes of its dht_bootstrap_nodes out of its table.)
            sessions = {ids["a"], ids["b"]}

            def lt_knows_ours() -> bool:
                live = libtorrent.find("live_nodes")
                if live and {node_id for node_id, _ in live[-1].nodes} >= sessions:
                    return True
                libtorrent.live_nodes()
                return False

            await until(h, "libtorrent's routing table to hold our sessions' nodes", lt_knows_ours, timeout=15,
                        interval=0.5, context=lambda: f"ours: {ids}, libtorrent: {libtorrent.find('live_nodes')[-1:]}")

            # libtorrent announces; our sessions' get_peers find it.
            lt_hash = os.urandom(20)
            libtorrent.announce(lt_hash, 6881)
            await found_by(h, a, lt_hash, "127.0.0.1:6881", timeout=15)
            await found_by(h, b, lt_hash, "127.0.0.1:6881", timeout=5)
            stored = [name for name, node in ours.items() if node is not None and
                      ("127.0.0.1", 6881) in node.store.peers(lt_hash, time.monotonic())]
            assert stored, "none of our nodes took libtorrent's announce_peer"

            # One of ours announces; libtorrent takes the announce and its get_peers finds it.
            our_hash = os.urandom(20)
            assert a.dht is not None
            accepted = await a.dht.announce(our_hash, 7777)
            assert accepted >= 3, f"only {accepted} nodes took our announce_peer"
            await until(h, "libtorrent to report our announce_peer", lambda: any(
                ("127.0.0.1", 7777) in s.peers for s in libtorrent.find("incoming_announce", our_hash.hex())),
                timeout=5)
            libtorrent.get_peers(our_hash)
            await until(h, "libtorrent's get_peers to find our announce", lambda: any(
                ("127.0.0.1", 7777) in s.peers for s in libtorrent.find("get_peers_reply", our_hash.hex())),
                timeout=15)

    run(main())


def test_port_messages_put_each_node_in_the_others_table(h: Harness, lt: ModuleType, tmp_path: Path) -> None:
    """No router at all: our session and a libtorrent seeder, each with its DHT on and an empty routing
    table, meet as peers (ours is told libtorrent's address). The BEP 5 ``port`` messages they exchange
    put each one's DHT node in the other's table, as a node that answered."""
    meta, data_parent, torrent_file = make_torrent(tmp_path, SIZE, files=3)

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            seeder = start_lt(h, lt, "lt-seed", None)
            await lt_seeding(h, seeder, seeder.add(torrent_file, data_parent))
            ours = await our_session(stack, tmp_path, "ours", None)
            node = ours.dht
            assert node is not None and len(node.table) == 0
            tid = await ours.add(torrent_file, save_path=tmp_path / "ours")
            await ours.add_peers(tid, [("127.0.0.1", seeder.port)])
            lt_id = seeder.node_id

            def ours_knows_lt() -> bool:
                entry = node.table.get(bytes.fromhex(lt_id))
                return entry is not None and entry.contact[1:] == seeder.address and entry.last_reply is not None

            await until(h, "libtorrent's port message to put its node in our table", ours_knows_lt, timeout=15,
                        context=lambda: f"our table: {node.table.contacts()}")

            def lt_knows_ours() -> bool:
                live = seeder.find("live_nodes")
                if live and (node.node_id.hex(), ("127.0.0.1", ours.dht_port)) in live[-1].nodes:
                    return True
                seeder.live_nodes()
                return False

            await until(h, "our port message to put our node in libtorrent's table", lt_knows_ours, timeout=15,
                        interval=0.3, context=lambda: f"libtorrent's live nodes: {seeder.find('live_nodes')[-1:]}")
            await until(h, "our leecher to complete", lambda: complete(ours, tid), timeout=TRANSFER,
                        context=lambda: describe(ours, tid))

    run(main())


# ---- 5: peer exchange --------------------------------------------------------------------------

def lt_connected(handle: Any, lt: ModuleType) -> dict[int, Any]:
    """libtorrent's connected peers (handshake done) by port: the listen port for those it dialled."""
    return {p.ip[1]: p for p in handle.get_peer_info() if not p.flags & lt.peer_info.connecting
            and not p.flags & lt.peer_info.handshake}


def test_our_leecher_learns_libtorrent_peers_through_pex(h: Harness, lt: ModuleType, tmp_path: Path) -> None:
    """A libtorrent seed and two libtorrent leechers; the first leecher knows the other two, who have PEX
    off (so they never hear of us and dial us). Our leecher, its DHT off, has a magnet link whose only
    peer (``x.pe``) is the first leecher: that one gives us the metadata, and its ut_pex names the
    others, whom we dial."""
    meta, data_parent, torrent_file = make_torrent(tmp_path, SIZE, files=3)
    no_pex = lt.torrent_flags.disable_pex
    down = tmp_path / "ours"

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            seed = h.lt_peer(lt, "lt-seed")
            seed_handle = seed.add(torrent_file, data_parent, flags=no_pex)
            seed_handle.set_upload_limit(1 * MiB)  # a swarm that lasts a few seconds
            await lt_seeding(h, seed, seed_handle)
            other = h.lt_peer(lt, "lt-leech-nopex")
            other.add(torrent_file, tmp_path / "lt-other", flags=no_pex).connect_peer(("127.0.0.1", seed.port))
            first = h.lt_peer(lt, "lt-leech-pex")
            first_handle = first.add(torrent_file, tmp_path / "lt-first")
            first_handle.connect_peer(("127.0.0.1", seed.port))
            first_handle.connect_peer(("127.0.0.1", other.port))
            await until(h, "the first libtorrent leecher to connect to the seed and the other leecher",
                        lambda: {seed.port, other.port} <= set(lt_connected(first_handle, lt)), timeout=START)

            ours = await our_session(stack, tmp_path, "ours", None, discovery__dht=False)
            tid = await ours.add(magnet(meta.info_hash_hex, meta.name, [("127.0.0.1", first.port)]), save_path=down)
            seen: set[tuple[str, str]] = set()  # (address, source) of every peer seen connected

            def learned() -> bool:
                seen.update((p.address, p.source) for p in ours.peers(tid) if p.status == "connected")
                return {(f"127.0.0.1:{port}", PeerSource.PEX.value) for port in (seed.port, other.port)} <= seen

            await until(h, "our leecher to dial the peers libtorrent's PEX named", learned, timeout=20,
                        context=lambda: f"seen connected: {sorted(seen)}\n{describe(ours, tid)}")
            assert (f"127.0.0.1:{first.port}", PeerSource.MANUAL.value) in seen
            seed_handle.set_upload_limit(0)
            await until(h, "our leecher to complete", lambda: complete(ours, tid), timeout=TRANSFER,
                        context=lambda: describe(ours, tid))
        assert saved_info(down / f"{meta.name}.torrent") == meta.info_bytes
        assert same_tree(data_parent / meta.name, down / meta.name)

    run(main())


def test_libtorrent_learns_our_peers_through_pex(h: Harness, lt: ModuleType, tmp_path: Path) -> None:
    """Our seeder (upload limited, its DHT off) with two libtorrent leechers that dialled it, PEX off.
    A third libtorrent leecher, PEX on, has a magnet link whose only peer (``x.pe``) is our seeder: it
    gets the metadata from us, learns the other two from our ut_pex (their listen ports, from their
    extension handshakes) and dials them: libtorrent marks them as peers from PEX."""
    meta, data_parent, torrent_file = make_torrent(tmp_path, SIZE, files=3)
    no_pex = lt.torrent_flags.disable_pex
    out = tmp_path / "lt"

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            ours = await our_session(stack, tmp_path, "ours", None, discovery__dht=False)
            tid = await ours.add(torrent_file, save_path=data_parent)
            await until(h, "our seeder to check its data", lambda: seeding(ours, tid), timeout=START)
            await ours.set_torrent_limits(tid, max_up=1 * MiB)
            others = [h.lt_peer(lt, f"lt-nopex-{i}") for i in (1, 2)]
            for i, other in enumerate(others):
                other.add(torrent_file, tmp_path / f"lt-nopex-{i}", flags=no_pex).connect_peer(
                    ("127.0.0.1", ours.listen_port))
            await until(h, "both libtorrent leechers to connect to our seeder", lambda: ours.torrent(tid).peers >= 2,
                        timeout=START, context=lambda: describe(ours, tid))

            leecher = h.lt_peer(lt, "lt-pex")
            handle = leecher.add_magnet(magnet(meta.info_hash_hex, meta.name, [("127.0.0.1", ours.listen_port)]), out)
            wanted = {other.port for other in others}

            def from_pex() -> set[int]:
                return {port for port, p in lt_connected(handle, lt).items() if p.source & lt.peer_info.pex}

            await until(h, "libtorrent to dial the peers our PEX named", lambda: wanted <= from_pex(), timeout=20,
                        context=lambda: f"libtorrent's peers: {[(p.ip, p.source) for p in handle.get_peer_info()]}")
            await ours.set_torrent_limits(tid, max_up=0)
            await until(h, "the PEX-taught libtorrent leecher to complete", lambda: handle.status().is_seeding,
                        timeout=TRANSFER, context=leecher.progress_line)
            leecher.close()
        h.check_same(data_parent / meta.name, out / meta.name, "libtorrent (taught by our PEX)")

    run(main())


# ---- 6: a dead tracker -------------------------------------------------------------------------

def test_a_swarm_outlives_its_only_tracker(h: Harness, lt: ModuleType, tmp_path: Path) -> None:
    """opentracker is the torrent's only tracker. A libtorrent seed and our first leecher announce to it
    (and to the DHT), then it is killed. Our second leecher and a libtorrent leecher start after, from a
    magnet link naming only that tracker: every announce of theirs fails, and they find the swarm (and
    the metadata) through the DHT and PEX, and complete."""
    port = clients.free_port()
    url = f"http://127.0.0.1:{port}/announce"
    meta, data_parent, torrent_file = make_torrent(tmp_path, SIZE, files=3, trackers=[url])
    tracker = clients.start_opentracker(h, port, [meta.info_hash_hex])
    uri = magnet(meta.info_hash_hex, meta.name) + f"&tr={quote(url, safe='')}"

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            router = await stack.enter_async_context(dht_router(h, None, "ours"))
            seed = start_lt(h, lt, "lt-seed", router.address)
            await lt_seeding(h, seed, seed.add(torrent_file, data_parent))
            await until(h, "the libtorrent seed to announce to opentracker", lambda: (tracker.scrape(
                meta.info_hash_hex) or (0, 0))[0] >= 1, timeout=START, interval=0.3)
            first = await our_session(stack, tmp_path, "first", router)
            first_tid = await first.add(torrent_file, save_path=tmp_path / "first")

            def tracker_gave_the_seed() -> bool:
                status = first.trackers(first_tid)[0]
                return status.status == "working" and (status.peers or 0) >= 1

            await until(h, "opentracker to give our first leecher the seed", tracker_gave_the_seed, timeout=START,
                        context=lambda: str(first.trackers(first_tid)))
            tracker.proc.stop()  # by PID: the swarm's only tracker is gone
            assert not tracker.proc.alive()

            late = await our_session(stack, tmp_path, "late", router)
            late_tid = await late.add(uri, save_path=tmp_path / "late")
            lt_late = start_lt(h, lt, "lt-late", router.address)
            lt_handle = lt_late.add_magnet(uri, tmp_path / "lt-late")
            await until(h, "our late leecher to complete without the tracker", lambda: complete(late, late_tid),
                        timeout=TRANSFER, context=lambda: describe(late, late_tid))
            await until(h, "libtorrent's late leecher to complete without the tracker",
                        lambda: lt_handle.status().is_seeding, timeout=TRANSFER, context=lt_late.progress_line)
            await until(h, "our first leecher to complete", lambda: complete(first, first_tid), timeout=TRANSFER,
                        context=lambda: describe(first, first_tid))

            sources = {p.address: p.source for p in late.peers(late_tid)}
            assert PeerSource.TRACKER.value not in sources.values(), sources
            assert sources.get(f"127.0.0.1:{seed.port}") in (PeerSource.DHT.value, PeerSource.PEX.value), sources
            announce = late.trackers(late_tid)[0]
            assert announce.url == url and announce.status == "error" and announce.last_announce is None, announce
            assert any(r.count >= 1 for r in lt_late.find("torrent_dht_reply", meta.info_hash_hex))
            lt_late.close()
        assert saved_info(tmp_path / "late" / f"{meta.name}.torrent") == meta.info_bytes
        for where in ("first", "late", "lt-late"):
            h.check_same(data_parent / meta.name, tmp_path / where / meta.name, where)

    run(main())
