"""Quit and start again: the torrents come back from the state directory, and the app's preferences too.

The first run adds two torrents (one downloads from a seeder on 127.0.0.1,
one is added paused), changes the columns, saves a filter as a tab, opens
the Files tab, and quits with q. The second run gets a new ``Session`` on the
same state directory and adds nothing: it must show both torrents as they
were, and the list and detail as the user left them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from live import HZ, SIZE, close_quietly, leecher, list_status, quit_with_q, row, rows, seeder_for, until
from swarmkit import make_torrent, same_tree
from textual.events import Paste
from textual.widgets import Input, SelectionList, TabbedContent, Tabs

from tui.app import TorrentApp
from tui.screens import AddRequest, ColumnsDialog
from tui.widgets.table import KeyedTable

MiB = 1 << 20
LOCAL = "127.0.0.1"


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_torrents_and_prefs_come_back_after_quitting_with_q(tmp_path: Path) -> None:
    meta_a, data, torrent_a = make_torrent(tmp_path, 2 * MiB, files=3, name="done")
    meta_b, _, torrent_b = make_torrent(tmp_path, 1 * MiB, files=2, name="later")
    a, b = meta_a.info_hash_hex, meta_b.info_hash_hex
    state = tmp_path / "state-app"
    prefs = state / "tui.json"
    out = tmp_path / "out"
    seeder, _ = await seeder_for(tmp_path, torrent_a, data)
    first = leecher(tmp_path)
    second = None
    try:
        app = TorrentApp(first, download_dir=out, prefs_path=prefs, refresh_hz=HZ, startup=[
            AddRequest(str(torrent_a), str(out), False, None, peers=((LOCAL, seeder.listen_port),)),
            AddRequest(str(torrent_b), str(out), True, None)])
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: (r := row(app, a)) and r.state == "seeding" and r.progress >= 1, timeout=60,
                        what="done complete", status=list_status(app))
            assert row(app, b).state == "paused"

            # the columns: drop ETA and Seeds, add the save path
            await pilot.press("C")
            await until(pilot, lambda: isinstance(app.screen, ColumnsDialog), what="the columns dialog")
            choice = app.screen.query_one("#columns", SelectionList)
            choice.deselect("eta")
            choice.deselect("seeds")
            choice.select("path")
            await pilot.click("#ok")
            await until(pilot, lambda: not isinstance(app.screen, ColumnsDialog), what="the dialog closing")
            chosen = app.table.visible_keys
            assert "eta" not in chosen and "seeds" not in chosen and "path" in chosen

            # a filter saved as a tab
            await pilot.press("slash")
            field = app.query_one("#filter", Input)
            assert field.has_focus
            app.post_message(Paste("state:paused"))
            await until(pilot, lambda: field.value == "state:paused", what="the filter typed")
            await until(pilot, lambda: set(rows(app)) == {b}, what="the filter applied", status=list_status(app))
            await pilot.press("ctrl+s")
            await until(pilot, lambda: ["state:paused", "state:paused"] in app.prefs.tabs, what="the tab saved")
            await pilot.press("escape")
            await until(pilot, lambda: set(rows(app)) == {a, b}, what="the filter cleared")

            # the Files tab
            await pilot.press("4")
            await until(pilot, lambda: app.query_one("#detail", TabbedContent).active == "files",
                        what="the files tab")
            await quit_with_q(app, pilot, first)
        assert app.return_code == 0
        await seeder.close()  # the second run must get by on what is on disk

        saved = {p.name for p in (state / "torrents").iterdir()}
        assert {f"{a}.json", f"{b}.json", f"{a}.torrent", f"{b}.torrent"} <= saved, saved
        assert json.loads((state / "torrents" / f"{b}.json").read_text())["paused"] is True
        assert json.loads((state / "torrents" / f"{a}.json").read_text())["paused"] is False
        remembered = json.loads(prefs.read_text())
        assert remembered["columns"] == chosen and remembered["detail_tab"] == "files"

        second = leecher(tmp_path)  # same name: the same state directory
        again = TorrentApp(second, download_dir=out, prefs_path=prefs, refresh_hz=HZ)
        async with again.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: set(rows(again)) == {a, b}, what="both torrents back",
                        status=list_status(again))
            await until(pilot, lambda: (r := row(again, a)) and r.state == "seeding" and r.progress >= 1,
                        timeout=30, what="done seeding again", status=list_status(again))
            later = row(again, b)
            assert later.state == "paused" and later.progress < 1
            assert row(again, a).save_path == later.save_path == str(out.resolve())
            assert sorted(second.ids()) == sorted([a, b])  # restored, not added a second time
            await pilot.pause(0.3)
            assert row(again, b).state == "paused"  # and it stays paused

            table = again.query_one("#torrents", KeyedTable)
            assert table.visible_keys == chosen
            assert ["state:paused", "state:paused"] in again.prefs.tabs
            tab_labels = [str(t.label) for t in again.query_one("#tabs", Tabs).query("Tab")]
            assert "state:paused" in tab_labels
            assert again.query_one("#detail", TabbedContent).active == "files"
            await quit_with_q(again, pilot, second)
        assert again.return_code == 0
    finally:
        await close_quietly(first, second, seeder)
    assert same_tree(data / "done", out / "done")
    assert not (out / "later").exists() or not any(p.is_file() and p.stat().st_size for p in (out / "later").rglob("*"))


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_the_same_torrent_on_the_command_line_again_uses_the_saved_one_and_its_new_peer(
        tmp_path: Path) -> None:
    """``torrent tui A.torrent`` (no peer reachable), quit; then ``torrent tui A.torrent --peer SEEDER``: the
    saved torrent is the one shown (once), and it is given the peer named on the command line."""
    meta, data, torrent = make_torrent(tmp_path, 1 * MiB, files=2)
    tid = meta.info_hash_hex
    out = tmp_path / "out"
    first = leecher(tmp_path)
    second = seeder = None
    try:
        app = TorrentApp(first, download_dir=out, refresh_hz=HZ, startup=[
            AddRequest(str(torrent), str(out), False, None)])
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: (r := row(app, tid)) and r.state == "downloading", what="waiting for peers",
                        status=list_status(app))
            await quit_with_q(app, pilot, first)

        seeder, _ = await seeder_for(tmp_path, torrent, data)
        second = leecher(tmp_path)
        again = TorrentApp(second, download_dir=out, refresh_hz=HZ, startup=[  # as the CLI builds it
            AddRequest(str(torrent), str(out), False, None, peers=((LOCAL, seeder.listen_port),))])
        logged: list[tuple[str, str]] = []
        log_line = again.log_line

        def recording_log_line(message: str, level: str = "info") -> None:
            logged.append((level, message))
            log_line(message, level)

        again.log_line = recording_log_line  # type: ignore[method-assign]
        async with again.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: row(again, tid), what="the torrent back", status=list_status(again))
            assert second.ids() == (tid,)
            assert again.table.cursor_key == tid

            def errors() -> list[str]:
                return [m for level, m in logged if level == "error"]

            # no tracker, and the first run knew no peer: only the --peer given now can complete it
            await until(pilot, lambda: (r := row(again, tid)) and r.state == "seeding", timeout=30,
                        what="the download from the --peer given again",
                        status=lambda: (list_status(again)(), [p.address for p in second.peers(tid)], errors()))
            assert second.ids() == (tid,)
            assert not errors(), errors()  # not an error: the saved torrent is simply used
            await quit_with_q(again, pilot, second)
    finally:
        await close_quietly(first, second, seeder)
    assert same_tree(data / "payload", out / "payload")
