"""Modal dialogs: add a torrent, confirm a removal, ask for a value, edit trackers, choose columns.

A dialog that acts on the session gets an async ``submit`` callback that
returns an error message or None: a bad path, a malformed torrent or a
duplicate shows in the dialog, which stays open for a correction.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, Checkbox, Input, Label, SelectionList, Static, TextArea
from textual.widgets.selection_list import Selection

from torrent.codec import metainfo
from torrent.core.errors import TorrentError
from torrent.core.text import printable
from tui import format as fmt

Submit = Callable[..., Awaitable[str | None]]


class PathSuggester(Suggester):
    """Completes the last path component from the directory's entries (directories get a trailing /)."""

    def __init__(self, suffixes: tuple[str, ...] = ()) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.suffixes = suffixes

    async def get_suggestion(self, value: str) -> str | None:
        if not value or value.lower().startswith("magnet:"):
            return None
        expanded = os.path.expanduser(value)
        directory, prefix = os.path.split(expanded)
        try:
            entries = sorted(os.scandir(directory or "."), key=lambda e: e.name)
        except OSError:
            return None
        for entry in entries:
            if not entry.name.startswith(prefix) or entry.name == prefix or entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if not is_dir and self.suffixes and not entry.name.endswith(self.suffixes):
                continue
            return value + entry.name[len(prefix):] + ("/" if is_dir else "")
        return None


@dataclass(frozen=True)
class AddRequest:
    source: str  # a path or a magnet link
    save_path: str
    paused: bool
    priorities: tuple[bool, ...] | None  # wanted per file, None: all
    peers: tuple[tuple[str, int], ...] = ()  # dialled as well as the trackers' (--peer)


