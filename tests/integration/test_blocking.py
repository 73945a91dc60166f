"""IP blocklists end to end on 127.0.0.x: the whole of 127.0.0.0/8 is loopback on Linux, so peers bound
to 127.0.0.2 and 127.0.0.3 are told apart by address alone. Blocked addresses are never dialled and
are refused when they dial in, before the handshake; the others work as before. Sessions are driven
through the public API; the raw peers are real sockets speaking the real handshake.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
import sys
from pathlib import Path

from swarmkit import local_settings, make_torrent, run, start_session, wait_complete, wait_for

from torrent.codec import wire
from torrent.session import Session

BLOCKED = "127.0.0.2"
ALLOWED = "127.0.0.3"


async def handshake_from(source: str, port: int, info_hash: bytes) -> tuple[bytes, asyncio.StreamReader,
                                                                           asyncio.StreamWriter]:
    """Dial our session on 127.0.0.1 from ``source`` and send a handshake: what came back within 5 s
    (at least the 68-byte handshake, unless the connection was closed first)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    received = b""
    try:
        writer.write(wire.Handshake(info_hash, b"-RAW001-" + os.urandom(12)).to_bytes())
        await writer.drain()
        while len(received) < wire.HANDSHAKE_LENGTH and (chunk := await asyncio.wait_for(reader.read(65536), 5)):
            received += chunk
    except (asyncio.TimeoutError, ConnectionError):
        pass
    return received, reader, writer


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the other side closes the connection within ``seconds`` (what it sends is read and dropped)."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def seed(tmp: Path, name: str, torrent: Path, data: Path, **settings: object) -> tuple[Session, str]:
    session = await start_session(tmp, name, local_settings(**settings))
    torrent_id = await session.add(torrent, save_path=data)
    await wait_for(session, torrent_id, lambda s: s.state == "seeding", what="seeding")
    return session, torrent_id


def test_a_blocked_seeder_is_never_dialled_and_an_unblocked_one_serves(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 600_000)
    listed = tmp_path / "level1.p2p.gz"  # gzip, as lists are downloaded
    listed.write_bytes(gzip.compress(f"# test list\nLoopback: blocked:{BLOCKED}-{BLOCKED}\n".encode()))

    async def main() -> None:
        dialled = 0

        def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal dialled
            dialled += 1
            writer.close()

        # The blocked "seeder" only counts who dials it: a real socket on 127.0.0.2.
        trap = await asyncio.start_server(count, BLOCKED, 0)
        trap_port = trap.sockets[0].getsockname()[1]
        good, _ = await seed(tmp_path, "good", torrent, data, network__bind=ALLOWED)
        leecher = await start_session(tmp_path, "leech", local_settings(network__blocklist=str(listed)))
        try:
            assert leecher.snapshot().blocklist == "1 range"
            lid = await leecher.add(torrent, save_path=tmp_path / "out",
                                    peers=[(BLOCKED, trap_port), (ALLOWED, good.listen_port)])
            await leecher.add_peers(lid, [(BLOCKED, trap_port + 1)])  # added later: refused as well
            snap = await wait_complete(leecher, lid)
            assert snap.downloaded >= meta.payload_length
            await asyncio.sleep(1.5)  # past the first retry delay: a refused address is not tried later either
            assert dialled == 0
            assert leecher.snapshot().blocked >= 2
        finally:
            await leecher.close()
            await good.close()
            trap.close()

    run(main())


def test_a_blocked_peer_dialling_in_is_refused_before_the_handshake(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 600_000)
    listed = tmp_path / "ipfilter.dat"
    listed.write_text("127.000.000.002 - 127.000.000.002 , 000 , blocked\n"
                      "127.000.000.003 - 127.000.000.003 , 200 , allowed by its level\n")

    async def main() -> None:
        seeder, _ = await seed(tmp_path, "seed", torrent, data, network__blocklist=str(listed))
        port = seeder.listen_port
        assert port is not None
        blocked_leecher = await start_session(tmp_path, "blocked", local_settings(network__bind=BLOCKED))
        good_leecher = await start_session(tmp_path, "good", local_settings(network__bind=ALLOWED))
        try:
            refused, _, writer = await handshake_from(BLOCKED, port, meta.info_hash)
            writer.close()
            assert refused == b""  # closed before a byte of the handshake came back
            answered, _, writer = await handshake_from(ALLOWED, port, meta.info_hash)
            writer.close()
            assert wire.parse_handshake(answered[:wire.HANDSHAKE_LENGTH]).info_hash == meta.info_hash

            bad = await blocked_leecher.add(torrent, save_path=tmp_path / "bad", peers=[("127.0.0.1", port)])
            good = await good_leecher.add(torrent, save_path=tmp_path / "good", peers=[("127.0.0.1", port)])
            await wait_complete(good_leecher, good)
            assert blocked_leecher.torrent(bad).downloaded == 0
            assert [p.status for p in blocked_leecher.peers(bad)] in ([], ["failed"], ["connecting"])
            assert seeder.snapshot().blocked >= 2  # the raw peer and the blocked leecher, at least once each
        finally:
            await good_leecher.close()
            await blocked_leecher.close()
            await seeder.close()

    run(main())


