"""The piece map: every piece in a cell of its own, zooming from the whole torrent to one file to one piece.

Cells are exact, never averaged, so one failed or unavailable piece is not hidden by its neighbours; the
grid draws only the lines on screen and its cells are computed with whole-``bytes`` operations, so a map of
100 000 pieces costs about what one screenful does. Each state has its own glyph, so the map reads without
colour (NO_COLOR) too; colours come from the theme through component classes.
"""

from __future__ import annotations

import enum
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import ClassVar, NamedTuple

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.events import Click, Resize
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Static

from torrent.core.text import printable
from torrent.core.units import format_size
from torrent.session import BlockDetail, CommandError, FileSnapshot, PieceDetail, PieceMap, PieceState
from tui.view import TorrentView

BLOCK_SIZE = 16 * 1024  # the protocol's request size: how many blocks a piece not in flight has
MAX_SHADE = 8  # availability shades: 1 … 8 or more peers


class Cell(enum.IntEnum):
    """What one cell shows; codes 1 … MAX_SHADE are missing pieces that many peers have."""

    UNAVAILABLE = 0  # missing, and no connected peer has it
    HAVE = MAX_SHADE + 1
    DOWNLOADING = MAX_SHADE + 2  # for a block: received, not verified yet
    REQUESTED = MAX_SHADE + 3
    FAILED = MAX_SHADE + 4
    SKIPPED = MAX_SHADE + 5
    FREE = MAX_SHADE + 6  # a block nobody has been asked for


_SHADES = range(1, MAX_SHADE + 1)
_GLYPHS = ("·", *("░" for _ in _SHADES), "█", "▓", "▒", "✗", " ", "░")
_CELL_CLASSES = ("pieces--unavailable", *(f"pieces--avail-{n}" for n in _SHADES), "pieces--have",
                 "pieces--downloading", "pieces--requested", "pieces--failed", "pieces--skipped", "pieces--free")
_STATE_CELL = {PieceState.HAVE: Cell.HAVE, PieceState.DOWNLOADING: Cell.DOWNLOADING,
               PieceState.REQUESTED: Cell.REQUESTED, PieceState.FAILED: Cell.FAILED, PieceState.SKIPPED: Cell.SKIPPED}
_BLOCK_CELL = {"have": Cell.HAVE, "received": Cell.DOWNLOADING, "requested": Cell.REQUESTED, "free": Cell.FREE}
# bytes.translate tables: a state's cell (0 for missing), 0xFF where missing, an availability's shade
_BY_STATE = bytes(_STATE_CELL.get(i, 0) for i in range(256))
_MISSING_MASK = bytes(0xFF if i == PieceState.MISSING else 0 for i in range(256))
_SHADE = bytes(min(i, MAX_SHADE) for i in range(256))
_RUNS = re.compile(rb"(.)\1*", re.DOTALL)


def piece_cells(piece_map: PieceMap) -> bytes:
    """One ``Cell`` code per piece: a state's cell, or for a missing piece the shade of its availability.

    Computed on whole byte strings (translate, then big-integer and/or) because it runs for every piece
    every second: 100 000 pieces take well under a millisecond, where a Python loop takes tens.
    """
    n = piece_map.num_pieces
    states = piece_map.states[:n].ljust(n, b"\0")
    shades = piece_map.availability[:n].ljust(n, b"\0").translate(_SHADE)
    missing = int.from_bytes(states.translate(_MISSING_MASK))
    return (int.from_bytes(states.translate(_BY_STATE)) | (int.from_bytes(shades) & missing)).to_bytes(n)


# ---- files and zoom: pure, so they are tested without a screen ------------------------------


class FileRange(NamedTuple):
    index: int  # FileSnapshot.index
    path: str
    first: int  # its first piece
    stop: int  # one past its last piece


