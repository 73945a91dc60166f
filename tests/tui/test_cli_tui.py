"""``torrent tui`` as a user runs it: its argument errors, its help, and a whole download in a real terminal.

The end-to-end run starts ``torrent seed`` and ``torrent tui`` as processes on
127.0.0.1; the TUI gets a pseudo-terminal of 120×40 (its output is read all
along so it never blocks on a full pty), downloads, exits by itself
(``--exit-when-complete``), and leaves its saved session in the state dir.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import free_port, loopback_config_home
from swarmkit import make_torrent, same_tree

MiB = 1 << 20
COLS, ROWS = 120, 40


def isolated_env(tmp: Path, **extra: str) -> dict[str, str]:
    """No user config or data dir leaks in; the compiled speedups as usual."""
    env = {k: v for k, v in os.environ.items() if k != "TORRENT_PURE_PYTHON"}
    env.update(XDG_CONFIG_HOME=loopback_config_home(tmp / "xdg-config"), XDG_DATA_HOME=str(tmp / "xdg-data"),
               XDG_CACHE_HOME=str(tmp / "xdg-cache"))
    env.update(extra)
    return env


def run_cli(tmp: Path, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "torrent", *map(str, args)], capture_output=True, text=True,
                          timeout=60, env=isolated_env(tmp), cwd=tmp, stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def assert_one_error_line(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("torrent: error: ") and len(lines[0]) > len("torrent: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "\x1b[" not in proc.stdout + proc.stderr  # no screen was drawn
    return lines[0]


@pytest.mark.timeout(60)
def test_a_missing_torrent_file_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "tui", "--state-dir", tmp_path / "state", tmp_path / "nope.torrent")
    assert_one_error_line(proc, "nope.torrent")
    assert not (tmp_path / "state").exists()  # refused before any session was made


@pytest.mark.timeout(60)
def test_seed_without_dir_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    _, _, torrent = make_torrent(tmp_path, 64 * 1024, files=1)
    proc = run_cli(tmp_path, "tui", "--state-dir", tmp_path / "state", "--seed", torrent)
    assert_one_error_line(proc, "--dir")


@pytest.mark.timeout(60)
def test_refresh_zero_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "tui", "--state-dir", tmp_path / "state", "--refresh", "0")
    assert_one_error_line(proc, "--refresh")


@pytest.mark.timeout(60)
def test_help_lists_the_tui_options(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "tui", "--help")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("usage: torrent tui"), text[:200]
    for option in ("--seed", "--dir", "-o", "--output", "--peer", "--port", "--state-dir", "--refresh"):
        assert re.search(rf"(^|[\s,\[]){re.escape(option)}\b", text), f"{option} missing from:\n{text}"
    assert "--exit-when-complete" not in text  # for benchmarks only: hidden


# ---- a whole run in a pseudo-terminal ------------------------------------------------

def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    """SIGTERM by PID, then SIGKILL; reaped either way."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def wait_for_line(log: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text(errors="replace") if log.exists() else "")
        if found:
            return found.group(0)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"no {pattern!r} from the seeder (exit {proc.poll()}): {log.read_text(errors='replace')}")


def open_pty() -> tuple[int, int]:
    """A pseudo-terminal of COLS×ROWS: (master, slave)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    return master, slave


def start_in_pty(args: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``torrent ARGS`` with the slave side of a new pty as its terminal; returns (process, master fd)."""
    master, slave = open_pty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "torrent", *args], stdin=slave, stdout=slave, stderr=slave,
                                env=env, cwd=cwd, start_new_session=True)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return proc, master


