"""The machine's physical ceilings for a loopback download, measured in the
same run as the scenarios so that a figure can be read against them: no
client can verify faster than one core hashes, receive faster than one TCP
connection carries, or store faster than the page cache takes writes."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20


@dataclass(frozen=True)
class Ceiling:
    name: str
    bytes_per_second: float


def measure_all(work_dir: Path, size: int, settle: float = 0.0) -> list[Ceiling]:
    """Each ceiling over min(size, 512 MiB): long enough to be stable, short
    enough not to dominate a quick bench. The write waits ``settle`` seconds
    first, as every run does, so it starts from the runs' memory state."""
    amount = max(CHUNK * 16, min(size, 512 * CHUNK))
    sha1 = Ceiling("SHA-1, one core (OpenSSL)", sha1_one_core(amount))
    tcp = Ceiling("loopback TCP, one connection", loopback_tcp(amount))
    time.sleep(settle)
    return [sha1, tcp, Ceiling("page-cache write", page_cache_write(work_dir, amount))]


def sha1_one_core(amount: int, piece: int = 256 * 1024) -> float:
    """Single-stream SHA-1 over 256 KiB pieces, the way a client verifies."""
    data = os.urandom(CHUNK * 16)
    view = memoryview(data)
    done = 0
    started = time.perf_counter()
    while done < amount:
        for offset in range(0, len(data), piece):
            hashlib.sha1(view[offset:offset + piece]).digest()
        done += len(data)
    return done / (time.perf_counter() - started)


def loopback_tcp(amount: int) -> float:
    """One TCP connection on 127.0.0.1, sender and receiver in two threads
    (both release the GIL in the socket calls)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        payload = memoryview(os.urandom(CHUNK))

        def send() -> None:
            with socket.create_connection(("127.0.0.1", port)) as out:
                sent = 0
                while sent < amount:
                    out.sendall(payload)
                    sent += len(payload)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        conn, _ = server.accept()
        with conn:
            buf = bytearray(CHUNK)
            received = 0
            started = time.perf_counter()
            while received < amount:
                n = conn.recv_into(buf)
                if not n:
                    break
                received += n
            elapsed = time.perf_counter() - started
        sender.join()
    return received / elapsed


def page_cache_write(work_dir: Path, amount: int) -> float:
    """Writes of 1 MiB into a new file, without fsync: where a download's
    data goes first."""
    path = work_dir / "ceiling-write.tmp"
    payload = os.urandom(CHUNK)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        started = time.perf_counter()
        for offset in range(0, amount, CHUNK):
            os.pwrite(fd, payload, offset)
        elapsed = time.perf_counter() - started
    finally:
        os.close(fd)
        path.unlink()
    return amount / elapsed
