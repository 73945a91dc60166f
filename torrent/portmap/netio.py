"""What the port mapping clients share on asyncio: a UDP endpoint with a bounded queue, bounded
waits, address checks, and ``Mapped``, the value a client returns once TCP and UDP are mapped."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from torrent.portmap.natpmp import Proto

__all__ = ["PROTOCOLS", "Datagrams", "Mapped", "Method", "next_item", "open_udp", "same_address", "where"]

Method = Literal["upnp", "natpmp", "pcp"]
PROTOCOLS: tuple[Proto, ...] = ("tcp", "udp")
_QUEUE = 64  # datagrams waiting to be read; more is a flood

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Mapped:
    """Both protocols mapped: where, to what, for how long (0: until removed)."""

    method: Method
    gateway: str
    external_address: str | None
    tcp_port: int
    udp_port: int
    lease: int


class Datagrams(asyncio.DatagramProtocol):
    """Datagrams and socket errors (ICMP unreachable) in one bounded queue; a flood is dropped."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[Any, ...]] | OSError] = asyncio.Queue(_QUEUE)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if not self.queue.full():
            self.queue.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError) and not self.queue.full():
            self.queue.put_nowait(exc)


async def open_udp(*, remote: tuple[str, int] | None, local: str | None,
                   family_of: str) -> tuple[asyncio.DatagramTransport, Datagrams]:
    """A UDP endpoint of ``family_of``'s address family, connected to ``remote`` if given."""
    family = socket.AF_INET6 if ":" in family_of else socket.AF_INET
    local_addr = (local, 0) if local else ("::" if family == socket.AF_INET6 else "0.0.0.0", 0)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Datagrams, local_addr=local_addr,
                                                              remote_addr=remote, family=family)
    return transport, protocol


async def next_item(queue: asyncio.Queue[_T], timeout: float) -> _T | None:
    """The next item within ``timeout`` seconds, or None."""
    if timeout <= 0:
        return None
    try:
        return await asyncio.wait_for(queue.get(), timeout)
    except TimeoutError:
        return None


def same_address(a: str, b: str) -> bool:
    """Both are IP literals naming one address (so ``::ffff:10.0.0.1`` is not ``10.0.0.1``)."""
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False  # a name: we never resolve one


def where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
