"""One settings tree: every tunable of the engine, with its default and why.

The tree is frozen dataclasses, one group per concern. The session holds one
tree and replaces it whole when a setting changes at run time (nothing reads a
half-changed tree); components read the values they need from it instead of
module constants, and tests pass a tree instead of monkeypatching.

Each field's ``metadata`` documents it (``doc``) and says how a value read
from a config file or typed on the command line is checked (``kind``:
``bytes`` and ``rate`` accept sizes such as ``16M``; ``min``/``max`` bound
numbers; ``choices`` lists the words allowed). ``parse_value`` and
``with_values`` apply those rules; ``flatten`` lists the tree as dotted keys.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from torrent.core.errors import ConfigError, UsageError
from torrent.core.units import parse_size

KiB = 1024
MiB = 1024 * KiB

UNLIMITED = -1  # for counts where -1 means no limit (queue sizes, ratio and time limits)


def _f(default: Any, doc: str, *, kind: str | None = None, min: float | None = None,  # noqa: A002
       max: float | None = None, choices: tuple[str, ...] | None = None) -> Any:  # noqa: A002
    return field(default=default, metadata={"doc": doc, "kind": kind, "min": min, "max": max, "choices": choices})


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what we accept from files, peers and trackers."""

    # Bencode: deep nesting only serves to exhaust the stack; real torrents
    # nest about 5 levels (info → files → list → dict → path list).
    bencode_max_depth: int = _f(64, "deepest bencode nesting accepted", min=2, max=10_000)
    # libtorrent refuses .torrent files over 10 MB by default; hybrid torrents
    # with piece layers for huge payloads can exceed that, so allow more.
    bencode_max_size: int = _f(64 * MiB, "largest bencoded document (a .torrent file)", kind="bytes", min=1)
    # The longest single string (the ``pieces`` blob) cannot exceed the file.
    bencode_max_string: int = _f(64 * MiB, "longest bencoded string", kind="bytes", min=1)
    # Peer wire: a bitfield for 2**24 pieces is 2 MiB; a piece message holds
    # one block. Anything larger is a peer trying to make us buffer.
    wire_max_message: int = _f(2 * MiB + 16, "largest peer wire message", kind="bytes", min=16 * KiB + 13)
    # BEP 3 blocks are 16 KiB; libtorrent and others serve up to 128 KiB on
    # request, and we refuse anything beyond that.
    wire_max_request: int = _f(128 * KiB, "largest block a peer may request", kind="bytes", min=16 * KiB)
    # Extension-protocol messages (handshake, ut_metadata, ut_pex) stay small.
    wire_max_extended: int = _f(1 * MiB, "largest extension-protocol message", kind="bytes", min=1 * KiB)
    # Metainfo: v1 (BEP 3) allows any positive piece length and old torrents
    # use odd ones; the upper bound keeps one piece buffer affordable.
    min_piece_length: int = _f(1, "smallest piece length accepted", kind="bytes", min=1)
    max_piece_length: int = _f(512 * MiB, "largest piece length accepted", kind="bytes", min=1)
    max_files: int = _f(1_000_000, "most files in one torrent", min=1)
    # Trackers: 2 MiB of compact IPv4 peers is ~350 000 peers, far beyond any
    # real answer (trackers send 50-200). The cap holds before and after gzip
    # decoding. Redirects: BEP 3 says nothing; libtorrent follows 5, three
    # covers http→https and a load balancer hop.
    tracker_max_response: int = _f(2 * MiB, "largest tracker response", kind="bytes", min=1 * KiB)
    tracker_max_header: int = _f(16 * KiB, "largest tracker HTTP header", kind="bytes", min=1 * KiB)
    tracker_max_redirects: int = _f(3, "HTTP redirects followed", min=0, max=20)
    # A magnet link is pasted or clicked: 64 KiB holds hundreds of trackers,
    # and anything longer is not a link a person made.
    magnet_max_length: int = _f(64 * KiB, "longest magnet link", kind="bytes", min=64)
    # The text of a 500 000-range list is about 35 MB; this bounds what a wrong path (a disk image)
    # or a gzip bomb can cost, counted after decompression.
    blocklist_max_size: int = _f(64 * MiB, "largest IP blocklist, counted after gzip decompression", kind="bytes",
                                 min=1)


