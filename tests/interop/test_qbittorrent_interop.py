"""Transfers between our client and qBittorrent 4.5 (``qbittorrent-nox``, Debian) on 127.0.0.1.

qBittorrent runs headless with a fresh profile and is driven through its Web API
(``qbittorrent.py`` beside this file); our client runs as a real process
(``python -m torrent download|seed``). Torrents are v1-only, made by ``torrent create``.
Everything is started and stopped (by PID) by a ``clients.Harness``; a failed wait shows
the logs of every process, qBittorrent's own log file included.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest


if str(Path(__file__).parent) not in sys.path:  # --import-mode=importlib does not add it
    sys.path.insert(0, str(Path(__file__).parent))
import clients
from clients import Harness, make_torrent_payload
from qbittorrent import start_qbittorrent

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]

START_TIMEOUT = 60.0  # qBittorrent checking the data of a few MiB (about 1.5 s here)
TRANSFER_TIMEOUT = 150.0
STALL = 90.0  # seconds with no progress before a transfer counts as stalled
# Our client's -v line when a connection it made ends, with the delay before the next attempt.
ENDED = re.compile(r"connection to 127\.0\.0\.1:(\d+) ended \(([^)]*)\); next attempt in ([0-9.]+) s")



# What was observed here (qBittorrent 4.5.2-3+deb12u1 from Debian 12, our client at
# commit 8bd3311), with both processes under ``strace -f -tt -e trace=%network,read,write,close``.
#
# REFERENCE-CLIENTS.md says qBittorrent, freshly started, closes the first incoming
# connection at once, even when the torrent already shows as seeding, and that our client
# then waits 60 s before it reconnects. Confirmed, with one refinement: what matters is how
# soon after the torrent's check we dial, not the fresh start as such.
#
# - Through the Web API a freshly added torrent goes from checkingResumeData straight to
#   stalledUP, about 1.4 s after the add (the API's figures refresh every 1.5 s). Our
#   download started as soon as stalledUP showed (about 0.3 s later, under strace):
#     ours 18:30:41.069991 connect(127.0.0.1:46829), then sends its 68-byte handshake
#     qbt  18:30:41.070224 accept() = 26, getpeername, getsockname
#     qbt  18:30:41.070949 close(26): 0.7 ms after accept, no byte read or written
#     ours read() = 0 (EOF) at once; closes; prints "0.0% ... peers 0" for a minute
#     ours 18:31:41.186575 connect(127.0.0.1:46829): 60.1 s later (session.RECONNECT_AFTER)
#     qbt  18:31:41.187-.196 accept, reads our handshake, answers (-qB4520-), sends blocks
#     ours exits 0, 61.1 s after it started; the 5 MiB themselves took well under 1 s.
#   Another run: connect 18:29:12.414369, EOF 18:29:12.415457 (1.1 ms later), connect again
#   18:30:12.505601 (+60.09 s), 60.7 s in all. qBittorrent's log says nothing of either
#   connection. Closing a new connection before reading a byte is what libtorrent's
#   session_impl::incoming_connection does when it will not take a peer (for one, when no
#   torrent is active yet: "There are no _active_ torrents, disconnect"); which of its checks
#   it was cannot be seen from outside.
# - The window is short. Started 0 / 0.2 / 0.3 / 0.5 / 1 / 2 / 3 s after stalledUP showed
#   (scratch runs under strace), the first connection was closed in 4 of 5 runs at 0 s,
#   1 of 2 at 0.2 s and in none of the single runs from 0.3 s on (downloads of 0.6-1.0 s).
#   This test as written (no strace), 11 runs: the download took 60.5-60.8 s in 8 of them,
#   0.4-1.0 s in the other 3.
# - In the runs where the first connection was closed, /torrents/info never counted the
#   upload: "uploaded" 0 and state stalledUP (never "uploading") 1 s and 8 s after the whole
#   payload had been served, while the session's /transfer/info "up_info_data" showed all
#   5,255,225 bytes (in the other runs both did). Hence the check below uses the session's.
#
# Since then our client retries a connection that closed before it was any use after
# network.retry_first (1 s), doubling from there: the same runs now take 1-2 s. The test
# asserts on our -v log that, when qBittorrent closed the first connection, the next
# attempt was the first scheduled retry (1 s), not a 60 s wait, and that the download
# completed; the time is printed, not asserted.
def test_qbittorrent_seeds_ours_downloads(h: Harness, tmp_path: Path) -> None:
    payload = make_torrent_payload(tmp_path, "single", seed=21)
    qbt = start_qbittorrent(h, "qbt-seed", profile=tmp_path / "qbt-profile")
    qbt.add_torrent(payload.torrent, payload.parent)
    info = qbt.wait_seeding(payload.info_hash, timeout=START_TIMEOUT)
    assert info["progress"] == 1 and info["state"] in ("stalledUP", "uploading"), info

    out = tmp_path / "ours"
    started = time.monotonic()
    ours = clients.start_our_download(h, "ours-download", payload.torrent, out,
                                      peers=[("127.0.0.1", qbt.listen_port)], verbose=True)
    code = h.wait_exit(ours, timeout=TRANSFER_TIMEOUT, what="our client to download from qBittorrent and exit",
                       progress=lambda: clients.last_match(ours, clients.OUR_PROGRESS), stall=STALL)
    took = time.monotonic() - started
    if code != 0:
        h.fail(f"our client exited with status {code}, expected 0")
    if "Traceback" in ours.text():
        h.fail("our client printed a traceback")
    h.check_same(payload.path, out / payload.path.name, "our client (from qBittorrent)")
    # qBittorrent was the only peer: it must count the whole payload as sent. Its session-wide
    # figure, not the torrent's: see above (refreshed every 1.5 s).
    h.wait_for("qBittorrent to count the payload as uploaded",
               lambda: qbt.transfer_info()["up_info_data"] >= payload.size, timeout=15, watch=[qbt.proc])
    ended = [m for m in ENDED.finditer(ours.text()) if int(m.group(1)) == qbt.listen_port]
    if ended:  # qBittorrent closed our first connection: the retry came on the schedule's first step
        assert float(ended[0].group(3)) == 1.0, ours.text()
    print(f"our client downloaded {payload.size} bytes from qBittorrent {qbt.version()} in {took:.1f} s; "
          f"connections it closed first: {len(ended)} ({', '.join(m.group(2) for m in ended) or 'none'})")


def test_ours_seeds_qbittorrent_downloads(h: Harness, tmp_path: Path) -> None:
    payload = make_torrent_payload(tmp_path, "multi", seed=22)
    ours, our_port = clients.start_our_seed(h, "ours-seed", payload.torrent, payload.parent)
    qbt = start_qbittorrent(h, "qbt-leech", profile=tmp_path / "qbt-profile")
    out = tmp_path / "qbt-download"
    out.mkdir()
    started = time.monotonic()
    qbt.add_torrent(payload.torrent, out)
    # No tracker, DHT, LSD or PeX: it learns our address only from addPeers, given once the
    # torrent is past its (empty) check.
    qbt.wait_started(payload.info_hash, timeout=START_TIMEOUT)
    checked = time.monotonic() - started
    qbt.add_peers(payload.info_hash, [f"127.0.0.1:{our_port}"])
    qbt.wait_seeding(payload.info_hash, timeout=TRANSFER_TIMEOUT, progress=lambda: qbt.progress(payload.info_hash),
                     stall=STALL)
    # "Finished" can come before libtorrent's last writes reach the files: compare until equal.
    h.wait_same(payload.path, out / payload.path.name, timeout=30,
                what="qBittorrent's download from our seeder to match the original", watch=[qbt.proc, ours])
    took = time.monotonic() - started
    if not ours.alive():
        h.fail(f"our seeder exited with status {ours.popen.returncode}")
    if "Traceback" in ours.text():
        h.fail("our seeder printed a traceback")
    print(f"qBittorrent {qbt.version()} downloaded {payload.size} bytes from our seeder in {took:.1f} s "
          f"from the add ({checked:.1f} s of it before the torrent was past its check; its figures refresh "
          "every 1.5 s)")
