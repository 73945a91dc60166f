"""Transfers between our client and real clients on 127.0.0.1, both directions.

libtorrent (the PyPI wheel, in-process), Transmission 3.00 (``transmission-cli``),
aria2 1.36 through opentracker (HTTP and UDP announces), and a three-party swarm.
Our client runs as a real process (``python -m torrent seed|download``), so what is
tested is what a user runs. Every torrent is v1-only and made by ``torrent create``
(REFERENCE-CLIENTS: aria2 disagrees with libtorrent about hybrid torrents).

Payloads: one file whose size is not a multiple of the piece size (short last piece),
and a multi-file tree from ``torrent.demo.make_payload`` (file boundaries inside
pieces). Helpers live in ``clients.py`` beside this file; each test gets a
``Harness`` that stops everything it started, by PID, and prints all logs when a
wait fails.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest


if str(Path(__file__).parent) not in sys.path:  # --import-mode=importlib does not add it
    sys.path.insert(0, str(Path(__file__).parent))
import clients
from clients import Harness, Payload, make_torrent_payload

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]

TRANSFER_TIMEOUT = 120.0  # seconds for one transfer of a few MiB (Transmission does ~1-20 MB/s here)
START_TIMEOUT = 60.0  # a client verifying its data / getting ready



def lt_seed(h: Harness, lt: ModuleType, name: str, payload: Payload, *, upload_limit: int = 0) -> clients.LtPeer:
    """A libtorrent session that has checked ``payload`` and is seeding it. ``upload_limit``
    is per torrent (bytes/s): the session-wide limit spares loopback peers."""
    seeder = h.lt_peer(lt, name)
    handle = seeder.add(payload.torrent, payload.parent)
    if upload_limit:
        handle.set_upload_limit(upload_limit)
    h.wait_for(f"libtorrent {name} to check the original data and seed it",
               lambda: handle.status().is_seeding or handle.status().errc.value() != 0, timeout=START_TIMEOUT)
    status = handle.status()
    if not status.is_seeding:
        h.fail(f"libtorrent {name} cannot seed the original data: {status.errc.message()} ({seeder.progress_line()})")
    return seeder


KINDS = pytest.mark.parametrize("kind", ["single", "multi"])


# ---- libtorrent ---------------------------------------------------------------------

@KINDS
def test_libtorrent_seeds_ours_downloads(h: Harness, lt: ModuleType, tmp_path: Path, kind: str) -> None:
    payload = make_torrent_payload(tmp_path, kind, seed=11)
    seeder = lt_seed(h, lt, "lt-seed", payload)
    out = tmp_path / "ours"
    ours = clients.start_our_download(h, "ours-download", payload.torrent, out, peers=[("127.0.0.1", seeder.port)])
    clients.finish_our_download(h, ours, timeout=TRANSFER_TIMEOUT)
    h.check_same(payload.path, out / payload.path.name, "our client (from libtorrent)")


@KINDS
def test_ours_seeds_libtorrent_downloads(h: Harness, lt: ModuleType, tmp_path: Path, kind: str) -> None:
    payload = make_torrent_payload(tmp_path, kind, seed=12)
    ours, port = clients.start_our_seed(h, "ours-seed", payload.torrent, payload.parent)
    leecher = h.lt_peer(lt, "lt-leech")
    out = tmp_path / "lt"
    handle = leecher.add(payload.torrent, out)
    handle.connect_peer(("127.0.0.1", port))
    h.wait_for("libtorrent to download from our seeder", lambda: handle.status().is_seeding,
               timeout=TRANSFER_TIMEOUT, watch=[ours], progress=lambda: handle.status().total_wanted_done)
    leecher.close()  # waits for libtorrent's disk threads: "finished" can precede the last write
    h.check_same(payload.path, out / payload.path.name, "libtorrent (from our client)")


# ---- Transmission ---------------------------------------------------------------------

@KINDS
def test_transmission_seeds_ours_downloads(h: Harness, tmp_path: Path, kind: str) -> None:
    payload = make_torrent_payload(tmp_path, kind, seed=13)
    tr_port = clients.free_port()
    tr = clients.start_transmission(h, "transmission-seed", payload.torrent, payload.parent, tr_port)
    # It verifies the data it finds, then says "Seeding"; only then will it serve us.
    h.wait_for("Transmission to verify the original data and seed it", lambda: "Seeding" in tr.text(),
               timeout=START_TIMEOUT, watch=[tr])
    out = tmp_path / "ours"
    ours = clients.start_our_download(h, "ours-download", payload.torrent, out, peers=[("127.0.0.1", tr_port)])
    clients.finish_our_download(h, ours, timeout=TRANSFER_TIMEOUT)
    h.check_same(payload.path, out / payload.path.name, "our client (from Transmission)")


@KINDS
def test_ours_seeds_transmission_downloads(h: Harness, tmp_path: Path, kind: str) -> None:
    payload = make_torrent_payload(tmp_path, kind, seed=14)
    out = tmp_path / "transmission"
    out.mkdir()
    tr_port = clients.free_port()
    tr = clients.start_transmission(h, "transmission-leech", payload.torrent, out, tr_port)
    # Transmission does not dial loopback peers: our seeder dials it, once its torrent runs
    # (a handshake for a torrent it has not loaded yet is refused, and we retry only after 60 s).
    h.wait_for("Transmission to start its torrent", lambda: "Progress:" in tr.text(), timeout=START_TIMEOUT,
               watch=[tr])
    ours, _ = clients.start_our_seed(h, "ours-seed", payload.torrent, payload.parent, peers=[("127.0.0.1", tr_port)])
    # transmission-cli keeps seeding after it completes: watch the files, then stop it by PID.
    h.wait_same(payload.path, out / payload.path.name, timeout=TRANSFER_TIMEOUT,
                what="Transmission's download from our seeder to match the original", watch=[tr, ours],
                progress=lambda: clients.last_match(tr, clients.TRANSMISSION_PROGRESS))
    h.wait_for("Transmission to report that it is seeding", lambda: "Seeding" in tr.text(), timeout=30,
               watch=[tr])


# ---- three parties -----------------------------------------------------------------------------

def client_name(peer: object) -> str:
    """libtorrent's name for a peer (bytes in the 2.1 bindings)."""
    name = getattr(peer, "client", b"")
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name)


