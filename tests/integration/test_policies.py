"""Session policies on 127.0.0.1: seed-ratio and seeding-time limits, the
download queue, and binding every socket to one address."""

from __future__ import annotations

import asyncio
from pathlib import Path

from swarmkit import (
    FakeTracker,
    local_settings,
    make_torrent,
    run,
    same_tree,
    start_session,
    wait_complete,
    wait_for,
    wait_state,
)

from torrent.session import StateChanged, Subscription, TorrentCompleted


def test_seed_ratio_limit_stops_seeding(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 1024 * 1024, files=1)

    async def main() -> None:
        seeder = await start_session(tmp_path, "s", local_settings(queue__seed_ratio=1.0))
        leecher = await start_session(tmp_path, "l")
        events = seeder.subscribe()
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_state(seeder, sid, "seeding")
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seeder.listen_port)])
            await wait_complete(leecher, lid)
            snap = await wait_state(seeder, sid, "paused", timeout=10)
            assert snap.uploaded >= meta.payload_length and snap.ratio >= 1.0
            assert snap.last_error == "seed ratio 1 reached"
            changes = []
            while (event := events.get_nowait()) is not None:
                if isinstance(event, StateChanged):
                    changes.append((event.old, event.new, event.reason))
            assert changes[-1] == ("seeding", "paused", "seed ratio 1 reached")
            assert not [p for p in seeder.peers(sid) if p.status == "connected"]
        finally:
            await leecher.close()
            await seeder.close()

    run(main())


def test_seeding_time_limit_stops_seeding(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 256 * 1024, files=1)

    async def main() -> None:
        seeder = await start_session(tmp_path, "s", local_settings(queue__seed_time=0.03))  # 1.8 s
        try:
            sid = await seeder.add(torrent, save_path=data)
            await wait_state(seeder, sid, "seeding")
            snap = await wait_state(seeder, sid, "paused", timeout=10)
            assert snap.seeding_time >= 1.8 and "seeding time" in snap.last_error
            # Resuming clears the reason; the limit stops it again.
            await seeder.resume(sid)
            await wait_state(seeder, sid, "seeding")
            assert seeder.torrent(sid).last_error is None
            await wait_state(seeder, sid, "paused", timeout=10)
        finally:
            await seeder.close()

    run(main())


def test_the_queue_starts_the_next_download_when_one_completes(tmp_path: Path) -> None:
    """The peer is given only once all three are checked and queued. Checks may end in any order (each
    opens its files off the loop first): one checked before the torrent above it starts, and yields its
    slot when that one is checked. With the peer given at once, that once ended in a torrent starting
    before the one above it completed (under load), and could end in it completing first."""
    torrents = [make_torrent(tmp_path / f"t{i}", 1024 * 1024, files=1, name=f"p{i}") for i in range(3)]

    def transitions(events: Subscription, ids: list[str]) -> list[tuple[int, str, str]]:
        log = []
        while (event := events.get_nowait()) is not None:
            if isinstance(event, StateChanged):
                log.append((ids.index(event.torrent_id), event.old, event.new))
            elif isinstance(event, TorrentCompleted):
                log.append((ids.index(event.torrent_id), "completed", ""))
        return log

    async def main() -> None:
        seeder = await start_session(tmp_path, "s", local_settings(rates__max_up=2 * 1024 * 1024))
        leecher = await start_session(tmp_path, "l", local_settings(queue__max_active_downloads=1))
        events = leecher.subscribe()
        try:
            for meta, data, torrent in torrents:
                await wait_state(seeder, await seeder.add(torrent, save_path=data), "seeding")
            ids = [await leecher.add(t[2], save_path=tmp_path / "out") for t in torrents]
            settled = ["downloading", "queued", "queued"]  # the first in line holds the one slot
            deadline = asyncio.get_running_loop().time() + 30
            while [leecher.torrent(t).state for t in ids] != settled:
                assert asyncio.get_running_loop().time() < deadline, [leecher.torrent(t).state for t in ids]
                await asyncio.sleep(0.05)
            checked = transitions(events, ids)
            assert all((i, "checking", "queued") in checked for i in range(3)), checked
            for tid in ids:
                await leecher.add_peers(tid, [("127.0.0.1", seeder.listen_port)])
            for tid in ids:
                await wait_complete(leecher, tid)
            log = transitions(events, ids)
            states = dict(enumerate(settled))
            for i, old, new in log:
                if new:
                    states[i] = new
                    # One at a time: no torrent started while another was downloading.
                    assert list(states.values()).count("downloading") <= 1, log
            started = [log.index((i, "queued", "downloading")) for i in (1, 2)]
            finished = [log.index((i, "completed", "")) for i in range(3)]
            assert finished[0] < started[0] < finished[1] < started[1] < finished[2], log
            assert all(leecher.torrent(t).state == "seeding" for t in ids)  # seeding is not queued
        finally:
            await leecher.close()
            await seeder.close()
        for meta, data, _ in torrents:
            assert same_tree(data / meta.name, tmp_path / "out" / meta.name)

    run(main())


