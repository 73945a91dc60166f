"""Our client hosting many torrents in one session, for ``torrent bench --torrents N``, as its own process.

    python -m torrent.bench.many_peer add     TORRENTS_DIR PAYLOAD_DIR STATE_DIR PORT CONFIG
    python -m torrent.bench.many_peer restore TORRENTS_DIR PAYLOAD_DIR STATE_DIR PORT CONFIG

``add`` adds every ``.torrent`` in TORRENTS_DIR to a session that remembers itself in STATE_DIR;
``restore`` adds nothing and lets the session bring back what it saved there, as a user's
restarted client does. Either way it prints ``seeding N hashed B`` once every torrent is
seeding (checked and serving; B: payload bytes its checks hashed), then idles, observing
nothing, until SIGTERM or SIGINT, when it closes the session (state saved) and exits 0.
It uses the public Session API alone, on uvloop like the CLI.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import uvloop

from torrent.core.errors import TorrentError
from torrent.session import Session, StateChanged, Subscription, TorrentState
from torrent.session.config import effective_settings

READY = "seeding"
ERROR_EXIT = 1


async def _main(mode: str, torrents: Path, payload: Path, state: Path, port: int, config: Path) -> int:
    effective = effective_settings(config_file=config, state_dir=state,
                                   command_line=[f"network.listen_port={port}"])
    session = Session(effective.settings, state_dir=state, remember=True, restore=mode == "restore",
                      saved_settings=effective.saved)
    # Every torrent passes checking → queued → seeding: room for all of it, so none is dropped.
    events = session.subscribe(maxlen=8 * 1024 + 8 * len(list(torrents.glob("*.torrent"))))
    stop = asyncio.Event()

    def stopping() -> None:
        stop.set()
        events.close()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping)
    try:
        await session.start()
        if mode == "add":
            for path in sorted(torrents.glob("*.torrent")):
                await session.add(path, save_path=payload)
        failure = await _until_seeding(session, events)
        events.close()
        if failure is not None:
            print(f"torrent: error: {failure}", file=sys.stderr, flush=True)
            return ERROR_EXIT
        if not stop.is_set():
            hashed = sum(t.hashed for t in session.torrents())
            print(f"{READY} {len(session.ids())} hashed {hashed}", flush=True)
            await stop.wait()
    finally:
        await session.close()
    return 0


async def _until_seeding(session: Session, events: Subscription) -> str | None:
    """Until every torrent is seeding (None), one fails (why) or the events end (a signal came), on events
    alone: a snapshot of every torrent is work this process should not add to what it measures."""
    # Subscribed before the first torrent came: every one's way to seeding is in the events.
    waiting = set(session.ids())
    async for event in events:
        if isinstance(event, StateChanged):
            if event.new == TorrentState.SEEDING.value:
                waiting.discard(event.torrent_id)
            elif event.new == TorrentState.ERROR.value:
                return f"{event.torrent_id}: {event.reason}"
        if events.dropped:  # fell behind (the queue holds them all, so it should not): ask the snapshots
            waiting = {t.id for t in session.torrents() if t.state != TorrentState.SEEDING}
        if not waiting:
            break
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 6 or argv[0] not in ("add", "restore"):
        print(__doc__, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="torrent: %(message)s")
    mode, torrents, payload, state, port, config = argv
    try:
        return uvloop.run(_main(mode, Path(torrents), Path(payload), Path(state), int(port), Path(config)))
    except TorrentError as exc:
        print(f"torrent: error: {exc}", file=sys.stderr)
        return ERROR_EXIT


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
