"""The piece map: file ranges, cells, zoom and cursor rules, then the widget driven by keys and clicks."""

from __future__ import annotations


import pytest
from fakes import FakeSession, make_file, make_peer, make_session_snapshot, make_torrent
from textual.app import App, ComposeResult

from torrent.session import BlockDetail, PieceDetail, PieceMap, PieceState
from tui.view import TorrentView
from tui.widgets.pieces import (
    BLOCK_SIZE,
    Cell,
    FileRange,
    MapCursor,
    PieceGrid,
    PieceMapView,
    Zoom,
    block_cells,
    file_at,
    file_piece_ranges,
    piece_cells,
    piece_size,
)

KiB = 1 << 10
PL = 256 * KiB  # the fakes' piece length


# ---- file ranges ----------------------------------------------------------------------------


def test_file_ranges_follow_offsets_and_skip_padding_and_empty_files() -> None:
    files = (
        make_file(index=0, path="a", size=10 * PL + 5),  # pieces 0–10
        make_file(index=1, path=".pad/1", size=PL - 5, padding=True),  # fills piece 10
        make_file(index=2, path="empty", size=0),
        make_file(index=3, path="b", size=100),  # inside piece 11
        make_file(index=4, path="c", size=2 * PL),  # pieces 11–13
    )
    assert file_piece_ranges(files, PL, 14) == (
        FileRange(0, "a", 0, 11), FileRange(3, "b", 11, 12), FileRange(4, "c", 11, 14))


def test_file_ranges_are_in_index_order_and_stop_at_the_last_piece() -> None:
    files = (make_file(index=1, path="second", size=PL), make_file(index=0, path="first", size=PL))
    assert file_piece_ranges(files, PL, 2) == (FileRange(0, "first", 0, 1), FileRange(1, "second", 1, 2))
    assert file_piece_ranges(files, PL, 1) == (FileRange(0, "first", 0, 1),)  # a map shorter than the files
    assert file_piece_ranges(files, 0, 2) == ()


def test_file_at_finds_the_first_file_holding_a_piece_unless_told_which() -> None:
    ranges = (FileRange(0, "a", 0, 11), FileRange(3, "b", 11, 12), FileRange(4, "c", 11, 14), FileRange(6, "d", 20, 21))
    assert file_at(ranges, 0) == 0
    assert file_at(ranges, 10) == 0
    assert file_at(ranges, 11) == 1
    assert file_at(ranges, 11, prefer=2) == 2
    assert file_at(ranges, 13, prefer=1) == 2  # the preferred file does not hold it
    assert file_at(ranges, 15) is None  # only padding there
    assert file_at(ranges, 99) is None


# ---- cells ----------------------------------------------------------------------------------


def test_cells_show_states_and_shade_missing_pieces_by_availability() -> None:
    states = bytes([PieceState.HAVE, PieceState.DOWNLOADING, PieceState.REQUESTED, PieceState.FAILED,
                    PieceState.SKIPPED, PieceState.MISSING, PieceState.MISSING, PieceState.MISSING,
                    PieceState.MISSING])
    availability = bytes([9, 9, 9, 9, 9, 0, 1, 8, 255])
    assert piece_cells(PieceMap(9, states, availability)) == bytes(
        [Cell.HAVE, Cell.DOWNLOADING, Cell.REQUESTED, Cell.FAILED, Cell.SKIPPED, Cell.UNAVAILABLE, 1, 8, 8])


def test_cells_of_a_short_availability_count_as_unavailable() -> None:
    assert piece_cells(PieceMap(3, bytes(3), b"\x02")) == bytes([2, Cell.UNAVAILABLE, Cell.UNAVAILABLE])


def test_blocks_in_flight_have_their_own_cells() -> None:
    blocks = tuple(BlockDetail(i * BLOCK_SIZE, BLOCK_SIZE, state, (), None)
                   for i, state in enumerate(("have", "received", "requested", "free")))
    detail = PieceDetail(3, PieceState.DOWNLOADING, 2, blocks, ())
    assert block_cells(detail, PL) == bytes([Cell.HAVE, Cell.DOWNLOADING, Cell.REQUESTED, Cell.FREE])


