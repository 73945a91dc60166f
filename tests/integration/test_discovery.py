"""Peers without a tracker, between our own sessions on 127.0.0.1: peer exchange (BEP 11), local service
discovery on the loopback interface (BEP 14), the private flag that turns all of it off (BEP 27), and the
port mapping a session asks of a (fake) router."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

from portmap_gateway import EXTERNAL_ADDRESS, FakeGateway
from swarmkit import local_settings, make_torrent, run, same_tree, start_session, wait_complete, wait_for

from torrent.codec import bencoding, wire
from torrent.core.settings import with_values
from torrent.create import create_torrent
from torrent.dht.node import DhtNode
from torrent.session import PeerSource


def connected_sources(session, tid: str) -> list[str]:
    return [p.source for p in session.peers(tid) if p.status == "connected"]


def test_a_leecher_that_knows_one_peer_learns_the_others_by_pex(tmp_path: Path) -> None:
    meta, data_parent, torrent_file = make_torrent(tmp_path, 4_000_000, files=2)

    async def main() -> None:
        seeder = await start_session(tmp_path, "seed")
        first = await start_session(tmp_path, "first")
        late = await start_session(tmp_path, "late")
        try:
            await seeder.set_rate_limits(max_up=400_000)  # the leechers stay long enough to meet
            sid = await seeder.add(torrent_file, save_path=data_parent)
            await wait_for(seeder, sid, lambda s: s.state == "seeding")
            seed_addr = ("127.0.0.1", seeder.listen_port)
            await first.add(torrent_file, save_path=tmp_path / "first", peers=[seed_addr])
            await wait_for(seeder, sid, lambda s: s.peers == 1)
            tid = await late.add(torrent_file, save_path=tmp_path / "late", peers=[seed_addr])
            # The seeder tells each leecher about the other: they connect (whichever dial wins), though
            # neither was given the other's address.
            await wait_for(late, tid, lambda s: s.peers == 2, timeout=20, what="a peer learned through PEX")
            assert sorted(connected_sources(late, tid)) in (["incoming", "manual"], ["manual", "pex"])
            await seeder.set_rate_limits(max_up=0)
            await wait_complete(late, tid)
        finally:
            for session in (late, first, seeder):
                await session.close()
        assert same_tree(data_parent / meta.name, tmp_path / "late" / meta.name)

    run(main())


def test_a_magnet_finds_its_seeder_on_the_local_network(tmp_path: Path) -> None:
    """LSD only: no tracker, no DHT router, no peer given. Multicast stays on the loopback interface, on a
    group and port of this test's own."""
    meta, data_parent, torrent_file = make_torrent(tmp_path, 1_000_000, files=1)
    group = f"239.192.{random.randint(1, 254)}.{random.randint(1, 254)}:{random.randint(20000, 60000)}"
    settings = local_settings(discovery__lsd=True, discovery__lsd_address=group, discovery__dht=False)

    async def main() -> None:
        seeder = await start_session(tmp_path, "seed", settings)
        # Slowed, so the connection is seen before the download ends (two seeds then part).
        leecher = await start_session(tmp_path, "leech", with_values(settings, {"rates.max_down": 256 * 1024}))
        try:
            assert seeder.snapshot().lsd.startswith("announcing to ")
            await seeder.add(torrent_file, save_path=data_parent)
            await wait_for(seeder, meta.info_hash_hex, lambda s: s.state == "seeding")
            tid = await leecher.add(f"magnet:?xt=urn:btih:{meta.info_hash_hex}", save_path=tmp_path / "down")
            # Whichever side heard the other's announce first dialled.
            sources: list[str] = []
            for _ in range(400):
                sources = connected_sources(leecher, tid) + connected_sources(seeder, meta.info_hash_hex)
                if sources:
                    break
                await asyncio.sleep(0.05)
            assert PeerSource.LSD.value in sources
            await wait_complete(leecher, tid, timeout=30)
        finally:
            await leecher.close()
            await seeder.close()
        assert same_tree(data_parent / meta.name, tmp_path / "down" / meta.name)

    run(main())


def test_a_private_torrent_stays_out_of_the_dht_and_pex(tmp_path: Path) -> None:
    payload = tmp_path / "seed" / "secret"
    payload.parent.mkdir()
    payload.write_bytes(os.urandom(300_000))
    raw = create_torrent(payload, piece_length=32768, private=True)
    torrent_file = tmp_path / "secret.torrent"
    torrent_file.write_bytes(raw)
    public_meta, public_parent, public_file = make_torrent(tmp_path, 300_000, files=1, name="public")

    async def main() -> None:
        router = DhtNode()
        host, port = await router.open("127.0.0.1", 0)
        seeder = await start_session(tmp_path, "seed", local_settings(discovery__dht_bootstrap=f"{host}:{port}"))
        try:
            private_id = await seeder.add(torrent_file, save_path=payload.parent)
            public_id = await seeder.add(public_file, save_path=public_parent)
            await wait_for(seeder, private_id, lambda s: s.state == "seeding" and s.private)
            await wait_for(seeder, public_id, lambda s: s.state == "seeding")
            for _ in range(100):  # the public torrent is announced; the private one never
                if router.store.peers(public_meta.info_hash, time.monotonic()):
                    break
                await asyncio.sleep(0.1)
            assert router.store.peers(public_meta.info_hash, time.monotonic())
            assert not router.store.peers(bytes.fromhex(private_id), time.monotonic())
            for info_hash, private in ((bytes.fromhex(private_id), True), (public_meta.info_hash, False)):
                reserved, m = await _handshake_with(seeder.listen_port, info_hash)
                assert wire.Handshake(info_hash, b"x" * 20, reserved).supports_dht is not private
                assert (b"ut_pex" in m) is not private and b"ut_metadata" in m
        finally:
            await seeder.close()
            router.close()

    run(main())


