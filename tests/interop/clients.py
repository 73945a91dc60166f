"""Helpers that start and stop real BitTorrent clients for the transfer interop tests.

A plain module (no fixtures): ``test_transfer_interop.py`` imports it. Everything
listens on and dials 127.0.0.1 only. Every process is started here with its output
in a log file, stopped by its own PID (SIGTERM, then SIGKILL after a timeout), and
every wait is bounded; a failed wait fails the test with the logs of everything the
test started (``Harness.fail``).

What each client needs on loopback is in /work/shared/REFERENCE-CLIENTS.md; the
parts that matter here:

- libtorrent (venv wheel): ``allow_multiple_connections_per_ip``, no DHT/LSD/UPnP/
  NAT-PMP/uTP; "finished" may come before the bytes are on disk, so the session is
  destroyed (which waits for its disk threads) before files are compared.
- Transmission 3.00: never dials 127.0.0.1 peers it learns from a tracker, so the other
  side dials it; fresh config dir, no port mapping, plaintext tolerated.
- aria2 1.36: learns peers only from trackers (opentracker here). Its UDP tracker client
  needs its DHT switched on ("udp is not supported yet" otherwise): the DHT gets no
  entry point and a private routing-table file, so it talks to nobody.
- opentracker: whitelist-only, reads the whitelist as ``nobody``.
"""

from __future__ import annotations

import filecmp
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from helpers import LIBTORRENT_LOOPBACK, free_port, http_get, opentracker_answers, write_opentracker_config

# Which Debian package provides each command these tests start.
DEBIAN_PACKAGE = {
    "transmission-cli": "transmission-cli",
    "aria2c": "aria2",
    "opentracker": "opentracker",
}

STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
LOG_TAIL = 12_000  # characters of each log shown on failure


def require_tool(name: str) -> str:
    """Absolute path of ``name``, or fail the test naming the Debian package to install."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: install the Debian package {DEBIAN_PACKAGE.get(name, name)!r} "
                    "(scripts/test.sh installs it)", pytrace=False)
    return path




# ---- payloads and comparisons ---------------------------------------------------

def write_single(path: Path, size: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    with open(path, "wb") as fh:
        fh.writelines(rng.randbytes(min(1 << 22, size - start)) for start in range(0, size, 1 << 22))
    return path


def tree_files(root: Path) -> dict[str, int]:
    """Relative path → size of every regular file under ``root`` (or of ``root`` itself)."""
    if root.is_file():
        return {root.name: root.stat().st_size}
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def tree_difference(expected: Path, actual: Path) -> str | None:
    """None when ``actual`` holds exactly the files of ``expected`` with identical bytes;
    else what differs (missing, extra, size, first differing offset)."""
    want, got = tree_files(expected), tree_files(actual)
    problems = []
    if set(want) != set(got):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        problems.append(f"missing {missing}, unexpected {extra}")
    for rel in sorted(set(want) & set(got)):
        a = expected if expected.is_file() else expected / rel
        b = actual if actual.is_file() else actual / rel
        if want[rel] != got[rel]:
            problems.append(f"{rel}: {got[rel]} bytes, expected {want[rel]}")
        elif not filecmp.cmp(a, b, shallow=False):
            problems.append(f"{rel}: content differs from byte {_first_difference(a, b)}")
    return "; ".join(problems) if problems else None


def _first_difference(a: Path, b: Path) -> int:
    offset = 0
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(1 << 20), fb.read(1 << 20)
            if ca != cb:
                return offset + next((i for i, (x, y) in enumerate(zip(ca, cb)) if x != y), min(len(ca), len(cb)))
            if not ca:
                return -1
            offset += len(ca)


# ---- processes ------------------------------------------------------------------

@dataclass
class Proc:
    name: str
    cmd: list[str]
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self) -> str:
        try:
            raw = self.log.read_bytes().decode(errors="replace")
        except OSError:
            return ""
        return raw.replace("\r\n", "\n").replace("\r", "\n")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM by PID, SIGKILL after ``timeout``; reap it either way."""
        if self.popen.poll() is not None:
            return
        try:
            self.popen.send_signal(signal.SIGTERM)
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout)

    def describe(self) -> str:
        state = "running" if self.alive() else f"exited {self.popen.returncode}"
        text = _squeeze(self.text())
        if len(text) > LOG_TAIL:
            text = "…" + text[-LOG_TAIL:]
        return f"==== {self.name} (pid {self.pid}, {state}): {' '.join(self.cmd)}\n{text}"


