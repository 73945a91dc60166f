"""Helpers shared by several test modules (pytest puts tests/ on sys.path)."""

from __future__ import annotations

import socket

import pytest

from torrent import speedups
from torrent.bench.lt_peer import LOOPBACK_SETTINGS as LIBTORRENT_LOOPBACK  # noqa: F401  (re-exported)


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


def compiled_bitfield_class() -> type:
    """The compiled Bitfield; a test fails (never skips) if it is not built."""
    try:
        return speedups.compiled_module("bitfield").Bitfield
    except ImportError as exc:  # pragma: no cover - only when the build is broken
        pytest.fail(f"_speedups.bitfield is not built ({exc}); run setup.py build_ext --inplace")

