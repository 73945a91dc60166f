"""Snapshots built from the live objects: plain values for every outside reader.

Live counters stay inside the engine; these functions copy what a front end
shows into the immutable values of ``api``. They run on the event loop, so
each is a bounded amount of work: nothing here loops over pieces in Python
(whole-bitfield operations and big-integer arithmetic do the per-piece work
in C), and per-peer work is a few attribute reads.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from torrent.core.bitfield import Bitfield
from torrent.session.api import (
    BlockDetail,
    FileSnapshot,
    PeerSnapshot,
    PieceDetail,
    PieceMap,
    PieceState,
    SessionSnapshot,
    TorrentSnapshot,
    TrackerSnapshot,
    format_address,
)
from torrent.session.managed import ManagedTorrent

if TYPE_CHECKING:
    from torrent.session.core import Session

_ZERO_ONE = bytes.maketrans(b"01", b"\x00\x01")


def _digits(bitfield: Bitfield, n: int) -> int:
    """A big integer whose base-256 digits are the bits of ``bitfield`` (one byte per piece)."""
    if n == 0:
        return 0
    raw = bitfield.to_bytes()
    text = format(int.from_bytes(raw, "big"), f"0{len(raw) * 8}b")[:n]
    return int.from_bytes(text.encode().translate(_ZERO_ONE), "big")


def _wall(monotonic: float | None, now_mono: float, now_wall: float) -> float | None:
    return None if monotonic is None else now_wall + (monotonic - now_mono)


# ---- session ------------------------------------------------------------------------------


def session_snapshot(session: Session, torrents: list[ManagedTorrent]) -> SessionSnapshot:
    down = up = 0.0
    connections = 0
    downloaded = session._retired_down
    uploaded = session._retired_up
    states: Counter[str] = Counter()
    directories: dict[str, None] = {}
    for t in torrents:
        states[t.state.value] += 1
        directories[t.record.save_path] = None
        swarm = t.swarm
        if swarm is not None:
            downloaded += swarm.downloaded
            uploaded += swarm.uploaded
            down += swarm.down_rate
            up += swarm.up_rate
            connections += len(swarm.peers)
        elif t.metadata_swarm is not None:
            connections += len(t.metadata_swarm.peers)
    addresses = []
    for server in session._servers:
        for sock in server.sockets:
            host, port = sock.getsockname()[:2]
            addresses.append(format_address(host, port))
    return SessionSnapshot(
        down_rate=down, up_rate=up, downloaded=downloaded, uploaded=uploaded, listen_addresses=tuple(addresses),
        connections=connections, torrents=len(torrents), states=tuple(sorted(states.items())),
        free_space=tuple((d, _free_space(d)) for d in directories),
        max_down=int(session.download_limiter.rate), max_up=int(session.upload_limiter.rate),
        alt_speed=session.alt_speed, events_dropped=session._bus.dropped,
        blocklist=session.blocklist.status, blocked=session.blocklist.refused, **_discovery(session))


def _discovery(session: Session) -> dict[str, object]:
    node = session.dht
    mapper = session.port_mapper
    mapping = "off"
    external = None
    if mapper is not None:
        status = mapper.status
        mapping = status.state
        if status.state == "mapped":
            mapping = f"mapped by {status.method}"
            if status.external_address and status.external_tcp_port:
                external = format_address(status.external_address, status.external_tcp_port)
        elif status.state == "failed" and status.error:
            mapping = f"failed: {status.error}"
    lsd = session.lsd.status if session.lsd is not None else "off"
    return {"dht_nodes": sum(len(t) for t in node.tables.values()) if node is not None else None,
            "dht_lookups": node.lookups_running if node is not None else 0,
            "udp_port": session.dht_port, "port_mapping": mapping, "external_address": external, "lsd": lsd}


def _free_space(directory: str) -> int:
    path = Path(directory)
    while True:
        try:
            vfs = os.statvfs(path)
        except FileNotFoundError:
            if path.parent == path:
                return 0
            path = path.parent
            continue
        except OSError:
            return 0
        return vfs.f_bavail * vfs.f_frsize


# ---- torrent ------------------------------------------------------------------------------


def torrent_snapshot(t: ManagedTorrent, now: float, connections: int | None = None) -> TorrentSnapshot:
    meta = t.metainfo
    swarm = t.swarm
    record = t.record
    total = meta.payload_length if meta is not None else 0
    wanted = t.wanted_pieces()
    verified = wanted_verified = 0
    if meta is not None and t.have is not None and wanted is not None:
        geometry = meta.geometry
        n = meta.num_pieces
        last_short = geometry.piece_length - geometry.piece_size(n - 1) if n else 0
        have = t.have
        verified = (have.count() * geometry.piece_length - (last_short if n and have.get(n - 1) else 0)
                    - meta.pad_bytes(have))
        both = wanted.and_(have)
        wanted_verified = (both.count() * geometry.piece_length - (last_short if n and both.get(n - 1) else 0)
                           - meta.pad_bytes(both))
    down_rate = up_rate = 0.0
    peers = seeds = 0
    if swarm is not None:
        down_rate, up_rate = swarm.down_rate, swarm.up_rate
        seeds = swarm.picker.num_seeds
        peers = len(swarm.peers)
    elif t.metadata_swarm is not None:
        peers = len(t.metadata_swarm.peers)
    wanted_size = t.wanted_size
    remaining = wanted_size - wanted_verified
    eta = 0.0 if remaining <= 0 else (remaining / down_rate if down_rate > 0 else None)
    progress = wanted_verified / wanted_size if wanted_size else (1.0 if meta is not None else 0.0)
    owner = t.peer_owner
    known = len(t.candidates) + sum(1 for p in owner.peers if not p.outgoing) if owner else len(t.candidates)
    reported = [s.complete for s in t.tiers.status() if s.complete is not None]
    return TorrentSnapshot(
        id=t.id, name=t.name, state=t.state.value, progress=progress, total_size=total, wanted_size=wanted_size,
        verified=verified, wanted_verified=wanted_verified, down_rate=down_rate, up_rate=up_rate, eta=eta,
        ratio=t.ratio(), downloaded=t.downloaded, uploaded=t.uploaded,
        wasted=t.wasted_before + (swarm.wasted if swarm else 0), peers=peers, seeds=seeds, peers_known=known,
        seeds_known=max(reported) if reported else None, save_path=record.save_path, added_at=record.added_at,
        completed_at=record.completed_at, queue_position=record.position, forced=record.forced,
        sequential=record.sequential, first_last=record.first_last, max_down=record.max_down,
        max_up=record.max_up, max_peers=record.max_peers or t.settings.torrent.max_peers,
        upload_slots=record.upload_slots or t.settings.torrent.upload_slots,
        last_error=t.last_error or t.stop_reason, waiting_on=t.waiting_on(connections),
        checking_progress=t.checking_progress, hashed=t.hashed,
        hash_failures=t.hash_failures_before + (swarm.hash_failures if swarm else 0),
        banned=len(t.banned | swarm.banned) if swarm else len(t.banned), seeding_time=t.seeding_time,
        piece_length=meta.piece_length if meta else 0, num_pieces=meta.num_pieces if meta else 0,
        creation_date=meta.creation_date if meta else None, created_by=meta.created_by if meta else None,
        comment=meta.comment if meta else None, private=meta.private if meta else False,
        magnet=meta.magnet() if meta is not None else (record.magnet or ""))


# ---- peers --------------------------------------------------------------------------------


def peer_snapshots(t: ManagedTorrent, now: float) -> tuple[PeerSnapshot, ...]:
    out: list[PeerSnapshot] = []
    swarm = t.swarm
    connected: set[tuple[str, int]] = set()
    if swarm is not None:
        n = swarm.num_pieces or 1
        outstanding = swarm.picker.num_outstanding
        candidates = t.candidates
        for peer, state in swarm.peers.items():
            address = peer.address
            connected.add(address)  # type: ignore[arg-type]
            bitfield = peer.bitfield
            candidate = candidates.get(address) if peer.outgoing else None  # type: ignore[arg-type]
            out.append(PeerSnapshot(
                peer.label, peer.client, "connected", peer.source, not peer.outgoing,
                peer.am_choking, peer.am_interested, peer.peer_choking, peer.peer_interested, state.snubbed,
                peer.down_rate, peer.up_rate, peer.downloaded.total, peer.uploaded.total,
                bitfield.count() / n if bitfield is not None else 0.0, outstanding(peer), len(state.serving),
                now - peer.connected_at, candidate.failures if candidate else 0, None, None, peer.encryption,
                peer.transport_name))
    elif t.metadata_swarm is not None:
        for peer in t.metadata_swarm.peers:  # a magnet's peers: the metadata comes from them
            connected.add(peer.address)  # type: ignore[arg-type]
            out.append(PeerSnapshot(
                peer.label, peer.client, "connected", peer.source, not peer.outgoing, peer.am_choking,
                peer.am_interested, peer.peer_choking, peer.peer_interested, False, 0.0, 0.0, 0, 0, 0.0, 0, 0,
                now - peer.connected_at, 0, None, None, peer.encryption, peer.transport_name))
    for address, candidate in t.candidates.items():
        if address in connected:
            continue
        if address in t.connecting:
            status = "connecting"
        elif candidate.last_error is not None:
            status = "failed"
        else:
            continue  # known but never tried: not worth a row
        wait = candidate.next_try - now
        out.append(PeerSnapshot(
            format_address(*address), "", status, candidate.source.value, False, True, False, True, False, False,
            0.0, 0.0, 0, 0, 0.0, 0, 0, 0.0, candidate.failures,
            max(wait, 0.0) if wait != float("inf") else None, candidate.last_error))
    return tuple(out)


# ---- files --------------------------------------------------------------------------------


def _count_bits(data: bytes, start: int, end: int) -> int:
    """Set bits of a BEP 3 bitfield (``data``) in pieces [start, end)."""
    if start >= end:
        return 0
    first_byte, last_byte = start >> 3, (end - 1) >> 3
    if first_byte == last_byte:
        mask = (0xFF >> (start & 7)) & (0xFF << (7 - ((end - 1) & 7))) & 0xFF
        return (data[first_byte] & mask).bit_count()
    head = (data[first_byte] & (0xFF >> (start & 7))).bit_count()
    tail = (data[last_byte] & (0xFF << (7 - ((end - 1) & 7))) & 0xFF).bit_count()
    middle = int.from_bytes(data[first_byte + 1:last_byte], "big").bit_count()
    return head + middle + tail


def file_snapshots(t: ManagedTorrent) -> tuple[FileSnapshot, ...]:
    meta = t.metainfo
    assert meta is not None
    geometry = meta.geometry
    pl = geometry.piece_length
    have = t.have.to_bytes() if t.have is not None else bytes((meta.num_pieces + 7) >> 3)
    out = []
    for index, entry in enumerate(meta.files):
        length = entry.length
        verified = 0
        if length:
            start, end = entry.offset, entry.offset + length
            first, last = start // pl, (end - 1) // pl
            if first == last:
                verified = length if _bit(have, first) else 0
            else:
                verified = _count_bits(have, first + 1, last) * pl
                if _bit(have, first):
                    verified += (first + 1) * pl - start
                if _bit(have, last):
                    verified += end - last * pl
        out.append(FileSnapshot(index, "/".join(entry.path), length, verified,
                                t.file_priorities[index].value if t.file_priorities else "normal",
                                verified / length if length else 1.0, entry.is_padding))
    return tuple(out)


def _bit(data: bytes, index: int) -> bool:
    return bool(data[index >> 3] & (0x80 >> (index & 7)))


# ---- trackers -----------------------------------------------------------------------------


def tracker_snapshots(t: ManagedTorrent, now: float) -> tuple[TrackerSnapshot, ...]:
    wall = time.time()
    plan = t.tiers.next_announce(now) if t.swarm is not None and t.tiers.has_trackers else None
    out = []
    for s in t.tiers.status():
        if not s.supported:
            status = "unsupported"
        elif t.announcing == s.url:
            status = "updating"
        elif s.failures:
            status = "error"
        elif s.last_success_at is not None:
            status = "working"
        else:
            status = "not contacted"
        next_at = None
        if plan is not None and plan[0] == s.url:
            next_at = _wall(plan[1], now, wall)
        elif s.retry_at is not None and t.swarm is not None:
            next_at = _wall(s.retry_at, now, wall)
        out.append(TrackerSnapshot(s.url, s.tier, status, _wall(s.last_success_at, now, wall), next_at,
                                   s.complete, s.incomplete, s.peers, s.last_error, s.warning))
    return tuple(out)


# ---- pieces -------------------------------------------------------------------------------


def piece_map(t: ManagedTorrent) -> PieceMap:
    meta = t.metainfo
    assert meta is not None
    n = meta.num_pieces
    have = t.have if t.have is not None else Bitfield(n)
    wanted = t.wanted_pieces() or Bitfield(n)
    h = _digits(have, n)
    # skipped = not wanted and not had, as digits 0/1: all-ones minus wanted, then minus what we have.
    not_wanted = int.from_bytes(b"\x01" * n, "big") - _digits(wanted, n)
    skipped = not_wanted - (not_wanted & h)
    states = bytearray((h * PieceState.HAVE + skipped * PieceState.SKIPPED).to_bytes(n, "big")) if n else bytearray()
    swarm = t.swarm
    if swarm is not None:
        for index, received in swarm.picker.in_progress():
            states[index] = PieceState.DOWNLOADING if received else PieceState.REQUESTED
        for index in swarm.hash_failed:
            if not have.get(index):
                states[index] = PieceState.FAILED
        availability = swarm.picker.availability_bytes()
    else:
        availability = bytes(n)
    return PieceMap(n, bytes(states), availability)


def piece_detail(t: ManagedTorrent, index: int) -> PieceDetail:
    meta = t.metainfo
    assert meta is not None
    states = piece_map(t)
    swarm = t.swarm
    blocks: list[BlockDetail] = []
    holders: tuple[str, ...] = ()
    availability = states.availability[index]
    if swarm is not None:
        holders = tuple(format_address(*p.address) for p in swarm.peers
                        if p.address and p.bitfield is not None and p.bitfield.get(index))
        sources = swarm.picker.block_sources(index)
        if sources:
            requesters = swarm.picker.block_requesters(index)
            size = meta.geometry.piece_size(index)
            for b, (source, asked) in enumerate(zip(sources, requesters)):
                begin = b * 16384
                length = min(16384, size - begin)
                state = "received" if source is not None else ("requested" if asked else "free")
                blocks.append(BlockDetail(begin, length, state, tuple(_peer_name(p) for p in asked),
                                          _peer_name(source) if source is not None else None))
    return PieceDetail(index, states.states[index], availability, tuple(blocks), holders)


def _peer_name(peer: object) -> str:
    address = getattr(peer, "address", None)
    return format_address(*address) if address else "?"
