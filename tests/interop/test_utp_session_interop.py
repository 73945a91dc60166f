"""Whole sessions over uTP with libtorrent on 127.0.0.1, libtorrent's TCP off: plain and with RC4 required on
both sides (uTP + encryption together), each way. Our peer rows must say uTP and what was negotiated."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest

if str(Path(__file__).parent.parent) not in sys.path:  # --import-mode=importlib does not add it
    sys.path.insert(0, str(Path(__file__).parent.parent))

from swarmkit import local_settings, make_torrent, run, same_tree, start_session, wait_complete, wait_for

pytestmark = pytest.mark.interop

MiB = 1024 * 1024
LT_UTP = {
    "listen_interfaces": "127.0.0.1:0",
    "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
    "enable_incoming_utp": True, "enable_outgoing_utp": True,
    "enable_incoming_tcp": False, "enable_outgoing_tcp": False,
    "allow_multiple_connections_per_ip": True,
    "alert_mask": 0,
}
LT_RC4 = {"out_enc_policy": 0, "in_enc_policy": 0, "allowed_enc_level": 2, "prefer_rc4": True}  # pe_forced, pe_rc4


def lt_add(lt: Any, session: Any, torrent: Path, save_path: Path) -> Any:
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(str(torrent))
    params.save_path = str(save_path)
    return session.add_torrent(params)


async def our_row(session: Any, torrent_id: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [p for p in session.peers(torrent_id) if p.status == "connected"]
        if rows:
            return rows[0]
        await asyncio.sleep(0.01)
    raise AssertionError(f"libtorrent never connected over uTP: {session.peers(torrent_id)}")


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "rc4"])
def test_libtorrent_seeds_we_download_over_utp(lt: Any, tmp_path: Path, encrypted: bool) -> None:
    meta, data, torrent = make_torrent(tmp_path, 3 * MiB + 99, files=1)
    lt_session = lt.session(dict(LT_UTP, **(LT_RC4 if encrypted else {})))
    handle = lt_add(lt, lt_session, torrent, data)
    deadline = time.monotonic() + 15
    while not handle.status().is_seeding:
        assert time.monotonic() < deadline, "libtorrent did not finish checking the payload"
        time.sleep(0.02)
    port = lt_session.listen_port()

    async def main() -> None:
        leecher = await start_session(tmp_path, "l", local_settings(
            network__transports="utp", network__encryption="require" if encrypted else "prefer"))
        try:
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", port)])
            row = await our_row(leecher, lid)
            assert row.transport == "utp" and row.client.startswith("libtorrent")
            assert row.encryption == ("rc4" if encrypted else "handshake")
            await wait_complete(leecher, lid, timeout=60)
        finally:
            await leecher.close()

    try:
        run(main())
    finally:
        del lt_session
    assert same_tree(data / "payload", tmp_path / "out" / "payload")


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "rc4"])
def test_we_seed_libtorrent_downloads_over_utp(lt: Any, tmp_path: Path, encrypted: bool) -> None:
    meta, data, torrent = make_torrent(tmp_path, 3 * MiB + 99, files=1)
    out = tmp_path / "lt-out"
    out.mkdir()

    async def main() -> None:
        seeder = await start_session(tmp_path, "s", local_settings(
            network__transports="utp", network__encryption="require" if encrypted else "prefer"))
        lt_session = lt.session(dict(LT_UTP, **(LT_RC4 if encrypted else {})))
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_for(seeder, sid, lambda s: s.state == "seeding", what="seeding")
            handle = lt_add(lt, lt_session, torrent, out)
            handle.connect_peer(("127.0.0.1", seeder.listen_port))
            row = await our_row(seeder, sid)
            assert row.transport == "utp" and row.incoming
            assert row.encryption == ("rc4" if encrypted else "handshake")
            deadline = time.monotonic() + 60
            while not handle.status().is_seeding:
                assert time.monotonic() < deadline, f"libtorrent stuck at {handle.status().progress:.0%}"
                await asyncio.sleep(0.05)
            lt_session.pause()  # its last bytes reach the file before we compare
        finally:
            await seeder.close()
            del lt_session

    run(main())
    assert same_tree(data / "payload", out / "payload")
