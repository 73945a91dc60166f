"""The app driving a real ``Session`` against live seeders on 127.0.0.1: ours, then libtorrent.

Each test runs the Textual app headless (``run_test``) in the same event loop
as the sessions, adds torrents the way a user does (the startup list, the add
dialog, keys), and checks what the list and the detail tabs show against what
the engine and the disk say.
"""

from __future__ import annotations

from pathlib import Path

import pytest
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
    seeder, _ = await seeder_for(tmp_path, torrent, data, settings=local_settings(rates__max_up=1 * MiB))
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
        handle.set_upload_limit(1 * MiB)  # per torrent: libtorrent's session limit spares loopback peers
        out = tmp_path / "out"
        app = TorrentApp(session, download_dir=out, refresh_hz=HZ, startup=[
            AddRequest(str(torrent), str(out), False, None, peers=((LOCAL, peer.port),))])
        tid = meta.info_hash_hex
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: handle.status().is_seeding, what="libtorrent seeding the payload",
                        status=peer.progress_line)
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
async def test_remove_keeps_the_files_with_y_and_deletes_them_with_the_delete_button(tmp_path: Path) -> None:
    from tui.screens import ConfirmRemove

    meta_a, data, torrent_a = make_torrent(tmp_path, 1 * MiB, files=3, name="keep-me")
    meta_b, _, torrent_b = make_torrent(tmp_path, 1 * MiB + 12345, files=3, name="delete-me")
    seeder = await seeder_for(tmp_path, torrent_a, data)
    seeder_session = seeder[0]
    session = leecher(tmp_path)
    try:
        sid_b = await seeder_session.add(torrent_b, save_path=data)
        out = tmp_path / "out"
        peers = ((LOCAL, seeder_session.listen_port),)
        app = TorrentApp(session, download_dir=out, refresh_hz=HZ, startup=[
            AddRequest(str(torrent_a), str(out), False, None, peers=peers),
            AddRequest(str(torrent_b), str(out), False, None, peers=peers)])
        a, b = meta_a.info_hash_hex, meta_b.info_hash_hex
        assert sid_b == b
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: all((r := row(app, t)) and r.state == "seeding" for t in (a, b)), timeout=60,
                        what="both complete", status=list_status(app))
            assert same_tree(data / "keep-me", out / "keep-me") and same_tree(data / "delete-me", out / "delete-me")
            table = app.table
            table.move_to(a)
            await pilot.pause()
            assert table.cursor_key == a
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ConfirmRemove), what="the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: a not in rows(app), timeout=10, what="the list without keep-me",
                        status=list_status(app))
            assert a not in session.ids() and b in session.ids()
            assert same_tree(data / "keep-me", out / "keep-me")  # the files stay

            table.move_to(b)
            await pilot.pause()
            assert table.cursor_key == b
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ConfirmRemove), what="the confirmation")
            await pilot.click("#delete")
            await until(pilot, lambda: b not in rows(app) and not (out / "delete-me").exists(), timeout=10,
                        what="delete-me gone from the list and the disk", status=list_status(app))
            assert session.ids() == ()
            assert rows(app) == {}
            await quit_with_q(app, pilot, session)
    finally:
        await close_quietly(session, seeder_session)
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
            await pilot.click("#add")
            files = app.screen.query_one("#files", SelectionList)
            await until(pilot, lambda: files.display and files.option_count == 3, what="the file choice")
            files.deselect(2)
            await pilot.click("#add")
            await until(pilot, lambda: not isinstance(app.screen, AddDialog), what="the dialog closing")
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
    from textual.widgets import Input

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
            await pilot.press(*magnet)
            assert source.value == magnet
            await pilot.click("#add")
            await until(pilot, lambda: not isinstance(app.screen, AddDialog), what="the dialog closing")
            shown = await until(pilot, lambda: row(app, info_hash), what="the magnet in the list",
                                status=list_status(app))
            assert shown.state == "metadata" and shown.name == "some-linux.iso" and shown.total_size == 0
            await pilot.pause(0.3)
            assert row(app, info_hash).state == "metadata"  # no peer, no metadata: it stays there
            assert session.torrent(info_hash).save_path == str(out.resolve())
            await quit_with_q(app, pilot, session)
    finally:
        await close_quietly(session)
