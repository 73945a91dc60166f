"""The app driving a real ``Session`` against live seeders on 127.0.0.1: ours, then libtorrent.

Each test runs the Textual app headless (``run_test``) in the same event loop
as the sessions, adds torrents the way a user does (the startup list, the add
dialog, keys), and checks what the list and the detail tabs show against what
the engine and the disk say.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import click_button
from live import (
    HZ,
    SIZE,
    close_quietly,
    files_of,
    leecher,
    list_status,
    peer_rows,
    quit_with_q,
    row,
    rows,
    seeder_for,
    until,
    wait_plain,
)
from swarmkit import local_settings, make_torrent, same_tree

from tui.app import TorrentApp
from tui.screens import AddRequest

MiB = 1 << 20
LOCAL = "127.0.0.1"


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_downloads_from_our_seeder_and_shows_progress_and_the_peer(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 2 * MiB, files=3)
    # a slow seeder, so the download lasts long enough for the list and the peers tab to show it under way
    seeder, _ = await seeder_for(tmp_path, torrent, data, settings=local_settings(rates__max_up=2 * MiB))
    session = leecher(tmp_path)
    out = tmp_path / "out"
    app = TorrentApp(session, download_dir=out, refresh_hz=HZ, startup=[
        AddRequest(str(torrent), str(out), False, None, peers=((LOCAL, seeder.listen_port),))])
    tid = meta.info_hash_hex
    try:
        async with app.run_test(size=SIZE) as pilot:
            seen = await until(pilot, lambda: row(app, tid), what="the torrent in the list",
                               status=list_status(app))
            assert seen.name == "payload" and seen.total_size == 2 * MiB
            progress: list[float] = []
            clients: set[str] = set()

            def watch() -> bool:
                r = row(app, tid)
                if r is not None and (not progress or progress[-1] != r.progress):
                    progress.append(r.progress)
                clients.update(p.client for p in peer_rows(app) if p.client)
                return r is not None and r.progress >= 1 and r.state == "seeding"

            await until(pilot, watch, timeout=60, what="completion shown in the list", status=list_status(app))
            assert progress == sorted(progress), progress  # never goes back
            assert any(0 < p < 1 for p in progress), f"no progress under way was ever shown: {progress}"
            assert any(c.startswith("torrent") for c in clients), clients
            assert session.torrent(tid).wanted_verified == meta.payload_length
            await quit_with_q(app, pilot, session)
        assert app.return_code == 0
    finally:
        await close_quietly(session, seeder)
    assert same_tree(data / "payload", out / "payload")


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_downloads_from_a_libtorrent_seeder_and_names_it_in_the_peers_tab(tmp_path: Path) -> None:
    import libtorrent as lt
    from interop.clients import LtPeer

    meta, data, torrent = make_torrent(tmp_path, 2 * MiB, files=3)
    peer = LtPeer(lt, "lt-seed")
    session = leecher(tmp_path)
    try:
        handle = peer.add(torrent, data)
        handle.set_upload_limit(2 * MiB)  # per torrent: libtorrent's session limit spares loopback peers
        await wait_plain(lambda: handle.status().is_seeding, what="libtorrent seeding the payload",
                         status=peer.progress_line)
        out = tmp_path / "out"
        app = TorrentApp(session, download_dir=out, refresh_hz=HZ, startup=[
            AddRequest(str(torrent), str(out), False, None, peers=((LOCAL, peer.port),))])
        tid = meta.info_hash_hex
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: row(app, tid), what="the torrent in the list", status=list_status(app))
            clients: set[str] = set()

            def watch() -> bool:
                clients.update(p.client for p in peer_rows(app) if p.client)
                r = row(app, tid)
                return r is not None and r.progress >= 1 and r.state == "seeding"

            await until(pilot, watch, timeout=60, what="completion shown in the list",
                        status=lambda: (list_status(app)(), peer.progress_line()))
            assert any("libtorrent" in c.lower() for c in clients), clients
            assert all(p.address.startswith(f"{LOCAL}:") for p in peer_rows(app))
            await quit_with_q(app, pilot, session)
        assert app.return_code == 0
    finally:
        await close_quietly(session)
        peer.close()
    assert same_tree(data / "payload", out / "payload")


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_p_pauses_the_transfer_and_p_again_resumes_it_to_the_end(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 4 * MiB, files=2)
    seeder, _ = await seeder_for(tmp_path, torrent, data, settings=local_settings(rates__max_up=256 * 1024))
    session = leecher(tmp_path)
    out = tmp_path / "out"
    app = TorrentApp(session, download_dir=out, refresh_hz=HZ, startup=[
        AddRequest(str(torrent), str(out), False, None, peers=((LOCAL, seeder.listen_port),))])
    tid = meta.info_hash_hex
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: (r := row(app, tid)) and r.state == "downloading" and 0 < r.verified,
                        what="the download under way", status=list_status(app))
            assert row(app, tid).progress < 1
            await pilot.press("p")
            await until(pilot, lambda: (r := row(app, tid)) and r.state == "paused", timeout=10,
                        what="the list showing it paused", status=list_status(app))
            assert session.torrent(tid).state == "paused"
            await pilot.pause(0.3)  # a block already on the wire may still land
            before = session.torrent(tid).verified
            await pilot.pause(1.0)
            after = session.torrent(tid)
            assert after.verified == before and after.state == "paused", (before, after)
            assert after.peers == 0 and row(app, tid).verified == before
            assert before < meta.payload_length
            await pilot.press("p")
            await until(pilot, lambda: (r := row(app, tid)) and r.state in ("downloading", "seeding"), timeout=10,
                        what="the list showing it resumed", status=list_status(app))
            await seeder.set_rate_limits(max_up=0)  # the rest at full speed: the test need not wait
            await until(pilot, lambda: (r := row(app, tid)) and r.state == "seeding" and r.progress >= 1,
                        timeout=60, what="completion after resuming", status=list_status(app))
            assert session.torrent(tid).verified > before
            await quit_with_q(app, pilot, session)
    finally:
        await close_quietly(session, seeder)
    assert same_tree(data / "payload", out / "payload")


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_remove_keeps_the_files_with_y_and_deletes_them_with_d_or_the_delete_button(tmp_path: Path) -> None:
    from tui.screens import ConfirmRemove

    metas, torrents = {}, {}
    for name, size in (("keep-me", 1 * MiB), ("delete-me", 1 * MiB + 12345), ("shift-d", 1 * MiB + 54321)):
        meta, data, torrent = make_torrent(tmp_path, size, files=3, name=name)
        metas[name], torrents[name] = meta, torrent
    seeder, _ = await seeder_for(tmp_path, torrents["keep-me"], data)
    session = leecher(tmp_path)
    state = tmp_path / "state-app"
    try:
        for name in ("delete-me", "shift-d"):
            await seeder.add(torrents[name], save_path=data)
        out = tmp_path / "out"
        peers = ((LOCAL, seeder.listen_port),)
        app = TorrentApp(session, download_dir=out, refresh_hz=HZ, startup=[
            AddRequest(str(torrents[name]), str(out), False, None, peers=peers) for name in torrents])
        ids = {name: meta.info_hash_hex for name, meta in metas.items()}
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: all((r := row(app, t)) and r.state == "seeding" for t in ids.values()),
                        timeout=60, what="all three complete", status=list_status(app))
            for name in ids:
                assert same_tree(data / name, out / name)
            table = app.table

            async def remove(name: str, *how: str) -> None:
                table.move_to(ids[name])
                await pilot.pause()
                assert table.cursor_key == ids[name]
                await pilot.press("x")
                await until(pilot, lambda: isinstance(app.screen, ConfirmRemove), what="the confirmation")
                if how[0] == "click":
                    await pilot.click(how[1])
                else:
                    await pilot.press(*how)
                await until(pilot, lambda: ids[name] not in rows(app), timeout=10, what=f"{name} gone from the list",
                            status=list_status(app))
                assert ids[name] not in session.ids()
                assert not (state / "torrents" / f"{ids[name]}.json").exists()  # not back at the next start
                assert not (state / "resume" / f"{ids[name]}.resume").exists()

            # escape first: nothing happens
            table.move_to(ids["keep-me"])
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ConfirmRemove), what="the confirmation")
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, ConfirmRemove), what="the dialog closed")
            assert set(session.ids()) == set(ids.values())

            await remove("keep-me", "y")
            assert same_tree(data / "keep-me", out / "keep-me")  # the files stay
            await remove("delete-me", "click", "#delete")
            await until(pilot, lambda: not (out / "delete-me").exists(), timeout=10, what="delete-me's files gone")
            await remove("shift-d", "D")
            await until(pilot, lambda: not (out / "shift-d").exists(), timeout=10, what="shift-d's files gone")
            assert session.ids() == () and rows(app) == {}
            await quit_with_q(app, pilot, session)
    finally:
        await close_quietly(session, seeder)
    assert sorted(p.name for p in out.iterdir()) == ["keep-me"]
    assert same_tree(data / "keep-me", out / "keep-me")


def payload_files(root: Path) -> dict[str, bytes]:
    return files_of(root)


async def _skip_in_files_tab(app: TorrentApp, pilot, file_index: int) -> None:
    from tui.widgets.files import FilesTree

    await pilot.press("4")
    tree = app.query_one("#file-tree", FilesTree)
    await until(pilot, lambda: file_index in tree.leaves, what="the files tab listing the files")
    tree.focus()
    await pilot.pause()
    for _ in range(20):  # walk down to the file, as a user would
        if tree.cursor_node is not None and tree.cursor_node.data == file_index:
            break
        await pilot.press("down")
    assert tree.cursor_node is not None and tree.cursor_node.data == file_index
    await pilot.press("space")


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_a_file_skipped_in_the_files_tab_is_not_downloaded(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 2 * MiB, files=3)
    seeder, _ = await seeder_for(tmp_path, torrent, data)
    session = leecher(tmp_path)
    out = tmp_path / "out"
    app = TorrentApp(session, download_dir=out, refresh_hz=HZ, startup=[
        AddRequest(str(torrent), str(out), True, None, peers=((LOCAL, seeder.listen_port),))])  # paused
    tid = meta.info_hash_hex
    skipped = 1
    skipped_path = meta.files[skipped].display_path
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: (r := row(app, tid)) and r.state == "paused", what="the torrent paused",
                        status=list_status(app))
            await _skip_in_files_tab(app, pilot, skipped)
            await until(pilot, lambda: session.files(tid)[skipped].priority == "skip", timeout=10,
                        what="the engine told to skip the file")
            assert [f.priority for f in session.files(tid)] == ["normal", "skip", "normal"]
            app.table.focus()
            await pilot.press("p")  # resume
            await until(pilot, lambda: (r := row(app, tid)) and r.state == "seeding" and r.progress >= 1,
                        timeout=60, what="the wanted files complete", status=list_status(app))
            snap = session.torrent(tid)
            assert snap.wanted_size < meta.payload_length and snap.wanted_verified == snap.wanted_size
            await quit_with_q(app, pilot, session)
    finally:
        await close_quietly(session, seeder)
    want, got = payload_files(data), payload_files(out)
    for path, content in want.items():
        if path.endswith(skipped_path.split("/")[-1]):
            assert got.get(path) != content, f"{path} was skipped but is complete on disk"
        else:
            assert got.get(path) == content, f"{path} differs from the seed"


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_a_file_left_out_in_the_add_dialog_is_not_downloaded(tmp_path: Path) -> None:
    from textual.widgets import Input, SelectionList

    from tui.screens import AddDialog

    meta, data, torrent = make_torrent(tmp_path, 2 * MiB, files=3)
    seeder, _ = await seeder_for(tmp_path, torrent, data)
    session = leecher(tmp_path)
    out = tmp_path / "out"
    app = TorrentApp(session, download_dir=out, refresh_hz=HZ)
    tid = meta.info_hash_hex
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.events is not None, what="the session started")
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, AddDialog), what="the add dialog")
            app.screen.query_one("#source", Input).value = str(torrent)
            await click_button(pilot, "#add")
            files = app.screen.query_one("#files", SelectionList)
            await until(pilot, lambda: files.display and files.option_count == 3, what="the file choice")
            files.deselect(2)
            await click_button(pilot, "#add")
            await until(pilot, lambda: not isinstance(app.screen, AddDialog), what="the dialog closing",
                        status=lambda: (str(app.screen.query_one(".dialog-error").render()), app.focused,
                                        files.selected))
            assert [f.priority for f in session.files(tid)] == ["normal", "normal", "skip"]
            await session.add_peers(tid, [(LOCAL, seeder.listen_port)])
            await until(pilot, lambda: (r := row(app, tid)) and r.state == "seeding" and r.progress >= 1,
                        timeout=60, what="the chosen files complete", status=list_status(app))
            await quit_with_q(app, pilot, session)
    finally:
        await close_quietly(session, seeder)
    want, got = payload_files(data), payload_files(out)
    left_out = meta.files[2].display_path.split("/")[-1]
    for path, content in want.items():
        if path.endswith(left_out):
            assert got.get(path) != content, f"{path} was left out but is complete on disk"
        else:
            assert got.get(path) == content, f"{path} differs from the seed"


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_magnet_link_typed_in_the_add_dialog_waits_for_metadata(tmp_path: Path) -> None:
    from textual.events import Paste
    from textual.widgets import Input, Static

    from tui.screens import AddDialog

    info_hash = "5f" * 20
    magnet = f"magnet:?xt=urn:btih:{info_hash}&dn=some-linux.iso"
    session = leecher(tmp_path)
    out = tmp_path / "out"
    app = TorrentApp(session, download_dir=out, refresh_hz=HZ)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.events is not None, what="the session started")
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, AddDialog), what="the add dialog")
            source = app.screen.query_one("#source", Input)
            assert source.has_focus
            await pilot.press(*"magnet:")  # typed, then the rest pasted (bracketed paste, as a terminal sends it)
            app.post_message(Paste(magnet[len("magnet:"):]))
            await until(pilot, lambda: source.value == magnet, what="the link in the field",
                        status=lambda: source.value)
            await click_button(pilot, "#add")
            await until(pilot, lambda: not isinstance(app.screen, AddDialog), what="the dialog closing")
            shown = await until(pilot, lambda: row(app, info_hash), what="the magnet in the list",
                                status=list_status(app))
            assert shown.state == "metadata" and shown.name == "some-linux.iso" and shown.total_size == 0
            await pilot.pause(0.3)
            assert row(app, info_hash).state == "metadata"  # no peer, no metadata: it stays there
            assert session.torrent(info_hash).save_path == str(out.resolve())
            assert session.ids() == (info_hash,)  # the paste into the field did not add it a second way
            # the same link again: the dialog stays open and says why
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, AddDialog), what="the add dialog again")
            app.screen.query_one("#source", Input).value = magnet
            await click_button(pilot, "#add")
            error = app.screen.query_one(".dialog-error", Static)
            await until(pilot, lambda: error.display and "already" in str(error.render()), timeout=10,
                        what="the duplicate refused in the dialog", status=lambda: str(error.render()))
            assert isinstance(app.screen, AddDialog) and session.ids() == (info_hash,)
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, AddDialog), what="the dialog cancelled")
            # a magnet pasted on the list itself (no dialog) is added at once, also waiting for metadata
            other = "6e" * 20
            app.post_message(Paste(f"magnet:?xt=urn:btih:{other}&dn=other.iso"))
            pasted = await until(pilot, lambda: row(app, other), what="the pasted magnet in the list",
                                 status=list_status(app))
            assert pasted.state == "metadata" and pasted.name == "other.iso"
            assert sorted(session.ids()) == sorted([info_hash, other])
            await quit_with_q(app, pilot, session)
    finally:
        await close_quietly(session)


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_startup_torrent_that_cannot_be_added_is_shown_to_the_user(tmp_path: Path) -> None:
    """``torrent tui broken.torrent`` at 120×40: the log panel is hidden at this size, so the failure must
    reach the user another way (a notification, or the log shown)."""
    bad = tmp_path / "broken.torrent"
    bad.write_bytes(b"this is not a torrent")
    session = leecher(tmp_path)
    out = tmp_path / "out"
    app = TorrentApp(session, download_dir=out, refresh_hz=HZ, startup=[AddRequest(str(bad), str(out), False, None)])
    told: list[str] = []
    notify = app.notify

    def recording_notify(message: str, *args: object, **kwargs: object) -> None:
        told.append(f"{kwargs.get('title', '')}: {message}")
        notify(message, *args, **kwargs)  # type: ignore[arg-type]

    app.notify = recording_notify  # type: ignore[method-assign]
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.events is not None and app.ticks > 2, what="the app running")
            assert session.ids() == () and rows(app) == {}
            log_shown = app.query_one("#log").display
            assert told or log_shown, ("the startup torrent was refused, but nothing on screen says so: no "
                                       "notification, and the log panel (where the error went) is hidden at 120x40")
            await quit_with_q(app, pilot, session)
    finally:
        await close_quietly(session)


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_key_flow_add_a_file_choose_files_pause_remove(tmp_path: Path) -> None:
    """The whole flow by keys on a real session: a add → choose files → p pause → x y remove (data kept)."""
    from textual.widgets import Input, SelectionList

    from tui.screens import AddDialog, ConfirmRemove

    meta, _, torrent = make_torrent(tmp_path, 1 * MiB, files=3)
    session = leecher(tmp_path)
    app = TorrentApp(session, download_dir=tmp_path / "out", refresh_hz=HZ)
    tid = meta.info_hash_hex
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.events is not None, what="the session started")
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, AddDialog), what="the add dialog")
            app.screen.query_one("#source", Input).value = str(torrent)
            await pilot.press("enter")
            files = app.screen.query_one("#files", SelectionList)
            await until(pilot, lambda: files.display and files.option_count == 3, what="the file choice")
            files.deselect(0)
            await click_button(pilot, "#add")
            await until(pilot, lambda: not isinstance(app.screen, AddDialog), what="the dialog closing")
            assert [f.priority for f in session.files(tid)] == ["skip", "normal", "normal"]
            await until(pilot, lambda: (r := row(app, tid)) and r.state in ("downloading", "queued"),
                        what="the torrent running", status=list_status(app))
            app.table.move_to(tid)
            await pilot.press("p")
            await until(pilot, lambda: session.torrent(tid).state == "paused", what="paused")
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ConfirmRemove), what="the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: tid not in session.ids() and row(app, tid) is None, what="removed")
            await quit_with_q(app, pilot, session)
    finally:
        await close_quietly(session)
