"""uTP transports (torrent.session.utp) between two UtpSockets on real UDP sockets on 127.0.0.1, each on the
session's UdpEndpoint demultiplexer."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
import socket

import pytest
import uvloop

from torrent.codec import utp
from torrent.session.udp import UdpEndpoint
from torrent.session.utp import UtpSocket


def on_uvloop(fn):
    """Run the coroutine test on uvloop, the session's loop."""
    @functools.wraps(fn)
    def wrapper():
        loop = uvloop.new_event_loop()
        try:
            return loop.run_until_complete(asyncio.wait_for(fn(), 120))
        finally:
            loop.close()
    return wrapper


class Sink(asyncio.BufferedProtocol):
    """A PeerConnection-like protocol: one preallocated receive buffer, bytes hashed as they come."""

    def __init__(self, send: bytes = b"", close_at_eof: bool = True, expect: int = 0) -> None:
        self.send = send
        self.expect = expect  # close once this much has arrived and everything is sent
        self.sent_all = asyncio.get_running_loop().create_future()
        self.close_at_eof = close_at_eof
        self.buf = memoryview(bytearray(64 * 1024))
        self.hash = hashlib.sha1()
        self.count = 0
        self.transport = None
        self.eof = asyncio.get_running_loop().create_future()
        self.lost = asyncio.get_running_loop().create_future()
        self.paused = 0
        self.drained = asyncio.Event()
        self.drained.set()

    def connection_made(self, transport):
        self.transport = transport
        transport.set_write_buffer_limits(high=1 << 20)
        if self.send:
            asyncio.get_running_loop().create_task(self.pump())

    async def pump(self):
        view = memoryview(self.send)
        for i in range(0, len(view), 16384 + 13):
            self.transport.write(view[i:i + 16384 + 13])
            await self.drained.wait()
        self.sent_all.set_result(None)
        self._maybe_close()

    def _maybe_close(self):
        if self.sent_all.done() and self.count >= self.expect:
            self.transport.close()

    def pause_writing(self):
        self.paused += 1
        self.drained.clear()

    def resume_writing(self):
        self.drained.set()

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.hash.update(self.buf[:nbytes])
        self.count += nbytes
        if self.expect and self.count >= self.expect:
            self._maybe_close()

    def eof_received(self):
        if not self.eof.done():
            self.eof.set_result(self.count)
        return not self.close_at_eof

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


async def endpoint_pair(**kwargs):
    ends = []
    for _ in range(2):
        endpoint = await UdpEndpoint.open("127.0.0.1", 0)
        sock = UtpSocket(endpoint.sendto, sockname=("127.0.0.1", endpoint.port), **kwargs)
        endpoint.on_utp = sock.datagram_received
        ends.append((endpoint, sock))
    return ends


def accept_into(utp_socket: UtpSocket) -> list[Sink]:
    """Accept incoming connections on ``utp_socket`` with a ``Sink`` each; the list fills as they come."""
    accepted: list[Sink] = []

    def accept():
        sink = Sink()
        accepted.append(sink)
        return sink

    utp_socket.on_accept = accept
    return accepted


def close_all(ends):
    for endpoint, sock in ends:
        sock.close()
        endpoint.close()


@on_uvloop
async def test_32_mib_both_ways():
    (ea, a), (eb, b) = await endpoint_pair()
    data_a = random.Random(1).randbytes(32 << 20)
    data_b = random.Random(2).randbytes(32 << 20)
    accepted: list[Sink] = []

    def accept():
        sink = Sink(send=data_b, expect=len(data_a))
        accepted.append(sink)
        return sink

    b.on_accept = accept
    try:
        transport, client = await a.connect(("127.0.0.1", eb.port),
                                            lambda: Sink(send=data_a, expect=len(data_b)), timeout=5)
        assert transport.get_extra_info("peername") == ("127.0.0.1", eb.port)
        while not accepted:
            await asyncio.sleep(0.01)
        (server,) = accepted
        await asyncio.wait_for(asyncio.gather(client.lost, server.lost), 60)
        assert server.count == len(data_a) and server.hash.digest() == hashlib.sha1(data_a).digest()
        assert client.count == len(data_b) and client.hash.digest() == hashlib.sha1(data_b).digest()
        assert await asyncio.wait_for(client.lost, 15) is None
        assert await asyncio.wait_for(server.lost, 15) is None
        assert client.paused and server.paused  # writes past the high-water mark paused the writers
        assert len(a) == 0 and len(b) == 0
    finally:
        close_all([(ea, a), (eb, b)])


