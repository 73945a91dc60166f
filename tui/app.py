"""The Textual app: the torrent list, the selected torrent's detail, the log, and every command.

It runs in the engine's event loop and speaks only the session API: each tick
(``refresh_hz``) it reads plain snapshots and hands them to the widgets, and
it drains the event stream into the log panel. The session may be a real
``Session`` or any object with the same methods (tests feed fixed snapshots).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.events import Paste, Resize
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Input, RichLog, Static, Tab, TabbedContent, TabPane, Tabs

from torrent.codec import metainfo
from torrent.codec.magnet import parse_magnet
from torrent.core.errors import TorrentError
from torrent.core.text import printable
from torrent.core.units import parse_size
from torrent.session import (
    Event,
    FilePriority,
    PeerBanned,
    QueueMove,
    StateChanged,
    StorageFailed,
    TorrentAdded,
    TorrentCompleted,
    TorrentRemoved,
    TorrentSnapshot,
    TorrentState,
    TrackerFailed,
)
from tui import format as fmt
from tui.columns import PEER_COLUMNS, PEER_SORT, TORRENT_COLUMNS, TRACKER_COLUMNS, TRACKER_SORT
from tui.diagnosis import diagnose, summary
from tui.filters import FilterError, compile_filter
from tui.history import HistoryBook
from tui.prefs import Prefs
from tui.screens import (
    AddDialog,
    AddRequest,
    ColumnsDialog,
    ConfirmRemove,
    LimitsDialog,
    PromptDialog,
    TrackersDialog,
    one_line,
)
from tui.view import TorrentView
from tui.widgets.files import FilesTree
from tui.widgets.info import InfoPanel, status_text
from tui.widgets.pieces import PieceMapView
from tui.widgets.speed import SpeedGraph
from tui.widgets.table import KeyedTable

W = TypeVar("W", bound=Widget)
LOG_LINES = 1000  # the log panel keeps this many lines
DETAIL_TABS = ("peers", "pieces", "speed", "files", "trackers", "info")
NARROW = (100, 30)  # below either: the list alone
WIDE = (180, 50)  # at or above both: list, detail, graph and log


def _id_of(row: Any) -> str:
    return row.id


class TorrentApp(App[int]):
    """``session``: started here unless ``started``; closed on quit. ``startup``: torrents to add once running.
    ``freeze_gc``: after start-up, exempt everything alive from garbage collection (a process that runs only
    this app: shorter GC pauses, so keys stay responsive)."""

    CSS_PATH = "app.tcss"
    TITLE = "torrent"
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("a", "add", "Add"),
        Binding("p", "pause_resume", "Pause/resume"),
        Binding("x,delete", "remove", "Remove"),
        Binding("slash", "filter", "Filter"),
        Binding("d", "toggle_panel('detail')", "Detail"),
        Binding("l", "toggle_panel('log')", "Log"),
        Binding("y", "toggle_panel('graph')", "Graph", show=False),
        Binding("V", "recheck", "Recheck", show=False),
        Binding("A", "announce", "Announce", show=False),
        Binding("F", "force_start", "Force start", show=False),
        Binding("left_square_bracket", "queue('up')", "Queue up", show=False),
        Binding("right_square_bracket", "queue('down')", "Queue down", show=False),
        Binding("left_curly_bracket", "queue('top')", "Queue top", show=False),
        Binding("right_curly_bracket", "queue('bottom')", "Queue bottom", show=False),
        Binding("m", "move_data", "Move data", show=False),
        Binding("t", "edit_trackers", "Trackers", show=False),
        Binding("s", "sequential", "Sequential", show=False),
        Binding("S", "alt_speed", "Alt speed", show=False),
        Binding("L", "torrent_limits", "Limits", show=False),
        Binding("ctrl+l", "global_limits", "Global limits", show=False),
        Binding("c", "copy_magnet", "Copy magnet", show=False),
        Binding("C", "columns", "Columns", show=False),
        Binding("1", "detail_tab('peers')", "Peers", show=False),
        Binding("2", "detail_tab('pieces')", "Pieces", show=False),
        Binding("3", "detail_tab('speed')", "Speed", show=False),
        Binding("4", "detail_tab('files')", "Files", show=False),
        Binding("5", "detail_tab('trackers')", "Trackers", show=False),
        Binding("6", "detail_tab('info')", "Info", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, session: Any, *, download_dir: Path | str = ".", startup: Sequence[AddRequest] = (),
                 prefs_path: Path | None = None, refresh_hz: float = 1.0, started: bool = False,
                 exit_when_complete: bool = False, clock: Callable[[], float] = time.time,
                 log_level: int = logging.WARNING, freeze_gc: bool = False) -> None:
        super().__init__()
        self.session = session
        self.download_dir = str(download_dir)
        self.startup = list(startup)
        self.prefs_path = prefs_path
        self.prefs = Prefs.load(prefs_path)
        self.refresh_hz = refresh_hz
        self.started = started
        self.exit_when_complete = exit_when_complete
        self.clock = clock
        self.log_level = log_level
        self.freeze_gc = freeze_gc
        self.history = HistoryBook()
        self.events: Any = None
        self.selected_id: str | None = None
        self.filter_text = ""
        self.ticks = 0
        self._lines: dict[str, Text] = {}  # what the one-line widgets show now
        self._session_row: Any = None  # the last session snapshot (the footer is redrawn from it on a resize)
        self.refresh_seconds: list[float] = []  # the last refreshes' cost, for the benchmark and the log
        self._quitting = False
        self.session_closed = False  # set once quitting has closed the session (else the caller must)
        self.exit_message: str | None = None  # why the app could not run, for the caller to print
        self.main_screen: Screen | None = None  # the list's screen, once mounted
        self._log_handler: logging.Handler | None = None
        self.exit_code = 0
        if self.prefs.theme in self.available_themes:
            self.theme = self.prefs.theme

    # ---- layout --------------------------------------------------------------------------

    def part(self, selector: str, kind: type[W] = Widget) -> W:  # type: ignore[assignment]
        """A widget of the main screen, even while a dialog is on top (``query_one`` asks the top screen)."""
        return (self.main_screen or self.screen).query_one(selector, kind)

    def compose(self) -> ComposeResult:
        yield Tabs(*[Tab(name, id=f"filter-{i}") for i, (name, _) in enumerate(self.prefs.tabs)], id="tabs")
        yield Input(placeholder="filter: state:seeding ratio<1 name~linux  (Enter keeps it, Esc clears, "
                                "Ctrl+S saves it as a tab)", id="filter")
        yield KeyedTable(TORRENT_COLUMNS, _id_of, visible=self.prefs.columns,
                         sort=[(k, bool(d)) for k, d in self.prefs.sort], selectable=True, id="torrents")
        yield Static("", id="why")
        with Horizontal(id="lower"):
            with TabbedContent(id="detail", initial=self.prefs.detail_tab if self.prefs.detail_tab in DETAIL_TABS
                               else "peers"):
                with TabPane("Peers", id="peers"):
                    yield KeyedTable(PEER_COLUMNS, lambda p: p.address, sort=PEER_SORT, id="peer-table")
                with TabPane("Pieces", id="pieces"):
                    yield PieceMapView(id="piece-map")
                with TabPane("Speed", id="speed"):
                    yield SpeedGraph(id="torrent-speed")
                with TabPane("Files", id="files"):
                    yield FilesTree(id="file-tree")
                with TabPane("Trackers", id="trackers"):
                    yield KeyedTable(TRACKER_COLUMNS, lambda t: t.url, sort=TRACKER_SORT, id="tracker-table")
                with TabPane("Info", id="info"):
                    yield InfoPanel(id="info-panel")
            with Vertical(id="side"):
                yield Static("All torrents", id="side-title")
                yield SpeedGraph(id="global-speed")
        yield RichLog(id="log", max_lines=LOG_LINES, wrap=True, markup=False, highlight=False)
        yield Static("", id="status")
        yield Footer()

    async def on_mount(self) -> None:
        self.main_screen = self.screen
        self.part("#filter").display = False
        self.part("#peer-table", KeyedTable).empty_text = "no peers connected"
        self.part("#tracker-table", KeyedTable).empty_text = "no trackers"
        self.part("#torrents", KeyedTable).empty_text = "no torrents: press a to add one, or paste a magnet link"
        self.part("#torrents").focus()
        self._install_log_handler()
        self._apply_layout()
        try:
            if not self.started:
                await self.session.start()
                self.started = True
        except TorrentError as exc:
            # printed by the caller once the screen is gone
            self.exit_message = f"torrent: error: {printable(str(exc))}"
            self.exit(2)
            return
        self.events = self.session.subscribe()
        self.run_worker(self._follow_events(), group="events")
        for warning in self.session.warnings:
            self.log_line(warning, "warning")
        self.refresh_data()
        self.call_after_refresh(self._after_first_paint)

    async def _after_first_paint(self) -> None:
        """Torrents named at start join once the screen is up: drawing it does not compete with them."""
        if self.freeze_gc:  # what start-up made lives as long as the app: keep it out of every later GC pass
            gc.collect()
            gc.freeze()
        for request in self.startup:
            await self._add_at_startup(request)
        self.refresh_data()
        self.set_interval(1 / self.refresh_hz, self._tick)

    def _install_log_handler(self) -> None:
        """Engine warnings go to the log panel: a stderr line would tear the screen."""
        app = self

        class PanelHandler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                try:
                    app.log_line(record.getMessage(), record.levelname.lower())
                except Exception:  # noqa: BLE001 - a log line must never take the app down
                    pass

        handler = PanelHandler(self.log_level)
        root = logging.getLogger("torrent")
        root.addHandler(handler)
        root.propagate = False
        if root.getEffectiveLevel() > self.log_level:
            root.setLevel(self.log_level)
        self._log_handler = handler

    def on_resize(self, event: Resize) -> None:
        if self.main_screen is not None and self.main_screen.is_attached:
            self._apply_layout()
            self._show_status(event.size.width)  # ``self.size`` is still the old one here

    def _show_status(self, width: int | None = None) -> None:
        """The footer's totals, cut to the terminal's width (the line spans it, less a cell of padding a side)."""
        if self._session_row is not None:
            width = self.size.width if width is None else width
            self._set_line("#status", status_text(self._session_row, max(width - 2, 0)))

    def _size_class(self) -> str:
        width, height = self.size
        if width < NARROW[0] or height < NARROW[1]:
            return "narrow"
        if width >= WIDE[0] and height >= WIDE[1]:
            return "wide"
        return "medium"

    def _apply_layout(self) -> None:
        size = self._size_class()
        auto = {"detail": size != "narrow", "log": size == "wide", "graph": size == "wide"}
        chosen = {"detail": self.prefs.show_detail, "log": self.prefs.show_log, "graph": self.prefs.show_graph}
        show = {k: auto[k] if chosen[k] is None else chosen[k] for k in auto}
        self.part("#lower").display = show["detail"] or show["graph"]
        self.part("#detail").display = show["detail"]
        self.part("#side").display = show["graph"]
        self.part("#log").display = show["log"]
        self.part("#log").styles.height = 12 if size == "wide" else 8  # not a screen class: restyles everything

    # ---- refresh -------------------------------------------------------------------------

    @property
    def table(self) -> KeyedTable:
        return self.part("#torrents", KeyedTable)

    def _tick(self) -> None:
        try:
            self.refresh_data()
        except NoMatches:  # the screen is being torn down (the app is exiting)
            pass

    def refresh_data(self) -> None:
        """One tick: events into the log, the list, the totals, and the selected torrent's detail."""
        if self._quitting or self.events is None or self.main_screen is None or not self.main_screen.is_attached:
            return
        started = time.perf_counter()
        rows = self.session.torrents()
        now = self.clock()
        session_row = self.session.snapshot()
        self.history.record(now, session_row.down_rate, session_row.up_rate,
                            ((t.id, t.down_rate, t.up_rate) for t in rows))
        table = self.table
        table.set_rows(rows)
        self._session_row = session_row
        self._show_status()
        self.selected_id = table.cursor_key
        self._refresh_detail(now, session_row)
        self.ticks += 1
        self.refresh_seconds = (self.refresh_seconds + [time.perf_counter() - started])[-60:]
        if self.exit_when_complete:
            self._quit_if_complete(rows)

    def _refresh_detail(self, now: float, session_row: Any) -> None:
        side = self.part("#side")
        if side.display:
            self.part("#global-speed", SpeedGraph).show(self.history.global_history, now)
        torrent_id = self.selected_id
        if torrent_id is None:
            self._set_line("#why", Text(""))
            return
        torrent = self.table.cursor_row  # the selected torrent is the list's cursor row, read this tick
        if torrent is None or torrent.id != torrent_id:
            return
        try:
            peers = self.session.peers(torrent_id)
            trackers = self.session.trackers(torrent_id)
        except TorrentError:
            return  # removed between the list and now: the next tick drops it
        causes = diagnose(torrent, peers, trackers, session_row)
        line = Text(printable(summary(causes)))  # quotes tracker and peer errors
        if causes:
            line.stylize("bold" if any(c.code in SLOW_CODES for c in causes) else "dim")
        self._set_line("#why", Text.assemble((f"{printable(torrent.name)}: ", "bold"), line))
        if not self.part("#detail").display:
            return
        tab = self.part("#detail", TabbedContent).active
        try:
            view = TorrentView(
                torrent=torrent, session=session_row, peers=peers, trackers=trackers,
                files=self.session.files(torrent_id) if tab in ("files", "pieces") else (),
                piece_map=self.session.piece_map(torrent_id) if tab == "pieces" and torrent.num_pieces else None,
                piece_detail=(lambda index: self.session.piece_detail(torrent_id, index)) if tab == "pieces"
                else None)
        except TorrentError:
            return
        if tab == "peers":
            self.part("#peer-table", KeyedTable).set_rows(peers)
        elif tab == "trackers":
            self.part("#tracker-table", KeyedTable).set_rows(trackers)
        elif tab == "pieces":
            self.part("#piece-map", PieceMapView).show(view)
        elif tab == "speed":
            self.part("#torrent-speed", SpeedGraph).show(self.history.track(torrent_id), now)
        elif tab == "files":
            self.part("#file-tree", FilesTree).show(view)
        elif tab == "info":
            self.part("#info-panel", InfoPanel).show(view)

    async def _follow_events(self) -> None:
        """Events as they come (the log, notifications, completion), not at the next refresh."""
        async for event in self.events:
            if self._quitting:
                return
            self.on_engine_event(event)
            if self.exit_when_complete and isinstance(event, StateChanged | TorrentCompleted):
                self._quit_if_complete(self.session.torrents())

    def _quit_if_complete(self, rows: Sequence[TorrentSnapshot]) -> None:
        if rows and all(t.progress >= 1 and t.state == TorrentState.SEEDING.value for t in rows):
            self.call_later(self.action_quit)

    def _set_line(self, selector: str, text: Text) -> None:
        """A one-line widget: redraw only when its text changed, and never lay the screen out again."""
        if self._lines.get(selector) != text:
            self._lines[selector] = text
            self.part(selector, Static).update(text, layout=False)

    def on_engine_event(self, event: Event) -> None:
        name = self.torrent_name(event.torrent_id)
        if isinstance(event, TrackerFailed):
            self.log_line(f"{name}: tracker {event.url}: {event.message}", "warning")
        elif isinstance(event, PeerBanned):
            self.log_line(f"{name}: banned {event.address}: {event.reason}", "warning")
        elif isinstance(event, StorageFailed):
            self.log_line(f"{name}: disk error: {event.message}", "error")
            self.notify(f"{name}: {event.message}", title="Disk error", severity="error")
        elif isinstance(event, StateChanged) and event.new == TorrentState.ERROR.value:
            self.log_line(f"{name}: stopped: {event.reason or 'error'}", "error")
        elif isinstance(event, StateChanged) and event.reason:
            self.log_line(f"{name}: {event.old} → {event.new} ({event.reason})", "info")
        elif isinstance(event, TorrentCompleted):
            self.log_line(f"{name}: complete ({fmt.size(event.wanted_size)})", "info")
            self.notify(f"{name} is complete", title="Download complete")
        elif isinstance(event, TorrentAdded):
            self.log_line(f"added {event.name}", "info")
        elif isinstance(event, TorrentRemoved):
            self.log_line(f"removed {name}{' and its data' if event.with_data else ''}", "info")
            self.history.forget(event.torrent_id)

    def torrent_name(self, torrent_id: str | None) -> str:
        if torrent_id is None:
            return "session"
        row = self.table.index.get(torrent_id)
        if row is not None:
            return self.table.rows[row].name
        try:
            return self.session.torrent(torrent_id).name
        except TorrentError:
            return torrent_id[:8]

    def log_line(self, message: str, level: str = "info") -> None:
        style = {"error": "bold red", "warning": "yellow", "critical": "bold red"}.get(level, "")
        stamp = time.strftime("%H:%M:%S", time.localtime(self.clock()))
        # Text, not markup; the message quotes torrents, trackers and peers: its controls are escaped.
        line = Text.assemble((stamp + " ", "dim"), (f"{level:<7} ", style or "dim"), printable(message))
        self.part("#log", RichLog).write(line)

    def notify(self, message: str, *, title: str = "", severity: Any = "information", timeout: float | None = None,
               markup: bool = True) -> None:
        """Every toast quotes a name or an error from outside: shown as written (no markup), controls escaped."""
        super().notify(printable(message), title=printable(title), severity=severity, timeout=timeout, markup=False)

    # ---- selection ----------------------------------------------------------------------

    @on(KeyedTable.CursorMoved, "#torrents")
    def _torrent_moved(self, event: KeyedTable.CursorMoved) -> None:
        if event.key != self.selected_id:
            self.selected_id = event.key
            if self.events is not None:
                self._refresh_detail(self.clock(), self.session.snapshot())

    @on(KeyedTable.RowActivated, "#torrents")
    def _torrent_activated(self, event: KeyedTable.RowActivated) -> None:
        self.prefs.show_detail = True
        self._apply_layout()

    @on(KeyedTable.SortChanged, "#torrents")
    def _sort_changed(self, event: KeyedTable.SortChanged) -> None:
        self.prefs.sort = [list(s) for s in event.sort]
        self.save_prefs()

    @on(TabbedContent.TabActivated, "#detail")
    def _detail_tab(self, event: TabbedContent.TabActivated) -> None:
        self.prefs.detail_tab = event.pane.id or "peers"
        if self.events is not None:
            self._refresh_detail(self.clock(), self.session.snapshot())

    def targets(self) -> list[str]:
        return self.table.targets()

    # ---- filtering -----------------------------------------------------------------------

    @on(Tabs.TabActivated, "#tabs")
    def _filter_tab(self, event: Tabs.TabActivated) -> None:
        index = int((event.tab.id or "filter-0").split("-")[1])
        if index < len(self.prefs.tabs):
            self.set_filter(self.prefs.tabs[index][1])

    def set_filter(self, text: str) -> str | None:
        """Apply a filter expression; on error keep the previous one and say why."""
        field = self.part("#filter", Input)
        try:
            predicate = compile_filter(text)
        except FilterError as exc:
            field.border_subtitle = str(exc)
            field.add_class("-invalid")
            return str(exc)
        field.remove_class("-invalid")
        field.border_subtitle = ""
        self.filter_text = text
        if field.value != text:
            field.value = text
        field.display = field.display or bool(text)
        self.table.set_filter(predicate if text.strip() else None)
        return None

    @on(Input.Changed, "#filter")
    def _filter_typed(self, event: Input.Changed) -> None:
        self.set_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.table.focus()

    def action_filter(self) -> None:
        field = self.part("#filter", Input)
        field.display = True
        field.focus()

    def key_escape(self) -> None:
        field = self.part("#filter", Input)
        if field.has_focus:
            field.value = ""
            field.display = False
            self.table.focus()

    def key_ctrl_s(self) -> None:
        if self.part("#filter", Input).has_focus and self.filter_text.strip():
            self.save_filter_tab(self.filter_text, self.filter_text)

    def save_filter_tab(self, name: str, text: str) -> None:
        self.prefs.tabs.append([name[:24], text])
        tabs = self.part("#tabs", Tabs)
        tabs.add_tab(Tab(name[:24], id=f"filter-{len(self.prefs.tabs) - 1}"))
        self.save_prefs()
        self.notify(f"Saved the filter as the tab {name[:24]!r}")

    # ---- commands ------------------------------------------------------------------------

    async def run_command(self, what: str, command: Callable[[str], Any], ids: Iterable[str] | None = None) -> None:
        """Run a session command on each target; a refusal is a log line, not a crash."""
        for torrent_id in list(self.targets() if ids is None else ids):
            try:
                await command(torrent_id)
            except TorrentError as exc:
                self.log_line(f"{what} {self.torrent_name(torrent_id)}: {exc}", "warning")
                self.notify(str(exc), title=f"Cannot {what}", severity="warning")
        self.refresh_data()

    async def add_torrent(self, request: AddRequest) -> str | None:
        priorities = None
        if request.priorities is not None:
            priorities = [FilePriority.NORMAL if wanted else FilePriority.SKIP for wanted in request.priorities]
        try:
            torrent_id = await self.session.add(request.source, save_path=request.save_path, paused=request.paused,
                                                file_priorities=priorities,
                                                peers=request.peers)
        except (TorrentError, OSError) as exc:
            return one_line(exc)
        self.refresh_data()
        self.table.move_to(torrent_id)
        return None

    async def _add_at_startup(self, request: AddRequest) -> None:
        """A torrent named on the command line that the saved session already holds is not an error:
        it keeps its saved state and gets the ``--peer`` addresses."""
        error = await self.add_torrent(request)
        if error is None:
            return
        torrent_id = torrent_id_of(request.source)
        if torrent_id is None or torrent_id not in self.session.ids():
            self.log_line(error, "error")
            self.notify(error, title="Cannot add", severity="error", timeout=15)
            return
        if request.peers:
            try:
                await self.session.add_peers(torrent_id, request.peers)
            except TorrentError as exc:
                self.log_line(str(exc), "warning")
        self.table.move_to(torrent_id)

    def action_add(self, source: str = "") -> None:
        self.push_screen(AddDialog(self.add_torrent, self.download_dir, source))

    async def action_pause_resume(self) -> None:
        rows = [self.table.rows[self.table.index[k]] for k in self.targets() if k in self.table.index]
        if not rows:
            return
        resume = all(r.state in (TorrentState.PAUSED.value, TorrentState.ERROR.value) for r in rows)
        if resume:
            await self.run_command("resume", self.session.resume)
        else:
            await self.run_command("pause", self.session.pause, [r.id for r in rows if r.state != TorrentState.PAUSED.value])

    def action_remove(self) -> None:
        ids = self.targets()
        if not ids:
            return
        names = [self.torrent_name(i) for i in ids]

        async def done(delete: bool | None) -> None:
            if delete is None:
                return
            await self.run_command("remove", lambda i: self.session.remove(i, delete_data=delete), ids)
            self.table.action_clear_selection()

        self.push_screen(ConfirmRemove(names), done)

    async def action_recheck(self) -> None:
        await self.run_command("recheck", self.session.recheck)

    async def action_announce(self) -> None:
        await self.run_command("announce", self.session.announce)

    async def action_force_start(self) -> None:
        rows = {r.id: r for r in self.table.rows}
        await self.run_command("force-start", lambda i: self.session.force_start(i, not rows[i].forced if i in rows
                                                                              else True))

    async def action_queue(self, how: str) -> None:
        await self.run_command(f"move {how} in the queue", lambda i: self.session.queue_move(i, QueueMove(how)))

    async def action_sequential(self) -> None:
        rows = {r.id: r for r in self.table.rows}
        await self.run_command("set sequential download of",
                        lambda i: self.session.set_sequential(i, not rows[i].sequential if i in rows else True))

    async def action_alt_speed(self) -> None:
        on = not self.session.snapshot().alt_speed
        try:
            await self.session.set_alt_speed(on)
        except TorrentError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.notify("Alternative speed limits " + ("on" if on else "off"))
        self.refresh_data()

    def action_move_data(self) -> None:
        ids = self.targets()
        if not ids:
            return
        current = self.table.rows[self.table.index[ids[0]]].save_path if ids[0] in self.table.index else ""

        async def submit(value: str) -> str | None:
            if not value:
                return "Give a directory."
            for torrent_id in ids:
                try:
                    await self.session.move_data(torrent_id, str(Path(value).expanduser()))
                except (TorrentError, OSError) as exc:
                    return one_line(exc)
            return None

        self.push_screen(PromptDialog("Move data", f"Move the data of {len(ids)} torrent(s) to", current, submit,
                                      paths=True))

    def action_edit_trackers(self) -> None:
        torrent_id = self.table.cursor_key
        if torrent_id is None:
            return
        try:
            current = self.session.trackers(torrent_id)
        except TorrentError:
            return
        tiers: dict[int, list[str]] = {}
        for tracker in current:
            tiers.setdefault(tracker.tier, []).append(tracker.url)

        async def submit(new_tiers: list[list[str]]) -> str | None:
            old = {t.url for t in current}
            new = {url for tier in new_tiers for url in tier}
            try:
                for url in old - new:
                    await self.session.remove_tracker(torrent_id, url)
                for tier_index, tier in enumerate(new_tiers):
                    for url in tier:
                        if url not in old:
                            await self.session.add_tracker(torrent_id, url, tier_index)
            except TorrentError as exc:
                return str(exc)
            return None

        self.push_screen(TrackersDialog([tiers[k] for k in sorted(tiers)], submit))

    def action_torrent_limits(self) -> None:
        ids = self.targets()
        if not ids:
            return self.action_global_limits()
        row = self.table.rows[self.table.index[ids[0]]] if ids[0] in self.table.index else None

        async def submit(down: str, up: str) -> str | None:
            try:
                max_down, max_up = parse_size(down), parse_size(up)
                for torrent_id in ids:
                    await self.session.set_torrent_limits(torrent_id, max_down=max_down, max_up=max_up)
            except TorrentError as exc:
                return str(exc)
            return None

        self.push_screen(LimitsDialog(f"Limits of {len(ids)} torrent(s)", row.max_down if row else 0,
                                      row.max_up if row else 0, submit))

    def action_global_limits(self) -> None:
        snap = self.session.snapshot()

        async def submit(down: str, up: str) -> str | None:
            try:
                await self.session.set_rate_limits(max_down=parse_size(down), max_up=parse_size(up))
            except TorrentError as exc:
                return str(exc)
            return None

        self.push_screen(LimitsDialog("Global limits (all torrents)", snap.max_down, snap.max_up, submit))

    def action_copy_magnet(self) -> None:
        row = self.table.cursor_row
        if row is None:
            return
        self.copy_to_clipboard(row.magnet)
        self.notify("Magnet link copied to the clipboard")

    def action_columns(self) -> None:
        table = self.table

        def done(keys: list[str] | None) -> None:
            if keys:
                table.set_columns(keys)
                self.prefs.columns = keys
                self.save_prefs()

        self.push_screen(ColumnsDialog([(c.key, c.title) for c in TORRENT_COLUMNS], table.visible_keys), done)

    def action_toggle_panel(self, panel: str) -> None:
        shown = {"detail": self.part("#detail").display, "log": self.part("#log").display,
                 "graph": self.part("#side").display}
        setattr(self.prefs, f"show_{panel}", not shown[panel])
        self._apply_layout()
        self.save_prefs()
        if panel == "detail" and self.events is not None:
            self._refresh_detail(self.clock(), self.session.snapshot())

    def action_detail_tab(self, tab: str) -> None:
        if not self.part("#detail").display:
            self.prefs.show_detail = True
            self._apply_layout()
        self.part("#detail", TabbedContent).active = tab

    @on(FilesTree.PrioritiesChanged)
    async def _priorities(self, event: FilesTree.PrioritiesChanged) -> None:
        await self.run_command("set file priorities of",
                        lambda i: self.session.set_file_priorities(i, event.priorities), [event.torrent_id])

    def on_paste(self, event: Paste) -> None:
        """A magnet link pasted anywhere (outside a text field) is added at once."""
        text = event.text.strip()
        if text.lower().startswith("magnet:"):
            self.run_worker(self._add_pasted(text), exclusive=False)

    async def _add_pasted(self, magnet: str) -> None:
        error = await self.add_torrent(AddRequest(magnet, self.download_dir, False, None))
        if error:
            self.log_line(error, "warning")
            self.notify(error, title="Cannot add the magnet link", severity="warning")

    def save_prefs(self) -> None:
        self.prefs.theme = self.theme
        self.prefs.save(self.prefs_path)

    # ---- the command palette ---------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for binding in self.BINDINGS:
            if binding.action in ("quit",):
                continue
            yield SystemCommand(binding.description, f"key: {binding.key.split(',')[0]}",
                                _action_callback(self, binding.action))
        yield SystemCommand("Select all torrents", "ctrl+a in the list", self.table.action_select_all)
        yield SystemCommand("Save the filter as a tab", "keeps the current filter as a tab above the list",
                            lambda: self.save_filter_tab(self.filter_text, self.filter_text)
                            if self.filter_text.strip() else self.notify("Type a filter first (/)"))
        for column in TORRENT_COLUMNS:
            yield SystemCommand(f"Sort by {column.title}", "shift+click a header to add a further sort key",
                                _sort_callback(self.table, column.key))

    async def action_quit(self) -> None:
        """Clean shutdown: the session saves its state and resume data before we exit."""
        if self._quitting:
            return
        self._quitting = True
        self.notify("Saving the session…", timeout=10)
        self.save_prefs()
        try:
            await asyncio.wait_for(self.session.close(), 30)
            self.session_closed = True
        except (TimeoutError, TorrentError, OSError) as exc:
            self.exit_code = 1
            self.log_line(f"closing: {exc}", "error")
        self.exit(self.exit_code)

    def on_unmount(self) -> None:
        if self._log_handler is not None:
            logging.getLogger("torrent").removeHandler(self._log_handler)
            logging.getLogger("torrent").propagate = True
            self._log_handler = None


