"""Faults a download must survive (issue 13): SIGKILL again and again, a full
disk, resume data that was tampered with or truncated, and a peer that
corrupts part of every piece it sends while an honest one sends the rest.

Everything runs on 127.0.0.1 with real files: our CLI and sessions as the
leechers, in-process sessions or small wire-protocol servers as the peers.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import loopback_config_home, tmpfs
from swarmkit import (
    PeerServer,
    drain,
    local_settings,
    make_torrent,
    run,
    same_tree,
    start_session,
    wait_complete,
    wait_for,
    wait_state,
)

from torrent.codec import bencoding, wire
from torrent.codec.geometry import BLOCK_SIZE
from torrent.codec.metainfo import Metainfo
from torrent.core.bitfield import Bitfield
from torrent.session import PeerBanned, PieceState, StorageFailed
from torrent.storage import resume
from torrent.storage.journal import journal_path, read_journal

KiB, MiB = 1024, 1024 * 1024


def pieces_on_disk(meta: Metainfo, root: Path) -> set[int]:
    """The pieces whose bytes under ``root`` hash as the torrent says (the truth
    a recheck must find, computed here without the engine)."""
    stream = bytearray()
    for f in meta.files:
        try:
            data = (root / Path(*f.path)).read_bytes()[:f.length]
        except FileNotFoundError:
            data = b""
        stream += data + bytes(f.length - len(data))
    good = set()
    for i in range(meta.num_pieces):
        start = i * meta.piece_length
        chunk = stream[start:start + meta.geometry.piece_size(i)]
        if hashlib.sha1(chunk).digest() == meta.pieces[20 * i:20 * i + 20]:
            good.add(i)
    return good


def have_pieces(session, torrent_id: str) -> set[int]:
    return {i for i, s in enumerate(session.piece_map(torrent_id).states) if s == PieceState.HAVE}


def recorded_pieces(meta: Metainfo, state_dir: Path, download_dir: Path) -> set[int]:
    """What the leecher's resume file and piece journal record as verified."""
    pieces: set[int] = set()
    data = resume.load(resume.resume_path(state_dir / "resume", meta.info_hash), metainfo=meta)
    if data is not None:
        pieces |= set(data.bitfield().iter_set())
    records = read_journal(journal_path(state_dir / "resume", meta.info_hash), meta.info_hash, meta.num_pieces,
                           download_dir=download_dir)
    if records is not None:
        pieces |= set(records.pieces.iter_set())
    return pieces


# ---- 1. SIGKILL, twenty times --------------------------------------------------------------