@on_uvloop
async def test_pause_reading_closes_the_window():
    (ea, a), (eb, b) = await endpoint_pair(recv_window=256 * 1024)
    accepted = accept_into(b)
    try:
        transport, client = await a.connect(("127.0.0.1", eb.port), Sink, timeout=5)
        transport.write(b"x" * 100)
        while not accepted or not accepted[0].count:
            await asyncio.sleep(0.01)
        server = accepted[0]
        server.transport.pause_reading()
        transport.write(bytes(4 << 20))
        await asyncio.sleep(0.5)
        held = server.count
        conn = server.transport.conn
        assert conn.readable <= 256 * 1024 + 1500  # bounded by the window, not the 4 MiB written
        assert a._conns and transport.conn.unsent > 0  # the sender waits
        server.transport.resume_reading()
        while server.count < 100 + (4 << 20):
            await asyncio.sleep(0.01)
        assert server.count > held
    finally:
        close_all([(ea, a), (eb, b)])


@on_uvloop
async def test_refused_connect():
    (ea, a), (eb, b) = await endpoint_pair()  # b accepts nothing: it answers a SYN with a RESET
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(ConnectionRefusedError):
            await a.connect(("127.0.0.1", eb.port), Sink, timeout=5)
        assert loop.time() - start < 2 and b.refused == 1 and len(a) == 0
    finally:
        close_all([(ea, a), (eb, b)])


@on_uvloop
async def test_connect_timeout_to_silence():
    (ea, a), = [(await endpoint_pair())[0]]
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        with pytest.raises(asyncio.TimeoutError):
            await a.connect(silent.getsockname(), Sink, timeout=0.3)
        assert len(a) == 0
    finally:
        silent.close()
        a.close()
        ea.close()


@on_uvloop
async def test_abort_resets_the_peer():
    (ea, a), (eb, b) = await endpoint_pair()
    accepted = accept_into(b)
    try:
        transport, client = await a.connect(("127.0.0.1", eb.port), Sink, timeout=5)
        transport.write(b"hello")
        while not accepted or not accepted[0].count:
            await asyncio.sleep(0.01)
        transport.abort()
        assert transport.is_closing()
        assert await asyncio.wait_for(client.lost, 1) is None
        exc = await asyncio.wait_for(accepted[0].lost, 2)
        assert isinstance(exc, ConnectionResetError)
        assert len(a) == 0 and len(b) == 0
    finally:
        close_all([(ea, a), (eb, b)])


@on_uvloop
async def test_garbage_and_syn_flood_are_bounded():
    (ea, a), (eb, b) = await endpoint_pair(max_half_open=8)
    b.on_accept = Sink
    rng = random.Random(5)
    flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        target = ("127.0.0.1", eb.port)
        for i in range(3000):
            if i % 2:
                flood.sendto(rng.randbytes(rng.randrange(0, 200)), target)
            else:
                syn = utp.build_packet(utp.ST_SYN, rng.getrandbits(16), 0, 0, 0, rng.getrandbits(16), 0)
                flood.sendto(syn, target)
            if i % 100 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        assert len(b) <= 8  # half-open connections capped
        assert b.refused > 0
        # A real connection still gets through once the half-open ones expire (or with room).
        b._half_open.clear()
        for transport in list(b._conns.values()):
            transport._forget()
        transport, client = await a.connect(target, Sink, timeout=5)
        transport.write(b"still alive")
        await asyncio.sleep(0.2)
        assert len(b) == 1
    finally:
        flood.close()
        close_all([(ea, a), (eb, b)])


@on_uvloop
async def test_udp_endpoint_demultiplexes_utp_from_krpc_and_trackers():
    seen = {"krpc": 0, "utp": 0}
    endpoint = await UdpEndpoint.open("127.0.0.1", 0, lambda d, a: seen.__setitem__("krpc", seen["krpc"] + 1))
    endpoint.on_utp = lambda d, a: seen.__setitem__("utp", seen["utp"] + 1)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        target = ("127.0.0.1", endpoint.port)
        sender.sendto(b"d1:ad2:id20:" + bytes(20) + b"e1:q4:ping1:t2:aa1:y1:qe", target)
        for typ in range(5):
            sender.sendto(utp.build_packet(typ, 1, 0, 0, 0, 1, 0), target)
        sender.sendto(b"\x51" + bytes(19), target)  # type 5: not uTP
        sender.sendto(b"\x01" + bytes(10), target)  # too short
        sender.sendto(bytes(16), target)  # a tracker reply to nobody
        for _ in range(50):
            await asyncio.sleep(0.01)
            if seen["utp"] == 5 and endpoint.dropped == 3:
                break
        assert seen == {"krpc": 1, "utp": 5} and endpoint.dropped == 3
    finally:
        sender.close()
        endpoint.close()