def drain_pty(master: int, proc: subprocess.Popen[bytes], timeout: float,
              tick: Callable[[], None] = lambda: None) -> bytes:
    """Read everything the process writes to its terminal until it exits and the pty is closed,
    or ``timeout`` passes (then the output so far: the caller sees the process still running).
    ``tick`` runs between reads (to type into the terminal, say)."""
    out = bytearray()
    deadline = time.monotonic() + timeout
    exited_at: float | None = None
    while time.monotonic() < deadline:
        tick()
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError as exc:  # EIO: every end of the slave side is closed
                if exc.errno != errno.EIO:
                    raise
                chunk = b""
            if not chunk:
                if proc.poll() is not None:
                    break
                continue
            out += chunk
        elif proc.poll() is not None:
            exited_at = exited_at or time.monotonic()
            if time.monotonic() - exited_at > 1:  # exited, and nothing more for a second
                break
    return bytes(out)


def after_screen(text: str) -> list[str]:
    """The non-empty lines written after the app left the alternate screen, escape sequences removed."""
    tail = text.rsplit("\x1b[?1049l", 1)[-1] if "\x1b[?1049l" in text else text
    plain = re.sub(r"\x1b\[[0-9;?<>=$]*[A-Za-z~]|\x1b\][^\x07]*\x07", "", tail)
    return [line for line in re.split(r"\r?\n|\r", plain) if line.strip()]


