"""What the TUI remembers between runs that is not the engine's: columns, sort, filter tabs, panels, theme.

Kept as ``tui.json`` beside the saved session (the state directory), written
atomically when something changes. A damaged file is set aside by reading
defaults: preferences are never worth refusing to start over.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tui.columns import DEFAULT_TORRENT_COLUMNS, DEFAULT_TORRENT_SORT

DEFAULT_TABS: tuple[tuple[str, str], ...] = (
    ("All", ""),
    ("Active", "state:active"),
    ("Downloading", "state:downloading"),
    ("Seeding", "state:seeding"),
    ("Paused", "state:paused"),
    ("Errors", "state:error | error:yes"),
)


@dataclass
class Prefs:
    columns: list[str] = field(default_factory=lambda: list(DEFAULT_TORRENT_COLUMNS))
    sort: list[list[Any]] = field(default_factory=lambda: [list(s) for s in DEFAULT_TORRENT_SORT])
    tabs: list[list[str]] = field(default_factory=lambda: [list(t) for t in DEFAULT_TABS])
    show_detail: bool | None = None  # None: by terminal size
    show_log: bool | None = None
    show_graph: bool | None = None
    detail_tab: str = "peers"
    theme: str | None = None

    @classmethod
    def load(cls, path: Path | None) -> Prefs:
        if path is None or not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        known = {f.name: f for f in fields(cls)}
        prefs = cls()
        defaults = asdict(prefs)
        for key, value in data.items():
            if key in known and (value is None or isinstance(value, type(defaults[key])) or defaults[key] is None):
                setattr(prefs, key, value)
        if not all(isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) for x in t) for t in prefs.tabs):
            prefs.tabs = [list(t) for t in DEFAULT_TABS]
        if not all(isinstance(s, list) and len(s) == 2 for s in prefs.sort):
            prefs.sort = [list(s) for s in DEFAULT_TORRENT_SORT]
        return prefs

    def save(self, path: Path | None) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tui-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(asdict(self), out, indent=2)
            os.replace(tmp, path)
        except OSError:
            Path(tmp).unlink(missing_ok=True)