def test_a_piece_not_in_flight_is_all_had_or_all_free() -> None:
    assert block_cells(PieceDetail(0, PieceState.HAVE, 1, (), ()), PL) == bytes([Cell.HAVE]) * 16
    assert block_cells(PieceDetail(0, PieceState.MISSING, 1, (), ()), 40 * KiB) == bytes([Cell.FREE]) * 3
    assert piece_size(PL, 10 * PL + 100, 11, 10) == 100  # the last piece is short
    assert piece_size(PL, 10 * PL + 100, 11, 9) == PL


# ---- zoom and cursor ------------------------------------------------------------------------

RANGES = (FileRange(0, "a", 0, 100), FileRange(1, "b", 100, 150), FileRange(2, "c", 149, 300))


def test_zoom_goes_torrent_file_piece_and_back() -> None:
    cursor = MapCursor(piece=120)
    in_file = cursor.zoom_in(RANGES)
    assert (in_file.zoom, in_file.file, in_file.piece) == (Zoom.FILE, 1, 120)
    in_piece = in_file.zoom_in(RANGES)
    assert (in_piece.zoom, in_piece.piece, in_piece.block) == (Zoom.PIECE, 120, 0)
    assert in_piece.zoom_in(RANGES) == in_piece
    assert in_piece.zoom_out(RANGES) == in_file
    assert in_file.zoom_out(RANGES).zoom is Zoom.TORRENT
    assert in_file.zoom_out(RANGES).piece == 120
    assert cursor.zoom_out(RANGES) == cursor


def test_zoom_out_of_a_shared_piece_returns_to_the_file_it_came_from() -> None:
    cursor = MapCursor(zoom=Zoom.FILE, piece=149, file=2).zoom_in(RANGES)
    assert cursor.zoom_out(RANGES).file == 2


def test_a_single_file_torrent_zooms_straight_to_the_piece() -> None:
    single = (FileRange(0, "a", 0, 300),)
    cursor = MapCursor(piece=7).zoom_in(single)
    assert (cursor.zoom, cursor.piece) == (Zoom.PIECE, 7)
    assert cursor.zoom_out(single).zoom is Zoom.TORRENT
    assert MapCursor(piece=7).zoom_in(()).zoom is Zoom.PIECE


def test_step_file_wraps_and_puts_the_cursor_on_the_file_s_first_piece() -> None:
    cursor = MapCursor(zoom=Zoom.FILE, piece=10, file=0)
    assert cursor.step_file(RANGES, 1) == MapCursor(zoom=Zoom.FILE, piece=100, file=1)
    assert cursor.step_file(RANGES, -1) == MapCursor(zoom=Zoom.FILE, piece=149, file=2)
    assert MapCursor(piece=10).step_file(RANGES, 1) == MapCursor(piece=10)  # only at file zoom


def test_moves_stop_at_the_edges_of_what_is_shown() -> None:
    assert MapCursor(piece=5).moved(-10, RANGES, 300, 0).piece == 0
    assert MapCursor(piece=5).moved(1000, RANGES, 300, 0).piece == 299
    in_b = MapCursor(zoom=Zoom.FILE, piece=120, file=1)
    assert in_b.moved(100, RANGES, 300, 0).piece == 149
    assert in_b.moved(-100, RANGES, 300, 0).piece == 100
    in_piece = MapCursor(zoom=Zoom.PIECE, piece=120, block=3)
    assert in_piece.moved(20, RANGES, 300, 16) == MapCursor(zoom=Zoom.PIECE, piece=120, block=15)
    assert in_piece.moved(-20, RANGES, 300, 16).block == 0


def test_clamping_fits_the_cursor_to_a_changed_map() -> None:
    assert MapCursor(piece=500).clamped(RANGES, 300, 0).piece == 299
    assert MapCursor(zoom=Zoom.FILE, piece=5, file=7).clamped(RANGES, 300, 0) == MapCursor(piece=5, file=7)
    assert MapCursor(zoom=Zoom.FILE, piece=5, file=1).clamped(RANGES, 300, 0).piece == 100
    assert MapCursor(zoom=Zoom.PIECE, piece=5, block=40).clamped(RANGES, 300, 16).block == 15
    assert MapCursor(zoom=Zoom.PIECE, piece=5).clamped(RANGES, 0, 0) == MapCursor()