def test_a_list_loaded_at_run_time_drops_connected_peers_and_a_bad_one_keeps_the_old(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 100_000)
    listed = tmp_path / "list.p2p"
    listed.write_text(f"later:{BLOCKED}-{BLOCKED}\n")
    broken = tmp_path / "broken.p2p"
    broken.write_text("<html>not found</html>\n")

    async def main() -> None:
        seeder, _ = await seed(tmp_path, "seed", torrent, data)
        port = seeder.listen_port
        assert port is not None
        try:
            assert seeder.snapshot().blocklist == "off"
            answered, reader, writer = await handshake_from(BLOCKED, port, meta.info_hash)
            assert len(answered) >= wire.HANDSHAKE_LENGTH  # connected: no list yet
            await seeder.update_settings({"network.blocklist": str(listed)})
            assert await closed_within(reader, 10)
            writer.close()
            assert seeder.snapshot().blocklist == "1 range" and seeder.snapshot().blocked >= 1

            await seeder.update_settings({"network.blocklist": str(broken)})
            for _ in range(100):
                if seeder.snapshot().blocklist.startswith("failed"):
                    break
                await asyncio.sleep(0.05)
            status = seeder.snapshot().blocklist
            assert status.startswith("failed: blocklist ") and "no valid line" in status
            assert "the previous list (1 range) stays in force" in status
            refused, _, writer = await handshake_from(BLOCKED, port, meta.info_hash)
            writer.close()
            assert refused == b""
            answered, _, writer = await handshake_from(ALLOWED, port, meta.info_hash)
            writer.close()
            assert len(answered) >= wire.HANDSHAKE_LENGTH
        finally:
            await seeder.close()

    run(main())


def test_cli_refuses_an_unusable_list_in_one_line(tmp_path: Path) -> None:
    _, _, torrent = make_torrent(tmp_path, 50_000)
    malformed = tmp_path / "bad.dat"
    malformed.write_text("# a list\n1.2.3.4 - 1.2.3 , 0 , short\nnot a range\n")
    for listed, expected in ((malformed, f"blocklist {malformed}: no valid line: 2 malformed (line 2: end address "
                                         "'1.2.3' is not an IP address)"),
                             (tmp_path / "missing.dat", f"cannot read blocklist {tmp_path / 'missing.dat'}: "
                                                        "No such file or directory"),
                             (tmp_path, f"blocklist {tmp_path} is not a regular file")):
        proc = subprocess.run([sys.executable, "-m", "torrent", "download", str(torrent), "-o", str(tmp_path / "o"),
                               "--bind", "127.0.0.1", "--port", "0", "--state-dir", str(tmp_path / "state"),
                               "--blocklist", str(listed)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines() == [f"torrent: error: {expected}"]
        assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_a_blocked_peer_dialling_in_over_utp_is_refused(tmp_path: Path) -> None:
    """The same guard holds for uTP: the connection it opens is aborted (a RESET) before its handshake."""
    meta, data, torrent = make_torrent(tmp_path, 600_000)
    listed = tmp_path / "list.p2p"
    listed.write_text(f"blocked:{BLOCKED}-{BLOCKED}\n")

    async def main() -> None:
        seeder, _ = await seed(tmp_path, "seed", torrent, data, network__blocklist=str(listed),
                               network__transports="utp,tcp")
        port = seeder.listen_port
        blocked_leecher = await start_session(tmp_path, "blocked", local_settings(network__bind=BLOCKED,
                                                                                  network__transports="utp"))
        good_leecher = await start_session(tmp_path, "good", local_settings(network__bind=ALLOWED,
                                                                            network__transports="utp"))
        try:
            bad = await blocked_leecher.add(torrent, save_path=tmp_path / "bad", peers=[("127.0.0.1", port)])
            good = await good_leecher.add(torrent, save_path=tmp_path / "good", peers=[("127.0.0.1", port)])
            await wait_complete(good_leecher, good)
            await wait_for(blocked_leecher, bad,
                           lambda s: any(p.status == "failed" for p in blocked_leecher.peers(bad)),
                           what="the blocked leecher's attempt to fail")
            assert blocked_leecher.torrent(bad).downloaded == 0
            assert seeder.snapshot().blocked >= 1
        finally:
            await good_leecher.close()
            await blocked_leecher.close()
            await seeder.close()

    run(main())
