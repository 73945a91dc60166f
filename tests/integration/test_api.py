"""The session API on 127.0.0.1: every command in every state it accepts or
refuses, snapshots of a live swarm, and the event stream."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from swarmkit import (
    FakeTracker,
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

from torrent.session import (
    DuplicateTorrentError,
    FilePriority,
    InvalidArgumentError,
    InvalidStateError,
    PieceState,
    QueueMove,
    Session,
    StateChanged,
    TorrentAdded,
    TorrentCompleted,
    TorrentRemoved,
    TorrentState,
    UnknownTorrentError,
    to_jsonable,
)

MAGNET = "magnet:?xt=urn:btih:" + "ab" * 20 + "&dn=nothing-yet&tr=http%3A%2F%2F127.0.0.1%3A9%2Fannounce"


def test_every_command_on_an_unknown_id_says_so(tmp_path: Path) -> None:
    async def main() -> None:
        session = await start_session(tmp_path, "s")
        try:
            ghost = "00" * 20
            calls = [session.pause(ghost), session.resume(ghost), session.remove(ghost), session.recheck(ghost),
                     session.move_data(ghost, tmp_path), session.set_file_priorities(ghost, {0: "skip"}),
                     session.set_sequential(ghost, True), session.set_first_last(ghost, True),
                     session.add_tracker(ghost, "http://127.0.0.1:1/announce"),
                     session.remove_tracker(ghost, "http://x/announce"),
                     session.edit_tracker(ghost, "http://x/announce", "http://y/announce"),
                     session.announce(ghost), session.add_peers(ghost, [("127.0.0.1", 1)]),
                     session.set_torrent_limits(ghost, max_down=1), session.queue_move(ghost, "top"),
                     session.force_start(ghost)]
            for call in calls:
                with pytest.raises(UnknownTorrentError, match="no torrent '0000"):
                    await call
            for query in (session.torrent, session.peers, session.files, session.trackers, session.piece_map):
                with pytest.raises(UnknownTorrentError):
                    query(ghost)
        finally:
            await session.close()

    run(main())


def test_a_magnet_link_waits_in_metadata_and_says_why(tmp_path: Path) -> None:
    async def main() -> None:
        session = await start_session(tmp_path, "s")
        try:
            tid = await session.add(MAGNET, save_path=tmp_path / "out")
            assert tid == "ab" * 20
            snap = session.torrent(tid)
            assert snap.state == "metadata" and snap.name == "nothing-yet" and snap.total_size == 0
            assert any("metadata" in w for w in snap.waiting_on)
            assert [t.url for t in session.trackers(tid)] == ["http://127.0.0.1:9/announce"]
            for refused in (session.recheck(tid), session.move_data(tid, tmp_path / "x"),
                            session.set_file_priorities(tid, {0: "skip"}), session.set_sequential(tid, True),
                            session.force_start(tid)):
                with pytest.raises(InvalidStateError, match="metadata is not known yet"):
                    await refused
            for query in (session.files, session.piece_map):
                with pytest.raises(InvalidStateError):
                    query(tid)
            with pytest.raises(DuplicateTorrentError):
                await session.add(MAGNET, save_path=tmp_path / "out")
            await session.pause(tid)
            assert session.torrent(tid).state == "paused"
            with pytest.raises(InvalidStateError, match="already paused"):
                await session.pause(tid)
            await session.resume(tid)
            assert session.torrent(tid).state == "metadata"
            await session.remove(tid)
            assert session.ids() == ()
        finally:
            await session.close()

    run(main())


def test_pause_resume_remove_and_their_events(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 1024 * 1024, files=2)

    async def main() -> None:
        session = await start_session(tmp_path, "s")
        events = session.subscribe()
        try:
            tid = await session.add(torrent, save_path=data)
            await wait_state(session, tid, "seeding")
            with pytest.raises(InvalidStateError, match="is not paused"):
                await session.resume(tid)
            await session.pause(tid)
            assert session.torrent(tid).state == "paused"
            with pytest.raises(InvalidStateError, match="already paused"):
                await session.pause(tid)
            await session.resume(tid)
            await wait_state(session, tid, "seeding")
            await session.remove(tid)
            with pytest.raises(UnknownTorrentError):
                session.torrent(tid)
            got = drain(events)
            assert isinstance(got[0], TorrentAdded) and got[0].name == meta.name
            assert [(e.old, e.new) for e in got if isinstance(e, StateChanged)] == [
                ("checking", "queued"), ("queued", "seeding"), ("seeding", "paused"),
                ("paused", "checking"), ("checking", "queued"), ("queued", "seeding"), ("seeding", "paused")]
            assert isinstance(got[-1], TorrentRemoved) and not got[-1].with_data
            assert all(e.torrent_id == tid for e in got)
            json.dumps(to_jsonable(got))
        finally:
            await session.close()
        assert same_tree(data / "payload", data / "payload")  # nothing deleted
        assert (data / "payload").exists()

    run(main())


def test_remove_with_data_deletes_only_the_torrents_files(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 512 * 1024, files=3)
    (data / "payload" / "mine.txt").write_text("not the torrent's")

    async def main() -> None:
        session = await start_session(tmp_path, "s")
        try:
            tid = await session.add(torrent, save_path=data)
            await wait_state(session, tid, "seeding")
            await session.remove(tid, delete_data=True)
        finally:
            await session.close()

    run(main())
    left = sorted(p.relative_to(data).as_posix() for p in data.rglob("*"))
    assert left == ["payload", "payload/mine.txt"]


def test_recheck_finds_a_changed_piece_and_fetches_it_again(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 1024 * 1024, files=1)

    async def main() -> None:
        seeder, leecher = await start_session(tmp_path, "s"), await start_session(tmp_path, "l")
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_state(seeder, sid, "seeding")
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seeder.listen_port)])
            await wait_complete(leecher, lid)
            (path,) = (tmp_path / "out").rglob("*.bin")
            with open(path, "r+b") as fh:  # one wrong byte in piece 3
                fh.seek(3 * meta.piece_length + 5)
                old = fh.read(1)
                fh.seek(3 * meta.piece_length + 5)
                fh.write(bytes([old[0] ^ 0xFF]))
            await leecher.recheck(lid)
            with pytest.raises(InvalidStateError, match="being checked"):
                await leecher.recheck(lid)
            events = leecher.subscribe()
            snap = await wait_for(leecher, lid, lambda s: s.state == "seeding" and s.hashed >= meta.payload_length,
                                  what="recheck, refetch and seeding")
            assert snap.wanted_verified == meta.payload_length
            assert ("downloading", "seeding") in [(e.old, e.new) for e in drain(events) if isinstance(e, StateChanged)]
        finally:
            await leecher.close()
            await seeder.close()
        assert same_tree(data / "payload", tmp_path / "out" / "payload")

    run(main())


def test_a_recheck_of_a_stopped_torrent_is_checking_at_once_and_a_resume_starts_no_second_check(
        tmp_path: Path) -> None:
    """A torrent in error (or paused): recheck() returns with it checking, not still in error for a moment,
    so a resume() right after is refused instead of starting a second check beside the first (the second
    then put back the pieces it found before the first check's download wrote the rest)."""
    meta, data, torrent = make_torrent(tmp_path, 1024 * 1024, files=1)

    async def main() -> None:
        session = await start_session(tmp_path, "s")
        try:
            tid = await session.add(torrent, save_path=data, paused=True)
            await wait_state(session, tid, "paused")
            session._torrents[tid].update_record(paused=False)  # as a storage failure leaves it: in error
            session._torrents[tid].set_state(TorrentState.ERROR, "disk full")
            await session.recheck(tid)
            assert session.torrent(tid).state == "checking"
            with pytest.raises(InvalidStateError, match="not paused"):
                await session.resume(tid)
            snap = await wait_state(session, tid, "seeding")
            assert snap.verified == meta.payload_length
        finally:
            await session.close()

    run(main())


def test_move_data_takes_the_files_along(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 512 * 1024, files=3)

    async def main() -> None:
        session = await start_session(tmp_path, "s")
        try:
            out = tmp_path / "first"
            seeder = await start_session(tmp_path, "seeder")
            sid = await seeder.add(torrent, save_path=data)
            tid = await session.add(torrent, save_path=out, peers=[("127.0.0.1", seeder.listen_port)])
            await wait_complete(session, tid)
            await seeder.close()
            await session.move_data(tid, tmp_path / "second")
            snap = await wait_state(session, tid, "seeding")
            assert snap.save_path == str((tmp_path / "second").resolve())
            assert snap.wanted_verified == meta.payload_length
            assert not (out / "payload").exists()
            assert sid
        finally:
            await session.close()
        assert same_tree(data / "payload", tmp_path / "second" / "payload")

    run(main())


def test_files_priorities_sequential_and_limits(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 2 * 1024 * 1024, files=3)

    async def main() -> None:
        seeder = await start_session(tmp_path, "s")
        leecher = await start_session(tmp_path, "l")
        try:
            await seeder.add(torrent, save_path=data)
            tid = await leecher.add(torrent, save_path=tmp_path / "out", paused=True)
            await wait_state(leecher, tid, "paused")
            files = leecher.files(tid)
            assert [f.path for f in files] == ["/".join(f.path) for f in meta.files]
            assert all(f.priority == "normal" and f.verified == 0 for f in files)
            with pytest.raises(InvalidArgumentError, match="has no file 7"):
                await leecher.set_file_priorities(tid, {7: "skip"})
            with pytest.raises(InvalidArgumentError, match="unknown file priority"):
                await leecher.set_file_priorities(tid, {0: "urgent"})
            await leecher.set_file_priorities(tid, {0: FilePriority.SKIP, 2: "high"})
            assert [f.priority for f in leecher.files(tid)] == ["skip", "normal", "high"]
            skipped = sum(1 for s in leecher.piece_map(tid).states if s == PieceState.SKIPPED)
            assert skipped > 0 and leecher.torrent(tid).wanted_size < meta.payload_length
            await leecher.set_sequential(tid, True)
            await leecher.set_first_last(tid, True)
            with pytest.raises(InvalidArgumentError):
                await leecher.set_torrent_limits(tid, max_down=-5)
            await leecher.set_torrent_limits(tid, max_down=3 * 1024 * 1024, max_peers=7, upload_slots=2)
            snap = leecher.torrent(tid)
            assert (snap.sequential, snap.first_last, snap.max_down, snap.max_peers, snap.upload_slots) == (
                True, True, 3 * 1024 * 1024, 7, 2)
            await leecher.add_peers(tid, [("127.0.0.1", seeder.listen_port)])
            with pytest.raises(InvalidArgumentError):
                await leecher.add_peers(tid, [("127.0.0.1", 0)])
            await leecher.resume(tid)
            done = await wait_complete(leecher, tid)
            assert done.wanted_verified == done.wanted_size < meta.payload_length
            files = leecher.files(tid)
            assert files[1].verified == files[1].size and files[2].verified == files[2].size
            assert files[0].verified < files[0].size
            # More files wanted: downloading again, and then done.
            await leecher.set_file_priorities(tid, {0: "normal"})
            await wait_complete(leecher, tid)
        finally:
            await leecher.close()
            await seeder.close()
        assert same_tree(data / "payload", tmp_path / "out" / "payload")

    run(main())


def test_trackers_can_be_added_edited_removed(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 256 * 1024, files=1, trackers=[["http://127.0.0.1:9/announce"]])

    async def main() -> None:
        session = await start_session(tmp_path, "s")
        try:
            tid = await session.add(torrent, save_path=tmp_path / "out", paused=True)
            await session.add_tracker(tid, "udp://127.0.0.1:10/announce", tier=0)
            await session.add_tracker(tid, "http://127.0.0.1:11/announce")
            with pytest.raises(InvalidArgumentError, match="already has"):
                await session.add_tracker(tid, "http://127.0.0.1:11/announce")
            with pytest.raises(InvalidArgumentError, match="invalid tracker URL"):
                await session.add_tracker(tid, "ftp://example/announce")
            await session.edit_tracker(tid, "http://127.0.0.1:11/announce", "http://127.0.0.1:12/announce")
            with pytest.raises(InvalidArgumentError, match="has no tracker"):
                await session.remove_tracker(tid, "http://127.0.0.1:11/announce")
            await session.remove_tracker(tid, "http://127.0.0.1:9/announce")
            trackers = session.trackers(tid)
            assert [(t.url, t.tier, t.status) for t in trackers] == [
                ("udp://127.0.0.1:10/announce", 0, "not contacted"),
                ("http://127.0.0.1:12/announce", 1, "not contacted")]
            with pytest.raises(InvalidStateError, match="not running"):
                await session.announce(tid)
        finally:
            await session.close()

    run(main())


def test_queue_moves_and_force_start(tmp_path: Path) -> None:
    torrents = [make_torrent(tmp_path / f"t{i}", 256 * 1024, files=1, name=f"p{i}") for i in range(3)]
    settings = local_settings(queue__max_active_downloads=1)

    async def main() -> None:
        session = await start_session(tmp_path, "s", settings)
        try:
            ids = [await session.add(t[2], save_path=tmp_path / "out") for t in torrents]
            await wait_state(session, ids[0], "downloading")
            await wait_state(session, ids[1], "queued")
            await wait_state(session, ids[2], "queued")
            assert session.ids() == tuple(ids)
            await session.queue_move(ids[2], QueueMove.TOP)
            assert session.ids() == (ids[2], ids[0], ids[1])
            await wait_state(session, ids[2], "downloading")
            await wait_state(session, ids[0], "queued")
            await session.queue_move(ids[2], "down")
            assert session.ids() == (ids[0], ids[2], ids[1])
            await session.queue_move(ids[0], "bottom")
            await session.queue_move(ids[0], "up")
            assert session.ids() == (ids[2], ids[0], ids[1])
            with pytest.raises(InvalidArgumentError):
                await session.queue_move(ids[0], "sideways")
            await session.force_start(ids[1])
            snap = await wait_state(session, ids[1], "downloading")
            assert snap.forced
            assert [session.torrent(t).queue_position for t in session.ids()] == [0, 1, 2]
        finally:
            await session.close()

    run(main())


def test_snapshots_of_a_live_swarm(tmp_path: Path) -> None:
    """A seeder and a leecher that meet through a tracker: peers appear with
    their client names and sources, the tracker with its status, the piece map
    fills, and a forced announce reaches the tracker."""

    async def main() -> None:
        tracker = FakeTracker()
        await tracker.start()
        meta, data, torrent = make_torrent(tmp_path, 6 * 1024 * 1024, files=2, trackers=[[tracker.url]])
        seeder = await start_session(tmp_path, "s", local_settings(rates__max_up=2 * 1024 * 1024))
        leecher = await start_session(tmp_path, "l")
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_state(seeder, sid, "seeding")
            tracker.peers = [("127.0.0.1", seeder.listen_port)]
            lid = await leecher.add(torrent, save_path=tmp_path / "out")
            snap = await wait_for(leecher, lid, lambda s: 0.2 < s.progress < 0.9 and s.down_rate > 0,
                                  what="mid-download, with a rate measured")
            peers = [p for p in leecher.peers(lid) if p.status == "connected"]
            assert len(peers) == 1 and peers[0].client == "torrent 0.1.0" and peers[0].source == "tracker"
            assert peers[0].down_rate > 0 and not peers[0].incoming and peers[0].progress == 1.0
            assert not peers[0].am_choking is None and peers[0].peer_interested is False
            on_seeder = [p for p in seeder.peers(sid) if p.status == "connected"]
            assert len(on_seeder) == 1 and on_seeder[0].incoming and on_seeder[0].source == "incoming"
            assert on_seeder[0].requests_in >= 0 and on_seeder[0].progress < 1.0
            (status,) = leecher.trackers(lid)
            assert status.status == "working" and status.peers == 1 and status.seeders == 1
            assert status.last_announce is not None and status.next_announce > status.last_announce
            pieces = leecher.piece_map(lid)
            assert len(pieces.states) == len(pieces.availability) == meta.num_pieces
            assert 0 < pieces.states.count(PieceState.HAVE) < meta.num_pieces
            assert pieces.states.count(PieceState.REQUESTED) + pieces.states.count(PieceState.DOWNLOADING) > 0
            assert set(pieces.availability) == {1}  # one peer, a seed
            busy = next(i for i, s in enumerate(pieces.states) if s in (PieceState.REQUESTED, PieceState.DOWNLOADING))
            detail = leecher.piece_detail(lid, busy)
            assert detail.peers_with_piece == (f"127.0.0.1:{seeder.listen_port}",)
            assert any(b.requested_from or b.received_from for b in detail.blocks)
            with pytest.raises(InvalidArgumentError):
                leecher.piece_detail(lid, meta.num_pieces)
            assert snap.down_rate > 0 and snap.eta is not None and snap.peers == 1 and snap.seeds == 1
            whole = leecher.snapshot()
            assert whole.connections == 1 and whole.torrents == 1 and whole.states == (("downloading", 1),)
            assert whole.listen_addresses == (f"127.0.0.1:{leecher.listen_port}",)
            assert whole.free_space and whole.free_space[0][1] > 0
            announced = len(tracker.announces)
            await leecher.announce(lid)
            for _ in range(100):
                if len(tracker.announces) > announced:
                    break
                await asyncio.sleep(0.05)
            assert len(tracker.announces) > announced
            done = await wait_complete(leecher, lid)
            assert done.progress == 1.0 and done.completed_at is not None
            await wait_state(leecher, lid, "seeding")
            assert json.dumps(to_jsonable([done, leecher.peers(lid), leecher.files(lid), leecher.trackers(lid),
                                           leecher.snapshot()]))
        finally:
            await leecher.close()
            await seeder.close()
            tracker.close()
        events = [q.get("event") for q, _ in tracker.announces]
        assert events[0] == "started" and "stopped" in events

    run(main())


def test_a_slow_subscriber_loses_only_its_own_oldest_events(tmp_path: Path) -> None:
    async def main() -> None:
        session = Session(local_settings())
        await session.start()
        slow = session.subscribe(maxlen=3)
        fast = session.subscribe()
        seen = []
        try:
            for i in range(6):
                magnet = f"magnet:?xt=urn:btih:{i:040x}&dn=m{i}"
                await session.add(magnet, save_path=tmp_path)
                seen.extend(drain(fast))
            assert [e.name for e in seen] == [f"m{i}" for i in range(6)]
            assert slow.dropped == 3 and session.snapshot().events_dropped == 3
            kept = drain(slow)
            assert [e.name for e in kept] == ["m3", "m4", "m5"]
            slow.close()
            with pytest.raises(StopAsyncIteration):
                await slow.get()
        finally:
            await session.close()

    run(main())


def test_completion_event_says_what_was_selected_and_fetched(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 1024 * 1024, files=2)

    async def main() -> None:
        seeder, leecher = await start_session(tmp_path, "s"), await start_session(tmp_path, "l")
        events = leecher.subscribe()
        try:
            await seeder.add(torrent, save_path=data)
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seeder.listen_port)],
                                    file_priorities={0: "skip"})
            await wait_complete(leecher, lid)
            await asyncio.sleep(0.1)
            (done,) = [e for e in drain(events) if isinstance(e, TorrentCompleted)]
            snap = leecher.torrent(lid)
            assert done.wanted_size == snap.wanted_size < meta.payload_length
            assert done.downloaded == snap.wanted_verified
        finally:
            await leecher.close()
            await seeder.close()

    run(main())


