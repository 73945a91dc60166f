"""Tracker fixtures: a real ``opentracker`` (Debian) on 127.0.0.1.

opentracker as packaged is whitelist-only. It is started with ``-f CONF``
(``listen.tcp_udp 127.0.0.1:PORT`` and ``access.whitelist FILE``); as root it
drops to ``nobody`` *before* its accesslist thread reads the whitelist, so the
file must sit in a world-readable directory — pytest's ``tmp_path`` is mode
0700, hence a ``mkdtemp`` directory opened up to 0755 here. A missing binary
is a failure saying what to install, never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import free_port, opentracker_answers, write_opentracker_config

OPENTRACKER_START_TIMEOUT = 10.0
WHITELISTED = 32  # random info-hashes, enough for one per test


@dataclass
class OpenTracker:
    port: int
    pid: int
    log: Path
    hashes: list[bytes] = field(default_factory=list)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/announce"

    @property
    def udp_url(self) -> str:
        return f"udp://127.0.0.1:{self.port}/announce"

    def info_hash(self) -> bytes:
        """A whitelisted info-hash no other test has used (so swarms start empty)."""
        if not self.hashes:
            pytest.fail(f"all {WHITELISTED} whitelisted info-hashes are used: raise WHITELISTED", pytrace=False)
        return self.hashes.pop()


def _start(exe: str, workdir: Path, port: int, hashes: list[bytes]) -> tuple[subprocess.Popen[bytes], Path]:
    conf = write_opentracker_config(workdir, port, [h.hex() for h in hashes])
    log = workdir / "opentracker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([exe, "-f", str(conf)], cwd=workdir, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # by PID: Popen signals exactly this process
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_ready(proc: subprocess.Popen[bytes], port: int, probe: bytes, log: Path) -> str | None:
    """None once the tracker accepts a whitelisted hash; else why it did not.
    ``probe`` is the last line of the whitelist and is never handed to a test."""
    deadline = time.monotonic() + OPENTRACKER_START_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with status {proc.returncode}"
        ready, last = opentracker_answers(port, probe)  # e.g. whitelist not loaded yet: "not authorized"
        if ready:
            return None
        time.sleep(0.05)
    return f"not ready after {OPENTRACKER_START_TIMEOUT:g} s ({last}); log: {log.read_text(errors='replace')}"


@pytest.fixture(scope="session")
def opentracker() -> Iterator[OpenTracker]:
    exe = shutil.which("opentracker")
    if exe is None:
        pytest.fail("opentracker is not installed: install the Debian package 'opentracker'", pytrace=False)
    workdir = Path(tempfile.mkdtemp(prefix="torrent-opentracker-"))
    workdir.chmod(0o755)  # it reads the whitelist as 'nobody'
    hashes = [os.urandom(20) for _ in range(WHITELISTED + 1)]
    probe = hashes.pop()
    problem = "not started"
    try:
        for _attempt in range(3):  # another process may take the port between probe and bind
            port = free_port()
            proc, log = _start(exe, workdir, port, hashes + [probe])
            problem = _wait_ready(proc, port, probe, log) or ""
            if not problem:
                break
            _stop(proc)
        else:
            pytest.fail(f"opentracker did not start: {problem}", pytrace=False)
        try:
            yield OpenTracker(port=port, pid=proc.pid, log=log, hashes=hashes)
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
