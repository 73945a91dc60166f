"""The Info tab and the one-line summaries around the list: what the torrent is, and the session's totals."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

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
    size = f"{fmt.size(t.total_size)} ({t.total_size:,} bytes)" if t.total_size else "unknown until the metadata arrives"
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
        rows.insert(0, ("Error", Text(t.last_error, style="bold red")))
    for key, value in rows:
        table.add_row(key, value)
    return table


def status_text(s: SessionSnapshot, dht_nodes: int | None = None) -> Text:
    """The footer's totals: rates and limits, connections, listen ports, free space."""
    text = Text()
    text.append(f"↓ {fmt.rate(s.down_rate) or '0 B/s'}", style="bold")
    if s.max_down:
        text.append(f" (max {fmt.rate(s.max_down)})", style="dim")
    text.append(f"  ↑ {fmt.rate(s.up_rate) or '0 B/s'}", style="bold")
    if s.max_up:
        text.append(f" (max {fmt.rate(s.max_up)})", style="dim")
    if s.alt_speed:
        text.append("  [alt speed]", style="bold yellow")
    text.append(f"  │ {s.torrents} torrents, {s.connections} peers")
    ports = sorted({a.rsplit(":", 1)[1] for a in s.listen_addresses})
    text.append(f"  │ port {','.join(ports) if ports else 'none'}")
    if dht_nodes is not None:
        text.append(f"  │ DHT {dht_nodes} nodes")
    for directory, free in s.free_space[:2]:
        text.append(f"  │ free {fmt.size(free)}", style="dim")
    return text
