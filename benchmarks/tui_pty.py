"""A child process on a real pseudo-terminal, for benchmarks that run ``torrent tui`` as a user would.

``PtyChild`` is ``torrent.bench.processes.Child`` (same ``poll``/``stop``/rusage through ``wait4``) with the
child's stdin, stdout and stderr on the slave side of a pty of the given size, ``TERM`` set, and a thread
that reads the master side continuously and throws the bytes away (keeping the last 64 KiB for error
messages), so the app never blocks on a full terminal. The reading is the parent's CPU, not the child's.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path

from torrent.bench.processes import Child

KEEP = 64 * 1024  # bytes of the screen kept for error messages


class PtyChild(Child):
    """``argv`` on a pty of ``columns`` x ``rows``; ``output_bytes`` counts what it wrote to the terminal."""

    def __init__(self, role: str, argv: list[str], log: Path, env: dict[str, str] | None = None, *,
                 columns: int = 200, rows: int = 60, term: str = "xterm-256color") -> None:
        self.role = role
        self.log = log
        self.output_bytes = 0
        self._tail = bytearray()
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self._master = master
        child_env = dict(os.environ if env is None else env)
        child_env.update(TERM=term, COLUMNS=str(columns), LINES=str(rows))
        child_env.pop("NO_COLOR", None)
        self._log_file = open(log, "wb")  # closed by Child._reaped; the screen's last bytes go here then
        self.started = time.perf_counter()
        try:
            # its own session with the pty as controlling terminal, as a shell would start it
            self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=child_env,
                                         start_new_session=True, close_fds=True,
                                         preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        finally:
            os.close(slave)
        self.ended: float | None = None
        self.user_seconds = 0.0
        self.system_seconds = 0.0
        self.peak_rss = 0
        self.exit_code: int | None = None
        self._reader = threading.Thread(target=self._drain, name=f"{role} pty reader", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._master, 1 << 16)
            except OSError as exc:  # EIO: the child closed its side (exited)
                if exc.errno not in (errno.EIO, errno.EBADF):
                    raise
                break
            if not data:
                break
            self.output_bytes += len(data)
            self._tail += data
            if len(self._tail) > 2 * KEEP:
                del self._tail[:-KEEP]

    def _reaped(self, status: int, usage: object) -> None:
        super()._reaped(status, usage)  # type: ignore[arg-type]
        self._reader.join(timeout=5)
        try:
            os.close(self._master)
        except OSError:
            pass
        self.log.write_bytes(bytes(self._tail[-KEEP:]))

    def tail(self, lines: int = 3) -> str:
        text = bytes(self._tail[-KEEP:]).decode("utf-8", "replace")
        # strip escape sequences roughly: what a traceback or an error line says is plain text
        import re

        plain = re.sub(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\x1b[=>]|\x1b\][^\x07]*\x07", "", text)
        kept = [line.strip() for line in plain.splitlines() if line.strip()]
        return " | ".join(kept[-lines:])
