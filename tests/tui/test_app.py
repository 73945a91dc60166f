"""Key and mouse flows of the app against a fake session: what each key sends to the engine, what the user sees."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeSession, click_button, make_file, make_peer, make_torrent, make_tracker
from textual.widgets import Input, RichLog, SelectionList, Static

from torrent.session import StorageFailed, TorrentState, TrackerFailed
from tui.app import TorrentApp
from tui.screens import AddDialog, ConfirmRemove
from tui.widgets.table import KeyedTable

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

A = "a" * 40
B = "b" * 40
C = "c" * 40


def three() -> FakeSession:
    return FakeSession((
        make_torrent(id=A, name="ubuntu-24.04.iso", state="downloading", queue_position=0, ratio=0.5, seeds=80),
        make_torrent(id=B, name="linux-6.12.tar.xz", state="seeding", progress=1.0, queue_position=1, ratio=0.4,
                     seeds=3),
        make_torrent(id=C, name="big-buck-bunny", state="paused", progress=0.1, queue_position=2, ratio=2.5,
                     seeds=0, down_rate=0.0, up_rate=0.0),
    ), peers={A: (make_peer(), make_peer(address="127.0.0.2:6881", client="libtorrent 2.0.11"))},
        files={A: (make_file(index=0, path="iso/ubuntu.iso"), make_file(index=1, path="iso/SHA256SUMS", size=1000,
                                                                           verified=0, progress=0.0))},
        trackers={A: (make_tracker(),)})


def names(app: TorrentApp) -> list[str]:
    return [r.name for r in app.query_one("#torrents", KeyedTable).rows]


def log_text(app: TorrentApp) -> str:
    """The log panel's text with its wrapping undone."""
    return " ".join(" ".join(line.text for line in app.query_one("#log", RichLog).lines).split())


async def test_starts_and_quits_cleanly_with_no_torrents() -> None:
    session = FakeSession()
    app = TorrentApp(session, refresh_hz=20)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert session.started
        table = app.query_one("#torrents", KeyedTable)
        assert table.rows == [] and "no torrents" in table.empty_text
        app.simulate_key("q")  # pilot.press would wait for a screen that is closing
        await app._exit_renderables_ready.wait() if hasattr(app, "_exit_renderables_ready") else None
        for _ in range(100):
            if session.closed:
                break
            await pilot.pause(0.02)
    assert session.closed
    assert app.return_code == 0


async def test_list_shows_every_torrent_in_queue_order_and_sorts_by_a_clicked_header() -> None:
    app = TorrentApp(three(), refresh_hz=20)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert names(app) == ["ubuntu-24.04.iso", "linux-6.12.tar.xz", "big-buck-bunny"]
        table = app.query_one("#torrents", KeyedTable)
        table.sort_by("ratio")  # rates and ratios sort largest first
        assert names(app) == ["big-buck-bunny", "ubuntu-24.04.iso", "linux-6.12.tar.xz"]
        table.sort_by("ratio")  # again: reversed
        assert names(app) == ["linux-6.12.tar.xz", "ubuntu-24.04.iso", "big-buck-bunny"]
        table.sort_by("state")
        table.sort_by("name", add=True)
        assert [r.state for r in table.rows] == ["downloading", "paused", "seeding"]
        # a click on the Name header sorts by name
        await pilot.click("#torrents", offset=(5, 0))
        assert table.sort_spec[0][0] == "name"
        assert names(app) == sorted(names(app), key=str.lower)


async def test_filter_applies_as_typed_and_a_bad_one_keeps_the_last_good_one() -> None:
    app = TorrentApp(three(), refresh_hz=20)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("slash")
        field = app.query_one("#filter", Input)
        assert field.has_focus
        for key in "state:seeding":
            await pilot.press(key)
        assert names(app) == ["linux-6.12.tar.xz"]
        field.value = "ratio>1"
        await pilot.pause()
        assert names(app) == ["big-buck-bunny"]
        field.value = "ratio>>"
        await pilot.pause()
        assert names(app) == ["big-buck-bunny"]  # unchanged
        assert field.has_class("-invalid") and field.border_subtitle
        await pilot.press("escape")
        assert len(names(app)) == 3 and not field.display