SLOW_CODES = frozenset({"no-peers", "no-seeds", "choked", "snubbed", "peer-limit", "disk", "tracker", "rate-cap"})


class FilterCommands(Provider):
    """Typing a filter expression in the palette offers to apply it."""

    async def search(self, query: str) -> Hits:
        app = self.app
        if not isinstance(app, TorrentApp) or not query.strip():
            return
        try:
            compile_filter(query)
        except FilterError:
            return
        yield Hit(1.0, Text.assemble(("Filter: ", "bold"), query), lambda: app.set_filter(query),
                  help="show only the torrents that match")


TorrentApp.COMMANDS = App.COMMANDS | {FilterCommands}


def torrent_id_of(source: str) -> str | None:
    """The id a ``.torrent`` file or magnet link would have in the session, or None if it cannot be read."""
    try:
        if source.lower().startswith("magnet:"):
            info_hash = parse_magnet(source).info_hash
            return info_hash.hex() if info_hash is not None else None
        return metainfo.parse(metainfo.read_file(source)).info_hash_hex
    except (OSError, TorrentError):
        return None


def _action_callback(app: App, action: str) -> Callable[[], Any]:
    async def run() -> None:
        await app.run_action(action)

    return run


def _sort_callback(table: KeyedTable, key: str) -> Callable[[], None]:
    return lambda: table.sort_by(key)