def test_twenty_sigkills_lose_nothing_verified_and_fetch_nothing_twice(tmp_path: Path) -> None:
    """The CLI leecher is killed with SIGKILL at 20 random moments (seeded, printed) while it
    downloads from a rate-limited seeder, and restarted each time. After each kill, every piece
    its resume data and journal record as verified is on disk intact and still recorded (the
    records only grow); what the seeder sent in each run is the pieces that run added plus what
    was in flight at the kill; the last run completes byte-exact."""
    seed = int(os.environ.get("FAULTS_SEED", random.randrange(1 << 32)))
    print(f"SIGKILL schedule seed: {seed} (FAULTS_SEED={seed} repeats it)")
    rng = random.Random(seed)
    meta, data, torrent_file = make_torrent(tmp_path, 6 * MiB, files=2, piece_length=64 * KiB)
    out, state = tmp_path / "out", tmp_path / "state-cli"
    # What a kill may cost: the pieces being assembled, or received but not yet hashed, written
    # and journaled (the seeder's limit keeps what is sent ahead small; measured: at most one piece).
    in_flight = 4 * meta.piece_length

    async def main() -> None:
        seeder = await start_session(tmp_path, "s")
        await seeder.set_rate_limits(max_up=256 * KiB)  # 6 MiB take ~24 s: every kill lands mid-download
        try:
            sid = await seeder.add(torrent_file, save_path=data)
            await wait_state(seeder, sid, "seeding")
            cmd = [sys.executable, "-m", "torrent", "download", str(torrent_file), "-o", str(out), "--no-seed",
                   "--port", "0", "--peer", f"127.0.0.1:{seeder.listen_port}", "--state-dir", str(state), "-q"]
            env = {**os.environ, "XDG_CONFIG_HOME": loopback_config_home(tmp_path / "xdg")}
            recorded: set[int] = set()
            sent_total = 0
            figures = []
            for kill in range(20):
                sent_before = seeder.torrent(sid).uploaded
                proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, env=env)
                try:
                    await asyncio.sleep(rng.uniform(0.1, 1.6))
                    assert proc.poll() is None, f"run {kill} ended before its kill: {proc.stderr.read()!r}"
                    os.kill(proc.pid, signal.SIGKILL)
                finally:
                    proc.wait(10)
                    proc.stderr.close()
                await asyncio.sleep(0.2)  # the seeder notices the dead connection
                sent = seeder.torrent(sid).uploaded - sent_before
                sent_total += sent
                now = recorded_pieces(meta, state, out)
                lost = recorded - now
                assert not lost, f"kill {kill}: pieces recorded as verified before are no longer: {sorted(lost)}"
                bad = now - pieces_on_disk(meta, out)
                assert not bad, f"kill {kill}: pieces recorded as verified are not on disk intact: {sorted(bad)}"
                added = len(now - recorded) * meta.piece_length
                assert sent <= added + in_flight, (f"kill {kill}: the seeder sent {sent} B for {added} B of new "
                                                   "pieces: verified pieces were fetched again")
                figures.append((sent, added))
                recorded = now
            assert len(recorded) < meta.num_pieces, "the download ended before the last kill"
            assert recorded, "no piece was ever recorded as verified"
            await seeder.set_rate_limits(max_up=0)
            sent_before = seeder.torrent(sid).uploaded
            last = await asyncio.create_subprocess_exec(*cmd, stderr=asyncio.subprocess.PIPE, env=env)
            _, err = await asyncio.wait_for(last.communicate(), 60)
            assert last.returncode == 0, err.decode()
            sent = seeder.torrent(sid).uploaded - sent_before
            missing = (meta.num_pieces - len(recorded)) * meta.piece_length
            assert sent <= missing + in_flight, (sent, missing)
            sent_total += sent
            waste = sent_total - meta.payload_length
            print(f"20 kills: seeder sent {sent_total} B in all for a {meta.payload_length} B torrent "
                  f"({waste} B more, {waste / 20:.0f} B a kill); per run (sent, new pieces' bytes): {figures}")
            assert sent_total <= meta.payload_length + 20 * in_flight
        finally:
            await seeder.close()

    run(main(), timeout=150)
    assert same_tree(data / "payload", out / "payload")


# ---- 2. a full disk -------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, unmounted (by path) afterwards; we run as root: never skipped."""
    with tmpfs(tmp_path / "small") as mnt:
        yield mnt


# Pieces assembled in memory and written once verified, or (no assembly memory) every block written as
# it arrives and the piece read back to be hashed: the path pieces past the assembly budget take.
ASSEMBLY = pytest.mark.parametrize("assembly", [32 * MiB, 0], ids=["in-memory", "every-block-to-disk"])


