"""The Files tab: the torrent's files as a tree, with progress and priority, and keys to change priorities.

The tree is built once per torrent and its labels are updated in place each
refresh, so the cursor and the folded directories stay as the user left them.
A priority change is posted as a message: the app sends it to the session.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from torrent.core.text import printable
from torrent.session import FilePriority, FileSnapshot
from tui import format as fmt
from tui.view import TorrentView

RAISE = {FilePriority.SKIP.value: FilePriority.NORMAL.value, FilePriority.NORMAL.value: FilePriority.HIGH.value,
         FilePriority.HIGH.value: FilePriority.HIGH.value}
LOWER = {FilePriority.HIGH.value: FilePriority.NORMAL.value, FilePriority.NORMAL.value: FilePriority.SKIP.value,
         FilePriority.SKIP.value: FilePriority.SKIP.value}
MARK = {FilePriority.SKIP.value: ("✗ skip", "red"), FilePriority.NORMAL.value: ("  normal", ""),
        FilePriority.HIGH.value: ("▲ high", "bold")}


class FilesTree(Tree[int | None]):
    """Leaves carry the file index; directories carry None."""

    BINDINGS = [
        Binding("space", "toggle_skip", "Skip/unskip"),
        Binding("plus,equals_sign", "raise_priority", "Raise priority"),
        Binding("minus", "lower_priority", "Lower priority"),
    ]

    class PrioritiesChanged(Message):
        def __init__(self, torrent_id: str, priorities: dict[int, str]) -> None:
            super().__init__()
            self.torrent_id = torrent_id
            self.priorities = priorities

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("files", id=id)
        self.show_root = False
        self.guide_depth = 3
        self.torrent_id: str | None = None
        self.files: dict[int, FileSnapshot] = {}
        self.leaves: dict[int, TreeNode[int | None]] = {}
        self.dirs: dict[str, TreeNode[int | None]] = {}
        self.labels: dict[int, Text] = {}

    def show(self, view: TorrentView) -> None:
        files = [f for f in view.files if not f.padding]
        if view.torrent.id != self.torrent_id or len(files) != len(self.files):
            self._rebuild(view.torrent.id, files)
        for f in files:
            self.files[f.index] = f
            label = _file_label(f)
            if self.labels.get(f.index) != label:
                self.labels[f.index] = label
                self.leaves[f.index].set_label(label)
        for path, node in self.dirs.items():
            node.set_label(self._dir_label(path))

    def _rebuild(self, torrent_id: str, files: Sequence[FileSnapshot]) -> None:
        self.clear()
        self.torrent_id = torrent_id
        self.files = {f.index: f for f in files}
        self.leaves, self.dirs, self.labels = {}, {}, {}
        if not files:
            self.root.add_leaf(Text("no files yet: the metadata is not known", style="dim"), None)
            return
        for f in files:
            parts = f.path.split("/")
            parent = self.root
            for depth in range(1, len(parts)):
                key = "/".join(parts[:depth])
                if key not in self.dirs:
                    self.dirs[key] = parent.add(Text(printable(parts[depth - 1])), None, expand=True)
                parent = self.dirs[key]
            self.leaves[f.index] = parent.add_leaf(Text(printable(parts[-1])), f.index)  # Text: no markup

    def _files_under(self, node: TreeNode[int | None]) -> list[int]:
        if node.data is not None:
            return [node.data]
        out: list[int] = []
        for child in node.children:
            out += self._files_under(child)
        return out

    def _dir_label(self, path: str) -> Text:
        indexes = [i for i, f in self.files.items() if f.path.startswith(path + "/")]
        size = sum(self.files[i].size for i in indexes)
        verified = sum(self.files[i].verified for i in indexes)
        fraction = verified / size if size else 1.0
        text = Text(printable(path.rsplit("/", 1)[-1]) + "/", style="bold")
        text.append(f"  {fmt.size(size)}  {fmt.percent(fraction)}", style="dim")
        return text

    def _change(self, table: dict[str, str] | None) -> None:
        node = self.cursor_node
        if node is None or self.torrent_id is None:
            return
        indexes = self._files_under(node)
        if not indexes:
            return
        if table is None:  # toggle: skip all unless all are skipped already
            skipped = all(self.files[i].priority == FilePriority.SKIP.value for i in indexes)
            new = {i: FilePriority.NORMAL.value if skipped else FilePriority.SKIP.value for i in indexes}
        else:
            new = {i: table[self.files[i].priority] for i in indexes}
        changed = {i: p for i, p in new.items() if p != self.files[i].priority}
        if changed:
            for i, p in changed.items():
                self.files[i] = self.files[i]._replace(priority=p)
                self.labels[i] = _file_label(self.files[i])
                self.leaves[i].set_label(self.labels[i])
            self.post_message(self.PrioritiesChanged(self.torrent_id, changed))

    def action_toggle_skip(self) -> None:
        self._change(None)

    def action_raise_priority(self) -> None:
        self._change(RAISE)

    def action_lower_priority(self) -> None:
        self._change(LOWER)


def _file_label(f: FileSnapshot) -> Text:
    name = f.path.rsplit("/", 1)[-1]
    mark, style = MARK.get(f.priority, (f.priority, ""))
    text = Text(printable(name), style="dim strike" if f.priority == FilePriority.SKIP.value else "")
    text.append(f"  {fmt.size(f.size)}  ", style="dim")
    text.append(fmt.bar(f.progress, 10), style="green" if f.progress >= 1 else "cyan")
    text.append(f" {fmt.percent(f.progress):>6}  ")
    text.append(mark, style=style)
    return text
