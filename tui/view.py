"""What a detail tab is given to render: the selected torrent's snapshots, taken once per refresh.

The app builds one ``TorrentView`` per tick for the selected torrent, fetching
only what the visible tab needs; widgets render it and never reach the session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torrent.session import (
    FileSnapshot,
    PeerSnapshot,
    PieceDetail,
    PieceMap,
    SessionSnapshot,
    TorrentSnapshot,
    TrackerSnapshot,
)


@dataclass(frozen=True, slots=True)
class TorrentView:
    torrent: TorrentSnapshot
    session: SessionSnapshot
    peers: tuple[PeerSnapshot, ...] = ()
    files: tuple[FileSnapshot, ...] = ()
    trackers: tuple[TrackerSnapshot, ...] = ()
    piece_map: PieceMap | None = None
    # fetches one piece's blocks and the peers serving it (the piece map's deepest zoom)
    piece_detail: Callable[[int], PieceDetail] | None = None