# ---- the widget -----------------------------------------------------------------------------


class MapApp(App[None]):
    def compose(self) -> ComposeResult:
        yield PieceMapView()


FILES = (make_file(index=0, path="disc/a.iso", size=1000 * PL), make_file(index=1, path="disc/b.txt", size=10 * PL + 1),
         make_file(index=2, path="disc/.pad/0", size=PL - 1, padding=True),
         make_file(index=3, path="disc/c.iso", size=1789 * PL))  # 2800 pieces in all


def view_of(num_pieces: int = 2800, files: tuple = FILES, **torrent: object) -> TorrentView:
    snapshot = make_torrent(**{"num_pieces": num_pieces, "total_size": num_pieces * PL, **torrent})
    session = FakeSession((snapshot,), files={snapshot.id: files},
                          peers={snapshot.id: (make_peer(), make_peer(address="10.0.0.2:6881"))})
    return TorrentView(snapshot, make_session_snapshot(), files=files,
                       piece_map=session.piece_map(snapshot.id) if num_pieces else None,
                       piece_detail=lambda index: session.piece_detail(snapshot.id, index))


def text_of(app: App, name: str) -> str:
    return str(app.query_one(f"#pieces-{name}").render())


def grid_lines(grid: PieceGrid) -> list[str]:
    return [grid.render_line(y).text for y in range(grid.size.height)]


def cursor_position(grid: PieceGrid) -> tuple[int, int, str]:
    """(row on screen, column, glyph) of the cell drawn reversed."""
    for y in range(grid.size.height):
        x = 0
        for segment in grid.render_line(y):
            if segment.style is not None and segment.style.reverse:
                return y, x, segment.text
            x += len(segment.text)
    raise AssertionError("no cursor drawn")


async def mounted(pilot, view: TorrentView) -> tuple[PieceMapView, PieceGrid]:
    widget = pilot.app.query_one(PieceMapView)
    widget.focus()
    widget.show(view)
    await pilot.pause()
    return widget, pilot.app.query_one(PieceGrid)


@pytest.mark.asyncio
async def test_the_whole_map_has_a_cell_per_piece_a_header_and_a_legend() -> None:
    app = MapApp()
    async with app.run_test(size=(100, 30)) as pilot:
        view = view_of()
        _, grid = await mounted(pilot, view)
        assert text_of(app, "header") == "Whole torrent · 2,800 pieces of 256 KiB"
        assert text_of(app, "cursor").startswith("Piece 0: have")
        lines = grid_lines(grid)
        columns = grid.columns
        assert lines[0].startswith("   0 █████✗█")  # index label, then piece 5 failed
        assert lines[1].startswith(f"{columns:>4} ")
        assert len(lines[0].rstrip()) == 5 + columns
        states = view.piece_map.states
        legend = text_of(app, "legend")
        assert f"█ have {states.count(PieceState.HAVE):,}" in legend
        assert f"▓ downloading {states.count(PieceState.DOWNLOADING):,}" in legend
        assert f"✗ failed {states.count(PieceState.FAILED)}" in legend
        unavailable = sum(1 for s, a in zip(states, view.piece_map.availability, strict=True) if s == 0 and a == 0)
        assert f"░ missing {states.count(PieceState.MISSING):,} (· {unavailable} unavailable)" in legend
        assert "  skipped 0  peers ░░░░░░░░ 1–8+" in legend


@pytest.mark.asyncio
async def test_each_state_has_its_own_glyph() -> None:
    states = bytes([PieceState.HAVE, PieceState.DOWNLOADING, PieceState.REQUESTED, PieceState.FAILED,
                    PieceState.SKIPPED, PieceState.MISSING, PieceState.MISSING])
    view = view_of(num_pieces=7, files=())
    view = TorrentView(view.torrent, view.session, piece_map=PieceMap(7, states, bytes([1, 1, 1, 1, 1, 0, 3])))
    app = MapApp()
    async with app.run_test(size=(60, 12)) as pilot:
        widget, grid = await mounted(pilot, view)
        widget.action_edge(1)  # the cursor off the first cell, whose glyph it reverses
        assert grid_lines(grid)[0].startswith("0 █▓▒✗ ·░")


