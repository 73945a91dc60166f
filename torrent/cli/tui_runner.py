"""``torrent tui``: one session, run in the same uvloop event loop as the Textual app.

The session remembers its torrents in the state directory, so closing and
reopening the TUI resumes everything; the app's own preferences (columns,
sort, filter tabs) sit beside it in ``tui.json``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvloop

from torrent.session import Session, Settings
from tui.app import TorrentApp
from tui.screens import AddRequest

PREFS_FILE = "tui.json"


def run_tui(sources: Sequence[str], *, download_dir: Path, seed: Sequence[tuple[str, Path]],
            peers: Sequence[tuple[str, int]], settings: Settings, state_dir: Path,
            saved_settings: dict[str, Any], refresh_hz: float, exit_when_complete: bool = False,
            log_level: int = logging.WARNING) -> int:
    """Run the app until the user quits; the exit code."""
    startup = [AddRequest(source, str(download_dir), False, None, tuple(peers)) for source in sources]
    startup += [AddRequest(source, str(directory), False, None, tuple(peers)) for source, directory in seed]

    async def main() -> int:
        session = Session(settings, state_dir=state_dir, saved_settings=saved_settings)
        app = TorrentApp(session, download_dir=download_dir, startup=startup, prefs_path=state_dir / PREFS_FILE,
                         refresh_hz=refresh_hz, exit_when_complete=exit_when_complete, log_level=log_level,
                         freeze_gc=True)
        # SIGTERM quits as the q key does: the session saves its state and resume data
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: app.call_later(app.action_quit))
        code = await app.run_async()
        if app.exit_message:
            print(app.exit_message, file=sys.stderr)
        if not app.session_closed:  # the app stopped without its own shutdown: still save everything
            await session.close()
        return code if isinstance(code, int) else 0

    return uvloop.run(main())
