"""Helpers for driving the TUI against real sessions on 127.0.0.1 (test_live.py, test_restart.py).

Everything waits with a bound and fails saying what it was waiting for and
where things stood; nothing here asserts on speed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swarmkit import local_settings, start_session, wait_state
from textual.pilot import Pilot

from torrent.core.settings import Settings
from torrent.session import Session, TorrentSnapshot
from tui.app import TorrentApp
from tui.widgets.table import KeyedTable

SIZE = (120, 40)
HZ = 20  # app refreshes per second: fast enough that a short transfer shows in the list


def leecher(tmp: Path, name: str = "app", settings: Settings | None = None) -> Session:
    """A real session on 127.0.0.1 with its own state dir, not started (the app starts it)."""
    return Session(settings or local_settings(), state_dir=tmp / f"state-{name}")


async def seeder_for(tmp: Path, torrent: Path, data: Path, name: str = "seeder",
                     settings: Settings | None = None) -> tuple[Session, str]:
    """A second session in this loop, seeding ``torrent`` from ``data`` (checked)."""
    session = await start_session(tmp, name, settings)
    try:
        sid = await session.add(torrent, save_path=data)
        await wait_state(session, sid, "seeding", timeout=30)
    except BaseException:
        await session.close()
        raise
    return session, sid


def rows(app: TorrentApp) -> dict[str, TorrentSnapshot]:
    """The torrent list as shown (its rows, by id)."""
    return {r.id: r for r in app.query_one("#torrents", KeyedTable).rows}


def row(app: TorrentApp, torrent_id: str) -> TorrentSnapshot | None:
    return rows(app).get(torrent_id)


def peer_rows(app: TorrentApp) -> list[Any]:
    return list(app.part("#peer-table", KeyedTable).rows)


async def until(pilot: Pilot[Any], predicate: Callable[[], Any], *, timeout: float = 30, what: str = "the condition",
                status: Callable[[], Any] = lambda: "", step: float = 0.05) -> Any:
    """Poll ``predicate`` (letting the app run between polls) until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s; last: {status()}")
        await pilot.pause(step)


async def wait_plain(predicate: Callable[[], Any], *, timeout: float = 30, what: str = "the condition",
                     status: Callable[[], Any] = lambda: "") -> Any:
    """``until`` without an app: poll in the event loop."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s; last: {status()}")
        await asyncio.sleep(0.05)
    return value


def list_status(app: TorrentApp) -> Callable[[], Any]:
    return lambda: [(r.name, r.state, round(r.progress, 3), r.last_error) for r in rows(app).values()]


async def quit_with_q(app: TorrentApp, pilot: Pilot[Any], session: Session, timeout: float = 30) -> None:
    """Press q the way a user does (``simulate_key``: ``pilot.press`` waits on the closing screen),
    then wait for the app's shutdown to close the session and exit."""
    app.simulate_key("q")
    deadline = time.monotonic() + timeout
    while not (session_closed(session) and app.return_code is not None):
        if time.monotonic() > deadline:
            raise AssertionError(f"q did not close the session and exit within {timeout} s "
                                 f"(closed={session_closed(session)}, return_code={app.return_code})")
        await asyncio.sleep(0.05)


def session_closed(session: Session) -> bool:
    return bool(getattr(session, "_closed", False))


async def close_quietly(*sessions: Session | None) -> None:
    """For finally blocks: close each session (a second close is a no-op), whatever happened before."""
    for session in sessions:
        if session is None:
            continue
        try:
            await asyncio.wait_for(session.close(), 30)
        except Exception:  # noqa: BLE001 - cleanup must reach every session
            pass


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