@ASSEMBLY
def test_full_disk_errors_keeps_verified_pieces_and_resumes_after_space_is_freed(tmp_path: Path, small_fs: Path,
                                                                                   assembly: int) -> None:
    """A 3 MiB torrent into a 1 MiB filesystem: the torrent goes to `error` with one line saying
    the disk is full and how much more is needed; what was verified stays verified (a recheck
    finds it); after the filesystem grows, `resume` completes the download byte-exact."""
    meta, data, torrent = make_torrent(tmp_path, 3 * MiB, files=2, piece_length=64 * KiB)

    async def main() -> None:
        seeder = await start_session(tmp_path, "s")
        # Four pieces requested at a time: with every block written as it arrives, more would fill the
        # disk with parts of many pieces before any is whole, and there would be nothing verified to keep.
        leecher = await start_session(tmp_path, "l", local_settings(torrent__assembly_bytes=assembly,
                                                                    torrent__requested_bytes=256 * KiB))
        events = leecher.subscribe()
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_state(seeder, sid, "seeding")
            lid = await leecher.add(torrent, save_path=small_fs, peers=[("127.0.0.1", seeder.listen_port)])
            snap = await wait_state(leecher, lid, "error", timeout=30)
            await asyncio.sleep(0.5)  # the writes that were in flight fail too
            failures = [e for e in drain(events) if isinstance(e, StorageFailed)]
            assert len(failures) == 1, f"one full disk, {len(failures)} failures published"
            message = snap.last_error
            assert message and "\n" not in message, message
            assert message.startswith("disk full writing "), message
            assert "more needed" in message and "free some space and resume" in message, message
            verified = have_pieces(leecher, lid)
            assert verified, "nothing was verified before the disk filled"
            assert verified <= pieces_on_disk(meta, small_fs)
            await leecher.recheck(lid)
            await wait_for(leecher, lid, lambda s: s.state not in ("checking",), what="the recheck's end")
            assert have_pieces(leecher, lid) >= verified, "a recheck lost verified pieces"
            if leecher.torrent(lid).state != "error":
                await wait_state(leecher, lid, "error", timeout=30)  # it ran again into the full disk
            subprocess.run(["mount", "-o", "remount,size=8m", str(small_fs)], check=True)
            await leecher.resume(lid)
            done = await wait_complete(leecher, lid, timeout=30)
            assert done.state == "seeding" and done.hash_failures == 0
        finally:
            await leecher.close()
            await seeder.close()
        assert same_tree(data / "payload", small_fs / "payload")

    run(main())


def test_full_disk_cli_exits_non_zero_with_one_line(tmp_path: Path, small_fs: Path) -> None:
    """`torrent download` into a full disk: exit status 1 and one line saying so (runner.py: a
    storage error ends the run), not a line for every piece that was being written."""
    meta, data, torrent = make_torrent(tmp_path, 3 * MiB, files=2, piece_length=64 * KiB)

    async def main() -> None:
        seeder = await start_session(tmp_path, "s")
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_state(seeder, sid, "seeding")
            env = {**os.environ, "XDG_CONFIG_HOME": loopback_config_home(tmp_path / "xdg")}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "torrent", "download", str(torrent), "-o", str(small_fs), "--no-seed",
                "--port", "0", "--peer", f"127.0.0.1:{seeder.listen_port}", "--state-dir", str(tmp_path / "st"),
                "-q", stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            lines = err.decode().splitlines()
            assert proc.returncode == 1, (proc.returncode, lines)
            assert len(lines) == 1, lines  # quiet: the error alone, once (not once per piece in flight)
            assert lines[0].startswith("torrent: error: payload: disk full writing "), lines
            assert "more needed" in lines[0] and "Traceback" not in err.decode()
        finally:
            await seeder.close()

    run(main())


# ---- 3. tampered and truncated resume data --------------------------------------------------


def _flip_bitfield(raw: bytes, meta: Metainfo) -> bytes:
    """Clear the first verified piece's bit: a flipped byte in the piece bitfield."""
    top = bencoding.decode(raw)
    have = bytearray(top[b"pieces"])
    at = next(i for i, byte in enumerate(have) if byte)
    marker = b"6:pieces%d:" % len(have)
    pos = raw.index(marker) + len(marker) + at
    return raw[:pos] + bytes([raw[pos] ^ have[at]]) + raw[pos + 1:]


def _flip_files(raw: bytes, meta: Metainfo) -> bytes:
    """A flipped byte in the middle of the file table (a size or an mtime)."""
    marker = b"5:files%d:" % (16 * len(meta.files))
    pos = raw.index(marker) + len(marker) + 8 * len(meta.files)
    return raw[:pos] + bytes([raw[pos] ^ 0x40]) + raw[pos + 1:]


