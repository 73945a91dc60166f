"""The engine's public values: snapshots, events and the errors of commands.

Front ends (the CLI, the TUI, the bench, a daemon) see the engine only
through these and the ``Session`` methods that return or take them. Every
value is immutable and plain (named tuples for snapshot rows, frozen slotted
dataclasses for events; their fields are str, int, float, bool, None, bytes
and tuples of those), cheap to build, safe to hand to another thread, and
``to_jsonable`` turns any of them into JSON types. Rows are named tuples
because a UI builds hundreds of them twice a second: one costs about 0.7 µs,
a frozen dataclass 3–7 µs (measured with 200 peers).
Torrents are named by their v1 info-hash in hex (``TorrentId``).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, NamedTuple

from torrent.core.errors import TorrentError

TorrentId = str  # the v1 info-hash in lower-case hex; room for a v2 hash later


# ---- errors of commands ---------------------------------------------------------------------


class CommandError(TorrentError):
    """A command could not be carried out; the message says what to do instead."""


class UnknownTorrentError(CommandError):
    """No torrent with that id is in the session."""


class InvalidStateError(CommandError):
    """The torrent's state does not allow the command (e.g. a recheck before
    its metadata is known)."""


class InvalidArgumentError(CommandError):
    """An argument is out of range (a file index, a limit, a queue move)."""


class DuplicateTorrentError(CommandError):
    """The torrent is already in the session."""


# ---- enumerations ---------------------------------------------------------------------------


class TorrentState(enum.StrEnum):
    CHECKING = "checking"  # hashing what is on disk
    METADATA = "metadata"  # a magnet link whose metadata is not known yet
    QUEUED = "queued"  # waiting for a free active slot
    DOWNLOADING = "downloading"
    SEEDING = "seeding"
    PAUSED = "paused"
    ERROR = "error"  # storage failed, or files went missing or changed under it


class FilePriority(enum.StrEnum):
    SKIP = "skip"
    NORMAL = "normal"
    HIGH = "high"


class PeerSource(enum.StrEnum):
    TRACKER = "tracker"
    INCOMING = "incoming"
    MANUAL = "manual"  # given by the user (add_peers, --peer, a magnet's x.pe)
    DHT = "dht"
    PEX = "pex"
    LSD = "lsd"


class QueueMove(enum.StrEnum):
    TOP = "top"
    UP = "up"
    DOWN = "down"
    BOTTOM = "bottom"


class PieceState(enum.IntEnum):
    """One byte per piece in ``PieceMap.states``."""

    MISSING = 0
    HAVE = 1
    DOWNLOADING = 2  # some blocks received
    REQUESTED = 3  # blocks requested, none received yet
    FAILED = 4  # failed its hash check and not verified since
    SKIPPED = 5  # missing and not wanted (every file it touches is skipped)


# ---- snapshots ------------------------------------------------------------------------------


class SessionSnapshot(NamedTuple):
    down_rate: float  # payload bytes/s, all torrents
    up_rate: float
    downloaded: int  # payload bytes this session
    uploaded: int
    listen_addresses: tuple[str, ...]  # "host:port" of each listening socket
    connections: int  # peer connections, all torrents
    torrents: int
    states: tuple[tuple[str, int], ...]  # (state, how many torrents), states with at least one
    free_space: tuple[tuple[str, int], ...]  # (download directory, bytes free), each directory once
    max_down: int  # effective global limits now (bytes/s, 0 = none)
    max_up: int
    alt_speed: bool  # the alternative limits are in force
    events_dropped: int  # events lost by slow subscribers, all of them together
    dht_nodes: int | None = None  # nodes in the DHT routing tables (None: the DHT is off)
    dht_lookups: int = 0  # DHT lookups running
    udp_port: int | None = None  # the UDP endpoint's port (DHT, UDP trackers)
    port_mapping: str = "off"  # "off", "mapping", "mapped by upnp|natpmp|pcp", "failed: why"
    external_address: str | None = None  # "host:port" the router maps to us, when mapped
    lsd: str = "off"  # local peer discovery: "on", "off", or why it is unavailable
    blocklist: str = "off"  # network.blocklist: "off", "loading FILE", "N ranges", or "failed: why"
    blocked: int = 0  # addresses the blocklist refused: connections accepted and dropped, addresses not dialled


class DhtSnapshot(NamedTuple):
    """The session's DHT node (``Session.dht_status``)."""

    node_id: str  # hex
    port: int  # UDP
    nodes: int  # in the routing tables, every state
    nodes_good: int
    nodes_questionable: int
    nodes_ipv6: int
    buckets: int
    info_hashes: int  # torrents other nodes announced to us
    peers: int  # peers they announced
    queries_in_flight: int
    lookups_running: int
    dropped: int  # datagrams refused: malformed, unmatched, over the rate limit
    queries_in: int
    replies_out: int
    queries_out: int
    replies_in: int
    timeouts: int
    external_ip: str | None  # as the nodes that answer us see it
    bootstrap: str  # the routers, or why there are none
    bootstrapped: bool = False  # the first bootstrap is over (lookups for torrents wait for it)


class DhtLookup(NamedTuple):
    """What ``Session.dht_lookup`` found for one info-hash."""

    info_hash: str
    peers: tuple[str, ...]  # "host:port"
    nodes_asked: int
    nodes_answered: int
    seconds: float


