"""The columns of the torrent list, the peers tab and the trackers tab.

Each column says how to draw a snapshot row's cell, how to sort it, and how
much it matters when the terminal is narrow (priority 0 never goes).
"""

from __future__ import annotations

from operator import attrgetter

from torrent.session import PeerSnapshot, TorrentSnapshot, TorrentState, TrackerSnapshot
from tui import format as fmt
from tui.widgets.table import Column

STATE_TONES = {
    TorrentState.DOWNLOADING.value: "accent", TorrentState.SEEDING.value: "good", TorrentState.PAUSED.value: "muted",
    TorrentState.QUEUED.value: "muted", TorrentState.CHECKING.value: "warn", TorrentState.METADATA.value: "warn",
    TorrentState.ERROR.value: "bad",
}


def _state(t: TorrentSnapshot) -> tuple[str, str]:
    text = t.state
    if t.state == TorrentState.CHECKING.value and t.checking_progress is not None:
        text = f"checking {t.checking_progress * 100:.0f}%"
    elif t.forced and t.state in (TorrentState.DOWNLOADING.value, TorrentState.SEEDING.value):
        text = f"{t.state} [F]"
    return text, STATE_TONES.get(t.state, "")


def _progress(t: TorrentSnapshot) -> tuple[str, str]:
    label = fmt.percent(t.progress).rjust(6)
    return fmt.bar(t.progress, 8) + label, "good" if t.progress >= 1 else "accent"


def _ratio(t: TorrentSnapshot) -> tuple[str, str]:
    return fmt.ratio(t.ratio), "good" if t.ratio >= 1 else ""


def _eta(t: TorrentSnapshot) -> str:
    if t.state != TorrentState.DOWNLOADING.value:
        return ""
    return fmt.eta(t.eta)


def _eta_sort(t: TorrentSnapshot) -> float | None:
    return t.eta if t.state == TorrentState.DOWNLOADING.value else None


TORRENT_COLUMNS: tuple[Column, ...] = (
    Column("queue", "#", 4, lambda t: str(t.queue_position + 1), attrgetter("queue_position"), "right", priority=9),
    Column("name", "Name", 20, attrgetter("name"), lambda t: t.name.lower(), flex=True, priority=0),
    Column("size", "Size", 9, lambda t: fmt.size(t.wanted_size) if t.total_size else "?",
           attrgetter("wanted_size"), "right", priority=6, descending_first=True),
    Column("progress", "Progress", 14, _progress, attrgetter("progress"), priority=0),
    Column("state", "State", 12, _state, attrgetter("state"), priority=0),
    Column("down", "Down", 10, lambda t: fmt.rate(t.down_rate), attrgetter("down_rate"), "right", priority=1,
           descending_first=True),
    Column("up", "Up", 10, lambda t: fmt.rate(t.up_rate), attrgetter("up_rate"), "right", priority=1,
           descending_first=True),
    Column("peers", "Peers", 7, lambda t: fmt.peers(t.peers, t.peers_known), attrgetter("peers"), "right",
           priority=4, descending_first=True),
    Column("seeds", "Seeds", 7, lambda t: fmt.peers(t.seeds, t.seeds_known), attrgetter("seeds"), "right",
           priority=4, descending_first=True),
    Column("ratio", "Ratio", 6, _ratio, attrgetter("ratio"), "right", priority=5, descending_first=True),
    Column("eta", "ETA", 8, _eta, _eta_sort, "right", priority=3, nullable=True),
    Column("downloaded", "Down'd", 9, lambda t: fmt.size(t.downloaded), attrgetter("downloaded"), "right",
           priority=8, descending_first=True),
    Column("uploaded", "Up'd", 9, lambda t: fmt.size(t.uploaded), attrgetter("uploaded"), "right", priority=8,
           descending_first=True),
    Column("added", "Added", 16, lambda t: fmt.date(t.added_at), attrgetter("added_at"), priority=8,
           descending_first=True),
    Column("path", "Save path", 20, attrgetter("save_path"), attrgetter("save_path"), priority=9),
)
DEFAULT_TORRENT_COLUMNS = ("name", "size", "progress", "state", "down", "up", "peers", "seeds", "ratio", "eta")
DEFAULT_TORRENT_SORT = (("queue", False),)