async def test_filter_tabs_and_saving_a_filter_as_a_tab(tmp_path: Path) -> None:
    prefs = tmp_path / "tui.json"
    app = TorrentApp(three(), refresh_hz=20, prefs_path=prefs)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        app.query_one("#tabs").active = "filter-3"  # Seeding
        await pilot.pause()
        assert names(app) == ["linux-6.12.tar.xz"]
        app.set_filter("seeds<5")
        app.save_filter_tab("few seeds", "seeds<5")
        await pilot.pause()
    assert '"few seeds"' in prefs.read_text()
    again = TorrentApp(three(), refresh_hz=20, prefs_path=prefs)
    async with again.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert [t for t in again.prefs.tabs if t[0] == "few seeds"] == [["few seeds", "seeds<5"]]


async def test_pause_resume_and_bulk_selection() -> None:
    session = three()
    app = TorrentApp(session, refresh_hz=20)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("p")  # the cursor is on the first torrent
        assert ("pause", A) in session.calls
        assert session.torrent(A).state == TorrentState.PAUSED.value
        await pilot.press("p")
        assert ("resume", A) in session.calls
        # select two with space, then pause both at once
        await pilot.press("space", "space")
        await pilot.pause()
        table = app.query_one("#torrents", KeyedTable)
        assert table.selected == {A, B}
        session.calls.clear()
        await pilot.press("p")
        assert sorted(c[1] for c in session.calls if c[0] == "pause") == [A, B]


async def test_remove_asks_first_and_keeps_or_deletes_the_data() -> None:
    session = three()
    app = TorrentApp(session, refresh_hz=20)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmRemove)
        await pilot.press("escape")
        await pilot.pause()
        assert not any(c[0] == "remove" for c in session.calls)
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert ("remove", A, ("delete_data", False)) in session.calls
        await pilot.press("x")
        await pilot.pause()
        await click_button(pilot, "#delete")
        await pilot.pause()
        assert ("remove", B, ("delete_data", True)) in session.calls
        assert names(app) == ["big-buck-bunny"]


async def test_add_dialog_shows_errors_and_the_app_keeps_running(tmp_path: Path) -> None:
    session = three()
    app = TorrentApp(session, refresh_hz=20, download_dir=tmp_path)
    bad = tmp_path / "bad.torrent"
    bad.write_bytes(b"d4:infod6:lengthi-5eee")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, AddDialog)
        source = app.screen.query_one("#source", Input)
        error = app.screen.query_one(".dialog-error", Static)
        source.value = str(tmp_path / "missing.torrent")
        await click_button(pilot, "#add")
        await pilot.pause()
        assert "No such file" in str(error.render()) and isinstance(app.screen, AddDialog)
        source.value = str(bad)
        await click_button(pilot, "#add")
        await pilot.pause()
        assert str(error.render()).strip() and isinstance(app.screen, AddDialog)
        source.value = "magnet:?xt=urn:btih:nothex"
        await click_button(pilot, "#add")
        await pilot.pause()
        # the fake session accepts anything: the dialog closes once the session took it
        assert any(c[0] == "add" and c[1] == "magnet:?xt=urn:btih:nothex" for c in session.calls)
        assert not isinstance(app.screen, AddDialog)
        assert app.is_running


async def test_add_dialog_chooses_files_of_a_multi_file_torrent(tmp_path: Path) -> None:
    from swarmkit import make_torrent as write_torrent

    meta, _, path = write_torrent(tmp_path, 200_000, files=3)
    session = FakeSession()
    app = TorrentApp(session, refresh_hz=20, download_dir=tmp_path / "dl")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("a")
        await pilot.pause()
        app.screen.query_one("#source", Input).value = str(path)
        await click_button(pilot, "#add")
        await pilot.pause()
        files = app.screen.query_one("#files", SelectionList)
        assert files.display and len(files.selected) == 3
        files.deselect(1)
        await click_button(pilot, "#add")
        await pilot.pause()
    add = next(c for c in session.calls if c[0] == "add")
    priorities = dict(add[2:])["file_priorities"]
    assert [str(p) for p in priorities] == ["normal", "skip", "normal"]
    assert dict(add[2:])["save_path"] == str(tmp_path / "dl")


