"""A whole session in its own process, for tests that kill it: it adds the
torrents of a spec (unless the saved session already has them), then writes
one JSON line of snapshots every 0.1 s to a report file until it is stopped.

    python session_proc.py STATE_DIR SPEC.json REPORT.jsonl

SPEC: {"settings": {"dotted.key": value}, "add": [{"torrent": PATH, "save_path": DIR,
       "paused": bool, "peers": [[HOST, PORT]]}]}

Each state change also gets a line at once, with the torrent's snapshot as it
was then: {"event": ..., "torrent": ...}.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import uvloop

from torrent.session import DuplicateTorrentError, Session, StateChanged, to_jsonable
from torrent.session.config import effective_settings


async def main(state_dir: Path, spec: dict, report: Path) -> None:
    empty_config = report.with_suffix(".toml")  # no user config file may leak in
    empty_config.write_text("")
    effective = effective_settings(config_file=empty_config, state_dir=state_dir,
                                   command_line=[f"{k}={v}" for k, v in spec.get("settings", {}).items()])
    session = Session(effective.settings, state_dir=state_dir, remember=True, restore=True,
                      saved_settings=effective.saved)
    events = session.subscribe()
    out = open(report, "a")

    async def changes() -> None:
        async for event in events:
            if isinstance(event, StateChanged):
                out.write(json.dumps({"event": to_jsonable(event),
                                      "torrent": to_jsonable(session.torrent(event.torrent_id))}) + "\n")
                out.flush()

    watcher = asyncio.get_running_loop().create_task(changes())
    await session.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    for item in spec.get("add", []):
        try:
            await session.add(Path(item["torrent"]), save_path=item["save_path"], paused=item.get("paused", False),
                              peers=[tuple(p) for p in item.get("peers", [])])
        except DuplicateTorrentError:
            pass  # restored from the saved session
    while not stop.is_set():
        line = {"listen_port": session.listen_port, "torrents": to_jsonable(session.torrents())}
        out.write(json.dumps(line) + "\n")
        out.flush()
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except asyncio.TimeoutError:
            pass
    watcher.cancel()
    await session.close()
    out.close()


if __name__ == "__main__":
    state, spec_path, report_path = sys.argv[1:4]
    uvloop.run(main(Path(state), json.loads(Path(spec_path).read_text()), Path(report_path)))