def _flags(p: PeerSnapshot) -> str:
    """uTorrent-style flags: D/d we download (unchoked/choked but interested), U/u they download from us,
    K/? they unchoked us but we are not interested / we unchoked them but they are not, S snubbed,
    I incoming, E encrypted (RC4) / e encrypted handshake then plain text, P uTP, then the source's letter
    (T tracker, M manual, H DHT, X PEX, L LSD)."""
    flags = ""
    if p.am_interested:
        flags += "d" if p.peer_choking else "D"
    elif not p.peer_choking:
        flags += "K"
    if p.peer_interested:
        flags += "u" if p.am_choking else "U"
    elif not p.am_choking:
        flags += "?"
    if p.snubbed:
        flags += "S"
    if p.incoming:
        flags += "I"
    flags += {"rc4": "E", "handshake": "e"}.get(p.encryption, "")
    if p.transport == "utp":
        flags += "P"
    flags += {"tracker": "T", "manual": "M", "dht": "H", "pex": "X", "lsd": "L"}.get(p.source, "")
    return flags


def _peer_status(p: PeerSnapshot) -> tuple[str, str]:
    if p.status == "connected":
        return fmt.duration(p.connected_for), ""
    if p.status == "failed":
        return f"failed: {p.last_error or '?'}", "bad"
    if p.next_attempt is not None:
        return f"{p.status}, retry in {fmt.duration(p.next_attempt)}", "muted"
    return p.status, "muted"


PEER_COLUMNS: tuple[Column, ...] = (
    Column("address", "Address", 21, attrgetter("address"), attrgetter("address"), priority=0),
    Column("client", "Client", 18, attrgetter("client"), attrgetter("client"), flex=True, priority=2),
    Column("flags", "Flags", 8, _flags, _flags, priority=1),
    Column("down", "Down", 10, lambda p: fmt.rate(p.down_rate), attrgetter("down_rate"), "right", priority=0,
           descending_first=True),
    Column("up", "Up", 10, lambda p: fmt.rate(p.up_rate), attrgetter("up_rate"), "right", priority=0,
           descending_first=True),
    Column("progress", "Has", 6, lambda p: fmt.percent(p.progress) if p.status == "connected" else "",
           attrgetter("progress"), "right", priority=3, descending_first=True),
    Column("requests", "Reqs", 9, lambda p: f"{p.requests_out}/{p.requests_in}" if p.status == "connected" else "",
           attrgetter("requests_out"), "right", priority=4, descending_first=True),
    Column("downloaded", "Down'd", 9, lambda p: fmt.size(p.downloaded), attrgetter("downloaded"), "right",
           priority=5, descending_first=True),
    Column("uploaded", "Up'd", 9, lambda p: fmt.size(p.uploaded), attrgetter("uploaded"), "right", priority=5,
           descending_first=True),
    Column("status", "Connected", 12, _peer_status, attrgetter("connected_for"), priority=6),
)
PEER_SORT = (("down", True), ("up", True))


def _tracker_status(t: TrackerSnapshot) -> tuple[str, str]:
    tone = {"working": "good", "error": "bad", "updating": "accent"}.get(t.status, "muted")
    return t.status, tone


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _tracker_message(t: TrackerSnapshot) -> tuple[str, str]:
    if t.last_error:
        return t.last_error, "bad"
    return t.message or "", "warn" if t.message else ""


TRACKER_COLUMNS: tuple[Column, ...] = (
    Column("tier", "Tier", 5, lambda t: str(t.tier + 1), attrgetter("tier"), "right", priority=3),
    Column("url", "URL", 30, attrgetter("url"), attrgetter("url"), flex=True, priority=0),
    Column("status", "Status", 13, _tracker_status, attrgetter("status"), priority=0),
    Column("last", "Last announce", 14, lambda t: fmt.when(t.last_announce), attrgetter("last_announce"),
           priority=2, nullable=True),
    Column("next", "Next", 12, lambda t: fmt.when(t.next_announce), attrgetter("next_announce"), priority=2,
           nullable=True),
    Column("peers", "Peers", 6, lambda t: _count(t.peers), attrgetter("peers"), "right", nullable=True, priority=1),
    Column("seeders", "Seeds", 6, lambda t: _count(t.seeders), attrgetter("seeders"), "right", nullable=True, priority=4),
    Column("leechers", "Leech", 6, lambda t: _count(t.leechers), attrgetter("leechers"), "right", nullable=True, priority=4),
    Column("error", "Message", 24, _tracker_message, lambda t: t.last_error or "", flex=True, priority=1),
)
TRACKER_SORT = (("tier", False),)