def test_file_priorities_and_options_survive_a_restart(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 1024 * 1024, files=3)

    async def first() -> str:
        session = Session(local_settings(), state_dir=tmp_path / "state")
        await session.start()
        tid = await session.add(torrent, save_path=tmp_path / "out", paused=True)
        await wait_state(session, tid, "paused")
        await session.set_file_priorities(tid, {0: "skip", 2: "high"})
        await session.set_sequential(tid, True)
        await session.set_torrent_limits(tid, max_up=123456)
        await session.close()
        return tid

    async def second(tid: str) -> None:
        session = Session(local_settings(), state_dir=tmp_path / "state")
        await session.start()
        try:
            snap = await wait_state(session, tid, "paused")
            assert [f.priority for f in session.files(tid)] == ["skip", "normal", "high"]
            assert snap.sequential and snap.max_up == 123456 and snap.wanted_size < meta.payload_length
        finally:
            await session.close()

    tid = run(first())
    run(second(tid))


def test_a_torrent_of_100_000_files_leaves_the_loop_free(tmp_path: Path) -> None:
    """Parsing it, proving its paths stay in the download directory and checking it run off the event loop,
    so the session keeps answering (commands, snapshots, SIGTERM) meanwhile."""
    import os
    import time

    from torrent.codec import bencoding

    files = [{b"length": 1000, b"path": [b"d%03d" % (i // 1000), b"f%06d" % i]} for i in range(100_000)]
    info = {b"name": b"many", b"piece length": 1 << 18, b"files": files,
            b"pieces": os.urandom(20 * -(-1000 * len(files) // (1 << 18)))}
    raw = bencoding.encode({b"info": info})

    async def main() -> None:
        session = await start_session(tmp_path, "s")
        gaps: list[float] = []
        done = False

        async def heartbeat() -> None:
            last = time.monotonic()
            while not done:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        beat = asyncio.ensure_future(heartbeat())
        try:
            tid = await session.add(raw, save_path=tmp_path / "out")
            await wait_for(session, tid, lambda s: s.state not in ("checking",), timeout=120)
            done = True
            await beat
            assert session.torrent(tid).total_size == 100_000 * 1000
            # Generous: the work is seconds long; what is checked is that none of it holds the loop.
            assert max(gaps) < 2.0, f"the loop stalled for {max(gaps):.1f} s"
        finally:
            done = True
            await session.close()

    run(main(), timeout=300)
