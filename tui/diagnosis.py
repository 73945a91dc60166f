"""The "why is it slow?" line: what holds the selected torrent back, from the snapshots the app already has.

A downloading torrent is checked for each slow cause below, in this order of importance (a swarm that
cannot give data at all comes before limits that only slow it); a torrent in any other state gets one
cause explaining that state. ``peers`` and ``trackers`` may be empty when the app did not fetch them: the
checks that need their rows are then skipped, and the counts come from the torrent's own snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from torrent.core.units import format_size
from torrent.session import PeerSnapshot, SessionSnapshot, TorrentSnapshot, TorrentState, TrackerSnapshot

CAP_SHARE = 0.9  # a rate at 90% of its limit or more counts as held by that limit


class Cause(NamedTuple):
    code: str  # "no-peers", "tracker", "no-seeds", "choked", "snubbed", "rate-cap", "disk", "peer-limit", or a state
    text: str


# codes that explain a state rather than slowness: they come alone and the summary shows them as they are
STATE_CODES = ("metadata", "error", "paused", "queued", "checking", "seeding", "complete")


def diagnose(torrent: TorrentSnapshot, peers: Sequence[PeerSnapshot], trackers: Sequence[TrackerSnapshot],
             session: SessionSnapshot) -> tuple[Cause, ...]:
    """What holds ``torrent`` back, most important first; empty when nothing does."""
    state = torrent.state
    if state != TorrentState.DOWNLOADING:
        return (_state_cause(torrent),)
    if torrent.progress >= 1:
        return (Cause("complete", "Complete"),)
    connected = [p for p in peers if p.status == "connected"]
    causes = [
        _no_peers(torrent),
        _tracker(torrent, trackers),
        _no_seeds(torrent, connected),
        _choked(connected),
        _snubbed(connected),
        _rate_cap(torrent, session),
        Cause("disk", "disk-bound: writes are behind") if "disk" in torrent.waiting_on else None,
        _peer_limit(torrent, session),
    ]
    return tuple(c for c in causes if c is not None)


def summary(causes: Sequence[Cause]) -> str:
    """One short line for the status bar."""
    if not causes:
        return "Downloading: nothing is holding it back"
    if causes[0].code in STATE_CODES:
        return causes[0].text
    return "Slow because: " + "; ".join(c.text for c in causes)


def _state_cause(t: TorrentSnapshot) -> Cause:
    state = t.state
    if state == TorrentState.METADATA:
        # The engine says where it looks ("metadata: searching the DHT (12 nodes); no peers yet"); any other
        # first reason is still about the metadata.
        why = next((w for w in t.waiting_on if w.startswith("metadata")), None)
        if why is None:
            why = f"metadata: {t.waiting_on[0]}" if t.waiting_on else "metadata from peers"
        return Cause("metadata", f"Waiting for {why}")
    if state == TorrentState.ERROR:
        return Cause("error", f"Error: {t.last_error}" if t.last_error else "Error")
    if state == TorrentState.PAUSED:
        return Cause("paused", "Paused")
    if state == TorrentState.QUEUED:
        slot = "seeding" if t.progress >= 1 else "download"
        return Cause("queued", f"Queued: waiting for a free {slot} slot")
    if state == TorrentState.CHECKING:
        if "checking queue" in t.waiting_on:
            return Cause("checking", "Queued for checking: another torrent is being checked")
        done = f" {t.checking_progress * 100:.0f}%" if t.checking_progress is not None else ""
        return Cause("checking", f"Checking{done}")
    return Cause("seeding", "Complete, seeding")


def _no_peers(t: TorrentSnapshot) -> Cause | None:
    if t.peers:
        return None
    return Cause("no-peers", f"no connected peers ({t.peers_known} known)" if t.peers_known else "no peers known")


def _tracker(t: TorrentSnapshot, trackers: Sequence[TrackerSnapshot]) -> Cause | None:
    if not trackers:
        return Cause("tracker", "no trackers and no peers known") if not t.peers_known else None
    if any(tr.status != "error" for tr in trackers):
        return None
    error = next((tr.last_error for tr in trackers if tr.last_error), None)
    what = "tracker failing" if len(trackers) == 1 else f"all {len(trackers)} trackers failing"
    return Cause("tracker", f"{what} ({error})" if error else what)


def _no_seeds(t: TorrentSnapshot, connected: Sequence[PeerSnapshot]) -> Cause | None:
    """Nobody connected has everything: a guess that pieces are missing from the swarm (they may add up)."""
    if not t.peers or t.seeds or any(p.progress >= 1 for p in connected):
        return None
    known = f" (trackers know of {t.seeds_known})" if t.seeds_known is not None else ""
    return Cause("no-seeds", f"no seed among {t.peers} connected peers{known}")


def _choked(connected: Sequence[PeerSnapshot]) -> Cause | None:
    wanted = [p for p in connected if p.am_interested]
    if not wanted or not all(p.peer_choking for p in wanted):
        return None
    which = "" if len(wanted) == len(connected) else " that have pieces we want"
    return Cause("choked", f"choked by all {len(wanted)} peers{which}")


def _snubbed(connected: Sequence[PeerSnapshot]) -> Cause | None:
    unchoked = [p for p in connected if p.am_interested and not p.peer_choking]
    if not unchoked or not all(p.snubbed for p in unchoked):
        return None
    return Cause("snubbed", f"snubbed by all {len(unchoked)} peers that unchoke us (they send nothing)")


def _rate_cap(t: TorrentSnapshot, s: SessionSnapshot) -> Cause | None:
    """The tightest download limit the rate has reached; the engine's "download limit" alone says one holds it."""
    waiting = "download limit" in t.waiting_on
    limits: list[tuple[int, str]] = []
    if t.max_down > 0 and (waiting or t.down_rate >= CAP_SHARE * t.max_down):
        limits.append((t.max_down, "the torrent's download limit"))
    if s.max_down > 0 and (waiting or s.down_rate >= CAP_SHARE * s.max_down):
        limits.append((s.max_down, "the global download limit" + (" (alt speed on)" if s.alt_speed else "")))
    if limits:
        limit, which = min(limits)
        return Cause("rate-cap", f"capped by {which}: {format_size(limit)}/s")
    return Cause("rate-cap", "capped by a download limit") if waiting else None


def _peer_limit(t: TorrentSnapshot, s: SessionSnapshot) -> Cause | None:
    if "peer limit" not in t.waiting_on:
        return None
    if t.max_peers and t.peers >= t.max_peers:
        return Cause("peer-limit", f"at the peer limit: {t.peers} of {t.max_peers} peers")
    return Cause("peer-limit", f"at the global connection limit ({s.connections} connections)")
