"""The footer's totals (``status_text``): the discovery figures it shows, and what it gives up, least important
first, when the terminal is narrow; the app redraws it for the new width when the terminal is resized."""

from __future__ import annotations

import pytest
from fakes import FakeSession, MiB, make_session_snapshot, make_torrent

from tui.app import TorrentApp
from tui.widgets.info import status_text

FULL = make_session_snapshot(down_rate=15.8 * MiB, up_rate=3.9 * MiB, max_up=4 * MiB, torrents=8, connections=52,
                             dht_nodes=312, port_mapping="mapped by upnp", external_address="203.0.113.7:6881")
WHOLE = ("↓ 15.8 MiB/s  ↑ 3.9 MiB/s (max 4.0 MiB/s)  │ 8 torrents, 52 peers  │ DHT 312  │ port 6881 → "
         "203.0.113.7:6881  │ free 120 GiB")


def test_everything_when_there_is_room() -> None:
    assert status_text(FULL).plain == WHOLE
    assert status_text(FULL, len(WHOLE)).plain == WHOLE


def test_the_dht_off_and_without_nodes() -> None:
    off = status_text(make_session_snapshot(dht_nodes=None)).plain
    assert "│ DHT off  │ port 6881  │" in off
    empty = status_text(make_session_snapshot(dht_nodes=0))
    assert "│ DHT 0  │" in empty.plain
    assert any(span.style == "yellow" for span in empty.spans)  # no node to search with: it stands out
    assert "DHT 12,345" in status_text(make_session_snapshot(dht_nodes=12345)).plain


def test_the_external_address_only_when_mapped() -> None:
    for mapping in ("off", "mapping", "failed: no UPnP or NAT-PMP gateway answered"):
        line = status_text(make_session_snapshot(port_mapping=mapping, external_address=None)).plain
        assert "│ port 6881  │" in line and "→" not in line


@pytest.mark.parametrize("width,expected", [
    (118, "↓ 15.8 MiB/s  ↑ 3.9 MiB/s (max 4.0 MiB/s)  │ 8 torrents, 52 peers  │ DHT 312  │ port 6881 → "
          "203.0.113.7:6881"),
    (100, "↓ 15.8 MiB/s  ↑ 3.9 MiB/s (max 4.0 MiB/s)  │ 8 torrents, 52 peers  │ DHT 312  │ port 6881"),
    (78, "↓ 15.8 MiB/s  ↑ 3.9 MiB/s (max 4.0 MiB/s)  │ 8 torrents, 52 peers  │ DHT 312"),
    (60, "↓ 15.8 MiB/s  ↑ 3.9 MiB/s  │ 8 torrents, 52 peers  │ DHT 312"),
    (40, "↓ 15.8 MiB/s  ↑ 3.9 MiB/s  │ DHT 312"),
    (10, "↓ 15.8 MiB/s  ↑ 3.9 MiB/s"),  # the rates stay, clipped by the screen if they must be
])
def test_narrow_widths_drop_the_least_important_parts(width: int, expected: str) -> None:
    """Free space goes first, then the router's address, the port, the limits, the counts; the DHT count
    outlasts all but the rates."""
    line = status_text(FULL, width).plain
    assert line == expected
    assert len(line) <= width or width == 10


def test_the_address_never_shows_without_its_port() -> None:
    two_ports = FULL._replace(listen_addresses=("0.0.0.0:6881", "[::]:51413"), free_space=())
    without = "↓ 15.8 MiB/s  ↑ 3.9 MiB/s (max 4.0 MiB/s)  │ 8 torrents, 52 peers  │ DHT 312  │ port 51413,6881"
    assert status_text(two_ports, len(without) + 5).plain == without  # " → 203.0.113.7:6881" is 19 more
    assert "→" not in status_text(two_ports, len(without) - 1).plain  # no port, no address after nothing


@pytest.mark.asyncio
async def test_the_app_fits_the_footer_to_the_terminal_and_a_resize() -> None:
    session = FakeSession((make_torrent(),), session=FULL)
    app = TorrentApp(session, refresh_hz=0.001)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        shown = str(app.query_one("#status").render())
        assert shown == "↓ 15.8 MiB/s  ↑ 3.9 MiB/s (max 4.0 MiB/s)  │ 8 torrents, 52 peers  │ DHT 312"
        await pilot.resize_terminal(200, 60)
        await pilot.pause()
        assert str(app.query_one("#status").render()) == WHOLE


def test_the_blocklist_when_one_is_set() -> None:
    assert "blocked" not in status_text(FULL).plain and "blocklist" not in status_text(FULL).plain
    loaded = status_text(make_session_snapshot(blocklist="512,301 ranges", blocked=1234)).plain
    assert "│ port 6881  │ 1,234 blocked  │ free" in loaded
    assert "│ blocklist loading" in status_text(make_session_snapshot(blocklist="loading /etc/ipfilter.dat")).plain
    failed = status_text(FULL._replace(blocklist="failed: /x.dat: no valid line"), 80)
    assert "│ blocklist failed" in failed.plain  # it outlasts the port and the limits at 80 columns
    assert "port" not in failed.plain and any(span.style == "bold red" for span in failed.spans)