async def test_skipping_a_file_sends_its_priority() -> None:
    session = three()
    app = TorrentApp(session, refresh_hz=20)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        tree = app.query_one("#file-tree")
        tree.focus()
        tree.cursor_line = 2  # iso/ ubuntu.iso SHA256SUMS: the second file
        await pilot.press("space")
        await pilot.pause()
        assert ("set_file_priorities", A, {1: "skip"}) in session.calls
        await pilot.press("plus")
        await pilot.pause()
        assert ("set_file_priorities", A, {1: "normal"}) in session.calls


async def test_engine_problems_show_in_the_log_panel() -> None:
    session = three()
    app = TorrentApp(session, refresh_hz=20)
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.pause()
        assert app.query_one("#log").display  # shown at 200x60
        session.publish(TrackerFailed(A, 0.0, "http://127.0.0.1:1/announce", "connection refused"))
        session.publish(StorageFailed(A, 0.0, "disk full writing iso/ubuntu.iso"))
        app.refresh_data()
        await pilot.pause()
        text = log_text(app)
        assert "tracker http://127.0.0.1:1/announce: connection refused" in text
        assert "disk error: disk full writing iso/ubuntu.iso" in text


async def test_engine_log_records_go_to_the_panel_not_the_terminal() -> None:
    import logging

    app = TorrentApp(three(), refresh_hz=20)
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.pause()
        logging.getLogger("torrent.tracker").warning("tracker http://x/announce: timed out")
        await pilot.pause()
        assert "timed out" in log_text(app)
    assert logging.getLogger("torrent").propagate  # given back on quit


async def test_a_pasted_magnet_link_is_added() -> None:
    from textual.events import Paste

    session = FakeSession()
    app = TorrentApp(session, refresh_hz=20)
    magnet = "magnet:?xt=urn:btih:" + "d" * 40
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        app.post_message(Paste(magnet))  # as the terminal delivers it: to the app, which forwards it
        await pilot.pause(0.2)
    assert any(c[0] == "add" and c[1] == magnet for c in session.calls)


async def test_the_panels_follow_the_terminal_size_and_the_toggles() -> None:
    app = TorrentApp(three(), refresh_hz=20)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert not app.query_one("#detail").display and not app.query_one("#log").display
        await pilot.press("d")
        assert app.query_one("#detail").display
    app = TorrentApp(three(), refresh_hz=20)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert app.query_one("#detail").display and not app.query_one("#log").display
        await pilot.press("l")
        assert app.query_one("#log").display


async def test_commands_reach_the_session_for_the_selected_torrent() -> None:
    session = three()
    app = TorrentApp(session, refresh_hz=20)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("V", "A", "F", "right_square_bracket", "s", "S")
        await pilot.pause()
    made = [c[0] for c in session.calls]
    for command in ("recheck", "announce", "force_start", "queue_move", "set_sequential", "set_alt_speed"):
        assert command in made, command
    assert ("queue_move", A, "down") in [(c[0], c[1], str(c[2])) for c in session.calls if c[0] == "queue_move"]


async def test_add_dialog_refuses_a_fifo_and_a_device_at_once(tmp_path: Path) -> None:
    """The dialog reads the file on the UI thread: a FIFO without a writer used to freeze the app."""
    import os

    fifo = tmp_path / "pipe.torrent"
    os.mkfifo(fifo)
    app = TorrentApp(three(), refresh_hz=20, download_dir=tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("a")
        await pilot.pause()
        source = app.screen.query_one("#source", Input)
        error = app.screen.query_one(".dialog-error", Static)
        for path, what in ((fifo, "is a FIFO (named pipe), not a .torrent file"),
                           ("/dev/zero", "/dev/zero is a character device, not a .torrent file")):
            source.value = str(path)
            await click_button(pilot, "#add")
            await pilot.pause()
            assert what in str(error.render()) and isinstance(app.screen, AddDialog)
