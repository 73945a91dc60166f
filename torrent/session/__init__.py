"""The engine's public API: the ``Session`` (commands, snapshots, events), the
values it hands out (``api``), and the settings it runs with.

Front ends (the CLI, the TUI, the bench, a daemon) and integration tests
import from here and nothing deeper in the engine; import-linter holds them
to it.
"""

from torrent.core.errors import TorrentError
from torrent.core.settings import DEFAULT_SETTINGS, Settings
from torrent.session.api import (
    BlockDetail,
    CommandError,
    DhtLookup,
    DhtSnapshot,
    DuplicateTorrentError,
    Event,
    FilePriority,
    FileSnapshot,
    InvalidArgumentError,
    InvalidStateError,
    MetadataReceived,
    PeerBanned,
    PeerSnapshot,
    PeerSource,
    PieceDetail,
    PieceMap,
    PieceState,
    QueueMove,
    SessionSnapshot,
    StateChanged,
    StorageFailed,
    TorrentAdded,
    TorrentCompleted,
    TorrentId,
    TorrentRemoved,
    TorrentSnapshot,
    TorrentState,
    TrackerFailed,
    TrackerSnapshot,
    UnknownTorrentError,
    to_jsonable,
)
from torrent.session.core import Session
from torrent.session.events import Subscription

__all__ = [
    "DEFAULT_SETTINGS",
    "BlockDetail",
    "CommandError",
    "DuplicateTorrentError",
    "Event",
    "FilePriority",
    "FileSnapshot",
    "InvalidArgumentError",
    "InvalidStateError",
    "MetadataReceived",
    "PeerBanned",
    "PeerSnapshot",
    "PeerSource",
    "PieceDetail",
    "PieceMap",
    "PieceState",
    "QueueMove",
    "Session",
    "SessionSnapshot",
    "DhtLookup",
    "DhtSnapshot",
    "Settings",
    "StateChanged",
    "StorageFailed",
    "Subscription",
    "TorrentAdded",
    "TorrentCompleted",
    "TorrentError",
    "TorrentId",
    "TorrentRemoved",
    "TorrentSnapshot",
    "TorrentState",
    "TrackerFailed",
    "TrackerSnapshot",
    "UnknownTorrentError",
    "to_jsonable",
]
