"""Fast resume: what was verified, so a restart need not hash everything again.

One bencoded file per torrent, ``<resume_dir>/<info-hash hex>.resume``::

    {"checksum": <20 bytes>, "version": 2, "info-hash": <20 bytes>, "num pieces": n,
     "pieces": <bitfield, BEP 3 layout>,
     "files": <16 bytes per file: size u64 and mtime_ns i64, big-endian;
               size 2**64-1 = the file did not exist (pad files, unwritten files)>,
     "priorities": <one byte per file>, "download dir": <path bytes>,
     "uploaded": int, "downloaded": int, "saved at": <unix seconds>}

Files and priorities are packed byte strings rather than lists: a torrent of a
million files then loads in milliseconds and the file stays small.

"checksum" is the SHA-1 of the file as it would be without that entry (it is
the first key, so the file is ``d8:checksum20:<digest>`` then the rest of that
encoding after its ``d``). A flipped bit anywhere — a cleared piece bit would
otherwise lose a verified piece, a set one claim a missing piece — makes the
file corrupt, and corrupt resume data is treated as absent (a full recheck).
Version 1 files had no checksum and are refused the same way.

Saving is atomic (temporary file, fsync, ``os.replace``, fsync of the
directory): a crash leaves the previous file or the new one, never half of
one. Loading never raises for bad content: ``load`` returns None and
``load_or_reason`` says why (corrupt, another torrent, unknown version, too
large).

File priorities
    The torrent's file priorities live here, one byte per file in file
    order: 0 = skip (do not download), any other value is a priority (higher
    first); an empty string means every file at the default. The session
    passes them to ``snapshot(priorities=...)``; values must be 0..255 and
    there must be one per file (``ValueError`` otherwise), and ``decode``
    refuses a file whose count does not match its file table.

When to trust it (``trusted_pieces``, ``restore``)
    The resume file is ignored if it is unreadable, for another torrent, or
    for another download directory: full recheck (the piece journal is then
    ignored too). Otherwise each file's current (size, mtime_ns) is compared
    with the recorded one, and what was verified is what the resume data
    claims plus what the piece journal (``journal.py``) recorded since:

    * unchanged: its pieces are trusted as recorded, no hashing;
    * changed by our own writes: at the torrent's length, recorded at that
      length (or recorded absent: created since), newer, and modified no
      later than the journal's last write + ``JOURNAL_SLACK_NS`` (a kill
      between a write and its record leaves the file a little newer than
      the journal). Recorded pieces are trusted; the pieces touching the file
      that no record covers are rechecked (they may have been written just
      before the kill). Resume claims on a file recorded absent are not
      believed;
    * anything else (size changed, older, newer than the journal, no
      journal, missing): every piece touching it is rechecked, including
      pieces nothing claimed (a file may also have gained data, e.g. copied
      in by the user); a missing file's pieces then fail at once.

    A record that would be trusted for a piece with no data on disk (every
    byte of it in a hole of a sparse file, and not a piece of zeros: see
    ``Storage.pieces_with_data``) is a lie — a resume file written by hand or
    by a bug, or files replaced by sparse ones at the same size and mtime —
    and the resume data and journal are then distrusted whole: full recheck.
    So a lying resume file cannot make us serve pieces we never downloaded.

    A claimed piece touching a file that is missing now, as it was when the
    resume data was saved, is rechecked (it fails at once). A piece is
    trusted only if every non-pad file it touches allows it.

    Without resume data but with a journal (killed before the first save):
    files at their full length modified no later than the journal's last
    write + slack trust the journal's pieces and recheck the unrecorded
    pieces touching them; other files are rechecked whole. With neither, or
    with ``recheck=True``: full recheck. So a partial recheck, proportional
    to what changed, never a trusted piece whose bytes might differ — except
    for changes made by someone else while we were writing (the journal's
    last write then covers them), as with any mtime-based resume.

    When ``Restored.refuted`` is nonzero, the resume file and journal on
    disk claim pieces ``restore`` just found bad: the session must save
    resume data (snapshot, ``PieceJournal.rotate``, save, ``commit``) before
    new writes are journaled, or a later restart could take those claims for
    our own writes. ``PieceJournal`` drops records until its first
    ``commit``, unless created with ``armed=True`` (safe when nothing was
    refuted and ``recheck`` was not asked).

Capturing a snapshot
    Take the bitfield first, then ``storage.file_states()`` (``snapshot`` does
    both in that order). A write finishing in between then changes an mtime,
    which at worst causes a recheck; the opposite order could record a piece
    against an mtime from before its write. At exit, ``storage.sync()`` first.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from torrent.codec import bencoding
from torrent.core.bitfield import Bitfield
from torrent.core.errors import StorageError, TorrentError
from torrent.codec.metainfo import Metainfo
from torrent.core.settings import Limits, MiB
from torrent.storage.atomic import atomic_write
from torrent.storage.files import FileState, Progress, Storage
from torrent.storage.journal import JournalRecords

__all__ = [
    "FORMAT_VERSION",
    "JOURNAL_SLACK_NS",
    "Restored",
    "ResumeData",
    "ResumeError",
    "ResumePlan",
    "decode",
    "encode",
    "load",
    "load_or_reason",
    "max_resume_size",
    "restore",
    "resume_path",
    "save",
    "snapshot",
    "trusted_pieces",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
SUFFIX = ".resume"
# The first entry of every resume file: the SHA-1 of the file without it.
_CHECKSUM_HEAD = b"d8:checksum20:"
_CHECKSUM_END = len(_CHECKSUM_HEAD) + 20
# Without a torrent to size it by, a resume file over 4 MiB is refused; with
# one, 1 MiB plus the bitfield and 17 bytes per file (a million files: 17 MB).
MAX_RESUME_SIZE = 4 * MiB
_BASE_SIZE = 1 * MiB

_FILE = struct.Struct(">Qq")
_ABSENT = (1 << 64) - 1
# How much newer than the journal's last write a file may be and still count
# as changed by our own writes only (a kill between a write and its record).
JOURNAL_SLACK_NS = 2_000_000_000


class ResumeError(TorrentError):
    """A resume file is corrupt or belongs to something else (never shown as a failure:
    the torrent is rechecked instead)."""


@dataclass(frozen=True, slots=True)
class ResumeData:
    info_hash: bytes
    num_pieces: int
    have: bytes = field(repr=False)  # verified pieces, BEP 3 bitfield bytes
    files: tuple[FileState | None, ...] = field(repr=False)
    download_dir: str
    uploaded: int = 0
    downloaded: int = 0
    priorities: tuple[int, ...] = field(default=(), repr=False)  # empty: all default
    saved_at: int = 0

    def bitfield(self) -> Bitfield:
        return Bitfield.from_bytes(self.have, self.num_pieces)


def resume_path(resume_dir: str | os.PathLike[str], info_hash: bytes) -> Path:
    return Path(resume_dir, info_hash.hex() + SUFFIX)


def max_resume_size(metainfo: Metainfo | None = None) -> int:
    if metainfo is None:
        return MAX_RESUME_SIZE
    return _BASE_SIZE + -(-metainfo.num_pieces // 8) + 17 * len(metainfo.files)


def snapshot(storage: Storage, have: Bitfield, *, uploaded: int = 0, downloaded: int = 0,
             priorities: Sequence[int] = ()) -> ResumeData:
    """Resume data for ``storage`` now (blocking: one stat per file — run it in
    a worker thread). ``have`` is copied before the files are looked at.
    ``priorities``: one per file, 0 = skip, 1..255 a priority; empty = all default."""
    have_bytes = have.to_bytes()
    meta = storage.metainfo
    _check_priorities(priorities, len(meta.files))
    states = storage.file_states()
    return ResumeData(info_hash=meta.info_hash, num_pieces=len(have), have=have_bytes,
                      files=tuple(states), download_dir=str(storage.root), uploaded=uploaded,
                      downloaded=downloaded, priorities=tuple(priorities), saved_at=int(time.time()))


def _check_priorities(priorities: Sequence[int], num_files: int) -> None:
    if priorities and len(priorities) != num_files:
        raise ValueError(f"{len(priorities)} file priorities for {num_files} files")
    try:
        bytes(priorities)
    except (ValueError, TypeError):
        bad = next((p for p in priorities if not (isinstance(p, int) and 0 <= p <= 255)), None)
        raise ValueError(f"file priority {bad!r} is not in 0..255") from None


# --- encoding -------------------------------------------------------------------------


def encode(data: ResumeData) -> bytes:
    _check_priorities(data.priorities, len(data.files))
    files = b"".join(_FILE.pack(_ABSENT, 0) if s is None else _FILE.pack(s.size, s.mtime_ns)
                     for s in data.files)
    body = bencoding.encode({
        b"version": FORMAT_VERSION,
        b"info-hash": data.info_hash,
        b"num pieces": data.num_pieces,
        b"pieces": data.have,
        b"files": files,
        b"priorities": bytes(data.priorities),
        b"download dir": os.fsencode(data.download_dir),
        b"uploaded": data.uploaded,
        b"downloaded": data.downloaded,
        b"saved at": data.saved_at,
    })
    return _CHECKSUM_HEAD + hashlib.sha1(body).digest() + body[1:]  # "checksum" sorts before every other key


def _checksum_holds(raw: bytes) -> bool:
    if not raw.startswith(_CHECKSUM_HEAD):
        return False
    digest = hashlib.sha1(b"d")
    digest.update(memoryview(raw)[_CHECKSUM_END:])
    return digest.digest() == raw[len(_CHECKSUM_HEAD):_CHECKSUM_END]


def decode(raw: bytes, *, metainfo: Metainfo | None = None) -> ResumeData:
    """Parse a resume file's bytes; ``ResumeError`` saying what is wrong.

    With ``metainfo``, the data must belong to that torrent.
    """
    limit = max_resume_size(metainfo)
    if len(raw) > limit:
        raise ResumeError(f"resume file is {len(raw)} bytes, more than the limit of {limit}")
    try:
        top = bencoding.decode(raw, limits=Limits(bencode_max_depth=2, bencode_max_size=limit,
                                                  bencode_max_string=limit))
    except TorrentError as exc:
        raise ResumeError(f"resume file is corrupt ({exc})") from exc
    if not isinstance(top, dict):
        raise ResumeError("resume file is corrupt (not a dictionary)")
    version = top.get(b"version")
    if version != FORMAT_VERSION or type(version) is not int:
        raise ResumeError(f"resume format version {version!r} is not supported (expected {FORMAT_VERSION})")
    info_hash = _get(top, b"info-hash", bytes)
    if len(info_hash) != 20:
        raise ResumeError(f"resume file has an info-hash of {len(info_hash)} bytes")
    num_pieces = _count(top, b"num pieces")
    have = _get(top, b"pieces", bytes)
    try:
        Bitfield.from_bytes(have, num_pieces)
    except TorrentError as exc:
        raise ResumeError(f"resume file has a bad piece bitfield ({exc})") from exc
    packed = _get(top, b"files", bytes)
    if len(packed) % _FILE.size:
        raise ResumeError(f"resume file's file table is {len(packed)} bytes, not a multiple of {_FILE.size}")
    make = FileState._make
    files = tuple(None if rec[0] == _ABSENT else make(rec) for rec in _FILE.iter_unpack(packed))
    priorities = tuple(_get(top, b"priorities", bytes))
    if priorities and len(priorities) != len(files):
        raise ResumeError(f"resume file has {len(priorities)} priorities for {len(files)} files")
    data = ResumeData(
        info_hash=info_hash, num_pieces=num_pieces, have=have, files=files,
        download_dir=os.fsdecode(_get(top, b"download dir", bytes)),
        uploaded=_count(top, b"uploaded"), downloaded=_count(top, b"downloaded"),
        priorities=priorities, saved_at=_count(top, b"saved at"))
    if not _checksum_holds(raw):  # after the fields: a named bad field says more
        raise ResumeError("resume file is corrupt (its checksum does not match its content)")
    if metainfo is not None:
        _check_matches(data, metainfo)
    return data


def _get(top: dict[bytes, Any], key: bytes, kind: type) -> Any:
    value = top.get(key)
    if type(value) is not kind:
        raise ResumeError(f"resume file has a missing or invalid {key.decode()!r}")
    return value


def _count(top: dict[bytes, Any], key: bytes) -> int:
    value = _get(top, key, int)
    if value < 0 or value >= 1 << 63:
        raise ResumeError(f"resume file has an out-of-range {key.decode()!r}: {value}")
    return int(value)


def _check_matches(data: ResumeData, metainfo: Metainfo) -> None:
    if data.info_hash != metainfo.info_hash:
        raise ResumeError(f"resume file is for another torrent ({data.info_hash.hex()})")
    if data.num_pieces != metainfo.num_pieces or len(data.files) != len(metainfo.files):
        raise ResumeError(f"resume file describes {data.num_pieces} pieces and {len(data.files)} files, "
                          f"the torrent has {metainfo.num_pieces} and {len(metainfo.files)}")


# --- files ----------------------------------------------------------------------------


def save(path: str | os.PathLike[str], data: ResumeData) -> None:
    """Write atomically; ``StorageError`` if the disk refuses (blocking: call it
    in a worker thread)."""
    try:
        atomic_write(path, encode(data))
    except OSError as exc:
        raise StorageError(f"cannot save resume data to {path}: {exc.strerror or exc}") from exc


def load_or_reason(path: str | os.PathLike[str], *, metainfo: Metainfo | None = None) -> ResumeData | str:
    """The resume data, or a one-line reason it cannot be used. Never raises
    for a missing, unreadable, oversized or corrupt file."""
    limit = max_resume_size(metainfo)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                return f"resume file {path} is {size} bytes, more than the limit of {limit}"
            raw = fh.read(limit + 1)
    except FileNotFoundError:
        return "no resume file"
    except OSError as exc:
        return f"cannot read resume file {path}: {exc.strerror or exc}"
    try:
        return decode(raw, metainfo=metainfo)
    except ResumeError as exc:
        return f"{path}: {exc}"


def load(path: str | os.PathLike[str], *, metainfo: Metainfo | None = None) -> ResumeData | None:
    """``load_or_reason`` that logs the reason and returns None."""
    result = load_or_reason(path, metainfo=metainfo)
    if isinstance(result, str):
        log.log(logging.DEBUG if result == "no resume file" else logging.WARNING, "%s", result)
        return None
    return result


# --- trusting it ----------------------------------------------------------------------


class ResumePlan(NamedTuple):
    trusted: Bitfield  # verified pieces whose files did not change (or only by our writes): no hashing
    recheck: Bitfield  # pieces to hash before they count
    changed_files: tuple[int, ...]  # files whose size or mtime changed (no resume data: files rechecked whole)
    journal_files: tuple[int, ...] = ()  # of those, files changed by our own writes per the journal
    from_journal: int = 0  # trusted pieces the resume data did not claim (the journal did)


def trusted_pieces(resume: ResumeData | None, metainfo: Metainfo,
                   states: Sequence[FileState | None], *,
                   download_dir: str | os.PathLike[str] | None = None,
                   journal: JournalRecords | None = None) -> ResumePlan | None:
    """What of ``resume`` and ``journal`` can be believed given the files'
    current ``states`` (``Storage.file_states()``); None means a full
    recheck. The rules are in the module docstring."""
    n = metainfo.num_pieces
    claimed = Bitfield(n)
    if resume is not None:
        try:
            _check_matches(resume, metainfo)
            claimed = resume.bitfield()
        except TorrentError:
            return None
    if len(states) != len(metainfo.files):
        raise ValueError(f"{len(states)} file states for a torrent of {len(metainfo.files)} files")
    if resume is not None and download_dir is not None and \
            Path(resume.download_dir) != Path(download_dir).resolve():
        return None
    journaled = Bitfield(n)
    newest_ns = 0  # files modified no later than this may have been changed by our writes alone
    if journal is not None and len(journal.pieces) == n and journal.last_write_ns is not None:
        journaled = journal.pieces
        newest_ns = journal.last_write_ns + JOURNAL_SLACK_NS
    else:
        journal = None  # another torrent's, or no valid record: nothing to go on
    if resume is None and journal is None:
        return None

    geo = metainfo.geometry
    whole = bytearray(-(-n // 8))  # touching a file to recheck whole
    own = bytearray(len(whole))  # touching a file changed by our own writes
    gone = bytearray(len(whole))  # touching a file missing now and then
    unclaimable = bytearray(len(whole))  # touching a file the resume data recorded absent
    changed: list[int] = []
    journal_files: list[int] = []
    for i, entry in enumerate(metainfo.files):
        if entry.is_padding:
            continue
        now = states[i]
        pieces = geo.file_pieces(i)
        if resume is not None:
            then = resume.files[i]
            if then is None:
                _mark(unclaimable, pieces)
            if now == then:
                if now is None:
                    _mark(gone, pieces)
                continue
            changed.append(i)
        if not pieces:  # an empty file: no piece to trust or recheck
            continue
        ours = (journal is not None and now is not None and now.size == entry.length
                and now.mtime_ns <= newest_ns)
        if ours and resume is not None:  # and newer than recorded at that size, or created since
            then = resume.files[i]
            ours = then is None or (then.size == entry.length
                                    and now.mtime_ns > then.mtime_ns)  # type: ignore[union-attr]
        if ours:
            journal_files.append(i)
            _mark(own, pieces)
        else:
            if resume is None:
                changed.append(i)
            _mark(whole, pieces)

    def bits(buf: bytearray) -> Bitfield:
        return Bitfield.from_bytes(bytes(buf), n)

    claims = claimed.or_(journaled)
    recorded = claimed.and_not(bits(unclaimable)).or_(journaled)
    recheck = bits(whole).or_(bits(own).and_not(recorded)).or_(claims.and_(bits(gone)))
    trusted = recorded.and_not(recheck)
    return ResumePlan(trusted, recheck, tuple(changed), tuple(journal_files),
                      trusted.and_not(claimed).count())


def _mark(buf: bytearray, pieces: range) -> None:
    """Set bits ``pieces`` (a step-1 range) in a BEP 3 bitfield buffer."""
    start, stop = pieces.start, pieces.stop
    if start >= stop:
        return
    first, last = start >> 3, (stop - 1) >> 3
    head = 0xFF >> (start & 7)
    tail = (0xFF << (7 - ((stop - 1) & 7))) & 0xFF
    if first == last:
        buf[first] |= head & tail
        return
    buf[first] |= head
    buf[first + 1:last] = b"\xff" * (last - first - 1)
    buf[last] |= tail


class Restored(NamedTuple):
    have: Bitfield
    checked: int  # pieces hashed to get there
    reason: str  # one line for the log or the user
    hashed: int = 0  # payload bytes read and hashed to get there
    # Pieces the resume data or journal given claimed that are not in ``have``:
    # while nonzero, the files on disk claim pieces found bad, and a journal
    # must not be armed until resume data is saved again (see journal.py).
    refuted: int = 0


def restore(storage: Storage, resume: ResumeData | None, *, recheck: bool = False,
            progress: Progress | None = None, journal: JournalRecords | None = None) -> Restored:
    """The verified pieces at start: resume data and the piece journal where
    they hold, hashing where they do not (all of it with ``recheck=True``,
    the ``--recheck`` flag). Blocking: run it in a worker thread. A complete
    torrent comes back with every piece set, ready to seed. ``progress`` is
    called with the bytes of each batch hashed; ``Restored.hashed`` is their sum."""
    meta = storage.metainfo
    n = meta.num_pieces
    hashed = 0

    def counted(nbytes: int) -> None:
        nonlocal hashed
        hashed += nbytes
        if progress is not None:
            progress(nbytes)

    claims = _claims(resume, journal, n)
    note = ""
    if journal is not None and not recheck:
        if journal.reason:
            note = f"; journal: {journal.reason}"
        if len(journal.pieces) != n:
            note += f"; journal ignored: it describes {len(journal.pieces)} pieces"
            journal = None
    plan = None if recheck else trusted_pieces(resume, meta, storage.file_states(),
                                               download_dir=storage.root, journal=journal)
    hollow = 0
    if plan is not None and not plan.trusted.none():
        hollow = plan.trusted.and_not(storage.pieces_with_data()).count()
        if hollow:
            plan = None  # it lies: believe none of it
    if plan is None:
        if recheck:
            why = "recheck requested"
        elif hollow:
            why = f"resume data and journal distrusted: they claim {hollow} pieces with no data on disk"
        elif resume is not None:
            why = "resume data does not match" + ("; journal ignored" if journal is not None else "")
        elif journal is not None:
            why = "no usable resume data, no valid journal record"
        else:
            why = "no usable resume data"
        have = storage.check_existing(counted)
        return Restored(have, n, f"full recheck ({why}): {have.count()} of {n} pieces verified{note}", hashed,
                        claims.and_not(have).count())
    checked = plan.recheck.count()
    from_journal = f" ({plan.from_journal} from the journal)" if plan.from_journal else ""
    if not checked:
        what = "resume data trusted" if resume is not None else "no resume data; journal trusted"
        return Restored(plan.trusted, 0, f"{what}: {plan.trusted.count()} of {n} pieces{from_journal}{note}", 0,
                        claims.and_not(plan.trusted).count())
    found = storage.check_existing(counted, pieces=plan.recheck)
    have = plan.trusted.or_(found)
    if resume is None:
        what = (f"no resume data; journal of {journal.pieces.count()} pieces: "  # type: ignore[union-attr]
                f"{len(plan.journal_files)} files written by us since, {len(plan.changed_files)} "
                "files rechecked whole")
    else:
        what = f"{len(plan.changed_files)} files changed since the resume data was saved"
        if plan.journal_files:
            what += f" ({len(plan.journal_files)} by our own writes, per the journal)"
    return Restored(have, checked, f"{what}: trusted {plan.trusted.count()} pieces{from_journal}, "
                                   f"rechecked {checked} pieces, {have.count()} of {n} verified{note}", hashed,
                    claims.and_not(have).count())


def _claims(resume: ResumeData | None, journal: JournalRecords | None, n: int) -> Bitfield:
    """Every piece ``resume`` and ``journal`` claim (whether believed or not)."""
    claims = Bitfield(n)
    if resume is not None and resume.num_pieces == n:
        try:
            claims = resume.bitfield()
        except TorrentError:
            pass
    if journal is not None and len(journal.pieces) == n:
        claims = claims.or_(journal.pieces)
    return claims
