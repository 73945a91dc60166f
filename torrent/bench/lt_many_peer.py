"""libtorrent hosting many torrents in one session, for ``torrent bench --torrents N``, as its own process.

Like ``lt_peer.py`` (which it sits beside and takes its loopback settings from) it imports only the
standard library and libtorrent, so it runs under whichever Python has libtorrent.

    lt_many_peer.py add     TORRENTS_DIR PAYLOAD_DIR STATE_DIR PORT
    lt_many_peer.py restore TORRENTS_DIR PAYLOAD_DIR STATE_DIR PORT

``add`` adds every ``.torrent`` in TORRENTS_DIR (seeding from PAYLOAD_DIR); ``restore`` adds what
STATE_DIR's resume files name, as a restarted libtorrent client does. It prints ``seeding N`` once
every torrent is seeding, then sleeps in ``sigwait`` (no wakeups of its own) until SIGTERM or SIGINT,
saves every torrent's resume data (``save_resume_data`` with its info dict) into STATE_DIR and
exits 0. Auto-managed, as its users run it, with the active limits raised so that nothing queues.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from lt_peer import LOOPBACK_SETTINGS  # beside this file: run as a script, its directory is on sys.path

POLL = 0.02  # seconds between status checks while starting
SAVE_TIMEOUT = 120.0


def main(argv: list[str]) -> int:
    if len(argv) != 5 or argv[0] not in ("add", "restore"):
        print(__doc__, file=sys.stderr)
        return 2
    # Blocked before libtorrent starts its threads, which inherit the mask: sigwait below gets the signal.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    import libtorrent as lt

    mode, torrents, payload, state, port = argv
    state_dir = Path(state)
    state_dir.mkdir(parents=True, exist_ok=True)
    if mode == "add":
        params = []
        for path in sorted(Path(torrents).glob("*.torrent")):
            p = lt.add_torrent_params()
            p.ti = lt.torrent_info(str(path))
            p.save_path = payload
            params.append(p)
    else:
        params = [lt.read_resume_data(path.read_bytes()) for path in sorted(state_dir.glob("*.resume"))]
    room = len(params) + 10
    session = lt.session(dict(LOOPBACK_SETTINGS, listen_interfaces=f"127.0.0.1:{int(port)}",
                              active_limit=room, active_seeds=room, active_downloads=room, active_checking=room,
                              alert_mask=int(lt.alert.category_t.error_notification)))
    for p in params:
        session.async_add_torrent(p)
    while True:
        handles = session.get_torrents()
        errors = session.get_torrent_status(lambda s: bool(s.errc.value()), 0)
        if errors:
            print(f"libtorrent error: {errors[0].name}: {errors[0].errc.message()}", file=sys.stderr, flush=True)
            return 1
        if len(handles) == len(params) and not session.get_torrent_status(lambda s: not s.is_seeding, 0):
            break
        time.sleep(POLL)
    print(f"seeding {len(handles)}", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    return _save_resume(lt, session, handles, state_dir)


def _save_resume(lt: Any, session: Any, handles: list[Any], state_dir: Path) -> int:
    """Every torrent's resume data, each file written whole before it is renamed into place."""
    for handle in handles:
        handle.save_resume_data(lt.torrent_handle.save_info_dict)
    pending = len(handles)
    deadline = time.monotonic() + SAVE_TIMEOUT
    while pending and time.monotonic() < deadline:
        session.wait_for_alert(500)
        for alert in session.pop_alerts():
            if isinstance(alert, lt.save_resume_data_alert):
                data = lt.write_resume_data_buf(alert.params)
                target = state_dir / f"{alert.handle.info_hash()}.resume"
                target.with_suffix(".tmp").write_bytes(data)
                os.replace(target.with_suffix(".tmp"), target)
                pending -= 1
            elif isinstance(alert, lt.save_resume_data_failed_alert):
                print(f"libtorrent: cannot save resume data: {alert.message()}", file=sys.stderr, flush=True)
                pending -= 1
    return 0 if pending == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
