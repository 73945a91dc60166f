"""SVG snapshots of the app fed the showcase session (fixed rows, fixed clock, UTC).

Each image proves a layout: what fits at 80×24, 120×40 and 200×60, and what
each detail tab shows. Update them with ``pytest tests/tui/test_snapshots.py
--snapshot-update`` after a deliberate change, and look at the report.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fakes import NOW, fill_history, showcase_session

import tui.format
from tui.app import TorrentApp


@pytest.fixture(autouse=True)
def fixed_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(tui.format, "clock", lambda: NOW)
    yield
    monkeypatch.undo()
    time.tzset()


def showcase() -> TorrentApp:
    # one refresh at mount; the interval is too long to tick again while the snapshot is taken
    return TorrentApp(showcase_session(), refresh_hz=0.001, clock=lambda: NOW)


async def ready(pilot) -> None:  # noqa: ANN001 - the plugin's Pilot
    fill_history(pilot.app)
    pilot.app.refresh_data()
    await pilot.pause()


def test_list_alone_at_80x24(snap_compare) -> None:  # noqa: ANN001
    """80×24: the list alone (name, progress, state and rates), the why-line, totals and keys."""
    assert snap_compare(showcase(), terminal_size=(80, 24), run_before=ready)


def test_list_and_peers_at_120x40(snap_compare) -> None:  # noqa: ANN001
    """120×40: list and detail tabs; the peers tab with client names, flags and rates, sorted by rate."""
    assert snap_compare(showcase(), terminal_size=(120, 40), run_before=ready)


def test_everything_at_200x60(snap_compare) -> None:  # noqa: ANN001
    """200×60: list, detail, the session's speed graph and the log panel all at once."""

    async def with_log(pilot) -> None:  # noqa: ANN001
        await ready(pilot)
        pilot.app.log_line("debian-13.2.0-amd64-netinst.iso: tracker udp://tracker.opentrackr.org:1337/announce: "
                           "timed out after 15 s", "warning")
        pilot.app.log_line("wikipedia-en-2026-11.zim: disk error: disk full writing wikipedia-en-2026-11.zim",
                           "error")
        await pilot.pause()

    assert snap_compare(showcase(), terminal_size=(200, 60), run_before=with_log)


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)], ids=["80x24", "120x40", "200x60"])
@pytest.mark.parametrize("key,tab", [("1", "peers"), ("2", "pieces"), ("3", "speed"), ("4", "files"),
                                     ("5", "trackers"), ("6", "info")])
def test_detail_tab(snap_compare, key: str, tab: str, size: tuple[int, int]) -> None:  # noqa: ANN001
    """Each detail tab at each size for the downloading torrent (peers: clients, flags, rates; pieces: exact
    map with shades; speed: five minutes; files: tree with priorities; trackers: one failing; info: identity
    and magnet). At 80×24 the key opens the detail under the list."""

    async def open_tab(pilot) -> None:  # noqa: ANN001
        await ready(pilot)
        await pilot.press(key)
        pilot.app.refresh_data()
        await pilot.pause()

    assert snap_compare(showcase(), terminal_size=size, run_before=open_tab)


def test_filter_bar_narrows_the_list(snap_compare) -> None:  # noqa: ANN001
    """A filter expression typed in the bar: only downloading torrents with seeds remain."""

    async def filtered(pilot) -> None:  # noqa: ANN001
        await ready(pilot)
        pilot.app.set_filter("state:downloading seeds>5")
        pilot.app.table.focus()
        await pilot.pause()

    assert snap_compare(showcase(), terminal_size=(120, 40), run_before=filtered)


def test_remove_confirmation(snap_compare) -> None:  # noqa: ANN001
    """Removing asks first, and offers to keep or delete the data."""
    assert snap_compare(showcase(), terminal_size=(120, 40), run_before=ready, press=["x"])


def test_no_color(snap_compare, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """NO_COLOR: states, progress and the piece map stay readable by their text and glyphs alone."""
    monkeypatch.setenv("NO_COLOR", "1")

    async def pieces(pilot) -> None:  # noqa: ANN001
        await ready(pilot)
        await pilot.press("2")
        pilot.app.refresh_data()
        await pilot.pause()

    assert snap_compare(showcase(), terminal_size=(120, 40), run_before=pieces)