class TorrentSnapshot(NamedTuple):
    id: TorrentId
    name: str
    state: str  # a TorrentState value
    progress: float  # verified / wanted, 0.0–1.0 (1.0 when nothing is wanted)
    total_size: int  # payload bytes (0 until the metadata is known)
    wanted_size: int  # bytes of the pieces the file priorities select
    verified: int  # verified bytes (of the whole torrent)
    wanted_verified: int
    down_rate: float
    up_rate: float
    eta: float | None  # seconds until the wanted pieces are verified, None if unknown
    ratio: float  # uploaded / downloaded (all-time; size when nothing was downloaded)
    downloaded: int  # payload bytes, all-time
    uploaded: int
    wasted: int  # bytes received and thrown away this run (duplicates, corrupt data)
    peers: int  # connected
    seeds: int  # connected peers that have every piece
    peers_known: int  # addresses we know, connected or not
    seeds_known: int | None  # seeders the trackers report (largest), None if none said
    save_path: str
    added_at: float  # Unix time
    completed_at: float | None
    queue_position: int  # 0 is the top
    forced: bool  # force-started: ignores the queue
    sequential: bool
    first_last: bool
    max_down: int  # per-torrent limits (0 = none)
    max_up: int
    max_peers: int
    upload_slots: int
    last_error: str | None
    waiting_on: tuple[str, ...]  # what holds it back now: "disk", "download limit", "upload limit", "peer limit", …
    checking_progress: float | None  # 0.0–1.0 while checking
    hashed: int  # bytes hashed by the last check (0 when fast resume trusted everything)
    hash_failures: int
    banned: int
    seeding_time: float  # seconds spent seeding, all-time
    piece_length: int
    num_pieces: int
    creation_date: int | None
    created_by: str | None
    comment: str | None
    private: bool
    magnet: str


class PeerSnapshot(NamedTuple):
    address: str  # "host:port" ("[v6]:port")
    client: str  # decoded from the peer id ("" while not connected)
    status: str  # "connected", "connecting", "failed" (with last_error), "waiting" (known, not tried yet)
    source: str  # a PeerSource value
    incoming: bool
    am_choking: bool
    am_interested: bool
    peer_choking: bool
    peer_interested: bool
    snubbed: bool
    down_rate: float
    up_rate: float
    downloaded: int  # this connection
    uploaded: int
    progress: float  # their share of the pieces, 0.0–1.0
    requests_out: int  # our requests waiting at them
    requests_in: int  # their requests queued with us
    connected_for: float  # seconds
    failures: int  # connection attempts that failed in a row
    next_attempt: float | None  # seconds until the next attempt, for peers not connected
    last_error: str | None
    encryption: str = ""  # "rc4" (the whole stream), "handshake" (MSE, then plain text) or "" (none)
    transport: str = "tcp"  # "tcp" or "utp"


class FileSnapshot(NamedTuple):
    index: int
    path: str  # relative to the save path, "/"-separated
    size: int
    verified: int  # bytes of this file in verified pieces
    priority: str  # a FilePriority value
    progress: float
    padding: bool  # a BEP 47 pad file (never on disk)


class TrackerSnapshot(NamedTuple):
    url: str
    tier: int
    status: str  # "working", "updating", "error", "not contacted", "unsupported"
    last_announce: float | None  # Unix time of the last success
    next_announce: float | None  # Unix time
    seeders: int | None
    leechers: int | None
    peers: int | None  # how many the last success returned
    last_error: str | None
    message: str | None  # a warning the tracker sent


class PieceMap(NamedTuple):
    num_pieces: int
    states: bytes  # one PieceState per piece
    availability: bytes  # connected peers having each piece, saturating at 255


class BlockDetail(NamedTuple):
    begin: int
    length: int
    state: str  # "have", "received", "requested", "free"
    requested_from: tuple[str, ...]  # peer addresses
    received_from: str | None


class PieceDetail(NamedTuple):
    index: int
    state: int  # a PieceState
    availability: int
    blocks: tuple[BlockDetail, ...]  # empty unless the piece is in progress
    peers_with_piece: tuple[str, ...]  # connected peers that have it


# ---- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    torrent_id: TorrentId | None
    at: float  # Unix time

    @property
    def kind(self) -> str:
        return _KINDS[type(self)]


@dataclass(frozen=True, slots=True)
class TorrentAdded(Event):
    name: str


@dataclass(frozen=True, slots=True)
class TorrentRemoved(Event):
    with_data: bool


@dataclass(frozen=True, slots=True)
class StateChanged(Event):
    old: str
    new: str
    reason: str | None = None  # e.g. "seed ratio 2 reached", "disk full …"


@dataclass(frozen=True, slots=True)
class TorrentCompleted(Event):
    wanted_size: int
    downloaded: int  # payload bytes fetched this run


@dataclass(frozen=True, slots=True)
class MetadataReceived(Event):
    name: str


@dataclass(frozen=True, slots=True)
class TrackerFailed(Event):
    url: str
    message: str


@dataclass(frozen=True, slots=True)
class PeerBanned(Event):
    address: str
    reason: str


@dataclass(frozen=True, slots=True)
class StorageFailed(Event):
    message: str


_KINDS = {TorrentAdded: "torrent added", TorrentRemoved: "torrent removed", StateChanged: "state changed",
          TorrentCompleted: "completed", MetadataReceived: "metadata received", TrackerFailed: "tracker error",
          PeerBanned: "peer banned", StorageFailed: "storage error"}


def to_jsonable(value: Any) -> Any:
    """A snapshot or event (or a tuple of them) as JSON types; events carry their ``kind``."""
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {name: to_jsonable(item) for name, item in zip(value._fields, value)}
    if isinstance(value, tuple | list):
        return [to_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Event):
            out["kind"] = value.kind
        return out
    if isinstance(value, bytes):
        return list(value)
    return value


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
