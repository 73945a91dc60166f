"""Child processes of the bench, with what the kernel knows of their cost:
user and system CPU seconds (over a window, or the whole life) and peak
resident memory. They are kept apart because on this VM system time (the
kernel's page-cache copies and page faults) swings with the host's memory
state from run to run; user time per GiB varies far less."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from pathlib import Path

from torrent.core.errors import BenchError

_TICK = os.sysconf("SC_CLK_TCK")


class Child:
    """One seeder or leecher, its output in a log file (never a pipe that
    could fill and stall it)."""

    def __init__(self, role: str, argv: list[str], log: Path, env: dict[str, str] | None = None, *,
                 port: int = 0) -> None:
        self.role = role
        self.port = port  # where it listens
        self.log = log
        self._log_file = open(log, "wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        self.ended: float | None = None
        self.user_seconds = 0.0  # whole life, once reaped
        self.system_seconds = 0.0
        self.peak_rss = 0  # bytes, once reaped
        self.exit_code: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_now(self) -> tuple[float, float]:
        """(user, system) CPU seconds so far, read while it runs."""
        with open(f"/proc/{self.pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return int(fields[11]) / _TICK, int(fields[12]) / _TICK

    def wait_for_line(self, text: str, timeout: float) -> None:
        """Until the log shows ``text`` (a peer saying it is ready)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text.encode() in self.log.read_bytes():
                return
            if self.poll():  # reaped here, with its CPU: Popen.poll would leave stop() nothing to reap
                raise BenchError(f"{self.role} exited with code {self.proc.returncode} before it was ready: "
                                 f"{self.tail()}")
            time.sleep(0.02)
        raise BenchError(f"{self.role} not ready after {timeout:.0f} s: {self.tail()}")

    def poll(self) -> bool:
        """Reap it if it has exited; True once it has."""
        if self.exit_code is not None:
            return True
        pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        if pid == 0:
            return False
        self._reaped(status, usage)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate (a seeder, or a leecher that overran) and reap it."""
        if self.exit_code is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while not self.poll():
            if time.monotonic() > deadline:
                self.proc.kill()
                _, status, usage = os.wait4(self.pid, 0)
                self._reaped(status, usage)
                return
            time.sleep(0.02)

    def tail(self, lines: int = 3) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def _reaped(self, status: int, usage: resource.struct_rusage) -> None:
        self.ended = time.perf_counter()
        self.exit_code = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.exit_code  # so Popen does not try to reap it again
        self.user_seconds = usage.ru_utime
        self.system_seconds = usage.ru_stime
        self.peak_rss = usage.ru_maxrss * 1024  # Linux reports KiB
        self._log_file.close()