@dataclass(frozen=True, slots=True)
class NetworkSettings:
    """Sockets: where we listen and dial from, and how many connections."""

    # Port 6881 is the historical BitTorrent port; 0 picks a free one.
    listen_port: int = _f(6881, "TCP port to listen on (0: any free port)", min=0, max=65535)
    # For users behind a VPN: listening, peer connections and tracker requests
    # all use this address (or the interface's), so nothing leaves another one.
    bind: str = _f("", "address or interface name to use for every socket (empty: all)")
    max_connections: int = _f(200, "peer connections for the whole session", min=1)
    # Enough to reach a tracker's 50 peers within a few seconds.
    max_half_open: int = _f(20, "outgoing connection attempts at once, per torrent", min=1)
    connect_timeout: float = _f(10.0, "seconds for a TCP connection to be accepted", min=0.1)
    # libtorrent's utp_connect_timeout: a peer without uTP costs this much before TCP is tried, once.
    utp_connect_timeout: float = _f(3.0, "seconds for a uTP connection to be accepted before TCP is tried",
                                    min=0.1)
    handshake_timeout: float = _f(10.0, "seconds for a peer to complete its handshake", min=0.1)
    # A peer whose connection failed is tried again after retry_first seconds,
    # then each delay doubles up to retry_max; after retry_give_up failures in
    # a row it is forgotten (peers the user added are kept).
    retry_first: float = _f(1.0, "seconds before the first retry of a failed peer", min=0.0)
    retry_max: float = _f(1800.0, "longest wait between retries of a failed peer", min=1.0)
    retry_give_up: int = _f(10, "failures in a row after which a peer is forgotten", min=1)
    max_candidates: int = _f(2000, "peer addresses remembered per torrent (the oldest go first)", min=1)
    # As qBittorrent and Transmission read them: addresses in the list are refused when they dial us,
    # never dialled, and dropped when a list naming them is loaded.
    blocklist: str = _f("", "IP blocklist file: eMule .dat or PeerGuardian .p2p text, gzip accepted (empty: none)")
    # Protocol encryption (MSE/PE), in the words of Transmission and qBittorrent; prefer is libtorrent's
    # default: an encrypted handshake first, plain text after it unless the peer wants RC4 (see
    # torrent/peer/encryption.py).
    encryption: str = _f("prefer", "protocol encryption: prefer, require (RC4 only), allow (plain first) or disable",
                         choices=("prefer", "require", "allow", "disable"))
    # Peer transports, in the order an outgoing connection tries them (libtorrent's default: uTP first,
    # TCP after it fails); both are accepted when listed. qBittorrent's "TCP and uTP / TCP / uTP".
    transports: str = _f("utp,tcp", "peer transports in the order they are dialled: utp,tcp, tcp,utp, tcp or utp",
                         choices=("utp,tcp", "tcp,utp", "tcp", "utp"))


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """One connection: timers, pipelining and buffers."""

    keepalive_every: float = _f(90.0, "seconds of silence before we send a keep-alive", min=1.0)
    idle_timeout: float = _f(180.0, "seconds without any message before a peer is dropped", min=1.0)
    request_timeout: float = _f(30.0, "seconds before an unanswered request goes to another peer", min=0.1)
    metadata_timeout: float = _f(10.0, "seconds before an unanswered metadata request (BEP 9) goes to another peer",
                                 min=0.1)
    snub_time: float = _f(45.0, "seconds an unchoking peer may send nothing before it counts as snubbed",
                          min=0.1)
    # Outstanding requests ≈ this many seconds of the peer's rate, at least
    # min_pipeline blocks and at most max_requests.
    pipeline_seconds: float = _f(2.0, "seconds of a peer's rate kept requested", min=0.1)
    min_pipeline: int = _f(16, "fewest requests kept outstanding with an unchoking peer", min=1)
    # Requests a peer may have queued with us (advertised as BEP 10 ``reqq``),
    # and the most we keep outstanding with one peer. libtorrent uses 500.
    max_requests: int = _f(500, "requests queued per peer, both ways", min=1, max=65535)
    write_high_water: int = _f(1 * MiB, "bytes queued to a socket before sending pauses", kind="bytes",
                               min=16 * KiB)
    # Serving stops at the high-water mark, so only a peer that never reads what it provokes (rejects,
    # choke toggles) queues more: past this we stop reading from it until it drains.
    write_buffer_max: int = _f(2 * MiB, "bytes queued to a peer before we stop reading from it", kind="bytes",
                               min=64 * KiB)
    write_stall_timeout: float = _f(60.0, "seconds a peer may leave that queue full before it is dropped", min=1.0)
    # Every connection reads into one buffer per event loop (each read is parsed, and what it leaves is
    # copied, before the next read), so memory does not grow with the peer count. A fast peer's reads
    # then carry 64 blocks each: the leecher used 7 % less CPU at 1 MiB than at 256 KiB (median of 10
    # interleaved loopback runs).
    recv_buffer: int = _f(1 * MiB, "receive buffer, one shared by every connection", kind="bytes", min=1 * KiB)
    send_batch_bytes: int = _f(256 * KiB, "blocks handed to a socket in one write when seeding", kind="bytes",
                               min=16 * KiB)


