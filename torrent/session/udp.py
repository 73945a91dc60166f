"""The session's UDP endpoint: one socket per address family on the listen port's number.

The DHT, the UDP tracker client and uTP share it, as libtorrent's do: a NAT maps one port, and a
peer told our port in a ``port`` message reaches the same node a tracker saw. Datagrams are told apart by
their first bytes: a uTP packet starts with ``type << 4 | 1`` (type 0-4) and has at least 20 bytes; a KRPC
message is a bencoded dictionary (``d``, 0x64: version nibble 4, never uTP); a UDP tracker reply carries the
transaction id of a request we sent to that address (bytes 4-8, BEP 15; its first byte is 0, an action's
high byte); anything else is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from torrent.codec.utp import looks_like_utp

log = logging.getLogger("torrent.session")

Address = tuple[Any, ...]
_TRACKER_QUEUE = 64  # replies waiting for one tracker transaction; more is a flood
_MAX_TRACKER_VIEWS = 256  # tracker transactions in flight on one endpoint
# Asked of the kernel for each direction (it grants at most net.core.rmem_max / wmem_max, often 208 KiB):
# uTP peers may have this much in flight toward us, and what overflows the socket buffer is lost.
SOCKET_BUFFER = 4 * 1024 * 1024


class _TrackerView:
    """What the tracker client sees: a ``DatagramEndpoint`` receiving only the replies to its requests."""

    def __init__(self, endpoint: UdpEndpoint, addr: Address) -> None:
        self._endpoint = endpoint
        self.addr = (addr[0], addr[1])
        self.received: asyncio.Queue[tuple[bytes, Address] | BaseException] = asyncio.Queue(_TRACKER_QUEUE)
        self.tids: set[bytes] = set()

    def send(self, data: bytes, addr: Address) -> None:
        if len(data) >= 16:  # BEP 15: every request has its transaction id at bytes 12-16
            tid = data[12:16]
            self.tids.add(tid)
            self._endpoint.routes[tid] = self
        self._endpoint.sendto(data, addr)

    def deliver(self, data: bytes, addr: Address) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.received.put_nowait((data, addr))

    def close(self) -> None:
        for tid in self.tids:
            if self._endpoint.routes.get(tid) is self:
                del self._endpoint.routes[tid]
        self.tids.clear()


class _Sender:
    def __init__(self, endpoint: UdpEndpoint) -> None:
        self._endpoint = endpoint

    def sendto(self, data: bytes, addr: Address) -> None:
        self._endpoint.sendto(data, addr)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        transport = self._endpoint.transport
        return transport.get_extra_info(name, default) if transport is not None else default

    def close(self) -> None:
        """The session closes the endpoint, not the DHT node."""


class UdpEndpoint(asyncio.DatagramProtocol):
    """One bound UDP socket; ``on_krpc(data, addr)`` takes the DHT's datagrams."""

    def __init__(self, on_krpc: Callable[[bytes, tuple[str, int]], None] | None = None) -> None:
        self.on_krpc = on_krpc
        self.on_utp: Callable[[bytes, tuple[str, int]], None] | None = None  # the session's UtpSocket
        self.transport: asyncio.DatagramTransport | None = None
        self.routes: dict[bytes, _TrackerView] = {}
        self.dropped = 0

    @classmethod
    async def open(cls, host: str, port: int, on_krpc: Callable[[bytes, tuple[str, int]], None] | None = None
                   ) -> UdpEndpoint:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:  # beside the IPv4 socket on the same port, not over it
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            sock.bind((host, port))
            sock.setblocking(False)
            _, endpoint = await loop.create_datagram_endpoint(lambda: cls(on_krpc), sock=sock)
        except BaseException:
            sock.close()
            raise
        return endpoint

    @property
    def receive_buffer(self) -> int:
        """The socket's receive buffer as the kernel accounts it (twice the payload it holds, or more:
        each datagram is charged its kernel bookkeeping too)."""
        assert self.transport is not None
        return int(self.transport.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def sendto(self, data: bytes, addr: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            try:
                self.transport.sendto(data, addr[:2])
            except OSError as exc:  # an address of the other family, a network that is down
                log.debug("udp: cannot send to %s: %s", addr[0], exc)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        source = (addr[0], addr[1])
        if self.on_utp is not None and looks_like_utp(data):
            self.on_utp(data, source)
            return
        if data[:1] == b"d":
            if self.on_krpc is not None:
                self.on_krpc(data, source)
                return
        elif len(data) >= 8:
            view = self.routes.get(data[4:8])
            if view is not None and view.addr == source:
                view.deliver(data, source)
                return
        self.dropped += 1

    def error_received(self, exc: Exception) -> None:
        log.debug("udp: %s", exc)

    def sender(self) -> _Sender:
        """A transport for the DHT node: it sends through this socket and cannot close it."""
        return _Sender(self)

    async def tracker_socket(self, family: int, addr: Address) -> _TrackerView:
        """The tracker client's ``UdpSocketFactory``."""
        if self.transport is None or len(self.routes) >= _MAX_TRACKER_VIEWS * 4:
            raise OSError("the session's UDP socket is closed or busy")
        return _TrackerView(self, addr)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
