"""What a session does while many torrents seed and nothing happens: work proportional to the
torrents (not to their square), and no disk writes of resume data that did not change.

Costs are counted, not timed: Python function calls in one pass of the session's periodic
work (``sys.setprofile``), and the inode of a resume file (each save replaces it)."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from swarmkit import local_settings, run, start_session, wait_state

from torrent.create import create_torrent
from torrent.session import Session, TorrentState

PIECE = 16 * 1024


def small_torrents(tmp: Path, first: int, count: int) -> tuple[list[Path], Path]:
    """``count`` distinct torrents of a few pieces each, their data in one directory."""
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    paths = []
    for i in range(first, first + count):
        payload = data / f"t{i:04d}.bin"
        payload.write_bytes(i.to_bytes(4, "big") * (PIECE * 3 // 4 + i))
        path = tmp / f"t{i:04d}.torrent"
        path.write_bytes(create_torrent(payload, piece_length=PIECE))
        paths.append(path)
    return paths, data


async def add_seeding(session: Session, paths: list[Path], data: Path) -> list[str]:
    ids = [await session.add(path, save_path=data) for path in paths]
    for torrent_id in ids:
        await wait_state(session, torrent_id, TorrentState.SEEDING.value)
    return ids


def calls_in(work: Callable[[], object]) -> int:
    """Python calls (generator resumptions included) that ``work()`` makes."""
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(count)
    try:
        work()
    finally:
        sys.setprofile(None)
    return calls


def test_idle_ticks_and_snapshots_cost_the_same_per_torrent_however_many_there_are(tmp_path: Path) -> None:
    """Before: every torrent's dialler, and every torrent's snapshot, summed the connections of every
    torrent (even with nobody to dial): twice the torrents, four times the calls (a tick: 6 008 for 40
    torrents, 21 608 for 80; snapshots of all: 7 524 and 24 644)."""
    async def main() -> None:
        session = await start_session(tmp_path, "s", local_settings(queue__max_active_seeds=-1))
        try:
            counts = []
            for first in (0, 40):
                paths, data = small_torrents(tmp_path, first, 40)
                await add_seeding(session, paths, data)
                tick = min(calls_in(lambda: session._tick(time.monotonic(), 1.0)) for _ in range(3))
                counts.append((tick, calls_in(session.torrents)))
            (tick_40, snap_40), (tick_80, snap_80) = counts
            assert tick_80 <= 2.3 * tick_40, counts
            assert snap_80 <= 2.3 * snap_40, counts
            # About 10 calls per idle seed: 18 while empty swarms were ticked like busy ones, 21 while the
            # seeding time was a new record every second.
            assert tick_80 < 12 * 80, counts
        finally:
            await session.close()

    run(main())


def test_idle_seeds_check_their_files_without_rewriting_unchanged_resume_data(tmp_path: Path) -> None:
    """Each ``storage.resume_every`` a seed looks at its files (one that changed sends it to error),
    but writes its resume data only when something in it changed: before, every seed rewrote and
    fsynced an identical file every period, 1 000 files every 30 s in a session of 1 000 seeds."""
    async def main() -> None:
        session = await start_session(tmp_path, "s", local_settings(storage__resume_every=1.0))
        try:
            paths, data = small_torrents(tmp_path, 0, 2)
            ids = await add_seeding(session, paths, data)
            resume = [tmp_path / "state-s" / "resume" / f"{torrent_id}.resume" for torrent_id in ids]
            await asyncio.sleep(1.5)  # the save that follows the check has settled
            before = [os.stat(path).st_ino for path in resume]
            await asyncio.sleep(3.5)  # three periods or more
            assert [os.stat(path).st_ino for path in resume] == before
            # The periodic look at the files still runs: a payload changed under a seed stops it.
            changed = data / "t0001.bin"
            changed.write_bytes(changed.read_bytes()[::-1])
            snap = await wait_state(session, ids[1], TorrentState.ERROR.value, timeout=10)
            assert "changed on disk" in (snap.last_error or "")
            assert session.torrent(ids[0]).state == TorrentState.SEEDING.value
        finally:
            await session.close()

    run(main())


def test_checking_small_torrents_reads_them_with_small_buffers(tmp_path: Path) -> None:
    """A check reads in batches of ``storage.check_batch`` (8 MiB); before, a 48 KiB torrent's check
    allocated several such buffers too, and after 1 000 of them the freed buffers kept 200 MB resident."""
    async def main() -> None:
        session = await start_session(tmp_path, "s")
        try:
            paths, data = small_torrents(tmp_path, 0, 4)
            tracemalloc.start()
            try:
                await add_seeding(session, paths, data)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak < 4 * 1024 * 1024, peak
        finally:
            await session.close()

    run(main())


def test_a_restored_seed_does_not_rewrite_the_resume_data_it_was_restored_from(tmp_path: Path) -> None:
    """Before: the first periodic save after a restart wrote every torrent's resume data again, unchanged
    (1 000 fsyncs in the first half-minute of a restored session of 1 000 seeds)."""
    async def main() -> None:
        settings = local_settings(storage__resume_every=1.0)
        paths, data = small_torrents(tmp_path, 0, 2)
        first = await start_session(tmp_path, "s", settings)
        try:
            ids = await add_seeding(first, paths, data)
        finally:
            await first.close()
        resume = [tmp_path / "state-s" / "resume" / f"{torrent_id}.resume" for torrent_id in ids]
        before = [os.stat(path).st_ino for path in resume]
        again = await start_session(tmp_path, "s", settings)
        try:
            for torrent_id in ids:
                snap = await wait_state(again, torrent_id, TorrentState.SEEDING.value)
                assert snap.hashed == 0
            await asyncio.sleep(3.5)  # three periods or more
            assert [os.stat(path).st_ino for path in resume] == before
        finally:
            await again.close()

    run(main())


def test_a_session_seeds_one_random_generator_from_the_system_not_one_per_torrent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: every torrent's tracker tiers and swarm (picker, choker) built a ``random.Random()``,
    each seeded from ``os.urandom`` (12 µs each) in a restore of thousands. Counted here: the
    generators seeded from the system while a session restores 8 seeds (18 before, 3 after)."""
    seeded = 0
    seed = random.Random.seed

    def counting_seed(self: random.Random, a: object = None, version: int = 2) -> None:
        nonlocal seeded
        seeded += a is None
        seed(self, a, version)

    async def main() -> None:
        paths, data = small_torrents(tmp_path, 0, 8)
        first = await start_session(tmp_path, "s", local_settings(queue__max_active_seeds=-1))
        try:
            ids = await add_seeding(first, paths, data)
        finally:
            await first.close()
        monkeypatch.setattr(random.Random, "seed", counting_seed)
        again = await start_session(tmp_path, "s", local_settings(queue__max_active_seeds=-1))
        try:
            for torrent_id in ids:
                await wait_state(again, torrent_id, TorrentState.SEEDING.value)
            assert all(again._torrents[torrent_id].swarm is not None for torrent_id in ids)
        finally:
            await again.close()
        assert seeded < len(ids), f"{seeded} generators seeded from os.urandom for {len(ids)} torrents"

    run(main())