class Dialog(ModalScreen):
    """The frame every dialog shares: a title, the subclass's ``body``, an error line, the buttons, and
    escape or Cancel to close. ``finish`` hands the result to ``submit`` and closes only when it took it."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    title_text = ""
    frame_classes = "dialog"
    buttons: tuple[tuple[str, str, str], ...] = (("OK", "primary", "ok"),)  # label, variant, id; Cancel follows

    def __init__(self, submit: Submit | None = None) -> None:
        super().__init__()
        self.submit = submit

    def body(self) -> ComposeResult:
        yield from ()

    def compose(self) -> ComposeResult:
        with Vertical(classes=self.frame_classes):
            yield Label(Text(self.title_text), classes="dialog-title")  # may hold a torrent's name: no markup
            yield from self.body()
            yield Static("", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                for label, variant, button_id in self.buttons:
                    yield Button(label, variant=variant, id=button_id)  # type: ignore[arg-type]
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.show_error(None)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    def show_error(self, message: str | None) -> None:
        error = self.query_one(".dialog-error", Static)
        error.update(Text(printable(message or "")))  # errors quote paths and torrents: no markup, no controls
        error.display = bool(message)

    async def finish(self, result: Any, *args: Any) -> None:
        """``submit(*args)`` (the result itself when no args); close with ``result`` unless it gave an error."""
        assert self.submit is not None
        error = await self.submit(*(args or (result,)))
        if error:
            self.show_error(error)
        else:
            self.dismiss(result)


class AddDialog(Dialog):
    """Path (with completion) or magnet, where to save, paused or not; then which files, for a multi-file torrent."""

    title_text = "Add a torrent"
    buttons = (("Add", "primary", "add"),)

    def __init__(self, submit: Submit, save_path: str, source: str = "") -> None:
        super().__init__(submit)
        self.default_save = save_path
        self.initial = source
        self.meta: metainfo.Metainfo | None = None
        self.meta_source = ""

    def body(self) -> ComposeResult:
        yield Label("Torrent file or magnet link (→ completes the path)")
        yield Input(self.initial, placeholder="~/Downloads/file.torrent or magnet:?xt=urn:btih:…",
                    suggester=PathSuggester((".torrent",)), id="source")
        yield Label("Save to")
        yield Input(self.default_save, suggester=PathSuggester(), id="save")
        yield Checkbox("Start paused", id="paused")
        yield SelectionList[int](id="files")

    def on_mount(self) -> None:
        self.query_one("#files").display = False
        super().on_mount()

    @on(Input.Submitted)
    @on(Button.Pressed, "#add")
    async def _add(self) -> None:
        source = self.query_one("#source", Input).value.strip()
        save = self.query_one("#save", Input).value.strip() or self.default_save
        if not source:
            self.show_error("Give a .torrent file or a magnet link.")
            return
        files = self.query_one("#files", SelectionList)
        if not source.lower().startswith("magnet:") and (self.meta is None or self.meta_source != source):
            try:
                self.meta = metainfo.parse(metainfo.read_file(os.path.expanduser(source)))
            except (OSError, TorrentError) as exc:
                self.meta = None
                self.show_error(one_line(exc))
                return
            self.meta_source = source
            shown = [(i, f) for i, f in enumerate(self.meta.files) if not f.is_padding]
            if len(shown) > 1:  # choose the files first
                files.clear_options()
                files.add_options([Selection(Text(f"{fmt.size(f.length):>10}  {printable(f.display_path)}"), i, True)
                                   for i, f in shown])
                files.display = True
                files.border_title = "Files to download (space toggles)"
                self.show_error(None)
                files.focus()
                return
        priorities = None
        if self.meta is not None and files.display:
            chosen = set(files.selected)
            if not chosen:
                self.show_error("Choose at least one file.")
                return
            priorities = tuple(i in chosen for i in range(len(self.meta.files)))
        await self.finish(AddRequest(source if source.lower().startswith("magnet:") else os.path.expanduser(source),
                                     os.path.expanduser(save), self.query_one("#paused", Checkbox).value,
                                     priorities))


class ConfirmRemove(Dialog):
    """Dismisses with None (cancel), False (keep the data) or True (delete the data too)."""

    BINDINGS = [Binding("escape,n", "cancel", "Cancel"), Binding("y", "remove(False)", "Remove"),
                Binding("D", "remove(True)", "Remove with data")]
    buttons = (("Remove", "warning", "keep"), ("Remove and delete data", "error", "delete"))

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__()
        self.names = [printable(n) for n in names]  # shown as Text (no markup)
        what = self.names[0] if len(self.names) == 1 else f"{len(self.names)} torrents"
        self.title_text = f"Remove {what}?"

    def body(self) -> ComposeResult:
        if len(self.names) > 1:
            yield Static(Text("\n".join(f"  {n}" for n in self.names[:8]) + ("\n  …" if len(self.names) > 8 else "")))
        yield Static("Removing keeps the downloaded files unless you choose to delete them.")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#cancel", Button).focus()

    def action_remove(self, delete: bool) -> None:
        self.dismiss(delete)

    @on(Button.Pressed, "#keep, #delete")
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "delete")


class PromptDialog(Dialog):
    """One value; ``submit(value)`` returns an error or None."""

    def __init__(self, title: str, label: str, value: str, submit: Submit, *, paths: bool = False) -> None:
        super().__init__(submit)
        self.title_text, self.label, self.value, self.paths = title, label, value, paths

    def body(self) -> ComposeResult:
        yield Label(self.label)
        yield Input(self.value, suggester=PathSuggester() if self.paths else None, id="value")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    async def _ok(self) -> None:
        await self.finish(self.query_one("#value", Input).value.strip())


class LimitsDialog(Dialog):
    """Download and upload limits (with units; 0 or empty for none)."""

    def __init__(self, title: str, down: int, up: int, submit: Submit) -> None:
        super().__init__(submit)
        self.title_text, self.down, self.up = title, down, up

    def body(self) -> ComposeResult:
        yield Label("Download limit per second (e.g. 2M, 500K; 0 = none)")
        yield Input(_limit_text(self.down), id="down")
        yield Label("Upload limit per second")
        yield Input(_limit_text(self.up), id="up")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    async def _ok(self) -> None:
        down = self.query_one("#down", Input).value.strip() or "0"
        up = self.query_one("#up", Input).value.strip() or "0"
        await self.finish((down, up), down, up)


def _limit_text(value: int) -> str:
    if not value:
        return "0"
    for unit, size in (("M", 1 << 20), ("K", 1 << 10)):
        if value % size == 0:
            return f"{value // size}{unit}"
    return str(value)


class TrackersDialog(Dialog):
    """One announce URL per line; an empty line starts the next tier."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "save", "Save")]
    title_text = "Edit trackers"
    frame_classes = "dialog dialog-wide"
    buttons = (("Save", "primary", "ok"),)

    def __init__(self, tiers: Sequence[Sequence[str]], submit: Submit) -> None:
        super().__init__(submit)
        # A URL with control characters is shown escaped; saved unchanged, it stays the URL it was.
        self.originals = {printable(url): url for tier in tiers for url in tier}
        self.text = "\n\n".join("\n".join(printable(url) for url in tier) for tier in tiers)

    def body(self) -> ComposeResult:
        yield Label("One URL per line; an empty line starts the next tier. Ctrl+S saves.")
        yield TextArea(self.text, id="trackers", soft_wrap=False)

    @on(Button.Pressed, "#ok")
    async def action_save(self) -> None:
        tiers = parse_tiers(self.query_one("#trackers", TextArea).text)
        await self.finish([[self.originals.get(url, url) for url in tier] for tier in tiers])


def parse_tiers(text: str) -> list[list[str]]:
    tiers: list[list[str]] = [[]]
    for line in text.splitlines():
        url = line.strip()
        if url:
            tiers[-1].append(url)
        elif tiers[-1]:
            tiers.append([])
    return [t for t in tiers if t]


class ColumnsDialog(Dialog):
    """Which columns the torrent list shows (remembered)."""

    title_text = "Columns"

    def __init__(self, choices: Sequence[tuple[str, str]], shown: Sequence[str]) -> None:
        super().__init__()
        self.choices = choices
        self.shown = set(shown)

    def body(self) -> ComposeResult:
        yield SelectionList[str](*[Selection(title, key, key in self.shown) for key, title in self.choices],
                                 id="columns")

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        chosen = self.query_one("#columns", SelectionList).selected
        if "name" not in chosen:
            self.show_error("The name column is always shown.")
            chosen = ["name", *chosen]
        self.dismiss([key for key, _ in self.choices if key in chosen])


def one_line(exc: BaseException) -> str:
    """An error as one printable line (control characters from a torrent or a path escaped)."""
    if isinstance(exc, OSError) and exc.strerror:
        return printable(f"cannot read {exc.filename}: {exc.strerror}" if exc.filename else exc.strerror)
    return printable(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
