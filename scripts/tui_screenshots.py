"""Write the README's TUI screenshots (SVG, Textual's screenshot feature) from the tests' showcase session.

    .venv/bin/python scripts/tui_screenshots.py   # writes docs/tui-*.svg
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "tui")]
os.environ["TZ"] = "UTC"
time.tzset()

from fakes import NOW, fill_history, showcase_session  # noqa: E402

import tui.format  # noqa: E402
from tui.app import TorrentApp  # noqa: E402

SHOTS = (  # name, size, keys
    ("list", (120, 32), ()),
    ("peers", (120, 40), ("1",)),
    ("pieces", (120, 40), ("2",)),
    ("everything", (200, 60), ()),
)


async def shoot(name: str, size: tuple[int, int], keys: tuple[str, ...]) -> None:
    app = TorrentApp(showcase_session(), refresh_hz=0.001, clock=lambda: NOW)
    async with app.run_test(size=size) as pilot:
        fill_history(app)
        if name == "list":
            app.prefs.show_detail = False
            app._apply_layout()
        for key in keys:
            await pilot.press(key)
        app.refresh_data()
        await pilot.pause()
        out = ROOT / "docs" / f"tui-{name}.svg"
        out.write_text(app.export_screenshot(title=f"torrent tui ({size[0]}×{size[1]})"), encoding="utf-8")
        print(out.relative_to(ROOT))


def main() -> None:
    tui.format.clock = lambda: NOW
    for name, size, keys in SHOTS:
        asyncio.run(shoot(name, size, keys))


if __name__ == "__main__":
    main()