def test_bind_uses_one_address_for_every_socket(tmp_path: Path) -> None:
    """Bound to 127.0.0.2: its listener, its peer connections and its tracker
    requests all have that local address (seen from the other ends)."""
    meta, data, torrent = make_torrent(tmp_path, 1024 * 1024, files=1)

    async def main() -> None:
        tracker = FakeTracker()
        await tracker.start()
        seeder = await start_session(tmp_path, "s")
        # Slowed, so the connection is seen before the download ends (two seeds then part).
        bound = await start_session(tmp_path, "b", local_settings(network__bind="127.0.0.2",
                                                                  rates__max_down=256 * 1024))
        try:
            meta2, data2, torrent2 = make_torrent(tmp_path / "tracked", 512 * 1024, files=1, trackers=[[tracker.url]])
            sid = await seeder.add(torrent, save_path=data)
            await wait_state(seeder, sid, "seeding")
            lid = await bound.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seeder.listen_port)])
            await wait_for(bound, lid, lambda s: s.peers == 1, what="a connection")
            seen_by_seeder = [p.address for p in seeder.peers(sid) if p.status == "connected"]
            assert seen_by_seeder and all(a.startswith("127.0.0.2:") for a in seen_by_seeder)
            assert bound.snapshot().listen_addresses == (f"127.0.0.2:{bound.listen_port}",)
            await wait_complete(bound, lid)
            tid = await bound.add(torrent2, save_path=tmp_path / "out2")
            for _ in range(100):
                if tracker.announces:
                    break
                await asyncio.sleep(0.05)
            assert tracker.announces and all(addr[0] == "127.0.0.2" for _, addr in tracker.announces)
            assert tid
        finally:
            await bound.close()
            await seeder.close()
            tracker.close()
        assert same_tree(data / "payload", tmp_path / "out" / "payload")

    run(main())


def test_a_run_time_setting_survives_a_restart(tmp_path: Path) -> None:
    """Changed while running, saved with the session: the next start has it, and
    says where it came from; the command line still wins over it."""
    from torrent.session import Session
    from torrent.session.config import effective_settings

    state = tmp_path / "state"
    config = tmp_path / "config.toml"
    config.write_text('[rates]\nmax_up = "1M"\n')

    async def first() -> None:
        start = effective_settings(config_file=config, state_dir=state, command_line=["network.bind=127.0.0.1",
                                                                                      "network.listen_port=0"])
        session = Session(start.settings, state_dir=state, saved_settings=start.saved)
        await session.start()
        await session.set_rate_limits(max_down=3 * 1024 * 1024)
        await session.update_settings({"queue.max_active_downloads": "2"})
        assert session.snapshot().max_down == 3 * 1024 * 1024
        await session.close()

    async def second() -> None:
        again = effective_settings(config_file=config, state_dir=state,
                                   command_line=["network.bind=127.0.0.1", "network.listen_port=0"])
        assert again.sources["rates.max_down"] == f"session state {state}"
        assert again.sources["rates.max_up"] == f"config file {config}"
        assert again.settings.queue.max_active_downloads == 2
        session = Session(again.settings, state_dir=state, saved_settings=again.saved)
        await session.start()
        try:
            assert session.snapshot().max_down == 3 * 1024 * 1024
            assert session.snapshot().max_up == 1024 * 1024
        finally:
            await session.close()
        over = effective_settings(config_file=config, state_dir=state, command_line=["rates.max_down=5M"])
        assert over.settings.rates.max_down == 5 * 1024 * 1024 and over.sources["rates.max_down"] == "command line"

    run(first())
    run(second())
