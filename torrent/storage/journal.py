"""Piece journal: the pieces verified and written since the last resume save.

Resume data (``resume.py``) is saved every 30 s and at exit. A process that
is killed in between leaves files newer than their resume records, and fast
resume alone would rehash every such file whole. The journal closes that
gap: a worker thread appends the indexes of the pieces it has just verified
and written, so after a crash ``resume.restore`` trusts what the journal
records and rechecks only what no record covers.

File format (``<state dir>/<info-hash hex>.journal``)::

    header, 56 bytes, written with the first records of a new file:
        magic b"BTJRNL\\r\\n" | version u32 = 1 | num_pieces u32 | info-hash (20 bytes)
        | download directory digest (20 bytes: SHA-1 of the resolved path, or zeros)
    records: one big-endian u32 piece index per verified piece, in the order written

All integers are big-endian. Each ``append`` is one ``os.write`` on an
``O_APPEND`` descriptor, so records of concurrent appends never interleave
and a killed process loses nothing (the page cache keeps every completed
write). There is no fsync: a power cut may lose records or leave a
truncated last record, and those pieces are then rechecked, which is safe.
A journal is never longer than 10 records per piece (``MAX_RECORDS_PER_PIECE``);
readers refuse anything beyond.

Life cycle, driven by the session (names are ``PieceJournal`` methods)::

    resume snapshot taken (have-bitfield captured) → rotate(): journal → journal.old
    resume file saved atomically                   → commit(): journal.old deleted
    resume save failed                             → (nothing: journal.old stays; the next
                                                      rotate() merges into it)
    full recheck, torrent removed                  → discard(): both deleted

``read_journal`` reads ``.old`` then the current file; each is checked on its
own (magic, version, torrent, piece count, download directory).

Records are relative to the resume file on disk, and are *armed* only once
this process has saved one (``commit``): at start, the resume data and the
journal of the last run may claim pieces that ``restore`` has just found
bad (a file the user changed); new records would make those stale claims
look like our own writes to the next restart, which would trust them. So
``append`` drops records until the first ``commit`` — the session saves
resume data right after ``restore`` (snapshot, rotate, save, commit), which
arms the journal at once — unless the journal is created with ``armed=True``,
which is safe when ``restore`` refuted no claim (``Restored.refuted == 0``,
without ``recheck``: nothing on disk is stale). ``discard`` disarms it again
(a full recheck may have refuted claims of the resume file still on disk).

Errors: an ``OSError`` while appending disables the journal with one warning
(the download goes on; pieces verified meanwhile are rechecked after a
crash, and a resume save re-enables it); ``rotate``, ``commit`` and
``discard`` log a warning and never raise.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torrent.core.bitfield import Bitfield

__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAX_RECORDS_PER_PIECE",
    "JournalRecords",
    "PieceJournal",
    "journal_path",
    "max_journal_size",
    "read_journal",
]

log = logging.getLogger(__name__)

SUFFIX = ".journal"
OLD_SUFFIX = ".old"
MAGIC = b"BTJRNL\r\n"  # \r\n: a file mangled by newline translation is refused
FORMAT_VERSION = 1
_HEADER = struct.Struct(">8sII20s20s")  # magic, version, num_pieces, info-hash, download dir digest
HEADER_SIZE = _HEADER.size
_RECORD = 4
# A piece is normally recorded once per resume period; more than this many
# records per piece cannot come from us.
MAX_RECORDS_PER_PIECE = 10
_NO_DIR = bytes(20)


def journal_path(state_dir: str | os.PathLike[str], info_hash: bytes) -> Path:
    """``<state_dir>/<info-hash hex>.journal``, beside ``resume.resume_path``."""
    return Path(state_dir, info_hash.hex() + SUFFIX)


def max_journal_size(num_pieces: int) -> int:
    """The most bytes read from one journal file of a torrent of ``num_pieces``."""
    return HEADER_SIZE + _RECORD * MAX_RECORDS_PER_PIECE * num_pieces


def _old(path: Path) -> Path:
    return path.with_name(path.name + OLD_SUFFIX)


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + OLD_SUFFIX + ".tmp")


def _dir_digest(download_dir: str | os.PathLike[str] | None) -> bytes:
    if download_dir is None:
        return _NO_DIR
    return hashlib.sha1(os.fsencode(Path(download_dir).resolve())).digest()


def _header(info_hash: bytes, num_pieces: int, download_dir: str | os.PathLike[str] | None) -> bytes:
    if len(info_hash) != 20:
        raise ValueError(f"an info-hash is 20 bytes, got {len(info_hash)}")
    if not 0 < num_pieces < 1 << 32:
        raise ValueError(f"a journal holds 1 to 2**32-1 pieces, not {num_pieces}")
    return _HEADER.pack(MAGIC, FORMAT_VERSION, num_pieces, info_hash, _dir_digest(download_dir))


# --- reading --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JournalRecords:
    """What the journal files say: ``pieces`` recorded as verified and written,
    ``last_write`` the latest modification time (seconds since the epoch) of a
    journal file holding at least one valid record (None: no valid record),
    and ``reason``, one line, when something was ignored."""

    pieces: Bitfield = field(repr=False)
    last_write: float | None
    reason: str | None = None

    @property
    def last_write_ns(self) -> int | None:
        return None if self.last_write is None else round(self.last_write * 1e9)

    def __repr__(self) -> str:
        return (f"JournalRecords({self.pieces.count()} of {len(self.pieces)} pieces, "
                f"last_write={self.last_write!r}, reason={self.reason!r})")


class _File:
    """One journal file read and checked."""

    __slots__ = ("mtime_ns", "reason", "records")

    def __init__(self, records: tuple[int, ...] = (), mtime_ns: int | None = None, reason: str | None = None) -> None:
        self.records = records
        self.mtime_ns = mtime_ns  # None unless it holds a valid record
        self.reason = reason


def _read_file(path: Path, header: bytes, num_pieces: int) -> _File | None:
    """The valid records of one journal file; None if it does not exist."""
    limit = max_journal_size(num_pieces)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return _File(reason=f"cannot read {path}: {exc.strerror or exc}")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return _File(reason=f"{path} is not a regular file")
        chunks, want = [], min(st.st_size, limit)
        while want > 0:
            chunk = os.read(fd, want)
            if not chunk:
                break
            chunks.append(chunk)
            want -= len(chunk)
        raw = b"".join(chunks)
        longer = st.st_size > limit
    except OSError as exc:
        return _File(reason=f"cannot read {path}: {exc.strerror or exc}")
    finally:
        os.close(fd)
    if not raw:
        return _File()  # created, killed before its first write
    bad = _check_header(raw, header, num_pieces)
    if bad:
        return _File(reason=f"{path} ignored: {bad}")
    body = memoryview(raw)[HEADER_SIZE:]
    whole = len(body) - len(body) % _RECORD
    records = struct.unpack(f">{whole // _RECORD}I", body[:whole])
    reason = None
    if records and max(records) >= num_pieces:
        k = next(k for k, index in enumerate(records) if index >= num_pieces)
        reason = (f"{path}: record {k} names piece {records[k]} of a torrent of {num_pieces}: "
                  "it and the rest were ignored")
        records = records[:k]
    elif longer:
        reason = (f"{path} is longer than a journal of {num_pieces} pieces can be "
                  f"({max_journal_size(num_pieces)} bytes): the rest was ignored")
    elif whole != len(body):
        reason = f"{path}: a truncated last record was ignored"
    return _File(records, st.st_mtime_ns if records else None, reason)


def _check_header(raw: bytes, header: bytes, num_pieces: int) -> str | None:
    if len(raw) < HEADER_SIZE:
        return f"{len(raw)} bytes, too short for a journal header"
    if raw[:HEADER_SIZE] == header:
        return None
    magic, version, pieces, info_hash, digest = _HEADER.unpack_from(raw)
    _, _, _, want_hash, want_digest = _HEADER.unpack(header)
    if magic != MAGIC:
        return "not a piece journal"
    if version != FORMAT_VERSION:
        return f"journal format version {version} is not supported (expected {FORMAT_VERSION})"
    if info_hash != want_hash:
        return f"journal of another torrent ({info_hash.hex()})"
    if pieces != num_pieces:
        return f"journal describes {pieces} pieces, the torrent has {num_pieces}"
    if digest != want_digest:
        return "journal of another download directory"
    return "bad journal header"  # pragma: no cover - every field was compared


def read_journal(path: str | os.PathLike[str], info_hash: bytes, num_pieces: int, *,
                 download_dir: str | os.PathLike[str] | None = None) -> JournalRecords | None:
    """The pieces recorded in ``<path>.old`` and ``<path>``; None when neither
    exists. Never raises for bad content: a file with a bad header is
    ignored, a bad record ends its file, a truncated last record is dropped,
    each with a one-line ``reason``. Reads at most ``max_journal_size`` bytes
    per file. ``download_dir`` must be what the writer was given (or None for both)."""
    path = Path(path)
    header = _header(info_hash, num_pieces, download_dir)
    files = [f for f in (_read_file(_old(path), header, num_pieces), _read_file(path, header, num_pieces))
             if f is not None]
    if not files:
        return None
    pieces = Bitfield(num_pieces)
    for f in files:
        for index in set(f.records):
            pieces.set(index)
    times = [f.mtime_ns for f in files if f.mtime_ns is not None]
    reasons = [f.reason for f in files if f.reason]
    return JournalRecords(pieces, max(times) / 1e9 if times else None, "; ".join(reasons) or None)


# --- writing --------------------------------------------------------------------------


class PieceJournal:
    """The append side; every method is thread-safe and blocking (call it
    from a worker thread). See the module docstring for the life cycle."""

    def __init__(self, path: str | os.PathLike[str], info_hash: bytes, num_pieces: int, *,
                 download_dir: str | os.PathLike[str] | None = None, armed: bool = False) -> None:
        self.path = Path(path)
        self.old_path = _old(self.path)
        self.num_pieces = num_pieces
        self._header = _header(info_hash, num_pieces, download_dir)
        self._max_records = MAX_RECORDS_PER_PIECE * num_pieces
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._records = 0  # in the current file
        self._has_header = False  # the current file has its header
        self._armed = armed
        self._disabled = False
        self._closed = False
        self._full_warned = False

    def __repr__(self) -> str:
        state = ("closed" if self._closed else "disabled" if self._disabled else
                 "armed" if self._armed else "not armed")
        return f"PieceJournal({str(self.path)!r}, {state})"

    @property
    def active(self) -> bool:
        """Would ``append`` record anything now?"""
        return self._armed and not self._disabled and not self._closed

    def append(self, indexes: Sequence[int]) -> None:
        """Record pieces just verified and written (call after their write)."""
        if not indexes:
            return
        for index in indexes:
            if not 0 <= index < self.num_pieces:
                raise ValueError(f"piece {index} out of range 0..{self.num_pieces - 1}")
        records = struct.pack(f">{len(indexes)}I", *indexes)
        with self._lock:
            if not self.active:
                return
            if self._records + len(indexes) > self._max_records:
                if not self._full_warned:
                    self._full_warned = True
                    log.warning("piece journal %s is full (%d records): pieces verified until the next "
                                "resume save are rechecked after a crash", self.path, self._records)
                return
            try:
                if self._fd is None:
                    self._open()
                data = records if self._has_header else self._header + records
                written = os.write(self._fd, data)  # type: ignore[arg-type]
                if written != len(data):  # a short write: the disk is full
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)")
            except OSError as exc:
                self._disable(exc)
                return
            self._has_header = True
            self._records += len(indexes)

    def _open(self) -> None:
        """Under the lock: open (or create) the current file for appending."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            size = os.fstat(fd).st_size
            records = 0
            if size and os.pread(fd, HEADER_SIZE, 0) != self._header:
                log.info("piece journal %s had an unusable header: started again", self.path)
                os.ftruncate(fd, 0)
                size = 0
            elif size:
                body = size - HEADER_SIZE
                if body % _RECORD:  # a torn last record: cut it so ours stay aligned
                    os.ftruncate(fd, size - body % _RECORD)
                records = body // _RECORD
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._records = records
        self._has_header = size > 0
        self._full_warned = False

    def _disable(self, exc: OSError) -> None:
        """Under the lock."""
        self._disabled = True
        self._close_fd()
        log.warning("piece journal %s disabled: %s; pieces verified from now on are rechecked "
                    "after a crash, until the next resume save", self.path, exc.strerror or exc)

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        self._records = 0
        self._has_header = False
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def rotate(self) -> None:
        """A resume snapshot was just taken: the current records move to
        ``<path>.old`` (merged into it if a failed save left one) and new
        records start a fresh file."""
        with self._lock:
            self._close_fd()
            try:
                self._rotate()
            except OSError as exc:
                log.warning("cannot rotate the piece journal %s: %s", self.path, exc.strerror or exc)

    def _rotate(self) -> None:
        if not self.path.exists():
            return
        if not self.old_path.exists():
            os.rename(self.path, self.old_path)
            return
        # A previous save failed: its records must survive until a save covers
        # them. The union is rewritten (deduplicated, so .old stays bounded)
        # with the newest record time kept as its modification time.
        pieces: set[int] = set()
        times = []
        for p in (self.old_path, self.path):
            f = _read_file(p, self._header, self.num_pieces)
            if f is None:
                continue
            if f.reason:
                log.info("merging the piece journal: %s", f.reason)
            pieces.update(f.records)
            if f.mtime_ns is not None:
                times.append(f.mtime_ns)
        if not pieces:
            self.old_path.unlink(missing_ok=True)
            self.path.unlink()
            return
        tmp = _tmp(self.path)
        data = self._header + struct.pack(f">{len(pieces)}I", *sorted(pieces))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        newest = max(times)
        os.utime(tmp, ns=(newest, newest))
        os.replace(tmp, self.old_path)
        self.path.unlink()

    def commit(self) -> None:
        """The resume file was saved: ``<path>.old`` is covered by it and goes.
        Arms the journal (and re-enables it after an error)."""
        with self._lock:
            try:
                self.old_path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot delete %s: %s", self.old_path, exc.strerror or exc)
            self._armed = True
            self._disabled = False

    def discard(self) -> None:
        """Delete every record (a full recheck replaced them, or the torrent is
        removed). Disarms the journal until the next ``commit``."""
        with self._lock:
            self._close_fd()
            self._armed = False
            for p in (self.path, self.old_path, _tmp(self.path)):
                try:
                    p.unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("cannot delete %s: %s", p, exc.strerror or exc)

    def close(self) -> None:
        """Stop appending (the files stay for the next start)."""
        with self._lock:
            self._closed = True
            self._close_fd()
