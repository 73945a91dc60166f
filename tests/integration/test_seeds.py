"""Two seeds have nothing for each other: they part, and neither dials the other again while it seeds,
whether it learned that from the connection or from a peer's PEX flags (as libtorrent and Transmission do)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from swarmkit import local_settings, make_torrent, run, start_session, wait_complete, wait_state

from torrent.engine.swarm import BOTH_SEEDS


def test_two_seeds_part_and_the_dialler_leaves_the_other_alone(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 512 * 1024)
    fast_retry = local_settings(network__retry_first=0.2)

    async def main() -> None:
        first = await start_session(tmp_path, "a")
        second = await start_session(tmp_path, "b", fast_retry)
        try:
            aid = await first.add(torrent, save_path=data)
            await wait_state(first, aid, "seeding")
            bid = await second.add(torrent, save_path=data, peers=[("127.0.0.1", first.listen_port)])
            await wait_state(second, bid, "seeding")
            address = ("127.0.0.1", first.listen_port)
            candidate = second._torrents[bid].candidates.get(address)
            for _ in range(100):
                if candidate.last_error == BOTH_SEEDS:
                    break
                await asyncio.sleep(0.05)
            assert candidate.last_error == BOTH_SEEDS and candidate.seed
            await asyncio.sleep(2.0)  # ten times the retry delay
            assert candidate.attempts == 1 and candidate.failures == 0
            assert first.torrent(aid).peers == 0 and second.torrent(bid).peers == 0
        finally:
            await second.close()
            await first.close()

    run(main())


def test_a_seed_told_of_another_seed_by_pex_never_dials_it(tmp_path: Path) -> None:
    """A leecher connected to two seeds tells each of the other, flagged a seed: neither dials."""
    meta, data, torrent = make_torrent(tmp_path, 4 * 1024 * 1024)
    slow = local_settings(rates__max_down=512 * 1024)  # the leecher stays a leecher for seconds

    async def main() -> None:
        seeds = [await start_session(tmp_path, f"s{n}") for n in range(2)]
        leecher = await start_session(tmp_path, "l", slow)
        try:
            ids = [await s.add(torrent, save_path=data) for s in seeds]
            for s, sid in zip(seeds, ids):
                await wait_state(s, sid, "seeding")
            lid = await leecher.add(torrent, save_path=tmp_path / "out",
                                    peers=[("127.0.0.1", s.listen_port) for s in seeds])
            others = [seeds[1]._torrents[ids[1]].candidates, seeds[0]._torrents[ids[0]].candidates]
            addresses = [("127.0.0.1", seeds[0].listen_port), ("127.0.0.1", seeds[1].listen_port)]
            for _ in range(100):  # PEX goes out at the first tick after the extension handshake
                if all(c.get(a) is not None for c, a in zip(others, addresses)):
                    break
                await asyncio.sleep(0.05)
            learned = [c.get(a) for c, a in zip(others, addresses)]
            assert all(candidate is not None and candidate.seed for candidate in learned)
            await wait_complete(leecher, lid, timeout=30)
            assert [candidate.attempts for candidate in learned] == [0, 0]
        finally:
            await leecher.close()
            for s in seeds:
                await s.close()

    run(main())


def test_haves_for_a_seed_wait_for_the_next_write_or_the_tick_and_all_arrive(tmp_path: Path) -> None:
    """A seed only shows our progress with our haves: they leave with our next requests or at the tick,
    not each in a packet of its own that wakes the seed, and it still sees our progress as we go."""
    meta, data, torrent = make_torrent(tmp_path, 2 * 1024 * 1024, piece_length=32 * 1024)

    async def main() -> None:
        seeder = await start_session(tmp_path, "s")
        await seeder.set_rate_limits(max_up=512 * 1024)  # four seconds: several ticks
        leecher = await start_session(tmp_path, "l")
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_state(seeder, sid, "seeding")
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seeder.listen_port)])
            deferred = 0
            seen_by_seed = []
            while leecher.torrent(lid).state != "seeding":
                swarm = leecher._torrents[lid].swarm
                if swarm is not None:
                    deferred = max([deferred] + [len(p._later) for p in swarm.peers])
                seeding = seeder._torrents[sid].swarm
                views = [p.bitfield.count() for p in seeding.peers if p.bitfield is not None] if seeding else []
                if views:
                    seen_by_seed.append(views[0])
                await asyncio.sleep(0.01)
            assert deferred > 0
            # The seed saw the leecher's pieces grow while it downloaded, not only at the end.
            assert len(set(seen_by_seed)) >= 3 and max(seen_by_seed) > 0
        finally:
            await leecher.close()
            await seeder.close()

    run(main())
