"""Which torrents may run now (sans-IO): the download and seed queues.

Like Transmission's queues: at most ``max_active_downloads`` torrents
download and at most ``max_active_seeds`` seed at once (-1: no limit), taken
in queue order; a force-started torrent runs whatever the queue says and
does not count against it. Paused, checking, errored and metadata torrents
are outside the queues. When a download completes it becomes a seed, which
frees its download slot for the next one in line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torrent.core.settings import QueueSettings


@dataclass(frozen=True, slots=True)
class QueueEntry:
    id: str
    position: int
    seeding: bool  # every wanted piece verified
    forced: bool


def allowed(entries: Iterable[QueueEntry], settings: QueueSettings) -> set[str]:
    """The ids that may be active now."""
    active: set[str] = set()
    counts = {False: 0, True: 0}
    limits = {False: settings.max_active_downloads, True: settings.max_active_seeds}
    for entry in sorted(entries, key=lambda e: e.position):
        if entry.forced:
            active.add(entry.id)
            continue
        limit = limits[entry.seeding]
        if limit < 0 or counts[entry.seeding] < limit:
            counts[entry.seeding] += 1
            active.add(entry.id)
    return active


def moved(order: list[str], torrent_id: str, how: str) -> list[str]:
    """``order`` (ids, top first) with ``torrent_id`` moved top, up, down or bottom."""
    rest = [t for t in order if t != torrent_id]
    index = order.index(torrent_id)
    target = {"top": 0, "up": max(index - 1, 0), "down": min(index + 1, len(rest)), "bottom": len(rest)}[how]
    rest.insert(target, torrent_id)
    return rest
