"""Trackers: HTTP (BEP 3/23/7/24/48) and UDP (BEP 15/41) codecs, BEP 12 tiers, asyncio client.

Layers, each usable alone:

* ``announce`` — shared immutable types and the ``TrackerError`` family;
* ``http``, ``udp`` — sans-IO codecs (bytes in, values out; no sockets, no clocks);
* ``tiers`` — which tracker to announce to next and when (sans-IO, times passed in);
* ``client`` — ``announce()`` / ``scrape()`` on asyncio.
"""

from torrent.codec.tracker.announce import (
    AnnounceRequest,
    AnnounceResponse,
    Event,
    Peer,
    ScrapeResponse,
    ScrapeStats,
    TrackerError,
    TrackerFailure,
    TrackerHTTPError,
    TrackerResponseError,
    TrackerTimeout,
    TrackerUnreachable,
)
from torrent.tracker.client import announce, scrape
from torrent.tracker.tiers import TrackerStatus, TrackerTiers

__all__ = [
    "AnnounceRequest",
    "AnnounceResponse",
    "Event",
    "Peer",
    "ScrapeResponse",
    "ScrapeStats",
    "TrackerError",
    "TrackerFailure",
    "TrackerHTTPError",
    "TrackerResponseError",
    "TrackerTimeout",
    "TrackerUnreachable",
    "TrackerStatus",
    "TrackerTiers",
    "announce",
    "scrape",
]
