"""Bulk flows for the uTP fairness test, one process per end (each runs in its own network namespace).

    python utp_flow.py receive HOST UTP_PORT TCP_PORT
    python utp_flow.py send HOST UTP_PORT TCP_PORT ALONE BOTH [TCP_CC]

The receiver takes one uTP connection (the project's ``UtpSocket`` on a UDP socket) and one TCP
connection, counts each flow's bytes per ``BIN`` seconds, prints ``ready`` once listening and, when both
connections have ended, one JSON line: ``{"bin": s, "utp": [bytes per bin], "tcp": [...], "utp_first": s,
"tcp_first": s}`` (times since it started). The sender streams over uTP alone for ALONE seconds, then also
over TCP (congestion control TCP_CC, default cubic: the loss-based TCP that LEDBAT must yield to) for
BOTH seconds, aborts both, and prints one JSON line: every ``BIN`` seconds its uTP connection's window
(``cwnd``, bytes) and the TCP connection's smoothed round-trip time (``tcp_rtt``, ms: the delay TCP built).
Both ends run on uvloop, as the client does.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import sys
import time

import uvloop

from torrent.session.udp import UdpEndpoint
from torrent.session.utp import UtpSocket

BIN = 0.1  # seconds per counting bin
CHUNK = bytes(64 * 1024)
DEADLINE = 60.0  # the receiver gives up this long after starting, whatever happened
_TCPI_RTT = struct.Struct("I")  # Linux struct tcp_info: tcpi_rtt (microseconds) at byte 68


class Counter(asyncio.BufferedProtocol):
    """Counts received bytes into time bins; ``lost`` resolves when the connection ends."""

    def __init__(self, bins: list[int], t0: float) -> None:
        self.bins = bins
        self.t0 = t0
        self.first: float | None = None
        self.buf = bytearray(256 * 1024)
        self.lost = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        t = time.monotonic() - self.t0
        if self.first is None:
            self.first = t
        i = int(t / BIN)
        bins = self.bins
        if i >= len(bins):
            bins.extend([0] * (i + 1 - len(bins)))
        bins[i] += nbytes

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


class Pump(asyncio.Protocol):
    """Writes zeros as fast as the transport takes them (pausing at its high-water mark)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.task: asyncio.Task | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=256 * 1024)
        self.task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        while self.transport is not None and not self.transport.is_closing():
            await self.can_write.wait()
            self.transport.write(CHUNK)
            await asyncio.sleep(0)

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.can_write.set()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        if self.task is not None:
            self.task.cancel()


async def receive(host: str, utp_port: int, tcp_port: int) -> dict:
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    utp_bins: list[int] = []
    tcp_bins: list[int] = []
    flows: dict[str, Counter] = {}

    def accept(name: str, bins: list[int]) -> Counter:
        flows[name] = Counter(bins, t0)
        return flows[name]

    endpoint = await UdpEndpoint.open(host, utp_port)
    utp_socket = UtpSocket(endpoint.sendto, on_accept=lambda: accept("utp", utp_bins), sockname=(host, utp_port))
    endpoint.on_utp = utp_socket.datagram_received
    server = await loop.create_server(lambda: accept("tcp", tcp_bins), host, tcp_port)
    print("ready", flush=True)
    try:
        while not (len(flows) == 2 and all(f.lost.done() for f in flows.values())):
            if time.monotonic() - t0 > DEADLINE:
                break
            await asyncio.sleep(BIN)
    finally:
        server.close()
        utp_socket.close()
        endpoint.close()
    return {"bin": BIN, "utp": utp_bins, "tcp": tcp_bins,
            "utp_first": flows["utp"].first if "utp" in flows else None,
            "tcp_first": flows["tcp"].first if "tcp" in flows else None}


async def send(host: str, utp_port: int, tcp_port: int, alone: float, both: float, tcp_cc: str) -> dict:
    loop = asyncio.get_running_loop()
    endpoint = await UdpEndpoint.open("0.0.0.0", 0)
    utp_socket = UtpSocket(endpoint.sendto)
    endpoint.on_utp = utp_socket.datagram_received
    transport, utp_pump = await utp_socket.connect((host, utp_port), Pump, timeout=5)
    conn = transport.conn  # type: ignore[attr-defined]
    cwnd: list[int] = []
    tcp_rtt: list[int] = []
    sock: socket.socket | None = None

    async def sample(seconds: float) -> None:
        end = loop.time() + seconds
        while loop.time() < end:
            cwnd.append(int(conn.cwnd))
            if sock is not None:
                tcp_rtt.append(_TCPI_RTT.unpack_from(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104),
                                                     68)[0] // 1000)
            await asyncio.sleep(BIN)

    await sample(alone)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, tcp_cc.encode())
    sock.setblocking(False)
    await loop.sock_connect(sock, (host, tcp_port))
    _, tcp_pump = await loop.create_connection(Pump, sock=sock)
    await sample(both)
    stats = {"cwnd": cwnd, "tcp_rtt": tcp_rtt, "bin": BIN, "retransmits": conn.stats_retransmits,
             "timeouts": conn.stats_timeouts, "sent": conn.stats_sent}
    tcp_pump.abort()
    utp_pump.abort()
    await asyncio.sleep(0.1)  # the RESET leaves before the socket closes
    utp_socket.close()
    endpoint.close()
    return stats


def main(argv: list[str]) -> int:
    role, host, utp_port, tcp_port = argv[0], argv[1], int(argv[2]), int(argv[3])
    if role == "receive":
        result = uvloop.run(receive(host, utp_port, tcp_port))
    else:
        tcp_cc = argv[6] if len(argv) > 6 else "cubic"
        result = uvloop.run(send(host, utp_port, tcp_port, float(argv[4]), float(argv[5]), tcp_cc))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