def file_piece_ranges(files: Iterable[FileSnapshot], piece_length: int, num_pieces: int) -> tuple[FileRange, ...]:
    """The pieces holding each file's bytes, in torrent order; padding and empty files are left out."""
    ranges = []
    offset = 0
    for file in sorted(files, key=attrgetter("index")):
        if file.size > 0 and not file.padding and piece_length > 0:
            first = offset // piece_length
            stop = min((offset + file.size - 1) // piece_length + 1, num_pieces)
            if first < stop:
                ranges.append(FileRange(file.index, file.path, first, stop))
        offset += file.size
    return tuple(ranges)


def file_at(ranges: Sequence[FileRange], piece: int, prefer: int | None = None) -> int | None:
    """The position in ``ranges`` of a file holding ``piece``: ``prefer`` if it does, else the first that does."""
    if prefer is not None and 0 <= prefer < len(ranges) and ranges[prefer].first <= piece < ranges[prefer].stop:
        return prefer
    position = bisect_right(ranges, piece, key=attrgetter("stop"))  # stops never decrease
    if position < len(ranges) and ranges[position].first <= piece:
        return position
    return None


class Zoom(enum.IntEnum):
    TORRENT = 0
    FILE = 1
    PIECE = 2


@dataclass(frozen=True, slots=True)
class MapCursor:
    """The zoom and the cursor, kept across refreshes. A file zoom needs two files or more: with one
    file it would repeat the whole map, so zooming goes straight from the torrent to the piece."""

    zoom: Zoom = Zoom.TORRENT
    piece: int = 0  # the cursor's piece; at piece zoom, the piece shown
    file: int = 0  # position in the file ranges, at file zoom
    block: int = 0  # the cursor's block, at piece zoom

    def bounds(self, ranges: Sequence[FileRange], num_pieces: int) -> tuple[int, int]:
        """The pieces on the map at this zoom (first, stop); at piece zoom, that piece alone."""
        if self.zoom is Zoom.FILE:
            return ranges[self.file].first, ranges[self.file].stop
        if self.zoom is Zoom.PIECE:
            return self.piece, self.piece + 1
        return 0, num_pieces

    def zoom_in(self, ranges: Sequence[FileRange]) -> MapCursor:
        if self.zoom is Zoom.TORRENT and len(ranges) > 1:
            position = file_at(ranges, self.piece)
            if position is not None:
                return replace(self, zoom=Zoom.FILE, file=position)
        if self.zoom is Zoom.PIECE:
            return self
        return replace(self, zoom=Zoom.PIECE, block=0)

    def zoom_out(self, ranges: Sequence[FileRange]) -> MapCursor:
        if self.zoom is Zoom.PIECE and len(ranges) > 1:
            position = file_at(ranges, self.piece, prefer=self.file)
            if position is not None:
                return replace(self, zoom=Zoom.FILE, file=position)
        return replace(self, zoom=Zoom.TORRENT)

    def step_file(self, ranges: Sequence[FileRange], step: int) -> MapCursor:
        """The next (``step`` 1) or previous (-1) file at file zoom, wrapping; the cursor goes to its first piece."""
        if self.zoom is not Zoom.FILE or not ranges:
            return self
        position = (self.file + step) % len(ranges)
        return replace(self, file=position, piece=ranges[position].first)

    def moved(self, delta: int, ranges: Sequence[FileRange], num_pieces: int, num_blocks: int) -> MapCursor:
        """The cursor ``delta`` cells on (a block at piece zoom, else a piece), stopped at the map's edges."""
        if self.zoom is Zoom.PIECE:
            return replace(self, block=max(0, min(self.block + delta, num_blocks - 1)))
        first, stop = self.bounds(ranges, num_pieces)
        return replace(self, piece=max(first, min(self.piece + delta, stop - 1)))

    def clamped(self, ranges: Sequence[FileRange], num_pieces: int, num_blocks: int) -> MapCursor:
        """This cursor made valid for a map that changed under it (metadata arrived, files changed)."""
        if num_pieces <= 0:
            return MapCursor()
        cursor = self
        if cursor.zoom is Zoom.FILE and (len(ranges) < 2 or cursor.file >= len(ranges)):
            cursor = replace(cursor, zoom=Zoom.TORRENT)
        cursor = replace(cursor, piece=max(0, min(cursor.piece, num_pieces - 1)),
                         block=max(0, min(cursor.block, num_blocks - 1)))
        first, stop = cursor.bounds(ranges, num_pieces)
        return replace(cursor, piece=max(first, min(cursor.piece, stop - 1)))


def piece_size(piece_length: int, total_size: int, num_pieces: int, index: int) -> int:
    """The last piece is usually shorter."""
    if index == num_pieces - 1 and total_size > 0:
        return total_size - piece_length * index
    return piece_length


def block_cells(detail: PieceDetail, size: int) -> bytes:
    """One cell per block. A piece not in flight has no block details: its blocks are all had or all free."""
    if detail.blocks:
        return bytes(_BLOCK_CELL.get(block.state, Cell.FREE) for block in detail.blocks)
    count = max(1, -(-size // BLOCK_SIZE))
    return bytes((Cell.HAVE if detail.state == PieceState.HAVE else Cell.FREE,)) * count


# ---- the grid -------------------------------------------------------------------------------


class PieceGrid(ScrollView, can_focus=False):
    """Cells one character each, a line at a time: only the lines on screen are drawn.

    It renders what it is given (``set_cells``) and reports clicks; the ``PieceMapView`` around it owns
    the cursor, the zoom and the keys.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {*_CELL_CLASSES, "pieces--cursor", "pieces--gutter"}
    DEFAULT_CSS = """
    PieceGrid {
        height: 1fr;
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-gutter: stable;
    }
    PieceGrid > .pieces--unavailable { color: $error; text-style: bold; }
    PieceGrid > .pieces--avail-1 { color: $primary 35%; }
    PieceGrid > .pieces--avail-2 { color: $primary 44%; }
    PieceGrid > .pieces--avail-3 { color: $primary 53%; }
    PieceGrid > .pieces--avail-4 { color: $primary 62%; }
    PieceGrid > .pieces--avail-5 { color: $primary 71%; }
    PieceGrid > .pieces--avail-6 { color: $primary 80%; }
    PieceGrid > .pieces--avail-7 { color: $primary 90%; }
    PieceGrid > .pieces--avail-8 { color: $primary; }
    PieceGrid > .pieces--have { color: $success; }
    PieceGrid > .pieces--downloading { color: $warning; }
    PieceGrid > .pieces--requested { color: $accent; }
    PieceGrid > .pieces--failed { color: $error; text-style: bold; }
    PieceGrid > .pieces--skipped { background: $panel; }
    PieceGrid > .pieces--free { color: $text-muted; }
    PieceGrid > .pieces--cursor { text-style: reverse bold; }
    PieceGrid > .pieces--gutter { color: $text-muted; }
    """

    class CellClicked(Message):
        """A cell was clicked; ``chain`` is 2 for a double click."""

        def __init__(self, cell: int, chain: int) -> None:
            super().__init__()
            self.cell = cell
            self.chain = chain

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._cells = b""
        self._cursor: int | None = None
        self._label_base = 0
        self._label_width = 0
        self._palette: _Palette | None = None

    def set_cells(self, cells: bytes, cursor: int | None, label_base: int = 0) -> None:
        """Show ``cells`` (``Cell`` codes); lines are labelled with ``label_base`` plus their first cell's index."""
        self._cells = cells
        self._cursor = cursor
        self._label_base = label_base
        self._label_width = len(str(label_base + len(cells) - 1)) + 1 if cells else 0
        self._palette = None
        self._resize_virtual()
        self.refresh()

    @property
    def columns(self) -> int:
        """Cells on one line."""
        return self._layout()[1]

    @property
    def page_rows(self) -> int:
        return max(1, self.scrollable_content_region.height)

    def cell_style(self, code: int) -> Style:
        return self._styles().cells[code]

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._palette = None

    def _styles(self) -> _Palette:
        """The cell styles, looked up once per ``set_cells`` or style update rather than per line: Textual
        forgets its own after every refresh (each scroll), and looking them up per line cost more than
        drawing the line."""
        if self._palette is None:
            self._palette = _Palette(tuple(self.get_component_rich_style(name) for name in _CELL_CLASSES),
                                     self.get_component_rich_style("pieces--cursor", partial=True),
                                     self.get_component_rich_style("pieces--gutter"), self.rich_style)
        return self._palette

    def scroll_to_cell(self, cell: int) -> None:
        """Scroll as little as needed to bring ``cell``'s line on screen."""
        row = cell // self.columns
        top = self.scroll_offset.y
        if row < top:
            self.scroll_to(y=row, animate=False)
        elif row >= top + self.page_rows:
            self.scroll_to(y=row - self.page_rows + 1, animate=False)

    def _layout(self) -> tuple[int, int]:
        """(label width, cells a line); the labels go when they would leave fewer than 8 cells."""
        width = self.scrollable_content_region.width
        label = self._label_width if width - self._label_width >= 8 else 0
        return label, max(1, width - label)

    def _resize_virtual(self) -> None:
        self.virtual_size = Size(self.scrollable_content_region.width, -(-len(self._cells) // self.columns))

    def on_resize(self, event: Resize) -> None:
        self._resize_virtual()

    def on_click(self, event: Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        label, columns = self._layout()
        column = offset.x - label
        cell = (offset.y + self.scroll_offset.y) * columns + column
        if 0 <= column < columns and cell < len(self._cells):
            event.stop()
            self.post_message(self.CellClicked(cell, event.chain))

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        label, columns = self._layout()
        start = (y + self.scroll_offset.y) * columns
        cells = self._cells
        palette = self._styles()
        if start >= len(cells):
            return Strip.blank(width, palette.base)
        end = min(start + columns, len(cells))
        styles = palette.cells
        segments = [Segment(f"{self._label_base + start:>{label - 1}} ", palette.gutter)] if label else []
        cursor = self._cursor
        if cursor is not None and start <= cursor < end:
            segments.extend(_runs(cells, start, cursor, styles))
            segments.append(Segment(_GLYPHS[cells[cursor]], styles[cells[cursor]] + palette.cursor))
            segments.extend(_runs(cells, cursor + 1, end, styles))
        else:
            segments.extend(_runs(cells, start, end, styles))
        return Strip(segments).extend_cell_length(width, palette.base)


class _Palette(NamedTuple):
    cells: tuple[Style, ...]  # by Cell code
    cursor: Style  # added to the cell's own style
    gutter: Style
    base: Style


def _runs(cells: bytes, start: int, end: int, styles: Sequence[Style]) -> Iterator[Segment]:
    """One segment per run of equal cells: a line is a handful of segments, not one per cell."""
    for run in _RUNS.finditer(cells, start, end):
        code = cells[run.start()]
        yield Segment(_GLYPHS[code] * (run.end() - run.start()), styles[code])


# ---- the view -------------------------------------------------------------------------------


class PieceMapView(Vertical, can_focus=True):
    """The selected torrent's piece map with its zoom, a header saying where it is and a legend with counts.

    ``show`` is called with each refresh's ``TorrentView`` (it needs ``piece_map``, ``files`` for the file
    zoom and ``piece_detail`` for the piece zoom). The zoom and the cursor survive refreshes; another torrent
    starts again from the whole map.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left,h", "move(-1)", "Previous piece", show=False),
        Binding("right,l", "move(1)", "Next piece", show=False),
        Binding("up,k", "move_rows(-1)", "Line up", show=False),
        Binding("down,j", "move_rows(1)", "Line down", show=False),
        Binding("pageup", "move_pages(-1)", "Page up", show=False),
        Binding("pagedown", "move_pages(1)", "Page down", show=False),
        Binding("home", "edge(-1)", "First", show=False),
        Binding("end", "edge(1)", "Last", show=False),
        Binding("enter,plus", "zoom_in", "Zoom in", key_display="+"),
        Binding("minus,backspace", "zoom_out", "Zoom out", key_display="-"),
        Binding("f", "step_file(1)", "Next file"),
        Binding("F", "step_file(-1)", "Previous file"),
    ]
    DEFAULT_CSS = """
    PieceMapView { height: 1fr; }
    PieceMapView > #pieces-header { height: auto; text-style: bold; }
    PieceMapView > #pieces-cursor { height: auto; color: $text-muted; }
    PieceMapView > #pieces-detail { height: auto; max-height: 8; display: none; }
    PieceMapView.-piece > #pieces-detail { display: block; }
    PieceMapView > #pieces-legend { height: auto; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._torrent_id: str | None = None
        self._view: TorrentView | None = None
        self._cursor = MapCursor()
        self._ranges: tuple[FileRange, ...] = ()
        self._ranges_key: tuple[str, int, int] | None = None
        self._cells = b""
        self._detail: PieceDetail | None = None
        self._block_cells = b""

    def compose(self) -> ComposeResult:
        yield Static(id="pieces-header")
        yield Static(id="pieces-cursor")
        yield PieceGrid(id="pieces-grid")
        yield Static(id="pieces-detail")
        yield Static(id="pieces-legend")

    @property
    def cursor(self) -> MapCursor:
        return self._cursor

    def show(self, view: TorrentView) -> None:
        """Render this refresh's view, keeping the zoom and cursor unless the torrent changed."""
        torrent = view.torrent
        new_torrent = torrent.id != self._torrent_id
        unzoomed = False  # the footer's keys change only with the zoom (a footer rebuild costs ~25 ms)
        if new_torrent:
            self._torrent_id = torrent.id
            unzoomed = self._cursor.zoom is not Zoom.TORRENT
            self._cursor = MapCursor()
        self._view = view
        piece_map = view.piece_map
        num_pieces = piece_map.num_pieces if piece_map is not None else 0
        key = (torrent.id, num_pieces, len(view.files))
        if key != self._ranges_key:
            self._ranges_key = key
            self._ranges = file_piece_ranges(view.files, torrent.piece_length, num_pieces)
        had_map = bool(self._cells)
        self._cells = piece_cells(piece_map) if piece_map is not None else b""
        self._load_detail()
        self._set_cursor(self._cursor.clamped(self._ranges, num_pieces, len(self._block_cells)))
        if unzoomed or had_map != bool(self._cells):
            self.refresh_bindings()

    # ---- actions ----

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        zoom = self._cursor.zoom
        if action == "step_file":
            return zoom is Zoom.FILE
        if action == "zoom_in":
            return True if self._cells and zoom is not Zoom.PIECE else None
        if action == "zoom_out":
            return True if zoom is not Zoom.TORRENT else None
        return True

    def action_move(self, delta: int) -> None:
        self._set_cursor(self._cursor.moved(delta, self._ranges, len(self._cells), len(self._block_cells)))

    def action_move_rows(self, rows: int) -> None:
        self.action_move(rows * self.query_one(PieceGrid).columns)

    def action_move_pages(self, pages: int) -> None:
        self.action_move_rows(pages * self.query_one(PieceGrid).page_rows)

    def action_edge(self, direction: int) -> None:
        """To the first (-1) or last (1) cell: a move longer than the map, which stops at its edge."""
        self.action_move(direction * max(len(self._cells), len(self._block_cells)))

    def action_zoom_in(self) -> None:
        if self._cells:
            self._set_cursor(self._cursor.zoom_in(self._ranges))

    def action_zoom_out(self) -> None:
        self._set_cursor(self._cursor.zoom_out(self._ranges))

    def action_step_file(self, step: int) -> None:
        self._set_cursor(self._cursor.step_file(self._ranges, step))

    def on_piece_grid_cell_clicked(self, message: PieceGrid.CellClicked) -> None:
        """A click moves the cursor; a click on the cursor (or a double click) zooms in."""
        message.stop()
        cursor = self._cursor
        if cursor.zoom is Zoom.PIECE:
            self._set_cursor(replace(cursor, block=message.cell))
            return
        piece = cursor.bounds(self._ranges, len(self._cells))[0] + message.cell
        if piece == cursor.piece or message.chain > 1:
            self._set_cursor(replace(cursor, piece=piece).zoom_in(self._ranges))
        else:
            self._set_cursor(replace(cursor, piece=piece))

    # ---- rendering ----

    def _load_detail(self) -> None:
        """Fetch the zoomed piece's blocks (at piece zoom only: it is a call into the session)."""
        view, cursor = self._view, self._cursor
        self._detail = None
        self._block_cells = b""
        if view is None or cursor.zoom is not Zoom.PIECE or view.piece_detail is None:
            return
        if not 0 <= cursor.piece < len(self._cells):
            return
        try:
            self._detail = view.piece_detail(cursor.piece)
        except CommandError:
            return
        torrent = view.torrent
        size = piece_size(torrent.piece_length, torrent.total_size, len(self._cells), cursor.piece)
        self._block_cells = block_cells(self._detail, size)

    def _set_cursor(self, cursor: MapCursor) -> None:
        previous = self._cursor
        self._cursor = cursor
        if cursor.zoom is Zoom.PIECE and (previous.zoom is not Zoom.PIECE or previous.piece != cursor.piece):
            self._load_detail()
            self._cursor = cursor = cursor.clamped(self._ranges, len(self._cells), len(self._block_cells))
        self._redraw()
        grid = self.query_one(PieceGrid)
        if cursor.zoom is Zoom.PIECE:
            grid.scroll_to_cell(cursor.block)
        elif self._cells:
            grid.scroll_to_cell(cursor.piece - cursor.bounds(self._ranges, len(self._cells))[0])
        if (previous.zoom, previous.file) != (cursor.zoom, cursor.file):
            self.refresh_bindings()

    def _redraw(self) -> None:
        grid = self.query_one(PieceGrid)
        header, where, detail, legend = (self.query_one(f"#pieces-{name}", Static)
                                         for name in ("header", "cursor", "detail", "legend"))
        cursor, view = self._cursor, self._view
        self.set_class(cursor.zoom is Zoom.PIECE and bool(self._cells), "-piece")
        if view is None or not self._cells:
            grid.set_cells(b"", None)
            no_map = view is not None and view.piece_map is None and view.torrent.num_pieces > 0
            header.update(Text("Piece map not available." if no_map else
                               "No metadata yet: the pieces appear once the torrent's metadata arrives."))
            for widget in (where, detail, legend):
                widget.update("")
            return
        if cursor.zoom is Zoom.PIECE:
            grid.set_cells(self._block_cells, cursor.block)
            header.update(self._piece_header())
            where.update(self._block_line())
            detail.update(self._piece_peers())
            legend.update(self._block_legend(grid))
        else:
            first, stop = cursor.bounds(self._ranges, len(self._cells))
            grid.set_cells(self._cells[first:stop] if (first, stop) != (0, len(self._cells)) else self._cells,
                           cursor.piece - first, label_base=first)
            header.update(self._map_header(first, stop))
            where.update(self._piece_line(cursor.piece))
            legend.update(self._piece_legend(grid, first, stop))

    def _map_header(self, first: int, stop: int) -> Text:
        torrent = self._view.torrent  # type: ignore[union-attr]
        if self._cursor.zoom is Zoom.FILE:
            file = self._ranges[self._cursor.file]
            return Text(f"File {self._cursor.file + 1} of {len(self._ranges)}: {printable(file.path)} · "
                        f"pieces {first:,}–{stop - 1:,} ({stop - first:,})")
        return Text(f"Whole torrent · {len(self._cells):,} pieces of {format_size(torrent.piece_length)}")

    def _piece_line(self, piece: int) -> Text:
        """What the cursor is on: the piece's state, how many peers have it, its file."""
        state = self._view.piece_map.states[piece]  # type: ignore[union-attr]
        peers = self._view.piece_map.availability[piece]  # type: ignore[union-attr]
        position = file_at(self._ranges, piece, prefer=self._cursor.file)
        where = f" · {self._ranges[position].path}" if position is not None and len(self._ranges) > 1 else ""
        return Text(f"Piece {piece:,}: {_state_name(state, peers)} · {_peers(peers)}{where}")

    def _piece_header(self) -> Text:
        cursor, detail = self._cursor, self._detail
        position = file_at(self._ranges, cursor.piece, prefer=cursor.file)
        where = f" · in {self._ranges[position].path}" if position is not None and len(self._ranges) > 1 else ""
        if detail is None:
            return Text(f"Piece {cursor.piece:,}: details not available{where}")
        torrent = self._view.torrent  # type: ignore[union-attr]
        size = piece_size(torrent.piece_length, torrent.total_size, len(self._cells), cursor.piece)
        return Text(f"Piece {cursor.piece:,}: {_state_name(detail.state, detail.availability)} · "
                    f"{format_size(size)} in {len(self._block_cells)} blocks · "
                    f"availability {detail.availability}{where}")

    def _block_line(self) -> Text:
        """The cursor's block: where it lies and who was asked for it or sent it."""
        detail, block = self._detail, self._cursor.block
        if detail is None:
            return Text("")
        if not detail.blocks:
            state = "have" if self._block_cells[block] == Cell.HAVE else "free"
            return Text(f"Block {block}: {state} · offset {format_size(block * BLOCK_SIZE)} · not in flight")
        info: BlockDetail = detail.blocks[block]
        parts = [f"Block {block}: {info.state}", f"offset {format_size(info.begin)}", format_size(info.length)]
        if info.received_from:
            parts.append(f"sent by {info.received_from}")
        if info.requested_from:
            parts.append(f"requested from {', '.join(info.requested_from)}")
        return Text(" · ".join(parts))

    def _piece_peers(self) -> Text:
        """Who is sending the zoomed piece, who was asked for it, and which connected peers have it."""
        detail = self._detail
        if detail is None:
            return Text("")
        sent = Counter(block.received_from for block in detail.blocks if block.received_from)
        asked = Counter(address for block in detail.blocks for address in block.requested_from)
        lines = []
        if sent:
            lines.append("Sent by: " + _tally(sent))
        if asked:
            lines.append("Requested from: " + _tally(asked))
        have = detail.peers_with_piece
        lines.append(f"Peers with this piece ({len(have)}): {_listed(have)}" if have else
                     "No connected peer has this piece.")
        return Text("\n".join(lines))

    def _piece_legend(self, grid: PieceGrid, first: int, stop: int) -> Text:
        cells = self._cells
        counts = {cell: cells.count(cell, first, stop) for cell in Cell if cell is not Cell.FREE}
        missing = (stop - first) - sum(counts.values()) + counts[Cell.UNAVAILABLE]
        legend = Text()
        for cell, label, count in ((Cell.HAVE, "have", counts[Cell.HAVE]),
                                   (Cell.DOWNLOADING, "downloading", counts[Cell.DOWNLOADING]),
                                   (Cell.REQUESTED, "requested", counts[Cell.REQUESTED]),
                                   (Cell.FAILED, "failed", counts[Cell.FAILED])):
            legend.append(_GLYPHS[cell], grid.cell_style(cell))
            legend.append(f" {label} {count:,}  ")
        legend.append(_GLYPHS[MAX_SHADE], grid.cell_style(MAX_SHADE))
        legend.append(f" missing {missing:,} (")
        legend.append(_GLYPHS[Cell.UNAVAILABLE], grid.cell_style(Cell.UNAVAILABLE))
        legend.append(f" {counts[Cell.UNAVAILABLE]:,} unavailable)  ")
        legend.append(_GLYPHS[Cell.SKIPPED], grid.cell_style(Cell.SKIPPED))
        legend.append(f" skipped {counts[Cell.SKIPPED]:,}  peers ")
        for shade in _SHADES:
            legend.append(_GLYPHS[shade], grid.cell_style(shade))
        legend.append(f" 1–{MAX_SHADE}+")
        return legend

    def _block_legend(self, grid: PieceGrid) -> Text:
        cells = self._block_cells
        legend = Text()
        for cell, label in ((Cell.HAVE, "have"), (Cell.DOWNLOADING, "received"), (Cell.REQUESTED, "requested"),
                            (Cell.FREE, "free")):
            legend.append(_GLYPHS[cell], grid.cell_style(cell))
            legend.append(f" {label} {cells.count(cell)}  ")
        return legend


def _state_name(state: int, availability: int) -> str:
    try:
        name = PieceState(state).name.lower()
    except ValueError:
        return f"state {state}"
    return "missing, unavailable" if state == PieceState.MISSING and availability == 0 else name


def _peers(count: int) -> str:
    return "1 peer has it" if count == 1 else f"{count}{'+' if count == 255 else ''} peers have it"


def _tally(counts: Counter[str]) -> str:
    return _listed([f"{address} ({n} block{'s' if n != 1 else ''})" for address, n in counts.most_common()])


def _listed(items: Sequence[str], limit: int = 24) -> str:
    """A list short enough for the detail lines: 200 peers would push the map off the screen."""
    more = f", … {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
