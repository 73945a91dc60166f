"""A keyed, virtual table: the torrent list, the peers and the trackers.

Textual's DataTable keeps a cell object per value and re-sorts its own rows,
which costs seconds at ten thousand torrents refreshed every second. This
table keeps only the snapshot rows it is handed (already plain named tuples),
filters and sorts them in one pass, and draws nothing but the visible lines.
The cursor and the selection follow row keys, so they stay on the same
torrent or peer when the order changes; the scroll position stays put.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from torrent.core.text import printable

Row = Any  # a snapshot named tuple


@dataclass(frozen=True, slots=True)
class Column:
    """``cell`` gives the text (and optionally a style name) to draw; ``sort`` the value to order by.

    ``width`` is the width wanted; ``flex`` columns share what is left. ``priority``: when the table
    is narrow, columns with the highest numbers go first (0 never goes).
    """

    key: str
    title: str
    width: int
    cell: Callable[[Row], str | tuple[str, str]]
    sort: Callable[[Row], Any]
    align: str = "left"  # "left", "right", "center"
    flex: bool = False
    priority: int = 5
    descending_first: bool = False  # rates and sizes sort largest first on the first click
    nullable: bool = False  # ``sort`` may give None (sorted last either way; slower)


def _fit(text: str, width: int, align: str) -> str:
    if len(text) > width:
        return text[: max(width - 1, 0)] + "…" if width > 0 else ""
    if align == "right":
        return text.rjust(width)
    if align == "center":
        return text.center(width)
    return text.ljust(width)


class KeyedTable(ScrollView, can_focus=True):
    """Rows keyed by ``key(row)``; ``set_rows`` replaces them each refresh."""

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "edge(0)", "First", show=False),
        Binding("end,G", "edge(1)", "Last", show=False),
        Binding("space", "toggle_select", "Select", show=False),
        Binding("ctrl+a", "select_all", "Select all", show=False),
        Binding("escape", "clear_selection", "Clear selection", show=False),
        Binding("greater_than_sign", "sort_next(1)", "Sort →", show=False),
        Binding("less_than_sign", "sort_next(-1)", "Sort ←", show=False),
        Binding("R", "sort_reverse", "Reverse sort", show=False),
    ]

    DEFAULT_CSS = """
    KeyedTable {
        height: 1fr;
        scrollbar-size-vertical: 1;
        overflow-x: hidden;
    }
    """

    COMPONENT_CLASSES = {
        "keyed-table--header", "keyed-table--cursor", "keyed-table--selected", "keyed-table--sorted",
        "keyed-table--good", "keyed-table--warn", "keyed-table--bad", "keyed-table--muted", "keyed-table--accent",
    }

    cursor_key: reactive[Any] = reactive(None, init=False, always_update=False)

    class _TableMessage(Message):
        def __init__(self, table: KeyedTable) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> KeyedTable:
            return self.table

    class CursorMoved(_TableMessage):
        """The cursor is on another row (``key`` None when the table is empty)."""

        def __init__(self, table: KeyedTable, key: Any) -> None:
            super().__init__(table)
            self.key = key

    class RowActivated(_TableMessage):
        """Enter or a double click on a row."""

        def __init__(self, table: KeyedTable, key: Any) -> None:
            super().__init__(table)
            self.key = key

    class SortChanged(_TableMessage):
        def __init__(self, table: KeyedTable, sort: tuple[tuple[str, bool], ...]) -> None:
            super().__init__(table)
            self.sort = sort

    def __init__(self, columns: Sequence[Column], key: Callable[[Row], Any], *, visible: Iterable[str] | None = None,
                 sort: Sequence[tuple[str, bool]] = (), selectable: bool = False, name: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.all_columns = {c.key: c for c in columns}
        self.visible_keys = [c.key for c in columns] if visible is None else [k for k in visible
                                                                                   if k in self.all_columns]
        self.key = key
        self.selectable = selectable
        self.sort_spec: tuple[tuple[str, bool], ...] = tuple((k, d) for k, d in sort if k in self.all_columns)
        self.rows: list[Row] = []  # filtered and sorted, as shown
        self.index: dict[Any, int] = {}
        self.selected: set[Any] = set()
        self.filter: Callable[[Row], bool] | None = None
        self._cursor = 0
        self._fitted: list[tuple[Column, int]] = []
        self._source: Sequence[Row] = ()
        self.empty_text = "nothing to show"

    # ---- data ------------------------------------------------------------------------------

    def set_rows(self, rows: Sequence[Row]) -> None:
        """New snapshot rows: filter, sort, keep the cursor on its key, redraw what is visible."""
        self._source = rows
        shown = [r for r in rows if self.filter(r)] if self.filter is not None else list(rows)
        for key, descending in reversed(self.sort_spec):  # stable passes, last key first
            column = self.all_columns[key]
            getter = column.sort
            if column.nullable:
                last = -1 if descending else 1  # None goes last in either direction
                shown.sort(key=lambda r, g=getter, n=last: (n, 0) if (v := g(r)) is None else (0, v),
                           reverse=descending)
            else:
                shown.sort(key=getter, reverse=descending)
        key_of = self.key
        before = self.rows
        self.rows = shown
        self.index = {key_of(r): i for i, r in enumerate(shown)}
        if self.selected:
            self.selected &= self.index.keys()
        old = self.cursor_key
        if old in self.index:
            self._cursor = self.index[old]
        else:
            self._cursor = min(self._cursor, max(len(shown) - 1, 0))
        self.virtual_size = Size(self.size.width, len(shown) + 1)
        new_key = key_of(shown[self._cursor]) if shown else None
        if new_key != old:
            self.cursor_key = new_key
        self._refresh_changed(before, shown)

    def _refresh_changed(self, before: Sequence[Row], after: Sequence[Row]) -> None:
        """Redraw only the visible lines whose row changed (a busy list changes a few cells a second)."""
        top = self.scroll_offset.y
        height = max(self.size.height - 1, 0)
        if len(before) != len(after) or not height:
            self.refresh()
            return
        for index in range(top, min(top + height, len(after))):
            if before[index] != after[index]:
                self._refresh_row(index)

    def set_filter(self, predicate: Callable[[Row], bool] | None) -> None:
        self.filter = predicate
        self.set_rows(self._source)

    def set_sort(self, spec: Sequence[tuple[str, bool]]) -> None:
        self.sort_spec = tuple((k, d) for k, d in spec if k in self.all_columns)
        self.set_rows(self._source)
        self.refresh()  # the header's arrows
        self.post_message(self.SortChanged(self, self.sort_spec))

    def set_columns(self, keys: Iterable[str]) -> None:
        self.visible_keys = [k for k in keys if k in self.all_columns] or self.visible_keys
        self._fitted = []
        self.refresh()

    @property
    def cursor_row(self) -> Row | None:
        return self.rows[self._cursor] if self.rows else None

    @property
    def cursor_index(self) -> int:
        return self._cursor

    def targets(self) -> list[Any]:
        """The keys a bulk action applies to: the selection, else the row under the cursor."""
        if self.selected:
            return [k for k in self.index if k in self.selected]
        return [self.cursor_key] if self.cursor_key is not None else []

    def move_to(self, key: Any) -> None:
        if key in self.index:
            self._set_cursor(self.index[key])

    # ---- cursor and selection ----------------------------------------------------------------

    def _set_cursor(self, index: int) -> None:
        if not self.rows:
            return
        index = min(max(index, 0), len(self.rows) - 1)
        old = self._cursor
        self._cursor = index
        self.cursor_key = self.key(self.rows[index])
        self._refresh_row(old)
        self._refresh_row(index)
        self.scroll_to_region(Region(0, index + 1, 1, 1), spacing=None, animate=False, immediate=False,
                              force=True, top=False)
        # the header row is drawn in place: keep it out of the scrolled region
        if self.scroll_offset.y > index:
            self.scroll_to(y=index, animate=False)

    def _refresh_row(self, index: int) -> None:
        y = index + 1 - self.scroll_offset.y
        if 1 <= y < self.size.height:
            self.refresh(Region(0, y, self.size.width, 1))

    def watch_cursor_key(self, key: Any) -> None:
        self.post_message(self.CursorMoved(self, key))

    def action_cursor(self, step: int) -> None:
        self._set_cursor(self._cursor + step)

    def action_page(self, direction: int) -> None:
        self._set_cursor(self._cursor + direction * max(self.size.height - 2, 1))

    def action_edge(self, end: int) -> None:
        self._set_cursor(len(self.rows) - 1 if end else 0)

    def action_toggle_select(self) -> None:
        if not self.selectable or self.cursor_key is None:
            return
        self.selected ^= {self.cursor_key}
        self._refresh_row(self._cursor)
        self._set_cursor(self._cursor + 1)

    def action_select_all(self) -> None:
        if self.selectable:
            self.selected = set(self.index)
            self.refresh()

    def action_clear_selection(self) -> None:
        if self.selected:
            self.selected = set()
            self.refresh()

    def action_sort_next(self, step: int) -> None:
        keys = self.visible_keys
        current = self.sort_spec[0][0] if self.sort_spec else keys[0]
        position = keys.index(current) if current in keys else 0
        column = self.all_columns[keys[(position + step) % len(keys)]]
        self.set_sort([(column.key, column.descending_first)])

    def action_sort_reverse(self) -> None:
        if self.sort_spec:
            (key, descending), *rest = self.sort_spec
            self.set_sort([(key, not descending), *rest])

    def sort_by(self, key: str, *, add: bool = False) -> None:
        """Sort by a column; again on the same column reverses it. ``add`` makes it a further key (as stig)."""
        column = self.all_columns[key]
        spec = list(self.sort_spec)
        existing = [i for i, (k, _) in enumerate(spec) if k == key]
        if add:
            if existing:
                i = existing[0]
                spec[i] = (key, not spec[i][1])
            else:
                spec.append((key, column.descending_first))
        elif spec and spec[0][0] == key:
            spec = [(key, not spec[0][1])]
        else:
            spec = [(key, column.descending_first)]
        self.set_sort(spec)

    async def _on_click(self, event: events.Click) -> None:
        y = event.y
        if y == 0:
            column = self._column_at(event.x)
            if column is not None:
                self.sort_by(column.key, add=event.shift or event.ctrl)
            return
        index = y - 1 + self.scroll_offset.y
        if 0 <= index < len(self.rows):
            if self.selectable and (event.ctrl or event.shift):
                key = self.key(self.rows[index])
                self.selected ^= {key}
                self.refresh()
            self._set_cursor(index)
            if event.chain >= 2:
                self.post_message(self.RowActivated(self, self.cursor_key))

    def key_enter(self) -> None:
        if self.cursor_key is not None:
            self.post_message(self.RowActivated(self, self.cursor_key))

    # ---- drawing ---------------------------------------------------------------------------

    def _columns_for(self, width: int) -> list[tuple[Column, int]]:
        """Fit the visible columns into ``width``: drop the least important, share the rest among flex ones."""
        columns = [self.all_columns[k] for k in self.visible_keys]
        gutter = 2 if self.selectable else 1

        def needed(cols: list[Column]) -> int:
            return gutter + sum(c.width + 1 for c in cols)

        while len(columns) > 1 and needed(columns) > width:
            drop = max((c for c in columns if c.priority > 0), key=lambda c: c.priority, default=None)
            if drop is None:
                break
            columns.remove(drop)
        spare = max(width - needed(columns), 0)
        flex = [c for c in columns if c.flex] or columns[:1]
        share, extra = divmod(spare, len(flex))
        layout = []
        for c in columns:
            grow = share + (1 if extra and c in flex and flex.index(c) < extra else 0) if c in flex else 0
            layout.append((c, c.width + grow))
        return layout

    def _column_at(self, x: int) -> Column | None:
        position = 2 if self.selectable else 1
        for column, width in self._fitted:
            if position <= x < position + width + 1:
                return column
            position += width + 1
        return None

    def on_resize(self) -> None:
        self._fitted = []
        self.virtual_size = Size(self.size.width, len(self.rows) + 1)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if not self._fitted or sum(w + 1 for _, w in self._fitted) > width:
            self._fitted = self._columns_for(width)
        if y == 0:
            return self._header(width)
        index = y - 1 + self.scroll_offset.y
        if index >= len(self.rows):
            if not self.rows and y == 1:
                return Strip([Segment(_fit(" " + self.empty_text, width, "left"),
                                      self.get_component_rich_style("keyed-table--muted"))])
            return Strip.blank(width, self.rich_style)
        return self._row(self.rows[index], index, width)

    def _header(self, width: int) -> Strip:
        style = self.get_component_rich_style("keyed-table--header")
        sorted_style = self.get_component_rich_style("keyed-table--sorted")
        order = {k: (i, d) for i, (k, d) in enumerate(self.sort_spec)}
        segments = [Segment(" " * (2 if self.selectable else 1), style)]
        for column, w in self._fitted:
            title = column.title
            if column.key in order:
                i, descending = order[column.key]
                arrow = "▼" if descending else "▲"
                title = f"{title}{arrow}{i + 1 if len(order) > 1 else ''}"
                segments.append(Segment(_fit(title, w, column.align) + " ", style + sorted_style))
            else:
                segments.append(Segment(_fit(title, w, column.align) + " ", style))
        return Strip(segments).adjust_cell_length(width, style).crop(0, width)

    def _row(self, row: Row, index: int, width: int) -> Strip:
        key = self.key(row)
        base = self.rich_style
        if index == self._cursor and self.has_focus:
            base = base + self.get_component_rich_style("keyed-table--cursor")
        elif index == self._cursor:
            base = base + self.get_component_rich_style("keyed-table--cursor", partial=True) + Style(dim=False)
        selected = key in self.selected
        if selected:
            base = base + self.get_component_rich_style("keyed-table--selected", partial=True)
        segments = []
        if self.selectable:
            segments.append(Segment("●" if selected else " ", base))
        segments.append(Segment(" ", base))
        for column, w in self._fitted:
            value = column.cell(row)
            if isinstance(value, tuple):
                text, tone = value
                style = base + self.get_component_rich_style(f"keyed-table--{tone}", partial=True) if tone else base
            else:
                text, style = value, base
            # Segments reach the terminal as they are (no markup), so names, URLs and messages from
            # torrents, trackers and peers only need their control characters escaped.
            segments.append(Segment(_fit(printable(text), w, column.align), style))
            segments.append(Segment(" ", base))
        return Strip(segments).adjust_cell_length(width, base).crop(0, width)

