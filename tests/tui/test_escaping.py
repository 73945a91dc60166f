"""Text from torrents, trackers and peers on screen: control characters shown escaped, Rich markup shown as
written (a name such as "[red]x[/red]" or "[link=…]" is not interpreted)."""

from __future__ import annotations

import pytest
from fakes import FakeSession, make_file, make_peer, make_torrent, make_tracker
from rich.console import Console
from textual.geometry import Region
from textual.widget import Widget

from tui.app import TorrentApp
from tui.widgets.info import InfoPanel, info_table
from tui.widgets.table import KeyedTable

pytestmark = [pytest.mark.timeout(60)]

HOSTILE = "\x1b]0;pwned\x07|\x1b[2J|\r|\x9b|[red]x[/red]|[link=http://evil/]y[/link]"
SHOWN = "\\x1b]0;pwned\\x07|\\x1b[2J|\\x0d|\\x9b|[red]x[/red]|[link=http://evil/]y[/link]"
RAW = ("\x1b", "\x07", "\r", "\x9b")
NO_SLASH = "\x1b[2J|\r|\x9b|[bold red]x"  # a file path splits at "/"; markup would swallow the tag
NO_SLASH_SHOWN = "\\x1b[2J|\\x0d|\\x9b|[bold red]x"
A = "a" * 40


def hostile_session() -> FakeSession:
    torrent = make_torrent(id=A, name="n" + HOSTILE, comment="c" + HOSTILE, created_by="b" + HOSTILE,
                           last_error="e" + HOSTILE, save_path="/tmp/s" + HOSTILE)
    return FakeSession((torrent,), peers={A: (make_peer(client="p" + HOSTILE),)},
                       files={A: (make_file(index=0, path=f"d{NO_SLASH}/f{NO_SLASH}"),)},
                       trackers={A: (make_tracker(url="http://t/" + HOSTILE, last_error="t" + HOSTILE),)})


def screen_text(widget: Widget) -> str:
    """What the widget draws, as the terminal would get it (segment texts, no styles)."""
    strips = widget.render_lines(Region(0, 0, widget.size.width, widget.size.height))
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


def assert_safe(text: str, *expected: str) -> None:
    assert not any(c in text for c in RAW), repr(text)
    for value in expected:
        assert value in text, (value, text)


def test_info_table_has_no_markup_and_no_controls() -> None:
    console = Console(width=400, color_system=None, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(info_table(hostile_session().torrent(A)))
    text = console.export_text()
    assert_safe(text, "n" + SHOWN, "c" + SHOWN, "by b" + SHOWN, "e" + SHOWN)
    assert "[red]x[/red]" in text and "[link=http://evil/]y[/link]" in text  # shown, not interpreted


@pytest.mark.asyncio
async def test_list_tabs_and_info_panel_show_escaped_text() -> None:
    app = TorrentApp(hostile_session(), refresh_hz=20)
    async with app.run_test(size=(400, 60)) as pilot:
        await pilot.pause()
        assert_safe(screen_text(app.query_one("#torrents", KeyedTable)), "n" + SHOWN)
        assert_safe(screen_text(app.query_one("#why")), "n" + SHOWN)
        for key, selector, expected in (("1", "#peer-table", "p\\x1b]0;pwned"),
                                        ("5", "#tracker-table", "http://t/" + SHOWN),
                                        ("6", "#info-panel", "c" + SHOWN)):
            await pilot.press(key)
            await pilot.pause()
            app.refresh_data()
            await pilot.pause()
            assert_safe(screen_text(app.query_one(selector)), expected)
        info = screen_text(app.query_one("#info-panel", InfoPanel))
        assert "[red]x[/red]" in info and "[link=http://evil/]y[/link]" in info
        await pilot.press("4")
        await pilot.pause()
        app.refresh_data()
        await pilot.pause()
        assert_safe(screen_text(app.query_one("#file-tree")), "d" + NO_SLASH_SHOWN, "f" + NO_SLASH_SHOWN)


@pytest.mark.asyncio
async def test_tracker_dialog_shows_urls_escaped_and_saves_them_unchanged() -> None:
    """The tracker editor shows a hostile URL escaped; saved untouched, the URL is the one it was (nothing
    removed, nothing added), and a URL the user types is taken as typed."""
    from textual.widgets import TextArea

    session = hostile_session()
    app = TorrentApp(session, refresh_hz=20)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        await pilot.press("t")
        await pilot.pause()
        area = app.screen.query_one("#trackers", TextArea)
        assert_safe(area.text, "http://t/" + SHOWN)
        assert_safe(screen_text(area), "http://t/\\x1b]0;pwned")
        area.text += "\nhttp://new.example/announce"
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert [c for c in session.calls if "tracker" in c[0]] == [
        ("add_tracker", A, "http://new.example/announce", 0)]