def _truncate(raw: bytes, meta: Metainfo) -> bytes:
    return raw[:len(raw) * 2 // 3]


def _claim_everything(raw: bytes, meta: Metainfo) -> bytes:
    """Valid resume data, re-encoded with every piece claimed as verified."""
    data = resume.decode(raw, metainfo=meta)
    full = Bitfield(meta.num_pieces)
    for i in range(meta.num_pieces):
        full.set(i)
    lie = resume.ResumeData(data.info_hash, data.num_pieces, full.to_bytes(), data.files, data.download_dir,
                            data.uploaded, data.downloaded, data.priorities, data.saved_at)
    return resume.encode(lie)


@pytest.mark.parametrize("tamper", [_flip_bitfield, _flip_files, _truncate, _claim_everything],
                         ids=["flipped-bitfield", "flipped-file-table", "truncated", "claims-everything"])
def test_tampered_resume_data_is_distrusted_and_a_recheck_finds_what_is_on_disk(tmp_path: Path, tamper) -> None:
    """Stop a session with a half-downloaded torrent, tamper with its resume file, restart: the
    torrent comes back with exactly the pieces on disk — never one that is not there (a lying
    resume file must not make us serve garbage: a leecher asking it gets no bad piece), and none
    lost."""
    meta, data, torrent = make_torrent(tmp_path, 4 * MiB, files=2, piece_length=64 * KiB)
    state, out = tmp_path / "state-l", tmp_path / "out"

    async def main() -> None:
        seeder = await start_session(tmp_path, "s")
        await seeder.set_rate_limits(max_up=1 * MiB)
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_state(seeder, sid, "seeding")
            leecher = await start_session(tmp_path, "l", state_dir=state)
            try:
                lid = await leecher.add(torrent, save_path=out, peers=[("127.0.0.1", seeder.listen_port)])
                await wait_for(leecher, lid, lambda s: 0.3 < s.progress < 0.8, what="a partial download")
            finally:
                await leecher.close()
        finally:
            await seeder.close()  # the restarted torrent must find its pieces on disk, not fetch them
        truth = pieces_on_disk(meta, out)
        assert 0 < len(truth) < meta.num_pieces
        path = resume.resume_path(state / "resume", meta.info_hash)
        path.write_bytes(tamper(path.read_bytes(), meta))

        again = await start_session(tmp_path, "l2", state_dir=state)
        other = await start_session(tmp_path, "other")
        try:
            (lid,) = again.ids()
            await wait_for(again, lid, lambda s: s.state not in ("checking", "queued"), what="the check")
            found = have_pieces(again, lid)
            assert found == truth, (f"claimed {len(found)} pieces, {len(truth)} on disk; not on disk: "
                                    f"{sorted(found - truth)[:10]}, lost: {sorted(truth - found)[:10]}")
            assert again.torrent(lid).verified == sum(meta.geometry.piece_size(i) for i in truth)
            # What it serves: every piece it has, and nothing that fails its hash.
            oid = await other.add(torrent, save_path=tmp_path / "other", peers=[("127.0.0.1", again.listen_port)])
            got = await wait_for(other, oid, lambda s: s.verified >= again.torrent(lid).verified or s.hash_failures,
                                 timeout=20, what="the pieces served")
            assert got.hash_failures == 0 and have_pieces(other, oid) == truth
        finally:
            await other.close()
            await again.close()

    run(main())


# ---- 4. corrupt blocks for part of each piece --------------------------------------------


class SplitLiar(PeerServer):
    """A seeder (BEP 6) that, for every piece it is asked for, sends the first quarter of the
    piece's blocks intact and the second quarter corrupt, and rejects the second half (then
    chokes for a moment), so the honest peer is left to send the rest of the same piece."""

    def __init__(self, meta: Metainfo, payload: bytes) -> None:
        super().__init__()
        self.meta, self.payload = meta, payload
        self.sent: dict[int, set[int]] = {}  # piece → block offsets sent (intact or not)
        self.corrupted: dict[int, set[int]] = {}

    async def _unchoke_later(self, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.05)
        if not writer.is_closing():
            writer.write(wire.build_unchoke())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        parser = wire.WireParser(num_pieces=self.meta.num_pieces)
        try:
            while chunk := await reader.read(65536):
                rejected = False
                for event in parser.feed(chunk):
                    if isinstance(event, wire.Handshake):
                        writer.write(wire.Handshake(self.meta.info_hash, b"-SL0001-" + os.urandom(12)).to_bytes())
                        writer.write(wire.build_have_all() + wire.build_unchoke())
                    elif isinstance(event, wire.Request):
                        r = event
                        blocks = -(-self.meta.geometry.piece_size(r.index) // BLOCK_SIZE)
                        k = r.begin // BLOCK_SIZE
                        if k >= blocks // 2:
                            writer.write(wire.build_reject(r.index, r.begin, r.length))
                            rejected = True
                            continue
                        start = r.index * self.meta.piece_length + r.begin
                        block = bytearray(self.payload[start:start + r.length])
                        if k >= blocks // 4:
                            block[len(block) // 2] ^= 0xFF
                            self.corrupted.setdefault(r.index, set()).add(r.begin)
                        self.sent.setdefault(r.index, set()).add(r.begin)
                        writer.write(wire.build_piece(r.index, r.begin, bytes(block)))
                if rejected:  # choked for a moment, the piece is open to the honest peer
                    writer.write(wire.build_choke())
                    asyncio.get_running_loop().create_task(self._unchoke_later(writer))
                await writer.drain()
        except (ConnectionError, wire.ProtocolError):
            pass


@ASSEMBLY
@pytest.mark.parametrize("honest_rate", [0, 512 * KiB], ids=["fast-honest", "slow-honest"])
def test_a_peer_corrupting_part_of_each_piece_is_banned_and_the_honest_one_never(tmp_path: Path,
                                                                                  honest_rate: int,
                                                                                  assembly: int) -> None:
    """Pieces of 16 blocks; the liar sends 8 of each piece it is asked for (4 intact, 4 corrupt)
    and the honest seeder (our session) the other 8. The pieces fail their hash with two senders
    each; the smart ban must name the liar alone, and the download completes byte-exact."""
    meta, data, torrent = make_torrent(tmp_path, 3 * MiB, files=2, piece_length=256 * KiB)
    payload = b"".join((data / Path(*f.path)).read_bytes() for f in meta.files)

    async def main() -> None:
        liar = SplitLiar(meta, payload)
        await liar.start()
        seeder = await start_session(tmp_path, "s")
        await seeder.set_rate_limits(max_up=honest_rate)  # slow: the liar is the faster peer
        # Plain text first: the liar speaks no MSE, and the switch after its refusal would let the
        # honest seeder take every piece before the liar is asked for one.
        leecher = await start_session(tmp_path, "l", local_settings(peer__request_timeout=3.0,
                                                                    network__encryption="allow",
                                                                    torrent__assembly_bytes=assembly))
        events = leecher.subscribe()
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_state(seeder, sid, "seeding")
            lid = await leecher.add(torrent, save_path=tmp_path / "out",
                                    peers=[("127.0.0.1", liar.port), ("127.0.0.1", seeder.listen_port)])
            snap = await wait_complete(leecher, lid, timeout=30)
            banned = [e.address for e in drain(events) if isinstance(e, PeerBanned)]
            mixed = [i for i in liar.corrupted if len(liar.sent[i]) < meta.piece_length // BLOCK_SIZE]
            assert mixed, "the liar never shared a piece with the honest peer: the test proves nothing"
            assert banned == [f"127.0.0.1:{liar.port}"], banned
            assert snap.hash_failures >= 1 and snap.banned == 1
            print(f"liar: corrupt blocks in {len(liar.corrupted)} pieces, {len(mixed)} of them shared; "
                  f"{snap.hash_failures} hash failures; banned {banned}")
        finally:
            await leecher.close()
            await seeder.close()
            liar.close()
        assert same_tree(data / "payload", tmp_path / "out" / "payload")

    run(main())
