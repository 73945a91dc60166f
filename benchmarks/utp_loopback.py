"""Throughput and CPU of one uTP stream between two of our UtpSockets on 127.0.0.1, in two processes.

    .venv/bin/python benchmarks/utp_loopback.py [MiB]   (default 256)

The receiver runs in a child process (its own core, as a real peer would); the sender streams MiB of
payload in 16 KiB writes through a BufferedProtocol and waits for the receiver's byte count. Prints wall
time, MB/s, and user+sys CPU seconds per GiB for each side, plus the codec's packet counters.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time

import uvloop

from torrent.session.udp import UdpEndpoint
from torrent.session.utp import UtpSocket

BLOCK = 16 * 1024


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Receiver(asyncio.BufferedProtocol):
    def __init__(self, total: int, done: asyncio.Future[None]) -> None:
        self.buf = memoryview(bytearray(256 * 1024))
        self.total, self.count, self.done = total, 0, done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.cpu0 = cpu()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self.count += nbytes
        if self.count >= self.total and not self.done.done():
            self.cpu = cpu() - self.cpu0
            self.transport.write(b"ok")  # type: ignore[attr-defined]
            self.done.set_result(None)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None: ...


class Sender(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.drained = asyncio.Event()
        self.drained.set()
        self.acked = asyncio.get_running_loop().create_future()
        self.buf = memoryview(bytearray(1024))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=1 << 20)  # type: ignore[attr-defined]

    def pause_writing(self) -> None:
        self.drained.clear()

    def resume_writing(self) -> None:
        self.drained.set()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        if not self.acked.done():
            self.acked.set_result(None)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None: ...


async def receive(total: int) -> None:
    endpoint = await UdpEndpoint.open("127.0.0.1", 0)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    receivers: list[Receiver] = []

    def accept() -> Receiver:
        receivers.append(Receiver(total, done))
        return receivers[-1]

    sock = UtpSocket(endpoint.sendto, on_accept=accept)
    endpoint.on_utp = sock.datagram_received
    print(endpoint.port, flush=True)
    await done
    await asyncio.sleep(0.5)  # let the last ack and the "ok" go out
    print(json.dumps({"cpu": receivers[0].cpu}), flush=True)
    sock.close()
    endpoint.close()


async def send(port: int, total: int) -> dict[str, float]:
    endpoint = await UdpEndpoint.open("127.0.0.1", 0)
    sock = UtpSocket(endpoint.sendto)
    endpoint.on_utp = sock.datagram_received
    transport, protocol = await sock.connect(("127.0.0.1", port), Sender, timeout=5)
    payload = memoryview(os.urandom(BLOCK))
    start, cpu0 = time.perf_counter(), cpu()
    sent = 0
    while sent < total:
        transport.write(payload)
        sent += BLOCK
        if not protocol.drained.is_set():
            await protocol.drained.wait()
    await protocol.acked
    elapsed = time.perf_counter() - start
    conn = transport.conn
    result = {"seconds": elapsed, "cpu": cpu() - cpu0, "packets": conn.stats_sent,
              "retransmits": conn.stats_retransmits, "timeouts": conn.stats_timeouts,
              "packet_size": conn.mtu_floor, "cwnd": conn.cwnd}
    sock.close()
    endpoint.close()
    return result


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--receive":
        uvloop.run(receive(int(sys.argv[2])))
        return
    total = int(sys.argv[1] if len(sys.argv) > 1 else 256) << 20
    child = subprocess.Popen([sys.executable, __file__, "--receive", str(total)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        result = uvloop.run(send(port, total))
        receiver = json.loads(child.stdout.readline())
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    gib = total / (1 << 30)
    print(f"{total >> 20} MiB in {result['seconds']:.2f} s: {total / result['seconds'] / 1e6:.0f} MB/s; "
          f"CPU per GiB: sender {result['cpu'] / gib:.2f} s, receiver {receiver['cpu'] / gib:.2f} s "
          "(from connection to the last byte)")
    print(f"sender: {result['packets']} packets, {result['retransmits']} retransmitted, "
          f"{result['timeouts']} timeouts, payload {result['packet_size']} B, cwnd {result['cwnd']:.0f} B")


if __name__ == "__main__":
    main()
