"""uTP over the session's UDP endpoint: ``UtpSocket`` owns the connections, ``UtpTransport`` is the asyncio
transport a ``PeerConnection`` (a ``BufferedProtocol``) runs on, as it runs on TCP.

The protocol logic is the sans-IO ``torrent.codec.utp``; this module only moves datagrams and drives the
protocol callbacks the way asyncio's own transports do. Datagrams received in one loop iteration are
handled first; then, once per iteration (``call_soon``), each connection they touched delivers its
in-order bytes to the protocol and sends what it may: the acks of a whole batch leave together, with
whatever the protocol wrote meanwhile. One timer (``TICK`` seconds) runs the connections' timeouts.

Rate limits need nothing here: the session limits transfer rates where TCP's are limited, in the swarm
(requests paced by the download bucket, blocks sent by the upload bucket), above the transport.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

from torrent.codec import utp
from torrent.codec.utp import CONNECTED, ST_RESET, ST_SYN, UtpConnection

Address = tuple[Any, ...]
TICK = 0.05  # seconds between timer checks (the codec's timeouts are 0.5 s and more)
HALF_OPEN_TIMEOUT = 10.0  # an accepted SYN that hears nothing more is forgotten after this
_READ_CHUNK = 1 << 20


class UtpSocket:
    """All uTP connections on one UDP endpoint, keyed by (address, our receive connection id).

    ``sendto(data, addr)`` is the endpoint's; ``datagram_received`` takes the datagrams its demultiplexer
    found to be uTP. ``on_accept`` makes the protocol of an incoming connection (None refuses them).
    """

    def __init__(self, sendto: Callable[[bytes, Address], None], *,
                 on_accept: Callable[[], asyncio.BaseProtocol] | None = None, max_connections: int = 200,
                 max_half_open: int = 32, recv_window: int = 1 << 20, send_buffer: int = 1 << 20,
                 sockname: Address | None = None) -> None:
        self._sendto = sendto
        self.on_accept = on_accept
        self.max_connections = max_connections
        self.max_half_open = max_half_open
        self._opts = {"recv_window": recv_window, "send_buffer": send_buffer}
        self.sockname = sockname
        self._conns: dict[tuple[Address, int], UtpTransport] = {}
        self._half_open: dict[tuple[Address, int], float] = {}  # accepted, no packet since the SYN
        self._dirty: set[UtpTransport] = set()
        self._flush_handle: asyncio.Handle | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rng = random.Random()
        self.dropped = 0
        self.refused = 0
        self.closed = False

    def __len__(self) -> int:
        return len(self._conns)

    # ---- datagrams in --------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if len(data) < utp.HEADER_SIZE or self.closed:
            self.dropped += 1
            return
        key = (addr, (data[2] << 8) | data[3])
        transport = self._conns.get(key)
        now = time.monotonic()
        if transport is not None:
            transport.events |= transport.conn.receive(data, now)
            if self._half_open and key in self._half_open and data[0] >> 4 != ST_SYN:
                del self._half_open[key]
                transport.confirmed = True
            self._mark(transport)
        elif data[0] >> 4 == ST_SYN:
            self._syn(data, addr, now)
        else:
            self.dropped += 1

    def _syn(self, data: bytes, addr: Address, now: float) -> None:
        try:
            header = utp.parse_header(data)
        except utp.UtpError:
            self.dropped += 1
            return
        if self.on_accept is None or len(self._conns) >= self.max_connections \
                or len(self._half_open) >= self.max_half_open:
            self.refused += 1  # refused at once, so the dialler does not wait for its SYN to time out
            self._sendto(utp.build_packet(ST_RESET, header.connection_id, int(now * 1e6), 0, 0,
                                          self._rng.getrandbits(16), header.seq_nr), addr)
            return
        key = (addr, (header.connection_id + 1) & 0xFFFF)
        if key in self._conns:
            self.dropped += 1
            return
        conn = UtpConnection.accept(data, self._rng.getrandbits(16), now, ipv6=":" in str(addr[0]),
                                    **self._opts)
        transport = UtpTransport(self, conn, addr, None)
        transport.confirmed = False
        self._conns[key] = transport
        self._half_open[key] = now
        self._ensure_tick()
        self._mark(transport)

    # ---- connecting ------------------------------------------------------------------------------

    async def connect(self, address: Address, protocol_factory: Callable[[], asyncio.BaseProtocol],
                      timeout: float = 10.0) -> tuple[UtpTransport, asyncio.BaseProtocol]:
        """Dial ``address`` like ``loop.create_connection``: ``ConnectionRefusedError`` on a RESET,
        ``TimeoutError`` when the SYN goes unanswered."""
        if self.closed:
            raise OSError("the uTP socket is closed")
        if len(self._conns) >= self.max_connections:
            raise OSError(f"too many uTP connections ({self.max_connections})")
        addr = (address[0], address[1])
        recv_id = self._rng.getrandbits(16)
        while (addr, recv_id) in self._conns or (addr, (recv_id + 1) & 0xFFFF) in self._conns:
            recv_id = self._rng.getrandbits(16)
        conn = UtpConnection.connect(recv_id, self._rng.getrandbits(16), time.monotonic(),
                                     ipv6=":" in str(addr[0]), **self._opts)
        loop = asyncio.get_running_loop()
        transport = UtpTransport(self, conn, addr, loop.create_future())
        transport._factory = protocol_factory
        self._conns[(addr, conn.recv_id)] = transport
        self._ensure_tick()
        self._mark(transport)
        try:
            await asyncio.wait_for(asyncio.shield(transport._connected), timeout)
        except BaseException:
            transport.abort()
            raise
        assert transport._protocol is not None
        return transport, transport._protocol

    # ---- the loop side ------------------------------------------------------------------------------

    def _mark(self, transport: UtpTransport) -> None:
        self._dirty.add(transport)
        if self._flush_handle is None:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        now = time.monotonic()
        again: list[UtpTransport] = []
        while self._dirty:
            dirty = self._dirty
            self._dirty = set()
            for transport in dirty:
                if transport._service(now):
                    again.append(transport)
        for transport in again:  # sent a burst's worth: more after the next reads (acks) come in
            self._mark(transport)

    def _ensure_tick(self) -> None:
        if self._tick_handle is None and self._conns:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._tick_handle = self._loop.call_later(TICK, self._tick)

    def _tick(self) -> None:
        self._tick_handle = None
        now = time.monotonic()
        for key, since in list(self._half_open.items()):
            if now - since > HALF_OPEN_TIMEOUT:
                del self._half_open[key]
                transport = self._conns.get(key)
                if transport is not None:
                    transport._forget()
        for transport in list(self._conns.values()):
            deadline = transport.conn.next_timer()
            if deadline is not None and deadline <= now:
                transport.events |= transport.conn.on_timer(now)
                self._mark(transport)
        self._ensure_tick()

    def send(self, packets: list[bytes], addr: Address) -> None:
        sendto = self._sendto
        for packet in packets:
            sendto(packet, addr)

    def _remove(self, transport: UtpTransport) -> None:
        key = (transport.addr, transport.conn.recv_id)
        if self._conns.get(key) is transport:
            del self._conns[key]
        self._half_open.pop(key, None)
        self._dirty.discard(transport)

    def close(self) -> None:
        """Abort every connection (a RESET each) and stop the timer."""
        self.closed = True
        for transport in list(self._conns.values()):
            transport.abort()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None


class UtpTransport(asyncio.Transport):
    """One uTP connection as an asyncio transport (write buffering, flow control, close, abort)."""

    def __init__(self, socket: UtpSocket, conn: UtpConnection, addr: Address,
                 connected: asyncio.Future[None] | None) -> None:
        super().__init__()
        self._socket = socket
        self.conn = conn
        self.addr = addr
        self.events = 0
        self.confirmed = True
        self._connected = connected
        self._factory: Callable[[], asyncio.BaseProtocol] | None = None
        self._protocol: Any = None
        self._buffered = False
        self._pending: list[bytes] = []  # written past the codec's send buffer, in order
        self._pending_size = 0
        self._high = 64 * 1024
        self._low = 16 * 1024
        self._writing_paused = False
        self._reading_paused = False
        self._closing = False
        self._eof_delivered = False
        self._lost = False

    # ---- asyncio.Transport ---------------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.addr
        if name == "transport":  # PeerConnection.transport_name: the peer rows' "utp"
            return "utp"
        if name == "sockname":
            return self._socket.sockname if self._socket.sockname is not None else default
        return default

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        self._buffered = isinstance(protocol, asyncio.BufferedProtocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def is_reading(self) -> bool:
        return not self._reading_paused and not self.is_closing()

    def pause_reading(self) -> None:
        self._reading_paused = True  # bytes stay in the codec: its advertised window closes

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self._socket._mark(self)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not 0 <= low <= high:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._check_pause()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def get_write_buffer_size(self) -> int:
        return self._pending_size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._lost or not data:
            return
        if not self._pending:
            n = self.conn.write(data)
            if n < len(data):
                rest = bytes(data[n:])  # copied: the caller may reuse its buffer
                self._pending.append(rest)
                self._pending_size += len(rest)
                self._check_pause()
        else:
            rest = bytes(data)
            self._pending.append(rest)
            self._pending_size += len(rest)
            self._check_pause()
        self._socket._mark(self)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        """Send what is buffered, then a FIN; ``connection_lost(None)`` once it is acked."""
        if self._closing or self._lost:
            return
        self._closing = True
        self._socket._mark(self)

    def abort(self) -> None:
        if self._lost:
            return
        self._closing = True
        packet = self.conn.reset(time.monotonic())
        if packet is not None:
            self._socket.send([packet], self.addr)
        self._lose(None)

    # ---- driven by UtpSocket ---------------------------------------------------------------------

    def _check_pause(self) -> None:
        protocol = self._protocol
        if protocol is None:
            return
        if not self._writing_paused and self._pending_size > self._high:
            self._writing_paused = True
            protocol.pause_writing()
        elif self._writing_paused and self._pending_size <= self._low:
            self._writing_paused = False
            protocol.resume_writing()

    def _service(self, now: float) -> bool:
        """Once per loop iteration for a connection that received packets, was written to or timed out;
        True if it has more to send at once."""
        conn = self.conn
        events, self.events = self.events, 0
        if events & CONNECTED and self._connected is not None and not self._connected.done():
            self._start(self._factory)
        if self._protocol is None and self.confirmed and conn.connected and self._socket.on_accept is not None \
                and self._connected is None:
            self._start(self._socket.on_accept)
        if self._lost:
            return False
        if self._protocol is not None:
            if not self._reading_paused:
                self._deliver()
            if self._lost:
                return False
            if self._pending:
                self._refill()
        if self._closing and not self._pending:
            conn.close()
        packets = conn.datagrams_to_send(now)
        if packets:
            self._socket.send(packets, self.addr)
        if conn.closed:
            self._finish()
        elif self._closing and conn.finished and self._protocol is not None:
            self._lose(None)  # everything we wrote arrived; what the peer sends now has no reader
        return not self._lost and conn.blocked_by_burst

    def _start(self, factory: Callable[[], asyncio.BaseProtocol] | None) -> None:
        assert factory is not None
        try:
            protocol = factory()
        except Exception as exc:  # noqa: BLE001 - a factory error fails this connection only
            self.abort()
            if self._connected is not None and not self._connected.done():
                self._connected.set_exception(exc)
            return
        self.set_protocol(protocol)
        protocol.connection_made(self)
        if self._connected is not None and not self._connected.done():
            self._connected.set_result(None)

    def _deliver(self) -> None:
        conn = self.conn
        protocol = self._protocol
        while conn.readable and not self._reading_paused and not self._lost:
            if self._closing:
                conn.read_into(memoryview(bytearray(conn.readable)))  # closed for reading: dropped
                break
            if self._buffered:
                buf = protocol.get_buffer(min(conn.readable, _READ_CHUNK))
                n = conn.read_into(memoryview(buf))
                if not n:
                    raise RuntimeError("get_buffer() returned an empty buffer")
                protocol.buffer_updated(n)
            else:
                protocol.data_received(conn.read(min(conn.readable, _READ_CHUNK)))
        if conn.at_eof and not self._eof_delivered and not self._lost and not self._reading_paused:
            self._eof_delivered = True
            if not self._closing and not protocol.eof_received():
                self.close()

    def _refill(self) -> None:
        conn = self.conn
        pending = self._pending
        while pending:
            first = pending[0]
            n = conn.write(first)
            self._pending_size -= n
            if n < len(first):
                pending[0] = first[n:]
                break
            pending.pop(0)
        self._check_pause()

    def _finish(self) -> None:
        error = self.conn.error
        if self._connected is not None and not self._connected.done():
            exc: OSError = ConnectionRefusedError(error) if error and "refused" in error else \
                TimeoutError(error or "uTP connection closed")
            self._connected.set_exception(exc)
            self._lose(None)
            return
        if error is None:
            self._lose(None)
        elif "timed out" in error:
            self._lose(TimeoutError(error))
        else:
            self._lose(ConnectionResetError(error))

    def _lose(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._socket._remove(self)
        if self._connected is not None and not self._connected.done():
            self._connected.cancel()  # connect() was cancelled or timed out: nobody waits for it
        if self._protocol is not None:
            protocol = self._protocol
            asyncio.get_running_loop().call_soon(protocol.connection_lost, exc)

    def _forget(self) -> None:
        """A half-open connection nobody confirmed: dropped without a word."""
        self._lost = True
        self._socket._remove(self)
