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

from swarmkit import (
    connected_row,
    local_settings,
    make_torrent,
    run,
    same_tree,
    start_session,
    wait_complete,
    wait_for,
)

from torrent.bench.lt_peer import ENCRYPTED as LT_FORCED_RC4
from torrent.bench.lt_peer import LOOPBACK_SETTINGS, UTP_ONLY

pytestmark = pytest.mark.interop

MiB = 1024 * 1024
LT_UTP = dict(LOOPBACK_SETTINGS, **UTP_ONLY, alert_mask=0)  # libtorrent on loopback, uTP alone


def lt_add(lt: Any, session: Any, torrent: Path, save_path: Path) -> Any:
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(str(torrent))
    params.save_path = str(save_path)
    return session.add_torrent(params)



@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "rc4"])
def test_libtorrent_seeds_we_download_over_utp(lt: Any, tmp_path: Path, encrypted: bool) -> None:
    meta, data, torrent = make_torrent(tmp_path, 3 * MiB + 99, files=1)
    lt_session = lt.session(dict(LT_UTP, **(LT_FORCED_RC4 if encrypted else {})))
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
            row = await connected_row(leecher, lid)
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
        lt_session = lt.session(dict(LT_UTP, **(LT_FORCED_RC4 if encrypted else {})))
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_for(seeder, sid, lambda s: s.state == "seeding", what="seeding")
            handle = lt_add(lt, lt_session, torrent, out)
            handle.connect_peer(("127.0.0.1", seeder.listen_port))
            row = await connected_row(seeder, sid)
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


def lt_utp_stats(lt: Any, session: Any) -> dict[str, int]:
    """libtorrent's uTP counters (session stats): packets it saw lost, its retransmission timeouts."""
    index = {m.name: m.value_index for m in lt.session_stats_metrics()}
    session.post_session_stats()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for alert in session.pop_alerts():
            if isinstance(alert, lt.session_stats_alert):
                values = alert.values
                return {name: values[name] if isinstance(values, dict) else values[index[name]]
                        for name in ("utp.utp_packet_loss", "utp.utp_timeout", "utp.utp_payload_pkts_out")}
        time.sleep(0.01)
    raise AssertionError("libtorrent posted no session stats")


def test_libtorrent_sending_flat_out_loses_nothing_to_our_socket_buffer(lt: Any, tmp_path: Path) -> None:
    """libtorrent's sender puts a whole window on the wire at once. Our receive window must fit what our
    UDP socket can hold, or the kernel drops the overflow: with a 1 MiB window on the default 208 KiB
    buffer, libtorrent lost one packet in twenty and timed out every second (7 MB/s at 1 GiB)."""
    meta, data, torrent = make_torrent(tmp_path, 48 * MiB, files=1)
    lt_session = lt.session(dict(LT_UTP, alert_mask=lt.alert.category_t.stats_notification))
    handle = lt_add(lt, lt_session, torrent, data)
    deadline = time.monotonic() + 30
    while not handle.status().is_seeding:
        assert time.monotonic() < deadline, "libtorrent did not finish checking the payload"
        time.sleep(0.02)
    port = lt_session.listen_port()

    async def main() -> None:
        leecher = await start_session(tmp_path, "l", local_settings(network__transports="utp"))
        try:
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", port)])
            await wait_complete(leecher, lid, timeout=90)
        finally:
            await leecher.close()

    try:
        run(main())
        stats = lt_utp_stats(lt, lt_session)
    finally:
        del lt_session
    assert stats["utp.utp_payload_pkts_out"] > 30_000, stats
    assert stats["utp.utp_packet_loss"] == 0 and stats["utp.utp_timeout"] == 0, stats