@dataclass(frozen=True, slots=True)
class TorrentSettings:
    """Each torrent: peers, choking, picking and the memory it may use."""

    max_peers: int = _f(60, "connections per torrent", min=1)
    upload_slots: int = _f(4, "peers each torrent uploads to at once", min=1)
    rechoke_interval: float = _f(10.0, "seconds between rechokes", min=1.0)
    optimistic_every: int = _f(3, "rechokes per optimistic unchoke rotation", min=1)
    new_peer_age: float = _f(60.0, "seconds a peer counts as new for the optimistic draw", min=0.0)
    # At max_peers a newcomer takes the place of a peer that moved no payload either way for this long
    # and has nothing we want: connections that only say "interested" must not hold the torrent shut.
    evict_idle_after: float = _f(60.0, "seconds without payload after which a peer may make room for another",
                                 min=1.0)
    random_first: int = _f(4, "pieces picked at random before rarest first", min=0)
    endgame_requesters: int = _f(2, "peers one block may be requested from in endgame (1: no endgame)", min=1)
    read_cache_bytes: int = _f(32 * MiB, "whole pieces kept for serving their blocks", kind="bytes", min=0)
    # Complete pieces waiting to be hashed and written: past this, no new
    # requests go out until the disk catches up. Small enough that pieces are
    # still in the CPU cache when hashed and written: interleaved loopback runs
    # took 6 % less time and CPU with 16 MiB than with 32. As many spare piece
    # buffers are kept for reuse, so refills fault in no new pages.
    write_backlog_bytes: int = _f(16 * MiB, "complete pieces waiting for the disk", kind="bytes", min=1)
    # Piece buffers: pieces arriving, complete ones waiting for the verifier, and spares, together. A piece
    # that starts past this has its blocks written to disk as they arrive, so the leecher's memory stays
    # put however many peers it has (16 seeders took 200 MB when every piece arriving had a buffer). 32 MiB
    # holds two fast peers' full request queues (500 blocks, 8 MiB each) with the write backlog beside them.
    # When complete pieces fill it (fast peers outrun the verifier), reading waits for the verifier instead.
    assembly_bytes: int = _f(32 * MiB, "memory for pieces in progress (0: every block to disk as it arrives)",
                             kind="bytes", min=0)
    # Pieces requested at once. Those past assembly_bytes get no buffer: their blocks are written to disk as
    # they arrive, and the piece is read back to be hashed. Slow peers need it: a rate-capped libtorrent
    # seeder sends half a second of its rate per burst, so sixteen at 16 MiB/s need 128 MiB requested.
    requested_bytes: int = _f(256 * MiB, "pieces requested at once, in memory or written as they arrive",
                              kind="bytes", min=1)


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Files on disk and what the session saves about them."""

    # libtorrent's file pool holds 40; a torrent of 100 000 files must not
    # exhaust the process's (often 1024) descriptors.
    max_open_files: int = _f(64, "file descriptors kept open per torrent", min=1)
    # A recheck reads piece-aligned batches: one preadv per file slice
    # amortises the syscall, and a few batches in flight keep both cores hashing.
    check_batch: int = _f(8 * MiB, "bytes read per recheck batch", kind="bytes", min=16 * KiB)
    check_memory: int = _f(64 * MiB, "buffers a recheck may hold", kind="bytes", min=16 * KiB)
    resume_every: float = _f(30.0, "seconds between saves of fast-resume data", min=1.0)
    save_delay: float = _f(1.0, "seconds a change waits before the session state is saved", min=0.0)


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    """Announces: timeouts, backoff and how many peers to ask for."""

    # Whole call, redirects and UDP retransmissions included. BEP 15's
    # schedule (15 s, 30 s, 60 s …) would take hours to give up; a session
    # would rather move to the next tracker of the tier.
    announce_timeout: float = _f(30.0, "seconds an announce may take in all", min=1.0)
    stopped_timeout: float = _f(5.0, "seconds the 'stopped' announce may take at exit", min=0.1)
    udp_base_timeout: float = _f(15.0, "seconds before a UDP tracker request is sent again (BEP 15)", min=0.1)
    numwant: int = _f(200, "peers asked for in each announce", min=0, max=10_000)
    # A failing tracker is retried after 60 s, then 120 s … up to once an hour.
    backoff_base: float = _f(60.0, "seconds before a failed tracker is tried again", min=1.0)
    backoff_max: float = _f(3600.0, "longest wait before a failed tracker is tried again", min=1.0)
    # A tracker answering ``interval 0`` must not make us announce in a loop;
    # libtorrent's floor is 5 min for regular announces, 60 s is the least we accept.
    min_announce_interval: float = _f(60.0, "shortest interval between regular announces", min=1.0)


@dataclass(frozen=True, slots=True)
class RateSettings:
    """Global speed limits in bytes per second (0: unlimited), and the
    alternative ("turtle") limits with their optional daily schedule."""

    max_down: int = _f(0, "download limit for the session", kind="rate", min=0)
    max_up: int = _f(0, "upload limit for the session", kind="rate", min=0)
    alt_enabled: bool = _f(False, "use the alternative limits now")
    alt_max_down: int = _f(0, "alternative download limit", kind="rate", min=0)
    alt_max_up: int = _f(0, "alternative upload limit", kind="rate", min=0)
    # Like Transmission's "speed limit mode" schedule: between alt_begin and
    # alt_end (local time, HH:MM; the span may cross midnight) on alt_days.
    alt_schedule: bool = _f(False, "switch to the alternative limits on a schedule")
    alt_begin: str = _f("22:00", "when the scheduled alternative limits begin (HH:MM)", kind="time")
    alt_end: str = _f("07:00", "when they end (HH:MM)", kind="time")
    alt_days: str = _f("mon,tue,wed,thu,fri,sat,sun", "days the schedule applies on", kind="days")


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """How many torrents run at once, and when seeding stops (-1: no limit)."""

    # Transmission's defaults: five active downloads, seeding not queued.
    max_active_downloads: int = _f(5, "torrents downloading at once (-1: no limit)", min=-1)
    max_active_seeds: int = _f(UNLIMITED, "torrents seeding at once (-1: no limit)", min=-1)
    seed_ratio: float = _f(-1.0, "stop seeding at this upload ratio (-1: never)", min=-1.0)
    seed_time: float = _f(-1.0, "stop seeding after this many minutes (-1: never)", min=-1.0)


# The routers libtorrent, Transmission and qBittorrent bootstrap from.
DHT_ROUTERS = ("router.bittorrent.com:6881,router.utorrent.com:6881,dht.transmissionbt.com:6881,"
               "dht.libtorrent.org:25401")


@dataclass(frozen=True, slots=True)
class DiscoverySettings:
    """Finding peers without a tracker (DHT, peer exchange, local discovery) and being reachable."""

    dht: bool = _f(True, "take part in the DHT (BEP 5); never for private torrents")
    # A node with a saved routing table needs no router; an empty list relies on that and on peers'
    # port messages alone.
    dht_bootstrap: str = _f(DHT_ROUTERS, "DHT routers to bootstrap from, HOST:PORT separated by commas",
                            kind="hostports")
    dht_query_timeout: float = _f(2.0, "seconds before a DHT query counts as unanswered", min=0.1)
    dht_query_rate: float = _f(20.0, "DHT queries a second one address may make of us", min=1.0)
    # BEP 5: three queries in flight; a lookup stops when the closest nodes all answered, or at these.
    dht_lookup_alpha: int = _f(3, "parallel queries of one DHT lookup", min=1, max=16)
    dht_lookup_max_queries: int = _f(100, "most queries one DHT lookup sends", min=8)
    dht_lookup_timeout: float = _f(20.0, "seconds one DHT lookup may take", min=1.0)
    dht_enforce_node_id: bool = _f(False, "ignore DHT nodes whose id does not match their address (BEP 42)")
    # libtorrent re-announces every 15 minutes; a torrent short of peers searches more often.
    dht_announce_interval: float = _f(900.0, "seconds between DHT announces of a torrent", min=60.0)
    dht_search_interval: float = _f(30.0, "seconds between DHT searches while a torrent has no peer", min=5.0)
    pex: bool = _f(True, "exchange peer lists with peers (ut_pex, BEP 11)")
    max_pex_peers: int = _f(200, "peers learned through PEX remembered per torrent", min=0)
    lsd: bool = _f(True, "announce and find peers on the local network (BEP 14)")
    lsd_interval: float = _f(300.0, "seconds between local announces of a torrent", min=10.0)
    # BEP 14's IPv4 group; tests use a group and port of their own.
    lsd_address: str = _f("239.192.152.143:6771", "multicast group and port of local discovery", kind="hostports")
    port_map: bool = _f(True, "map the listen port on the router (UPnP IGD, NAT-PMP/PCP)")
    port_map_gateway: str = _f("", "NAT-PMP/PCP gateway HOST:PORT (empty: the default route's, port 5351)",
                               kind="hostports")
    port_map_ssdp: str = _f("239.255.255.250:1900", "where UPnP gateways are searched for (SSDP)", kind="hostports")


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole tree; ``Settings()`` is every default."""

    network: NetworkSettings = field(default_factory=NetworkSettings)
    peer: PeerSettings = field(default_factory=PeerSettings)
    torrent: TorrentSettings = field(default_factory=TorrentSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    rates: RateSettings = field(default_factory=RateSettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)
    limits: Limits = field(default_factory=Limits)


DEFAULT_LIMITS = Limits()
DEFAULT_SETTINGS = Settings()


# ---- keys, values and validation -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettingInfo:
    """One leaf of the tree: its dotted key, type, default and documentation."""

    key: str
    type: type
    default: Any
    doc: str
    kind: str | None
    min: float | None
    max: float | None
    choices: tuple[str, ...] | None


def _leaves(cls: type, prefix: str = "") -> Iterator[SettingInfo]:
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            yield from _leaves(typ, f"{prefix}{f.name}.")
            continue
        meta = f.metadata
        yield SettingInfo(f"{prefix}{f.name}", typ, f.default, meta.get("doc", ""), meta.get("kind"),
                          meta.get("min"), meta.get("max"), meta.get("choices"))


SETTINGS: dict[str, SettingInfo] = {info.key: info for info in _leaves(Settings)}


def get(settings: Settings, key: str) -> Any:
    obj: Any = settings
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def flatten(settings: Settings) -> dict[str, Any]:
    """Every leaf as ``{"group.name": value}``, in tree order."""
    return {key: get(settings, key) for key in SETTINGS}


_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_value(key: str, raw: Any) -> Any:
    """``raw`` (from TOML, or text from the command line) checked and converted
    for ``key``; ``ConfigError`` naming the key if it does not fit."""
    info = SETTINGS.get(key)
    if info is None:
        raise ConfigError(f"unknown setting {key!r}" + _suggest(key))
    try:
        value = _convert(info, raw)
    except OverflowError:
        raise ConfigError(f"bad value for {key!r}: number too large") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"bad value for {key!r}: {exc}") from None
    return value