def test_three_party_swarm(h: Harness, lt: ModuleType, tmp_path: Path) -> None:
    """A libtorrent seed (upload throttled, so the leechers have reason to trade) and two
    leechers at once: ours and another libtorrent. Everyone knows everyone's address."""
    payload = make_torrent_payload(tmp_path, "multi", seed=17)
    seeder = lt_seed(h, lt, "lt-seed", payload, upload_limit=3 * clients.MiB)
    our_port = clients.free_port()
    other = h.lt_peer(lt, "lt-leech")
    other_out = tmp_path / "lt-leech"
    other_handle = other.add(payload.torrent, other_out)
    out = tmp_path / "ours"
    ours = clients.start_our_download(h, "ours-download", payload.torrent, out, port=our_port,
                                      peers=[("127.0.0.1", seeder.port), ("127.0.0.1", other.port)])
    other_handle.connect_peer(("127.0.0.1", seeder.port))
    other_handle.connect_peer(("127.0.0.1", our_port))

    traded = {"to_lt": 0, "from_lt": 0}  # between the two leechers, as libtorrent counts them

    def other_done() -> bool:
        for peer in other_handle.get_peer_info():
            if peer.ip == ("127.0.0.1", our_port) or client_name(peer).lower().startswith("torrent"):
                traded["to_lt"] = max(traded["to_lt"], peer.total_download)
                traded["from_lt"] = max(traded["from_lt"], peer.total_upload)
        return other_handle.status().is_seeding

    h.wait_for("the libtorrent leecher to complete", other_done, timeout=TRANSFER_TIMEOUT,
               progress=lambda: other_handle.status().total_wanted_done)
    clients.finish_our_download(h, ours, timeout=TRANSFER_TIMEOUT)
    other_done()
    peers_seen = [(p.ip, client_name(p)) for p in other_handle.get_peer_info()]
    other.close()
    h.check_same(payload.path, out / payload.path.name, "our client (three-party swarm)")
    h.check_same(payload.path, other_out / payload.path.name, "libtorrent leecher (three-party swarm)")
    print(f"three-party swarm: ours → libtorrent leecher {traded['to_lt']} bytes, "
          f"libtorrent leecher → ours {traded['from_lt']} bytes")
    if traded["to_lt"] + traded["from_lt"] == 0:
        h.fail("the two leechers never exchanged a byte: the seed served everything "
               f"(libtorrent leecher's peers at the end: {peers_seen})")


