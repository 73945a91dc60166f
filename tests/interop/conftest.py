"""Fixtures for tests against real BitTorrent tools (Debian packages and the libtorrent wheel).

A missing tool is a failed test with a message saying what to install, never a
skip: ``scripts/test.sh`` installs everything these tests use. Nothing here
touches the network beyond 127.0.0.1.

Helpers are handed to tests as fixtures (``tools``), not imported from this
module, so test modules need no package layout.
"""

from __future__ import annotations

from helpers import LIBTORRENT_LOOPBACK

import json
import random
import re
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# Which Debian package provides each command these tests start.
DEBIAN_PACKAGE = {
    "mktorrent": "mktorrent",
    "transmission-show": "transmission-cli",
    "transmission-create": "transmission-cli",
}

CLI_TIMEOUT = 60  # seconds; a few MiB hash in well under a second


def require_tool(name: str) -> str:
    """Absolute path of ``name``, or fail the test saying how to get it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: install the Debian package {DEBIAN_PACKAGE.get(name, name)!r} "
            "(scripts/test.sh installs it)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def lt() -> ModuleType:
    """The libtorrent Python bindings of the venv (PyPI wheel)."""
    try:
        import libtorrent
    except ImportError as exc:
        pytest.fail(f"cannot import libtorrent ({exc}): pip install -e '.[test]' installs the wheel",
                    pytrace=False)
    return libtorrent


# ---- running tools ---------------------------------------------------------

def run(cmd: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command that must succeed; on failure show its output."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=CLI_TIMEOUT)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
                    f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}", pytrace=False)
    return proc


def torrent_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Our CLI as a real process, so exit codes and stderr are what a user sees."""
    proc = run([sys.executable, "-m", "torrent", *map(str, args)], cwd=cwd)
    assert "Traceback" not in proc.stderr
    return proc


def torrent_info_json(path_or_magnet: str | Path) -> dict[str, Any]:
    data = json.loads(torrent_cli("info", "--json", path_or_magnet).stdout)
    assert isinstance(data, dict)
    return data


@dataclass(frozen=True)
class TransmissionShow:
    """What ``transmission-show`` (Transmission 3.00) prints, in the parts we compare."""

    name: str
    info_hash: str
    piece_count: int
    private: bool
    files: list[str]
    output: str


def transmission_show(torrent: Path) -> TransmissionShow:
    """Parse ``transmission-show FILE``. Its 3.00 output looks like::

        Name: d
        File: d.torrent

        GENERAL

          Name: d
          Hash: 14354dc67fce5165d196d8b055e9a6c8ee236909
          ...
          Piece Count: 7
          Privacy: Public torrent
        ...
        FILES

          d/sub/deep/y.bin (40.00 kB)
    """
    out = run([require_tool("transmission-show"), str(torrent)]).stdout

    def field(label: str) -> str:
        m = re.search(rf"^\s+{label}: (.*)$", out, re.MULTILINE)
        assert m is not None, f"no {label!r} line in transmission-show output:\n{out}"
        return m.group(1).strip()

    files_section = out.split("\nFILES\n", 1)
    assert len(files_section) == 2, f"no FILES section in transmission-show output:\n{out}"
    files = [re.sub(r" \([^()]*\)$", "", line.strip())
             for line in files_section[1].splitlines() if line.strip()]
    return TransmissionShow(
        name=field("Name"),
        info_hash=field("Hash"),
        piece_count=int(field("Piece Count").replace(",", "")),
        private=field("Privacy") == "Private torrent",
        files=files,
        output=out,
    )


# ---- libtorrent ------------------------------------------------------------

def lt_files(ti: Any) -> list[tuple[str, int, bool]]:
    """(path, size, is pad file) of every file libtorrent sees, in torrent order."""
    fs = ti.layout()
    return [(fs.file_path(i), fs.file_size(i), bool(fs.file_flags(i) & fs.flag_pad_file))
            for i in range(fs.num_files())]


def lt_trackers(ti: Any) -> list[list[str]]:
    """Tracker tiers as libtorrent read them."""
    with warnings.catch_warnings():  # trackers() is deprecated in 2.1 with no replacement in Python
        warnings.simplefilter("ignore", DeprecationWarning)
        entries = list(ti.trackers())
    tiers: dict[int, list[str]] = {}
    for entry in entries:
        tiers.setdefault(entry.tier, []).append(entry.url)
    return [tiers[t] for t in sorted(tiers)]


def lt_web_seeds(ti: Any) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return [seed["url"] for seed in ti.web_seeds()]