@pytest.mark.asyncio
async def test_arrows_and_vim_keys_move_the_cursor() -> None:
    app = MapApp()
    async with app.run_test(size=(100, 30)) as pilot:
        widget, grid = await mounted(pilot, view_of())
        columns = grid.columns
        await pilot.press("right", "l", "down")
        assert widget.cursor.piece == 2 + columns
        assert cursor_position(grid)[:2] == (1, 5 + 2)
        await pilot.press("k", "h", "left", "left")
        assert widget.cursor.piece == 0  # stopped at the first piece
        await pilot.press("end")
        assert widget.cursor.piece == 2799
        row, _, _ = cursor_position(grid)  # scrolled to keep it on screen
        assert grid.render_line(row).text.startswith(f"{2799 // columns * columns:>4} ")
        await pilot.press("home")
        assert widget.cursor.piece == 0
        assert grid.scroll_offset.y == 0


@pytest.mark.asyncio
async def test_zoom_keys_go_to_the_file_then_the_piece_and_back() -> None:
    app = MapApp()
    async with app.run_test(size=(100, 30)) as pilot:
        widget, grid = await mounted(pilot, view_of())
        widget.action_move(1003)  # in disc/b.txt (pieces 1000–1010)
        await pilot.press("plus")
        assert widget.cursor.zoom is Zoom.FILE
        assert text_of(app, "header") == "File 2 of 3: disc/b.txt · pieces 1,000–1,010 (11)"
        lines = grid_lines(grid)
        assert lines[0].startswith("1000 ") and len(lines[0].rstrip()) == 5 + 11
        assert lines[1].strip() == ""
        assert cursor_position(grid)[:2] == (0, 5 + 3)
        await pilot.press("f")
        assert text_of(app, "header") == "File 3 of 3: disc/c.iso · pieces 1,011–2,799 (1,789)"
        assert widget.cursor.piece == 1011  # piece 1010 is b.txt's last byte and padding
        await pilot.press("f")
        assert text_of(app, "header").startswith("File 1 of 3: disc/a.iso")
        await pilot.press("F", "F")
        assert text_of(app, "header").startswith("File 2 of 3")
        await pilot.press("right", "enter")
        assert (widget.cursor.zoom, widget.cursor.piece) == (Zoom.PIECE, 1001)
        assert text_of(app, "header").startswith("Piece 1,001:")
        assert "16 blocks" in text_of(app, "header") and "in disc/b.txt" in text_of(app, "header")
        await pilot.press("minus")
        assert widget.cursor.zoom is Zoom.FILE and text_of(app, "header").startswith("File 2 of 3")
        await pilot.press("backspace")
        assert widget.cursor.zoom is Zoom.TORRENT and widget.cursor.piece == 1001
        assert text_of(app, "header").startswith("Whole torrent")


@pytest.mark.asyncio
async def test_file_keys_only_apply_at_file_zoom() -> None:
    app = MapApp()
    async with app.run_test(size=(100, 30)) as pilot:
        widget, _ = await mounted(pilot, view_of())
        assert widget.check_action("step_file", (1,)) is False
        assert widget.check_action("zoom_out", ()) is None  # shown, but there is nothing to zoom out of
        await pilot.press("f")
        assert widget.cursor == MapCursor()
        await pilot.press("plus")
        assert widget.check_action("step_file", (1,)) is True


