"""The errors of port mapping: each message names the gateway or the answer that went wrong.

The codecs raise them without knowing the gateway's address where they cannot; the mapper
puts the method in front (``UPnP: …``, ``NAT-PMP: …``) before a user sees the message.
"""

from __future__ import annotations

from torrent.core.errors import TorrentError


class PortMapError(TorrentError):
    """A port could not be mapped (or unmapped) on the gateway."""


class MalformedResponse(PortMapError):
    """The gateway's answer is not a valid message of the protocol; it is ignored."""


class GatewayRefused(PortMapError):
    """The gateway answered and said no; ``code`` is the protocol's result or error code."""

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message)
        self.code = code


class GatewayTimeout(PortMapError):
    """Nothing (valid) came back within the time allowed."""


class GatewayUnreachable(PortMapError):
    """The gateway could not be reached at all: connection refused, no route, no address."""
