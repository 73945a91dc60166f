"""Protocol encryption (MSE/PE) between our engine and real clients on 127.0.0.1, both ways (issue 14).

Each side requiring it: libtorrent (pe_forced, pe_rc4), qBittorrent 4.5 ("require encryption"),
Transmission 3.00 (``-er``); and libtorrent with its default policy, which must get through to us
encrypted on its first connection (no plain-text retry a second later). With qBittorrent also over uTP
alone (its ``Session\\BTProtocol=UTP``), encrypted: uTP and encryption together.

Our side runs in this process (``OurSession``: the engine on a uvloop thread) rather than as a CLI
process, because what was negotiated is in its peer rows (``PeerSnapshot.encryption``), which the
CLI does not print. The other side's own view is asserted too wherever it shows one: libtorrent's
``peer_info`` flags, qBittorrent's peer flags. Our session is rate-limited so that a transfer of the
5 MiB payload lasts a second or two: long enough to read every side's rows while connected.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import logging
import sys
import threading
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
import uvloop

if str(Path(__file__).parent) not in sys.path:  # --import-mode=importlib does not add it
    sys.path.insert(0, str(Path(__file__).parent))
import clients
from clients import Harness, LtPeer, MiB, Payload, make_torrent_payload
from qbittorrent import ENCRYPTION, SEEDING_STATES, ApiError, QBittorrent, start_qbittorrent
from swarmkit import local_settings, start_session

from torrent.bench.lt_peer import ENCRYPTED as LT_FORCED_RC4
from torrent.session import PeerSnapshot, Session, TorrentSnapshot

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

RATE = 4 * MiB  # bytes/s, our session both ways: the 5 MiB payload takes well over a second
TIMEOUT = 60.0  # seconds for one transfer, or a client getting ready
SAMPLE = 0.01  # seconds between two readings of our peer rows
T = TypeVar("T")


# ---- our engine, in this process ----------------------------------------------------------------

class OurSession:
    """Our engine on its own uvloop thread, driven through the session API. A task reads the peer rows
    every ``SAMPLE`` s and keeps every connected row it saw, the latest reading of each address (a
    connection has a row from its handshake on; ``RATE`` keeps it open for many readings). Its log
    (INFO) goes to a file shown with the other clients' logs when a test fails."""

    def __init__(self, h: Harness, name: str, *, encryption: str, rate: int = RATE, transports: str = "tcp") -> None:
        self.name = name
        self.encryption = encryption
        self.rows: dict[str, PeerSnapshot] = {}
        self.torrent_id = ""
        self.session: Session | None = None
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"ours-{name}", daemon=True)
        self._thread.start()
        self._log = h.tmp / f"{name}.log"
        self._handler = logging.FileHandler(self._log)
        self._handler.setFormatter(logging.Formatter("%(relativeCreated)8.0f ms %(name)s: %(message)s"))
        self._logger = logging.getLogger("torrent")
        self._level = self._logger.level
        self._logger.addHandler(self._handler)
        self._logger.setLevel(logging.INFO)
        self._sampler: concurrent.futures.Future[None] | None = None
        h.in_process.append(self)
        self.session = self.call(start_session(h.tmp, name, local_settings(network__encryption=encryption,
                                                                           network__transports=transports)))
        if rate:
            self.call(self.session.set_rate_limits(max_down=rate, max_up=rate))
        self._sampler = asyncio.run_coroutine_threadsafe(self._sample(), self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def query(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the engine's thread (snapshots are built there)."""
        async def run() -> T:
            return fn()
        return self.call(run())

    @property
    def port(self) -> int:
        assert self.session is not None and self.session.listen_port is not None
        return self.session.listen_port

    def add(self, payload: Payload, save_path: Path, peers: Sequence[tuple[str, int]] = ()) -> str:
        assert self.session is not None
        self.torrent_id = self.call(self.session.add(payload.torrent, save_path=save_path, peers=peers))
        return self.torrent_id

    def add_peers(self, peers: Sequence[tuple[str, int]]) -> None:
        assert self.session is not None
        self.call(self.session.add_peers(self.torrent_id, peers))

    def torrent(self) -> TorrentSnapshot:
        session = self.session
        assert session is not None
        return self.query(lambda: session.torrent(self.torrent_id))

    def complete(self) -> bool:
        snap = self.torrent()
        return snap.wanted_size > 0 and snap.wanted_verified == snap.wanted_size

    def seeding(self) -> bool:
        return self.torrent().state == "seeding"

    def progress(self) -> int:
        return self.torrent().wanted_verified

    def connected(self, *, incoming: bool | None = None) -> list[PeerSnapshot]:
        """Every connection seen so far (``incoming`` True: only those the peer dialled; False: ours)."""
        rows = list(self.query(lambda: dict(self.rows)).values())
        return [r for r in rows if incoming is None or r.incoming == incoming]

    async def _sample(self) -> None:
        session = self.session
        assert session is not None
        while True:
            if self.torrent_id:
                for row in session.peers(self.torrent_id):
                    if row.status == "connected":
                        self.rows[row.address] = row
            await asyncio.sleep(SAMPLE)

    def close(self) -> None:
        try:
            if self._sampler is not None:
                self.loop.call_soon_threadsafe(self._sampler.cancel)
            if self.session is not None:
                self.call(self.session.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():
                self.loop.close()
            self._logger.removeHandler(self._handler)
            self._logger.setLevel(self._level)
            self._handler.close()

    def describe(self) -> str:
        rows = "\n".join(f"  {r.address} incoming={r.incoming} encryption={r.encryption!r} client={r.client!r} "
                         f"down={r.downloaded} up={r.uploaded}" for r in dict(self.rows).values())
        try:
            log = self._log.read_text(errors="replace")[-clients.LOG_TAIL:]
        except OSError:
            log = ""
        return (f"==== ours {self.name} (in-process, network.encryption={self.encryption}, port "
                f"{self.session.listen_port if self.session else None})\nconnections seen:\n{rows or '  none'}\n{log}")


def ours_leech(h: Harness, name: str, payload: Payload, *, encryption: str, peer: tuple[str, int],
               transports: str = "tcp") -> OurSession:
    ours = OurSession(h, name, encryption=encryption, transports=transports)
    ours.add(payload, h.tmp / name, peers=[peer])
    return ours


def ours_seed(h: Harness, name: str, payload: Payload, *, encryption: str, transports: str = "tcp") -> OurSession:
    ours = OurSession(h, name, encryption=encryption, transports=transports)
    ours.add(payload, payload.parent)
    h.wait_for(f"our {name} to check the original data and seed it", ours.seeding, timeout=TIMEOUT)
    return ours


def finish(h: Harness, ours: OurSession, payload: Payload, who: str) -> None:
    """Our download completes, byte for byte."""
    h.wait_for(f"our client to download from {who}", ours.complete, timeout=TIMEOUT, progress=ours.progress,
               stall=30)
    h.check_same(payload.path, h.tmp / ours.name / payload.path.name, f"our client (from {who})")
    if ours.torrent().hash_failures:
        h.fail(f"our client saw pieces from {who} fail their hash check")


def only_connection(h: Harness, ours: OurSession, *, incoming: bool, who: str) -> PeerSnapshot:
    rows = ours.connected(incoming=incoming)
    if len(rows) != 1:
        h.fail(f"expected one {'incoming' if incoming else 'outgoing'} connection with {who}, saw {rows}")
    return rows[0]


# ---- libtorrent ---------------------------------------------------------------------------------

def lt_encryption(peer: Any, lt: ModuleType) -> str:
    """What libtorrent says of a connection, in our words."""
    if peer.flags & lt.peer_info.rc4_encrypted:
        return "rc4"
    return "handshake" if peer.flags & lt.peer_info.plaintext_encrypted else ""


class WatchedLt(LtPeer):
    """A libtorrent session that counts the connections it starts toward each port
    (``peer_connect_alert``) and the ones that end before its torrent is finished
    (``peer_disconnected_alert``; at the finish it drops seeds on purpose), and keeps what its peer
    list said of each connection's encryption."""

    def __init__(self, lt: ModuleType, name: str, settings: dict[str, Any] | None = None) -> None:
        self.dialled: Counter[int] = Counter()
        self.ended_early: Counter[int] = Counter()
        self.finished = False
        self.encryption: dict[tuple[str, int], str] = {}
        super().__init__(lt, name, settings)

    def seen(self, alert: Any) -> None:
        if isinstance(alert, self.lt.peer_connect_alert):
            self.dialled[alert.endpoint[1]] += 1
        elif isinstance(alert, self.lt.torrent_finished_alert):
            self.finished = True
        elif isinstance(alert, self.lt.peer_disconnected_alert) and not self.finished:
            self.ended_early[alert.endpoint[1]] += 1

    def look(self, handle: Any) -> None:
        """Note each connection's encryption, once past its handshakes (before, no flag is set yet)."""
        unsettled = self.lt.peer_info.connecting | self.lt.peer_info.handshake
        for peer in handle.get_peer_info():
            if not peer.flags & unsettled:
                self.encryption[tuple(peer.ip)] = lt_encryption(peer, self.lt)


def watched_lt(h: Harness, lt: ModuleType, name: str, settings: dict[str, Any] | None = None) -> WatchedLt:
    peer = WatchedLt(lt, name, settings)
    h.lts.append(peer)
    return peer


def lt_seed(h: Harness, lt: ModuleType, name: str, payload: Payload, settings: dict[str, Any] | None = None
            ) -> tuple[WatchedLt, Any]:
    seeder = watched_lt(h, lt, name, settings)
    handle = seeder.add(payload.torrent, payload.parent)
    h.wait_for(f"libtorrent {name} to check the original data and seed it",
               lambda: handle.status().is_seeding or handle.status().errc.value() != 0, timeout=TIMEOUT)
    if not handle.status().is_seeding:
        h.fail(f"libtorrent {name} cannot seed the original data ({seeder.progress_line()})")
    return seeder, handle


def lt_download(h: Harness, leecher: WatchedLt, handle: Any, payload: Payload, out: Path) -> None:
    """Until libtorrent has it all (looking at its peers meanwhile), then byte for byte on disk."""
    def done() -> bool:
        leecher.look(handle)
        return handle.status().is_seeding

    h.wait_for("libtorrent to download from our client", done, timeout=TIMEOUT, interval=0.05,
               progress=lambda: handle.status().total_wanted_done, stall=30)
    leecher.close()  # waits for its disk threads: "finished" can precede the last write
    h.check_same(payload.path, out / payload.path.name, "libtorrent (from our client)")


def test_libtorrent_requiring_rc4_seeds_ours_requiring_downloads(h: Harness, lt: ModuleType, tmp_path: Path) -> None:
    payload = make_torrent_payload(tmp_path, "single", seed=41)
    seeder, handle = lt_seed(h, lt, "lt-seed", payload, LT_FORCED_RC4)
    ours = ours_leech(h, "ours-leech", payload, encryption="require", peer=("127.0.0.1", seeder.port))
    h.wait_for("libtorrent to show our connection", lambda: (seeder.look(handle), seeder.encryption)[1],
               timeout=TIMEOUT, interval=0.05)
    finish(h, ours, payload, "libtorrent")
    row = only_connection(h, ours, incoming=False, who="libtorrent")
    assert row.encryption == "rc4", row
    assert set(seeder.encryption.values()) == {"rc4"}, seeder.encryption


def test_ours_requiring_seeds_libtorrent_requiring_rc4_downloads(h: Harness, lt: ModuleType, tmp_path: Path) -> None:
    payload = make_torrent_payload(tmp_path, "multi", seed=42)
    ours = ours_seed(h, "ours-seed", payload, encryption="require")
    leecher = watched_lt(h, lt, "lt-leech", LT_FORCED_RC4)
    out = tmp_path / "lt"
    handle = leecher.add(payload.torrent, out)
    handle.connect_peer(("127.0.0.1", ours.port))
    lt_download(h, leecher, handle, payload, out)
    row = only_connection(h, ours, incoming=True, who="libtorrent")
    assert row.encryption == "rc4", row
    assert leecher.encryption == {("127.0.0.1", ours.port): "rc4"}, leecher.encryption


def test_default_libtorrent_dials_our_default_seeder_encrypted_at_the_first_try(
        h: Harness, lt: ModuleType, tmp_path: Path) -> None:
    """libtorrent's default (pe_enabled, pe_both) dials with the encrypted handshake first and redials in
    plain text about a second later if that fails. Against our default (prefer) the first connection
    works: libtorrent started exactly one toward us, it never ended before the download did, and we saw
    exactly one incoming connection. Offered both, we pick plain text after the handshake, as
    libtorrent would: "handshake" on both sides."""
    payload = make_torrent_payload(tmp_path, "single", seed=43)
    ours = ours_seed(h, "ours-seed", payload, encryption="prefer")
    leecher = watched_lt(h, lt, "lt-leech")
    out = tmp_path / "lt"
    handle = leecher.add(payload.torrent, out)
    handle.connect_peer(("127.0.0.1", ours.port))
    lt_download(h, leecher, handle, payload, out)
    assert leecher.dialled[ours.port] == 1 and not leecher.ended_early, (leecher.dialled, leecher.ended_early)
    row = only_connection(h, ours, incoming=True, who="libtorrent")
    assert row.encryption == "handshake", row
    assert leecher.encryption == {("127.0.0.1", ours.port): "handshake"}, leecher.encryption


def test_ours_by_default_dials_default_libtorrent_with_the_encrypted_handshake(
        h: Harness, lt: ModuleType, tmp_path: Path) -> None:
    payload = make_torrent_payload(tmp_path, "multi", seed=44)
    seeder, handle = lt_seed(h, lt, "lt-seed", payload)
    ours = ours_leech(h, "ours-leech", payload, encryption="prefer", peer=("127.0.0.1", seeder.port))
    h.wait_for("libtorrent to show our connection", lambda: (seeder.look(handle), seeder.encryption)[1],
               timeout=TIMEOUT, interval=0.05)
    finish(h, ours, payload, "libtorrent")
    row = only_connection(h, ours, incoming=False, who="libtorrent")
    assert row.encryption == "handshake" and row.failures == 0, row
    assert set(seeder.encryption.values()) == {"handshake"}, seeder.encryption


# ---- qBittorrent ------------------------------------------------------------------------------

QBT_DOWN = (OSError, http.client.HTTPException, ApiError)  # its Web API not answering, this once


def qbt_flags(qbt: QBittorrent, info_hash: str, seen: set[str]) -> set[str]:
    """Add the flags qBittorrent shows for each of its peers past the BitTorrent handshake (their
    client known) to ``seen``: one string of letters and spaces, "E" an RC4 stream, "e" an encrypted
    handshake. A connection still being made shows no flags at all."""
    try:
        peers = qbt.peers(info_hash)
    except QBT_DOWN:  # the wait watches its process
        return seen
    seen.update(p.get("flags", "") for p in peers.values() if p.get("client"))
    return seen


# qBittorrent's BTProtocol → our transports (the defaults: uTP first) and the transport our rows must show.
LINKS = {"TCP": ("tcp", "tcp"), "UTP": ("utp,tcp", "utp")}


@pytest.mark.parametrize("protocol", sorted(LINKS))
def test_qbittorrent_requiring_seeds_ours_requiring_downloads(h: Harness, tmp_path: Path, protocol: str) -> None:
    transports, transport = LINKS[protocol]
    payload = make_torrent_payload(tmp_path, "single", seed=45)
    qbt = start_qbittorrent(h, "qbt-seed", profile=tmp_path / "qbt-profile", encryption=ENCRYPTION["forced"],
                            protocol=protocol)
    qbt.add_torrent(payload.torrent, payload.parent)
    qbt.wait_seeding(payload.info_hash, timeout=TIMEOUT)
    ours = ours_leech(h, "ours-leech", payload, encryption="require", peer=("127.0.0.1", qbt.listen_port),
                      transports=transports)
    flags: set[str] = set()
    h.wait_for("qBittorrent to show our connection", lambda: qbt_flags(qbt, payload.info_hash, flags),
               timeout=TIMEOUT, interval=0.1, watch=[qbt.proc])
    finish(h, ours, payload, "qBittorrent")
    rows = ours.connected(incoming=False)
    assert rows and {r.encryption for r in rows} == {"rc4"}, rows
    assert {r.transport for r in rows} == {transport}, rows
    assert all("E" in f.split() for f in flags), flags
    assert all(("P" in f.split()) == (transport == "utp") for f in flags), flags  # qBittorrent's "P": uTP
    print(f"qBittorrent {qbt.version()} → ours over {transport}: {len(rows)} connection(s), qBittorrent's flags "
          f"{sorted(flags)}")


@pytest.mark.parametrize("protocol", sorted(LINKS))
def test_ours_requiring_seeds_qbittorrent_requiring_downloads(h: Harness, tmp_path: Path, protocol: str) -> None:
    transports, transport = LINKS[protocol]
    payload = make_torrent_payload(tmp_path, "multi", seed=46)
    ours = ours_seed(h, "ours-seed", payload, encryption="require", transports=transports)
    qbt = start_qbittorrent(h, "qbt-leech", profile=tmp_path / "qbt-profile", encryption=ENCRYPTION["forced"],
                            protocol=protocol)
    out = tmp_path / "qbt-download"
    out.mkdir()
    qbt.add_torrent(payload.torrent, out)
    qbt.wait_started(payload.info_hash, timeout=TIMEOUT)
    qbt.add_peers(payload.info_hash, [f"127.0.0.1:{ours.port}"])
    flags: set[str] = set()

    def done() -> bool:
        qbt_flags(qbt, payload.info_hash, flags)
        try:
            t = qbt.torrent(payload.info_hash)
        except QBT_DOWN:
            return False
        return t is not None and t["state"] in SEEDING_STATES and t["progress"] >= 1

    h.wait_for("qBittorrent to download from our seeder", done, timeout=TIMEOUT, interval=0.1, watch=[qbt.proc],
               progress=lambda: qbt.progress(payload.info_hash), stall=30)
    h.wait_same(payload.path, out / payload.path.name, timeout=30,
                what="qBittorrent's download from our seeder to match the original", watch=[qbt.proc])
    rows = ours.connected(incoming=True)
    assert rows and {r.encryption for r in rows} == {"rc4"}, rows
    assert {r.transport for r in rows} == {transport}, rows
    assert flags and all("E" in f.split() for f in flags), flags
    assert all(("P" in f.split()) == (transport == "utp") for f in flags), flags
    print(f"ours → qBittorrent {qbt.version()} over {transport}: {len(rows)} connection(s), qBittorrent's flags "
          f"{sorted(flags)}")


# ---- Transmission ------------------------------------------------------------------------------

# Both sides requiring it, the encrypted handshake works both ways (it is us who dial: Transmission does
# not dial peers on 127.0.0.1). What REFERENCE-CLIENTS.md saw fail is Transmission 3.00 in its
# plain-text-preferred mode (-et) answering an initiator that offers both plain text and RC4 and sends
# its BitTorrent handshake as the initial payload (IA): libtorrent's default and our prefer both do.
# With TR_DEBUG_FD=2 its log reads "crypto_provide is 3", "ia_len is 68", "selecting crypto mode '1'",
# "parseHandshake returned 1" (encryption wrong), "handshakeDone: aborting". Its readIA switches the
# connection to plain text once it selects plain text, before it parses the IA, which the spec
# (ENCRYPT(IA)) and both initiators send RC4-encrypted: the fault is Transmission's (handshake.c, 3.00;
# later versions no longer switch there). Initiators then redial in plain text: libtorrent after 1 s,
# ours at once ("closed during the encrypted handshake; dialling it again with the plain one").

def test_transmission_requiring_seeds_ours_requiring_downloads(h: Harness, tmp_path: Path) -> None:
    payload = make_torrent_payload(tmp_path, "single", seed=47)
    tr_port = clients.free_port()
    tr = clients.start_transmission(h, "transmission-seed", payload.torrent, payload.parent, tr_port,
                                    encryption="required")
    h.wait_for("Transmission to verify the original data and seed it", lambda: "Seeding" in tr.text(),
               timeout=TIMEOUT, watch=[tr])
    ours = ours_leech(h, "ours-leech", payload, encryption="require", peer=("127.0.0.1", tr_port))
    finish(h, ours, payload, "Transmission")
    row = only_connection(h, ours, incoming=False, who="Transmission")
    assert row.encryption == "rc4", row


def test_ours_requiring_seeds_transmission_requiring_downloads(h: Harness, tmp_path: Path) -> None:
    """Transmission does not dial peers on 127.0.0.1 (REFERENCE-CLIENTS): our seeder dials it."""
    payload = make_torrent_payload(tmp_path, "multi", seed=48)
    out = tmp_path / "transmission"
    out.mkdir()
    tr_port = clients.free_port()
    tr = clients.start_transmission(h, "transmission-leech", payload.torrent, out, tr_port, encryption="required")
    h.wait_for("Transmission to start its torrent", lambda: "Progress:" in tr.text(), timeout=TIMEOUT, watch=[tr])
    ours = ours_seed(h, "ours-seed", payload, encryption="require")
    ours.add_peers([("127.0.0.1", tr_port)])
    h.wait_same(payload.path, out / payload.path.name, timeout=TIMEOUT,
                what="Transmission's download from our seeder to match the original", watch=[tr],
                progress=lambda: clients.last_match(tr, clients.TRANSMISSION_PROGRESS))
    row = only_connection(h, ours, incoming=False, who="Transmission")
    assert row.encryption == "rc4", row
