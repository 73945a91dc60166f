"""Helpers shared by several test modules (pytest puts tests/ on sys.path)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest

from torrent.bench.lt_peer import LOOPBACK_SETTINGS as LIBTORRENT_LOOPBACK  # noqa: F401  (re-exported)
from torrent.bench.swarm import LOOPBACK_CONFIG
from torrent.core import speedups


def loopback_config_home(directory: Path) -> str:
    """An ``XDG_CONFIG_HOME`` whose config keeps our client's peer discovery on 127.0.0.1 (no public DHT
    router, no multicast, no port mapping): for tests that run ``python -m torrent``."""
    config = directory / "torrent" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(LOOPBACK_CONFIG)
    return str(directory)


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (bound to :0, then released)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    pytest.fail("no port free for both TCP and UDP on 127.0.0.1", pytrace=False)


def http_get(port: int, target: str, timeout: float = 2.0) -> bytes:
    """A raw GET on 127.0.0.1 (no urllib: it would honour *_proxy variables)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def write_opentracker_config(workdir: Path, port: int, allowed_hex: list[str]) -> Path:
    """opentracker's config for 127.0.0.1:``port`` (TCP and UDP) with a whitelist.

    As packaged it is whitelist-only, and as root it drops to ``nobody`` before
    reading the whitelist: ``workdir`` must be world-readable (0755).
    """
    whitelist = workdir / "whitelist.txt"
    whitelist.write_text("".join(h + "\n" for h in allowed_hex))
    whitelist.chmod(0o644)
    conf = workdir / "opentracker.conf"
    conf.write_text(f"listen.tcp_udp 127.0.0.1:{port}\naccess.whitelist {whitelist}\n")
    conf.chmod(0o644)
    return conf


def opentracker_answers(port: int, probe: bytes, timeout: float = 1.0) -> tuple[bool, str]:
    """Whether opentracker answers a normal announce for the whitelisted
    ``probe`` hash, and what it said. Not ``event=stopped``: those are
    answered before the whitelist is even loaded."""
    target = (f"/announce?info_hash={quote_from_bytes(probe, safe='')}&peer_id={'-PROBE-' + 'x' * 13}"
              "&port=9&uploaded=0&downloaded=0&left=0&compact=1")
    try:
        reply = http_get(port, target, timeout)
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return b"interval" in reply and b"failure reason" not in reply, f"answered {reply[-200:]!r}"


def compiled_bitfield_class() -> type:
    """The compiled Bitfield; a test fails (never skips) if it is not built."""
    try:
        return speedups.compiled_module("bitfield").Bitfield
    except ImportError as exc:  # pragma: no cover - only when the build is broken
        pytest.fail(f"_speedups.bitfield is not built ({exc}); run setup.py build_ext --inplace")


@contextlib.contextmanager
def tmpfs(mount_point: Path, size: str = "1m") -> Iterator[Path]:
    """A small filesystem of ``size`` mounted at ``mount_point`` (we run as root on CI), unmounted by path
    afterwards; the test fails, never skips, if it cannot be mounted."""
    mount_point.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
                          check=False, capture_output=True, text=True)
    if proc.returncode:
        pytest.fail(f"cannot mount a tmpfs: {proc.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)