# ---- aria2 through opentracker ------------------------------------------------------------

def tracked_payload(h: Harness, tmp_path: Path, kind: str, scheme: str, *, seed: int
                    ) -> tuple[Payload, clients.OpenTracker]:
    """A torrent whose only tracker is a fresh opentracker (``scheme`` http or udp) that
    whitelists it; so the swarm starts empty."""
    port = clients.free_port()
    payload = make_torrent_payload(tmp_path, kind, seed=seed,
                                   tracker=f"{scheme}://127.0.0.1:{port}/announce")
    return payload, clients.start_opentracker(h, port, [payload.info_hash])


def wait_registered(h: Harness, tracker: clients.OpenTracker, info_hash: str, *, seeders: int, who: str,
                    watch: list[clients.Proc]) -> None:
    def registered() -> bool:
        counts = tracker.scrape(info_hash)
        return counts is not None and counts[0] >= seeders

    h.wait_for(f"{who} to announce itself to opentracker as a seeder", registered, timeout=START_TIMEOUT,
               watch=watch)


@pytest.mark.parametrize(("kind", "scheme"), [("single", "udp"), ("multi", "http")])
def test_aria2_seeds_ours_downloads(h: Harness, tmp_path: Path, kind: str, scheme: str) -> None:
    payload, tracker = tracked_payload(h, tmp_path, kind, scheme, seed=15)
    aria = h.spawn("aria2-seed", clients.aria2_cmd(h, "aria2-seed", payload.torrent, payload.parent,
                                                   seed=True, udp_tracker=scheme == "udp"))
    # Our client learns aria2's address from the tracker: aria2 must be there first.
    wait_registered(h, tracker, payload.info_hash, seeders=1, who="aria2", watch=[aria])
    out = tmp_path / "ours"
    ours = clients.start_our_download(h, "ours-download", payload.torrent, out)
    clients.finish_our_download(h, ours, timeout=TRANSFER_TIMEOUT)
    h.check_same(payload.path, out / payload.path.name, "our client (from aria2)")


# aria2 1.36, while downloading, tells its peers about new pieces with a BITFIELD message
# (instead of HAVEs) whenever that is shorter (DefaultBtInteractive::checkHave), even
# after its "have none": for a 21-piece torrent that is after every piece. BEP 3 puts the
# bitfield first only, but libtorrent accepts the late ones (a libtorrent seed serves this
# same aria2 command to completion); a seeder that drops aria2 for it stalls the transfer.
@pytest.mark.parametrize(("kind", "scheme"), [("multi", "udp"), ("single", "http")])
def test_ours_seeds_aria2_downloads(h: Harness, tmp_path: Path, kind: str, scheme: str) -> None:
    payload, tracker = tracked_payload(h, tmp_path, kind, scheme, seed=16)
    ours, _ = clients.start_our_seed(h, "ours-seed", payload.torrent, payload.parent)
    # aria2 learns our address from the tracker: we must be there first.
    wait_registered(h, tracker, payload.info_hash, seeders=1, who="our seeder", watch=[ours])
    out = tmp_path / "aria2"
    aria = h.spawn("aria2-leech", clients.aria2_cmd(h, "aria2-leech", payload.torrent, out, seed=False,
                                                    udp_tracker=scheme == "udp"))
    code = h.wait_exit(aria, timeout=TRANSFER_TIMEOUT, what="aria2 to download from our seeder and exit",
                       progress=lambda: clients.last_match(aria, clients.ARIA2_PROGRESS), stall=30)
    if code != 0:
        h.fail(f"aria2 exited with status {code} (0 = download complete)")
    h.check_same(payload.path, out / payload.path.name, "aria2 (from our client)")
