"""The Info tab and the one-line summaries around the list: what the torrent is, and the session's totals."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from torrent.core.text import printable
from torrent.session import SessionSnapshot, TorrentSnapshot
from tui import format as fmt
from tui.view import TorrentView


class InfoPanel(Static):
    """Identity and history of the selected torrent (``c`` copies its magnet link)."""

    def show(self, view: TorrentView) -> None:
        self.update(info_table(view.torrent))


def info_table(t: TorrentSnapshot) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    size = (f"{fmt.size(t.total_size)} ({t.total_size:,} bytes)" if t.total_size
            else "unknown until the metadata arrives")
    rows = [
        ("Name", t.name),
        ("Info-hash", t.id),
        ("Magnet", t.magnet),
        ("Size", size),
        ("Selected", f"{fmt.size(t.wanted_size)} in the files chosen"),
        ("Pieces", f"{t.num_pieces:,} × {fmt.size(t.piece_length)}" if t.num_pieces else "-"),
        ("Save path", t.save_path),
        ("Private", "yes" if t.private else "no"),
        ("Created", " ".join(x for x in (fmt.date(t.creation_date) if t.creation_date else "",
                                         f"by {t.created_by}" if t.created_by else "") if x) or "-"),
        ("Comment", t.comment or "-"),
        ("Added", fmt.date(t.added_at)),
        ("Completed", fmt.date(t.completed_at)),
        ("Downloaded", f"{fmt.size(t.downloaded)} (wasted {fmt.size(t.wasted)} this run)"),
        ("Uploaded", f"{fmt.size(t.uploaded)} (ratio {fmt.ratio(t.ratio)})"),
        ("Seeding time", fmt.duration(t.seeding_time)),
        ("Hash failures", f"{t.hash_failures} (peers banned: {t.banned})"),
        ("Limits", f"down {fmt.rate(t.max_down) or 'none'}, up {fmt.rate(t.max_up) or 'none'}, "
                   f"{t.max_peers} peers, {t.upload_slots} upload slots"),
        ("Options", ", ".join(name for name, on in (("sequential", t.sequential), ("first and last pieces first",
                                                                                   t.first_last),
                                                    ("force-started", t.forced)) if on) or "-"),
    ]
    if t.last_error:
        rows.insert(0, ("Error", Text(printable(t.last_error), style="bold red")))
    for key, value in rows:  # a str cell would be read as Rich markup: names and comments go in as Text
        table.add_row(key, value if isinstance(value, Text) else Text(printable(value)))
    return table


# What the footer gives up first when the terminal is too narrow for all of it (higher goes first): free
# space, the router's address for us, the blocklist's count, the listen port, the rate limits, the DHT, the
# counts; never the rates (nor a blocklist that failed to load: it ranks with the counts).
_DROP_FREE, _DROP_EXTERNAL, _DROP_FILTER, _DROP_PORT, _DROP_LIMITS, _DROP_DHT, _DROP_COUNTS, _KEEP = (
    8, 7, 6, 5, 4, 3, 2, 0)


def status_text(s: SessionSnapshot, width: int | None = None) -> Text:
    """The footer's totals: rates and limits, connections, the DHT, listen ports (and the address the router
    maps them to), the blocklist, free space. Parts are dropped, least important first, until the line fits
    ``width``."""
    parts: list[tuple[int, Text]] = [(_KEEP, Text(f"↓ {fmt.rate(s.down_rate) or '0 B/s'}", style="bold"))]
    if s.max_down:
        parts.append((_DROP_LIMITS, Text(f" (max {fmt.rate(s.max_down)})", style="dim")))
    parts.append((_KEEP, Text(f"  ↑ {fmt.rate(s.up_rate) or '0 B/s'}", style="bold")))
    if s.max_up:
        parts.append((_DROP_LIMITS, Text(f" (max {fmt.rate(s.max_up)})", style="dim")))
    if s.alt_speed:
        parts.append((_DROP_COUNTS, Text("  [alt speed]", style="bold yellow")))
    parts.append((_DROP_COUNTS, Text(f"  │ {s.torrents} torrents, {s.connections} peers")))
    if s.dht_nodes is None:
        parts.append((_DROP_DHT, Text("  │ DHT off", style="dim")))
    else:  # no node yet: nothing to find peers with but trackers
        parts.append((_DROP_DHT, Text(f"  │ DHT {s.dht_nodes:,}", style="" if s.dht_nodes else "yellow")))
    ports = sorted({a.rsplit(":", 1)[1] for a in s.listen_addresses})
    parts.append((_DROP_PORT, Text(f"  │ port {','.join(ports) if ports else 'none'}")))
    if s.external_address:
        parts.append((_DROP_EXTERNAL, Text(f" → {s.external_address}")))
    if s.blocklist.startswith("failed"):
        parts.append((_DROP_COUNTS, Text("  │ blocklist failed", style="bold red")))
    elif s.blocklist != "off":
        parts.append((_DROP_FILTER, Text(f"  │ {s.blocked:,} blocked" if s.blocklist[0].isdigit()
                                         else "  │ blocklist loading", style="dim")))
    for _directory, free in s.free_space[:2]:
        parts.append((_DROP_FREE, Text(f"  │ free {fmt.size(free)}", style="dim")))
    if width is None:
        return Text("").join(p for _, p in parts)
    # The most important parts first, each while it still fits (a short one may fit where a longer one did
    # not); the router's address only beside its port.
    kept: set[int] = set()
    room = width
    for i in sorted(range(len(parts)), key=lambda i: (parts[i][0], i)):
        rank, part = parts[i]
        if rank == _DROP_EXTERNAL and i - 1 not in kept:
            continue
        if rank == _KEEP or len(part) <= room:
            kept.add(i)
            room -= len(part)
    return Text("").join(p for i, (_, p) in enumerate(parts) if i in kept)