def lt_make_torrent(lt: ModuleType, payload: Path, *, v1_only: bool, piece_length: int = 64 * 1024,
                    tracker: str = "http://127.0.0.1:1/announce") -> bytes:
    """A .torrent made by libtorrent itself: hybrid v1+v2 by default, or v1-only."""
    flags = lt.create_torrent.v1_only if v1_only else 0
    if hasattr(lt, "list_files"):  # 2.1: add_files/file_storage construction is deprecated
        ct = lt.create_torrent(lt.list_files(str(payload)), piece_length, flags)
    else:  # 2.0.x
        fs = lt.file_storage()
        lt.add_files(fs, str(payload))
        ct = lt.create_torrent(fs, piece_length, flags)
    ct.add_tracker(tracker)
    ct.set_creator("libtorrent interop test")
    lt.set_piece_hashes(ct, str(payload.parent))
    return lt.bencode(ct.generate())


@dataclass(frozen=True)
class CheckResult:
    state: str
    is_seeding: bool
    num_pieces: int
    have: int
    error: str


def lt_recheck(lt: ModuleType, torrent: Path, save_path: Path, *, timeout: float = 30.0) -> CheckResult:
    """Add ``torrent`` to a loopback-only libtorrent session over existing data and let it
    hash-check the files; return how many pieces it accepted.

    Waits (bounded) for the check to finish: ``torrent_checked_alert`` or seeding.
    """
    session = lt.session({
        **LIBTORRENT_LOOPBACK,
        "alert_mask": lt.alert.category_t.status_notification | lt.alert.category_t.error_notification,
    })
    try:
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(str(torrent))
        params.save_path = str(save_path)
        handle = session.add_torrent(params)
        deadline = time.monotonic() + timeout
        checked = False
        while time.monotonic() < deadline:
            status = handle.status()
            if status.is_seeding or status.errc.value() != 0:
                break
            if checked and str(status.state) not in ("checking_files", "checking_resume_data"):
                break
            session.wait_for_alert(100)
            for alert in session.pop_alerts():
                if isinstance(alert, lt.torrent_checked_alert):
                    checked = True
        status = handle.status()
        return CheckResult(
            state=str(status.state),
            is_seeding=bool(status.is_seeding),
            num_pieces=len(status.pieces),
            have=sum(1 for p in status.pieces if p),
            error=status.errc.message() if status.errc.value() else "",
        )
    finally:
        session.pause()
        del session


# ---- payloads --------------------------------------------------------------

def write_random(path: Path, size: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


SINGLE_SIZE = 3 * 1024 * 1024 + 12_345  # 16 KiB auto pieces: the last one is 12,345 bytes

# Nested directories, an empty file, sizes that straddle piece boundaries.
MULTI_FILES: dict[str, int] = {
    "a.bin": 1024 * 1024 + 7,
    "empty.txt": 0,
    "sub/b.bin": 700_001,
    "sub/deep/c.bin": 3 * 64 * 1024 + 1,
    "sub/deep/d.txt": 999,
    "z/last.bin": 250_000,
}


@pytest.fixture
def single_payload(tmp_path: Path) -> Path:
    return write_random(tmp_path / "data" / "single.bin", SINGLE_SIZE, seed=1)


@pytest.fixture
def multi_payload(tmp_path: Path) -> Path:
    root = tmp_path / "data" / "multi"
    for i, (rel, size) in enumerate(MULTI_FILES.items()):
        write_random(root / rel, size, seed=100 + i)
    return root


def payload_files(payload: Path) -> dict[str, int]:
    """Every regular file of a payload as 'name/rel/path' → size (what a torrent should list)."""
    if payload.is_file():
        return {payload.name: payload.stat().st_size}
    return {f"{payload.name}/{p.relative_to(payload).as_posix()}": p.stat().st_size
            for p in payload.rglob("*") if p.is_file()}


class Tools:
    """The helpers above, as one fixture: ``tools.cli(...)``, ``tools.transmission_show(p)``…"""

    require = staticmethod(require_tool)
    run = staticmethod(run)
    cli = staticmethod(torrent_cli)
    info_json = staticmethod(torrent_info_json)
    transmission_show = staticmethod(transmission_show)
    lt_files = staticmethod(lt_files)
    lt_trackers = staticmethod(lt_trackers)
    lt_web_seeds = staticmethod(lt_web_seeds)
    payload_files = staticmethod(payload_files)

    def __init__(self, lt: ModuleType) -> None:
        self.lt = lt

    def lt_make_torrent(self, payload: Path, **kwargs: Any) -> bytes:
        return lt_make_torrent(self.lt, payload, **kwargs)

    def lt_recheck(self, torrent: Path, save_path: Path, **kwargs: Any) -> CheckResult:
        return lt_recheck(self.lt, torrent, save_path, **kwargs)


@pytest.fixture
def tools(lt: ModuleType) -> Tools:
    return Tools(lt)


@pytest.fixture
def h(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Everything the test starts (a ``clients.Harness``); all of it stopped (by PID)
    afterwards. A failure that did not go through ``h.fail`` (which shows the logs
    itself) prints the logs here."""
    from clients import Harness

    harness = Harness(tmp_path)
    failed_before = request.session.testsfailed
    try:
        yield harness
    finally:
        harness.close()
        if request.session.testsfailed > failed_before and not harness.reported:
            print(f"Logs of every client this test started:\n{harness.logs()}")