async def _handshake_with(port: int, info_hash: bytes) -> tuple[bytes, dict[bytes, int]]:
    """Our handshake to a session; its reserved bytes and the ``m`` of its extension handshake."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(wire.Handshake(info_hash, b"-XX0001-" + os.urandom(12)).to_bytes())
        head = await asyncio.wait_for(reader.readexactly(68), 5)
        parser = wire.WireParser(expect_handshake=False)
        while True:
            for event in parser.feed(await asyncio.wait_for(reader.read(65536), 5)):
                if type(event) is wire.Extended and event.ext_id == 0:
                    return head[20:28], bencoding.decode(event.payload)[b"m"]
    finally:
        writer.close()


def test_the_session_maps_its_port_and_removes_the_mapping_at_exit(tmp_path: Path) -> None:
    async def main() -> None:
        gateway = await FakeGateway().start()
        refusing = await FakeGateway(soap_fault=718, natpmp_result=2).start()
        try:
            def settings(gw: FakeGateway):
                ssdp, pmp = gw.ssdp_address, gw.natpmp_address
                return local_settings(discovery__port_map=True, discovery__port_map_ssdp=f"{ssdp[0]}:{ssdp[1]}",
                                      discovery__port_map_gateway=f"{pmp[0]}:{pmp[1]}")

            session = await start_session(tmp_path, "mapped", settings(gateway))
            try:
                snap = await _wait_snapshot(session, lambda s: s.port_mapping not in ("off", "mapping"))
                assert snap.port_mapping.startswith("mapped by ")
                assert snap.external_address is not None
                assert snap.external_address.startswith(f"{EXTERNAL_ADDRESS}:")
                method = snap.port_mapping.removeprefix("mapped by ")
                added = gateway.of("upnp" if method == "upnp" else method, "add")
                assert {(c.protocol, c.internal_port) for c in added} >= {("tcp", session.listen_port),
                                                                          ("udp", session.listen_port)}
            finally:
                await session.close()
            assert not any(gateway.mappings.values())  # removed at exit

            refused = await start_session(tmp_path, "refused", settings(refusing))
            try:
                snap = await _wait_snapshot(refused, lambda s: s.port_mapping not in ("off", "mapping"))
                assert snap.port_mapping.startswith("failed: ") and snap.external_address is None
            finally:
                await refused.close()
        finally:
            await gateway.close()
            await refusing.close()

    run(main())


async def _wait_snapshot(session, predicate, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while True:
        snap = session.snapshot()
        if predicate(snap) or time.monotonic() > deadline:
            return snap
        await asyncio.sleep(0.05)


def test_peers_tell_each_other_their_dht_port(tmp_path: Path) -> None:
    """No router at all: the BEP 5 port message alone puts each session's node in the other's table."""
    meta, data_parent, torrent_file = make_torrent(tmp_path, 200_000, files=1)

    async def main() -> None:
        seeder = await start_session(tmp_path, "seed")
        leecher = await start_session(tmp_path, "leech")
        try:
            assert seeder.snapshot().dht_nodes == 0 and leecher.snapshot().dht_nodes == 0
            assert seeder.snapshot().udp_port == seeder.listen_port  # TCP and UDP share the number
            await seeder.add(torrent_file, save_path=data_parent)
            await wait_for(seeder, meta.info_hash_hex, lambda s: s.state == "seeding")
            tid = await leecher.add(torrent_file, save_path=tmp_path / "down",
                                    peers=[("127.0.0.1", seeder.listen_port)])
            await wait_complete(leecher, tid)
            for session, other in ((seeder, leecher), (leecher, seeder)):
                snap = await _wait_snapshot(session, lambda s: s.dht_nodes == 1)
                assert snap.dht_nodes == 1
                status = session.dht_status()
                assert status is not None and status.nodes == 1
                node_id, rtt = await session.dht_ping("127.0.0.1", other.dht_status().port)
                assert node_id == other.dht_status().node_id and rtt < 5
        finally:
            await leecher.close()
            await seeder.close()

    run(main())


def test_a_torrent_remembers_a_bounded_number_of_pex_addresses(tmp_path: Path) -> None:
    """What peers say through PEX fills at most ``discovery.max_pex_peers`` candidates."""
    async def main() -> None:
        session = await start_session(tmp_path, "s", local_settings(discovery__max_pex_peers=30))
        try:
            tid = await session.add("magnet:?xt=urn:btih:" + "ab" * 20, save_path=tmp_path, paused=True)
            torrent = session._torrents[tid]
            torrent._pex_peers([("10.1.0.%d" % i, 6881) for i in range(1, 26)])
            torrent._pex_peers([("10.2.0.%d" % i, 6881) for i in range(1, 26)])
            assert len(torrent.candidates) == 30
        finally:
            await session.close()

    run(main())