def _convert(info: SettingInfo, raw: Any) -> Any:
    typ = info.type
    if typ is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return raw.strip().lower() in ("true", "yes", "on", "1")
        raise ValueError(f"expected true or false, got {raw!r}")
    if typ is str:
        if not isinstance(raw, str):
            raise ValueError(f"expected text, got {raw!r}")
        return _check_text(info, raw.strip())
    if isinstance(raw, bool):
        raise ValueError(f"expected a number, got {raw!r}")
    if info.kind in ("bytes", "rate") and isinstance(raw, str):
        try:
            number: Any = parse_size(raw)
        except UsageError:
            raise ValueError(f"expected a size such as 500K or 2M, got {raw!r}") from None
    elif isinstance(raw, str):
        text = raw.strip()
        try:
            number = int(text) if typ is int else float(text)
        except ValueError:
            raise ValueError(f"expected {'a whole number' if typ is int else 'a number'}, got {raw!r}") from None
    elif isinstance(raw, int | float):
        number = raw
    else:
        raise ValueError(f"expected a number, got {raw!r}")
    if typ is int:
        if isinstance(number, float):
            if not number.is_integer():
                raise ValueError(f"expected a whole number, got {raw!r}")
            number = int(number)
    else:
        number = float(number)
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {raw!r}")
    if info.min is not None and number < info.min:
        raise ValueError(f"must be at least {_show(info.min)}, got {_show(number)}")
    if info.max is not None and number > info.max:
        raise ValueError(f"must be at most {_show(info.max)}, got {_show(number)}")
    return number