@pytest.mark.asyncio
async def test_the_piece_zoom_shows_blocks_and_the_peers_serving_them() -> None:
    view = view_of()
    downloading = view.piece_map.states.index(PieceState.DOWNLOADING, 1000)
    app = MapApp()
    async with app.run_test(size=(100, 30)) as pilot:
        widget, grid = await mounted(pilot, view)
        widget.action_move(downloading)
        await pilot.press("plus", "plus")
        assert widget.cursor == MapCursor(Zoom.PIECE, downloading, 1, 0)
        assert grid_lines(grid)[0].startswith(" 0 █▓▒░█▓▒░█▓▒░█▓▒░")
        assert text_of(app, "legend").startswith("█ have 4  ▓ received 4  ▒ requested 4  ░ free 4")
        detail = text_of(app, "detail")
        assert "Sent by: 127.0.0.1:51413 (4 blocks)" in detail
        assert "Requested from: 127.0.0.1:51413 (4 blocks)" in detail
        assert "Peers with this piece (2): 127.0.0.1:51413, 10.0.0.2:6881" in detail
        assert text_of(app, "cursor").startswith("Block 0: have · offset 0 B")
        await pilot.press("right", "right")
        assert text_of(app, "cursor") == ("Block 2: requested · offset 32.0 KiB · 16.0 KiB · "
                                          "requested from 127.0.0.1:51413")
        await pilot.press("right")
        assert text_of(app, "cursor").startswith("Block 3: free")
        await pilot.press("left", "left")
        assert "sent by 127.0.0.1:51413" in text_of(app, "cursor")


@pytest.mark.asyncio
async def test_a_click_moves_the_cursor_and_a_second_click_zooms_in() -> None:
    app = MapApp()
    async with app.run_test(size=(100, 30)) as pilot:
        widget, grid = await mounted(pilot, view_of())
        columns = grid.columns
        app.set_focus(None)
        await pilot.click(PieceGrid, offset=(5 + 7, 2))
        assert widget.cursor == MapCursor(piece=2 * columns + 7)
        assert widget.has_focus  # the grid is not focusable: the map around it takes the keys
        await pilot.click(PieceGrid, offset=(5 + 7, 2))
        assert widget.cursor.zoom is Zoom.FILE and widget.cursor.piece == 2 * columns + 7
        await pilot.click(PieceGrid, offset=(2, 0))  # the label column is not a cell
        assert widget.cursor.piece == 2 * columns + 7


@pytest.mark.asyncio
async def test_a_double_click_zooms_into_the_clicked_piece() -> None:
    app = MapApp()
    async with app.run_test(size=(100, 30)) as pilot:
        widget, _ = await mounted(pilot, view_of(files=()))  # a single file: straight to the piece
        await pilot.double_click(PieceGrid, offset=(5 + 9, 0))
        assert (widget.cursor.zoom, widget.cursor.piece) == (Zoom.PIECE, 9)


@pytest.mark.asyncio
async def test_zoom_and_cursor_survive_refreshes_but_not_another_torrent() -> None:
    app = MapApp()
    async with app.run_test(size=(100, 30)) as pilot:
        widget, grid = await mounted(pilot, view_of())
        widget.action_move(1500)
        await pilot.press("plus")
        before = widget.cursor
        widget.show(view_of())
        await pilot.pause()
        assert widget.cursor == before
        assert text_of(app, "header").startswith("File 3 of 3")
        widget.show(view_of(id="f" * 40))
        await pilot.pause()
        assert widget.cursor == MapCursor()
        assert text_of(app, "header").startswith("Whole torrent")
        assert cursor_position(grid)[:2] == (0, 5)


@pytest.mark.asyncio
async def test_no_metadata_shows_a_message() -> None:
    app = MapApp()
    async with app.run_test(size=(100, 30)) as pilot:
        widget, grid = await mounted(pilot, view_of(num_pieces=0, files=(), total_size=0))
        assert text_of(app, "header").startswith("No metadata yet")
        assert all(line.strip() == "" for line in grid_lines(grid))
        await pilot.press("plus", "right")
        assert widget.cursor == MapCursor()
        widget.show(view_of())  # the metadata arrives
        await pilot.pause()
        assert text_of(app, "header").startswith("Whole torrent")


@pytest.mark.asyncio
async def test_a_hundred_thousand_pieces_scroll_to_the_last() -> None:
    app = MapApp()
    async with app.run_test(size=(100, 30)) as pilot:
        view = view_of(num_pieces=100_000, files=())
        widget, grid = await mounted(pilot, view)
        await pilot.press("end")
        assert widget.cursor.piece == 99_999
        row, _, glyph = cursor_position(grid)
        columns = grid.columns
        assert grid.render_line(row).text.startswith(f"{99_999 // columns * columns:>5} ")
        assert glyph == "█"  # piece_map_for has every third piece
        # the refresh cost is measured by benchmarks/test_tui_bench.py, never asserted here