def _squeeze(text: str) -> str:
    """Drop blank lines and runs of identical lines (progress displays repeat a lot)."""
    out: list[str] = []
    repeats = 0
    for line in text.splitlines():
        line = line.rstrip()
        if not line:
            continue
        if out and line == out[-1]:
            repeats += 1
            continue
        if repeats:
            out.append(f"    (previous line {repeats} more times)")
            repeats = 0
        out.append(line)
    if repeats:
        out.append(f"    (previous line {repeats} more times)")
    return "\n".join(out)


def last_match(proc: Proc, pattern: str) -> str | None:
    """The last match of ``pattern``'s first group in ``proc``'s log: a progress reading."""
    found = re.findall(pattern, proc.text())
    return found[-1] if found else None


OUR_PROGRESS = r"(\d+\.\d)%"  # "name:  42.0%  down …"
TRANSMISSION_PROGRESS = r"Progress: ([\d.]+)%"
ARIA2_PROGRESS = r"\[#\w+ ([^ /]+)/"  # "[#e6a051 6.5MiB/8.0MiB(82%) CN:1 …"


class Harness:
    """Owns everything one test starts: processes, libtorrent sessions, opentracker.

    ``close()`` stops all of it (by PID, in reverse order). ``fail()`` fails the test
    with the logs of all of it.
    """

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[Proc] = []
        self.lts: list[LtPeer] = []
        self.in_process: list[Any] = []  # other in-process clients: each has close() and describe()
        self._cleanups: list[Callable[[], None]] = []
        self.started = time.monotonic()
        self.reported = False  # fail() has shown the logs

    # -- bookkeeping
    def spawn(self, name: str, cmd: Sequence[str | os.PathLike[str]], *, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> Proc:
        cmd = [str(c) for c in cmd]
        log = self.tmp / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        proc = Proc(name, cmd, popen, log)
        self.procs.append(proc)
        return proc

    def on_close(self, fn: Callable[[], None]) -> None:
        self._cleanups.append(fn)

    def close(self) -> None:
        """Stop everything, each independently: one that resists must not spare the rest."""
        steps: list[Callable[[], None]] = [p.stop for p in reversed(self.procs)]
        steps += [p.close for p in reversed(self.lts)] + [p.close for p in reversed(self.in_process)]
        steps += list(reversed(self._cleanups))
        errors = []
        for step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - reported below, after the others ran
                errors.append(repr(exc))
        if errors:
            raise RuntimeError(f"cleanup failed: {errors}")

    def logs(self) -> str:
        parts = [p.describe() for p in [*self.procs, *self.lts, *self.in_process]]
        return "\n".join(parts) if parts else "(nothing was started)"

    def fail(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        self.reported = True
        pytest.fail(f"{message}\n(after {elapsed:.1f} s)\n\nLogs of every client this test started:\n{self.logs()}",
                    pytrace=False)

    # -- waiting
    def wait_for(self, what: str, predicate: Callable[[], Any], *, timeout: float,
                 watch: Sequence[Proc] = (), interval: float = 0.2,
                 progress: Callable[[], object] | None = None, stall: float = 45.0) -> Any:
        """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s, or
        at once when a process in ``watch`` exits while we wait (unless the predicate then
        holds), or when ``progress()`` (a transfer's progress) stays the same for ``stall`` s."""
        start = time.monotonic()
        deadline = start + timeout
        last_progress, last_change = progress() if progress else None, start
        while True:
            value = predicate()
            if value:
                return value
            for proc in watch:
                if not proc.alive():
                    value = predicate()
                    if value:
                        return value
                    self.fail(f"{proc.name} exited with status {proc.popen.returncode} while waiting for {what}")
            now = time.monotonic()
            if progress is not None:
                current = progress()
                if current != last_progress:
                    last_progress, last_change = current, now
                elif now - last_change >= stall:
                    self.fail(f"stalled: no progress for {stall:g} s (stuck at {current!r}) while waiting for {what}")
            if now >= deadline:
                self.fail(f"timed out after {timeout:g} s waiting for {what}"
                          + (f" (progress: {last_progress!r})" if progress else ""))
            time.sleep(interval)

    def wait_exit(self, proc: Proc, *, timeout: float, what: str, **kwargs: Any) -> int:
        self.wait_for(what, lambda: not proc.alive(), timeout=timeout, **kwargs)
        return proc.popen.returncode

    def check_same(self, expected: Path, actual: Path, who: str) -> None:
        problem = tree_difference(expected, actual)
        if problem is not None:
            self.fail(f"{who}: downloaded data differs from the original: {problem}")

    def wait_same(self, expected: Path, actual: Path, *, timeout: float, what: str, **kwargs: Any) -> None:
        self.wait_for(what, lambda: tree_difference(expected, actual) is None, timeout=timeout, interval=0.5,
                      **kwargs)

    # -- clients
    def lt_peer(self, lt: ModuleType, name: str, **kwargs: Any) -> LtPeer:
        peer = LtPeer(lt, name, **kwargs)
        self.lts.append(peer)
        return peer


# ---- our client -------------------------------------------------------------------

LISTEN_LINE = re.compile(r": listening on port (\d+)")


def torrent_cmd(*args: str | os.PathLike[str]) -> list[str]:
    return [sys.executable, "-m", "torrent", *map(str, args)]


def create_torrent(payload: Path, out: Path, *, piece_size: str, tracker: str | None = None) -> str:
    """``torrent create`` (v1-only) → the info-hash in hex."""
    cmd = torrent_cmd("create", payload, "--piece-size", piece_size, "-o", out, "-q", "-f")
    if tracker:
        cmd += ["-t", tracker]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 or "Traceback" in proc.stderr:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    from torrent.codec import metainfo

    meta = metainfo.load(out)
    assert not meta.has_v2, "torrent create made a hybrid torrent; these tests need v1-only"
    return meta.info_hash_hex


def start_our_seed(h: Harness, name: str, torrent: Path, data_parent: Path, *,
                   peers: Sequence[tuple[str, int]] = (), port: int = 0) -> tuple[Proc, int]:
    """``torrent seed``; waits (bounded) for its "listening on port N" line → (proc, N)."""
    args: list[str | os.PathLike[str]] = ["seed", torrent, "--dir", data_parent, "--port", str(port),
                                          "--state-dir", h.tmp / f"state-{name}"]
    for host, p in peers:
        args += ["--peer", f"{host}:{p}"]
    proc = h.spawn(name, torrent_cmd(*args))

    def listening() -> int | None:
        m = LISTEN_LINE.search(proc.text())
        return int(m.group(1)) if m else None

    listen_port = h.wait_for(f"{name} to print its listening port", listening, timeout=60, watch=[proc])
    return proc, listen_port


def start_our_download(h: Harness, name: str, torrent: Path, out_dir: Path, *,
                       peers: Sequence[tuple[str, int]] = (), port: int = 0, verbose: bool = False) -> Proc:
    """``torrent download --no-seed``: exits 0 once complete (``verbose``: -v, logging
    connection attempts and their outcome)."""
    args: list[str | os.PathLike[str]] = ["download", torrent, "-o", out_dir, "--no-seed", "--port", str(port),
                                          "--state-dir", h.tmp / f"state-{name}"] + (["-v"] if verbose else [])
    for host, p in peers:
        args += ["--peer", f"{host}:{p}"]
    return h.spawn(name, torrent_cmd(*args))


def finish_our_download(h: Harness, proc: Proc, *, timeout: float) -> None:
    code = h.wait_exit(proc, timeout=timeout, what=f"{proc.name} (our client) to finish downloading",
                       progress=lambda: last_match(proc, OUR_PROGRESS))
    if code != 0:
        h.fail(f"{proc.name} (our client) exited with status {code}, expected 0")
    if "Traceback" in proc.text():
        h.fail(f"{proc.name} (our client) printed a traceback")


# ---- libtorrent -------------------------------------------------------------------------

class LtPeer:
    """An in-process libtorrent session on 127.0.0.1, set up as REFERENCE-CLIENTS says."""

    def __init__(self, lt: ModuleType, name: str, settings: dict[str, Any] | None = None) -> None:
        """``settings`` go over the loopback ones (``lt_dht.py`` turns the DHT on with them)."""
        self.lt = lt
        self.name = name
        cat = lt.alert_category
        self.session: Any = lt.session({
            **LIBTORRENT_LOOPBACK,
            "alert_mask": cat.error | cat.status | cat.peer | cat.connect | cat.storage,
            "user_agent": f"libtorrent interop {name}",
            **(settings or {}),
        })
        self.port: int = self.session.listen_port()
        self.handles: list[Any] = []
        self.events: list[str] = []
        self.t0 = time.monotonic()
        self.closed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read_alerts, name=f"lt-alerts-{name}", daemon=True)
        self._reader.start()

    def _read_alerts(self) -> None:
        """Collect alerts as they come (so their times are right), until close()."""
        session = self.session
        while not self._stop.is_set():
            session.wait_for_alert(100)
            with self._lock:
                if self._stop.is_set():
                    return
                self._pop(session)

    def _pop(self, session: Any) -> None:
        for alert in session.pop_alerts():
            self.events.append(f"{time.monotonic() - self.t0:7.2f} {type(alert).__name__}: {alert.message()}")
            self.seen(alert)
        del self.events[:-2000]

    def seen(self, alert: Any) -> None:
        """Each alert as it is popped, on the reader thread (a subclass copies what it needs: an
        alert object is only valid until the next pop)."""

    def add(self, torrent: Path, save_path: Path, *, flags: int = 0) -> Any:
        """``flags``: libtorrent ``torrent_flags`` to set on top of the defaults."""
        params = self.lt.add_torrent_params()
        params.ti = self.lt.torrent_info(str(torrent))
        return self._add(params, save_path, flags)

    def add_magnet(self, uri: str, save_path: Path, *, flags: int = 0) -> Any:
        """A magnet link: libtorrent fetches the metadata from the peers it finds."""
        return self._add(self.lt.parse_magnet_uri(uri), save_path, flags)

    def _add(self, params: Any, save_path: Path, flags: int) -> Any:
        params.save_path = str(save_path)
        params.flags |= flags
        handle = self.session.add_torrent(params)
        self.handles.append(handle)
        return handle


    def status(self, handle: Any | None = None) -> Any:
        return (handle or self.handles[0]).status()

    def progress_line(self) -> str:
        if self.closed or not self.handles:
            return "closed"
        s = self.status()
        return (f"state={s.state} progress={s.progress:.3f} seeding={s.is_seeding} peers={s.num_peers} "
                f"down={s.total_payload_download} up={s.total_payload_upload} error={s.errc.message() if s.errc.value() else ''}")

    def close(self) -> None:
        """Destroy the session: this waits for its disk threads, so files are complete after."""
        if self.closed:
            return
        self.final = self.progress_line()
        with self._lock:
            self._stop.set()
            self._pop(self.session)
        self._reader.join(5)
        self.closed = True
        self.session.pause()
        self.handles.clear()
        self.session = None

    def describe(self) -> str:
        state = getattr(self, "final", None) if self.closed else self.progress_line()
        events = "\n".join(self.events[-300:])
        return f"==== libtorrent {self.name} (in-process, port {self.port}): {state}\n{events}"


# ---- Transmission ----------------------------------------------------------------------

# Transmission's encryption modes: its settings.json value and the transmission-cli flag.
TRANSMISSION_ENCRYPTION = {"tolerated": (0, "-et"), "preferred": (1, "-ep"), "required": (2, "-er")}


def start_transmission(h: Harness, name: str, torrent: Path, download_dir: Path, port: int, *,
                       encryption: str = "tolerated") -> Proc:
    """``transmission-cli`` on ``port``, with a fresh config dir made for loopback; ``encryption``
    is a key of ``TRANSMISSION_ENCRYPTION`` (plain text tolerated by default)."""
    mode, flag = TRANSMISSION_ENCRYPTION[encryption]
    exe = require_tool("transmission-cli")
    config = h.tmp / f"{name}-config"
    config.mkdir()
    (config / "settings.json").write_text(json.dumps({
        "bind-address-ipv4": "127.0.0.1",
        "bind-address-ipv6": "::1",
        "dht-enabled": False,
        "lpd-enabled": False,
        "pex-enabled": False,
        "utp-enabled": False,
        "port-forwarding-enabled": False,
        "rpc-enabled": False,
        "encryption": mode,
        "peer-port": port,
        "speed-limit-down-enabled": False,
        "speed-limit-up-enabled": False,
        "alt-speed-enabled": False,
        "ratio-limit-enabled": False,
        "idle-seeding-limit-enabled": False,
        "download-queue-enabled": False,
        "seed-queue-enabled": False,
        "message-level": 2,
    }, indent=1))
    # Its status line ("Progress: …", "Seeding, …") goes to stdout ending in \r: unbuffered, or a
    # file sees it ~10 s late. stdbuf (coreutils) execs the client, so the PID stays Transmission's.
    unbuffered = [shutil.which("stdbuf") or "stdbuf", "-o0"] if shutil.which("stdbuf") else []
    return h.spawn(name, [*unbuffered, exe, "-g", config, "-M", flag, "-p", str(port), "-w", download_dir,
                          torrent])


# ---- aria2 -----------------------------------------------------------------------------

def aria2_cmd(h: Harness, name: str, torrent: Path | str, directory: Path, *, seed: bool, udp_tracker: bool,
              dht_entry_point: tuple[str, int] | None = None) -> list[str]:
    """``torrent``: a .torrent file or a magnet link. ``dht_entry_point``: the one DHT node aria2's DHT
    starts from (otherwise its DHT, when on, has none and talks to nobody)."""
    exe = require_tool("aria2c")
    cmd = [exe, "--no-conf=true", f"--dir={directory}", f"--listen-port={free_port()}",
           "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
           "--disable-ipv6=true", "--bt-min-crypto-level=plain", "--bt-require-crypto=false",
           "--file-allocation=none", "--summary-interval=0", "--console-log-level=info",
           "--max-overall-upload-limit=0", "--max-overall-download-limit=0",
           "--bt-tracker-connect-timeout=5", "--bt-tracker-timeout=10"]
    if udp_tracker or dht_entry_point:  # aria2's UDP tracker client rides on its DHT socket
        cmd += ["--enable-dht=true", f"--dht-listen-port={free_port()}",
                f"--dht-file-path={h.tmp / (name + '-dht.dat')}"]
        if dht_entry_point:
            cmd += [f"--dht-entry-point={dht_entry_point[0]}:{dht_entry_point[1]}"]
    else:
        cmd += ["--enable-dht=false"]
    if seed:  # hash the data already there, then seed until stopped
        cmd += ["--check-integrity=true", "--bt-seed-unverified=false", "--bt-hash-check-seed=true",
                "--seed-ratio=0.0"]
    else:  # download, then exit at once
        cmd += ["--seed-time=0"]
    return cmd + [str(torrent)]


# ---- opentracker -----------------------------------------------------------------------

@dataclass
class OpenTracker:
    port: int
    proc: Proc
    workdir: Path
    hashes: list[str] = field(default_factory=list)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/announce"

    @property
    def udp_url(self) -> str:
        return f"udp://127.0.0.1:{self.port}/announce"

    def scrape(self, info_hash_hex: str) -> tuple[int, int] | None:
        """(seeders, leechers) the tracker knows for this torrent, or None if it did not answer."""
        target = f"/scrape?info_hash={quote_from_bytes(bytes.fromhex(info_hash_hex), safe='')}"
        try:
            reply = http_get(self.port, target)
        except OSError:
            return None
        complete = re.search(rb"8:completei(\d+)e", reply)
        incomplete = re.search(rb"10:incompletei(\d+)e", reply)
        if not complete or not incomplete:
            return None
        return int(complete.group(1)), int(incomplete.group(1))


def start_opentracker(h: Harness, port: int, info_hashes: Sequence[str]) -> OpenTracker:
    """opentracker on 127.0.0.1:``port`` (TCP and UDP) allowing ``info_hashes`` only.

    Ready once it answers a normal announce for a whitelisted probe hash (a ``stopped``
    announce would be answered before the whitelist is even loaded).
    """
    exe = require_tool("opentracker")
    workdir = Path(tempfile.mkdtemp(prefix="torrent-interop-ot-"))
    workdir.chmod(0o755)  # as root it drops to 'nobody' before reading the whitelist
    h.on_close(lambda: shutil.rmtree(workdir, ignore_errors=True))
    probe = os.urandom(20)
    conf = write_opentracker_config(workdir, port, [*info_hashes, probe.hex()])
    proc = h.spawn("opentracker", [exe, "-f", conf], cwd=workdir)
    h.wait_for(f"opentracker to listen on 127.0.0.1:{port} with its whitelist loaded",
               lambda: opentracker_answers(port, probe)[0], timeout=15, watch=[proc])
    return OpenTracker(port, proc, workdir, list(info_hashes))


# ---- payloads ---------------------------------------------------------------------------

KiB, MiB = 1024, 1024 * 1024
SINGLE_SIZE = 5 * MiB + 12_345  # 256 KiB pieces: 21 pieces, the last one 12,345 bytes
MULTI_SIZE = 8 * MiB + 4_321  # 5 files over 64 KiB pieces: boundaries fall inside pieces


@dataclass(frozen=True)
class Payload:
    path: Path  # the file, or the top directory of a multi-file payload
    parent: Path  # what clients are told is the download directory
    torrent: Path
    info_hash: str
    size: int


def make_torrent_payload(tmp: Path, kind: str, *, seed: int, tracker: str | None = None) -> Payload:
    """A "single" file or a "multi"-file payload under ``tmp/original`` and its v1 torrent."""
    from torrent.cli.demo import make_payload

    parent = tmp / "original"
    if kind == "single":
        path = write_single(parent / "single.bin", SINGLE_SIZE, seed=seed)
        piece_size, size = "256K", SINGLE_SIZE
        assert SINGLE_SIZE % (256 * KiB) != 0
    else:
        path = make_payload(parent / "multi", MULTI_SIZE, files=5, seed=seed)
        piece_size, size = "64K", MULTI_SIZE
    torrent = tmp / f"{kind}.torrent"
    info_hash = create_torrent(path, torrent, piece_size=piece_size, tracker=tracker)
    return Payload(path, parent, torrent, info_hash, size)