def start_seeder(tmp: Path, torrent: Path, data: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``torrent seed`` on 127.0.0.1:``port``, returned once it has verified its data."""
    seed_log = tmp / "seed.log"
    with open(seed_log, "wb") as log:
        seeder = subprocess.Popen(
            [sys.executable, "-m", "torrent", "seed", str(torrent), "--dir", str(data), "--port", str(port),
             "--set", "network.bind=127.0.0.1", "--state-dir", str(tmp / "seed-state")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    try:
        wait_for_line(seed_log, r"listening on port \d+, (\d+) of \1 pieces verified", seeder, 30)
    except BaseException:
        stop(seeder)
        raise
    return seeder


def terminal_env(tmp: Path) -> dict[str, str]:
    return isolated_env(tmp, TERM="xterm-256color", COLUMNS=str(COLS), LINES=str(ROWS))


@contextlib.contextmanager
def seeding(tmp: Path, torrent: Path, data: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    seeder = start_seeder(tmp, torrent, data, port, terminal_env(tmp))
    try:
        yield seeder
    finally:
        stop(seeder)


@contextlib.contextmanager
def tui_in_pty(tmp: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``torrent tui ARGS`` in a pseudo-terminal: (the process, the pty's master end); stopped and closed after."""
    tui, master = start_in_pty(["tui", *args], terminal_env(tmp), tmp)
    try:
        yield tui, master
    finally:
        stop(tui)
        os.close(master)


def assert_saved_session(state: Path, tid: str, torrent: Path, save_path: Path, *, downloaded: bool = True) -> None:
    """What ``torrent/session/state.py`` keeps: the record, the metainfo, the resume data; and the app's prefs."""
    record = json.loads((state / "torrents" / f"{tid}.json").read_text())
    assert record["id"] == tid and record["save_path"] == str(save_path.resolve()) and record["paused"] is False
    if downloaded:
        assert record["completed_at"] is not None
    assert (state / "torrents" / f"{tid}.torrent").read_bytes() == torrent.read_bytes()
    assert (state / "resume" / f"{tid}.resume").stat().st_size > 0
    prefs = json.loads((state / "tui.json").read_text())
    assert isinstance(prefs, dict) and "columns" in prefs


@pytest.mark.timeout(120)
def test_tui_downloads_in_a_real_terminal_and_exits_when_complete(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 3 * MiB, files=3)
    port = free_port()
    state, out = tmp_path / "state", tmp_path / "downloads"
    with seeding(tmp_path, torrent, data, port), \
            tui_in_pty(tmp_path, "--state-dir", str(state), "-o", str(out), "--port", "0", "--set",
                       "network.bind=127.0.0.1", str(torrent), "--peer", f"127.0.0.1:{port}",
                       "--exit-when-complete") as (tui, master):
        text = drain_pty(master, tui, timeout=90).decode("utf-8", errors="replace")
        code = tui.poll()
        assert code is not None, f"the TUI did not exit by itself; its terminal showed:\n{text[-3000:]}"
        assert code == 0, f"exit {code}; its terminal showed:\n{text[-3000:]}"

    assert "\x1b[?1049h" in text and "\x1b[?1049l" in text  # drew on the alternate screen, then gave it back
    assert "payload" in text  # the list showed the torrent
    drawn_rows = {int(r) for r in re.findall(r"\x1b\[(\d+);\d+H", text)}
    assert max(drawn_rows) == ROWS, sorted(drawn_rows)[-5:]  # it took the terminal's size (TIOCSWINSZ)
    assert "Traceback" not in text
    assert after_screen(text) == []  # nothing left behind on the user's terminal
    assert same_tree(data / "payload", out / "payload")
    assert_saved_session(state, meta.info_hash_hex, torrent, out)


@pytest.mark.timeout(120)
def test_q_typed_in_the_terminal_quits_and_saves_the_session(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 2 * MiB, files=2)
    port = free_port()
    state, out = tmp_path / "state", tmp_path / "downloads"
    typed: list[float] = []
    with seeding(tmp_path, torrent, data, port), \
            tui_in_pty(tmp_path, "--state-dir", str(state), "-o", str(out), "--port", "0", "--set",
                       "network.bind=127.0.0.1", str(torrent), "--peer", f"127.0.0.1:{port}") as (tui, master):

        def type_q_once_downloaded() -> None:
            if not typed and (out / "payload").is_dir() and same_tree(data / "payload", out / "payload"):
                os.write(master, b"q")
                typed.append(time.monotonic())

        text = drain_pty(master, tui, timeout=90, tick=type_q_once_downloaded).decode("utf-8", errors="replace")
        assert typed, f"the download never completed on disk; the terminal showed:\n{text[-3000:]}"
        code = tui.poll()
        assert code is not None, f"q did not quit; its terminal showed:\n{text[-3000:]}"
        assert code == 0, f"exit {code}; its terminal showed:\n{text[-3000:]}"
    assert "\x1b[?1049l" in text and after_screen(text) == []
    assert_saved_session(state, meta.info_hash_hex, torrent, out)


@pytest.mark.timeout(60)
def test_a_port_in_use_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    """The session cannot listen: the app gives the terminal back and says why in one line, like every
    other user error of the CLI (``torrent: error: …``, exit 2)."""
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with tui_in_pty(tmp_path, "--state-dir", str(tmp_path / "state"), "-o", str(tmp_path / "out"),
                        "--port", str(port), "--set", "network.bind=127.0.0.1") as (tui, master):
            text = drain_pty(master, tui, timeout=30).decode("utf-8", errors="replace")
            code = tui.poll()
    finally:
        busy.close()
    assert code == 2, f"exit {code}; its terminal showed:\n{text[-3000:]}"
    lines = after_screen(text)
    assert lines and lines[0].startswith(f"torrent: error: cannot listen on 127.0.0.1:{port}"), lines
    assert lines[0].rstrip().endswith("--port)"), f"the error line is broken in two: {lines}"
    assert len(lines) == 1, lines


@pytest.mark.timeout(60)
def test_seed_with_dir_verifies_the_data_and_seeds_it_in_a_real_terminal(tmp_path: Path) -> None:
    meta, data, torrent = make_torrent(tmp_path, 1 * MiB, files=3)
    state, out = tmp_path / "state", tmp_path / "downloads"
    with tui_in_pty(tmp_path, "--state-dir", str(state), "-o", str(out), "--port", "0", "--set",
                    "network.bind=127.0.0.1", "--seed", str(torrent), "--dir", str(data),
                    "--exit-when-complete") as (tui, master):
        text = drain_pty(master, tui, timeout=45).decode("utf-8", errors="replace")
        code = tui.poll()
    assert code == 0, f"exit {code}; its terminal showed:\n{text[-3000:]}"  # complete from the start: seeding
    assert after_screen(text) == []
    assert not out.exists() or not any(out.iterdir())  # nothing downloaded anywhere else
    assert_saved_session(state, meta.info_hash_hex, torrent, data, downloaded=False)
