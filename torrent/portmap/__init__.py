"""Port mapping: ask the gateway to forward our listening port, by UPnP IGD or PCP/NAT-PMP.

Layers, each usable alone:

* ``natpmp``, ``upnp`` — sans-IO codecs (bytes in, values out; no sockets, no clocks), and
  ``natpmp.default_gateway`` for the routing table's text;
* ``errors`` — the ``PortMapError`` family;
* ``natpmp_client``, ``upnp_client`` — one method each on asyncio (``netio``: what they share);
* ``mapper`` — ``PortMapper``: all methods at once, renewals, removal; ``MappingStatus`` values.
"""

from torrent.portmap.errors import (
    GatewayRefused,
    GatewayTimeout,
    GatewayUnreachable,
    MalformedResponse,
    PortMapError,
)
from torrent.portmap.mapper import METHODS, MappingStatus, PortMapper

__all__ = [
    "METHODS",
    "GatewayRefused",
    "GatewayTimeout",
    "GatewayUnreachable",
    "MalformedResponse",
    "MappingStatus",
    "PortMapError",
    "PortMapper",
]