def _check_text(info: SettingInfo, text: str) -> str:
    if any(ord(c) < 32 or 0xD800 <= ord(c) < 0xE000 for c in text):
        raise ValueError(f"control characters or undecodable bytes in {text!r}")
    if info.choices is not None and text not in info.choices:
        raise ValueError(f"expected one of {', '.join(info.choices)}, got {text!r}")
    if info.kind == "time" and not _TIME.fullmatch(text):
        raise ValueError(f"expected a time as HH:MM, got {text!r}")
    if info.kind == "days":
        days = [d.strip().lower() for d in text.split(",") if d.strip()]
        bad = [d for d in days if d not in DAYS]
        if bad or not days:
            raise ValueError(f"expected days such as mon,tue,sat, got {text!r}")
        return ",".join(d for d in DAYS if d in days)
    if info.kind == "hostports":
        return ",".join(format_host_port(*parse_host_port(item)) for item in text.split(",") if item.strip())
    return text


def parse_host_port(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``; ``ValueError`` saying what is wrong."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def host_ports(text: str) -> list[tuple[str, int]]:
    """A ``hostports`` setting's addresses (already checked when it was set)."""
    return [parse_host_port(item) for item in text.split(",") if item.strip()]


def _show(number: float) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


def _suggest(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, SETTINGS, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def with_values(settings: Settings, values: Mapping[str, Any]) -> Settings:
    """A new tree with ``values`` (dotted keys, already parsed) replacing leaves."""
    groups: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if key not in SETTINGS:
            raise ConfigError(f"unknown setting {key!r}" + _suggest(key))
        group, name = key.split(".", 1)
        groups.setdefault(group, {})[name] = value
    changes = {group: dataclasses.replace(getattr(settings, group), **names) for group, names in groups.items()}
    return dataclasses.replace(settings, **changes)


# Pairs that must be ordered: (smaller, larger).
_ORDERED = (("peer.write_high_water", "peer.write_buffer_max"),
            ("network.retry_first", "network.retry_max"),
            ("tracker.backoff_base", "tracker.backoff_max"), ("limits.min_piece_length", "limits.max_piece_length"))


def check_relations(settings: Settings) -> None:
    """``ConfigError`` when two settings contradict each other."""
    for small, large in _ORDERED:
        if get(settings, small) > get(settings, large):
            raise ConfigError(f"{small!r} ({_show(get(settings, small))}) must not exceed "
                              f"{large!r} ({_show(get(settings, large))})")


def differences(settings: Settings, base: Settings = DEFAULT_SETTINGS) -> dict[str, Any]:
    """The leaves of ``settings`` that differ from ``base``."""
    mine, theirs = flatten(settings), flatten(base)
    return {key: value for key, value in mine.items() if value != theirs[key]}
