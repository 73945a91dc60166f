"""The bench's processes and ports: a peer that fails to start is one clear error, and ports are picked
where a dial cannot take them first."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from torrent.bench.processes import Child
from torrent.bench.swarm import _ephemeral_low, free_port
from torrent.core.errors import BenchError


def test_a_peer_that_exits_before_it_is_ready_is_one_error_and_stopping_it_raises_nothing(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print('cannot listen: address already in use'); sys.exit(2)"]
    child = Child("our seeder 9", argv, tmp_path / "seeder.log")
    with pytest.raises(BenchError, match=r"our seeder 9 exited with code 2 before it was ready: .*already in use"):
        child.wait_for_line("listening on port", 30)
    child.stop()  # it was reaped with its CPU figures: nothing left to reap, no ChildProcessError
    assert child.exit_code == 2 and child.user_seconds >= 0


def test_free_ports_are_below_the_dial_range_distinct_and_free_for_tcp_and_udp() -> None:
    ports: list[int] = []
    for _ in range(40):
        ports.append(free_port(ports))
    assert len(set(ports)) == 40
    assert all(port < _ephemeral_low() for port in ports)
    for port in ports[:5]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("0.0.0.0", port))
            udp.bind(("0.0.0.0", port))
