"""Fast resume: what was verified, so a restart need not hash everything again.

One bencoded file per torrent, ``<resume_dir>/<info-hash hex>.resume``::

    {"version": 1, "info-hash": <20 bytes>, "num pieces": n,
     "pieces": <bitfield, BEP 3 layout>,
     "files": <16 bytes per file: size u64 and mtime_ns i64, big-endian;
               size 2**64-1 = the file did not exist (pad files, unwritten files)>,
     "priorities": <one byte per file>, "download dir": <path bytes>,
     "uploaded": int, "downloaded": int, "saved at": <unix seconds>}

Files and priorities are packed byte strings rather than lists: a torrent of a
million files then loads in milliseconds and the file stays small.

Saving is atomic (temporary file, fsync, ``os.replace``, fsync of the
directory): a crash leaves the previous file or the new one, never half of
one. Loading never raises for bad content: ``load`` returns None and
``load_or_reason`` says why (corrupt, another torrent, unknown version, too
large).

When to trust it (``trusted_pieces``)
    The resume file is ignored — full recheck — if it is missing, unreadable,
    for another torrent, or for another download directory. Otherwise each
    file's current (size, mtime_ns) is compared with the recorded one.
    Pieces touching only unchanged files are trusted as recorded. Every piece
    touching a changed file is rechecked, including pieces the resume file
    did not claim (a file that changed may also have gained data, e.g. copied
    in by the user); and a claimed piece touching a file that is now missing
    is rechecked (it fails at once). So a partial recheck, proportional to
    what changed, never a trusted piece whose bytes might differ.

Capturing a snapshot
    Take the bitfield first, then ``storage.file_states()`` (``snapshot`` does
    both in that order). A write finishing in between then changes an mtime,
    which at worst causes a recheck; the opposite order could record a piece
    against an mtime from before its write. At exit, ``storage.sync()`` first.
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
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
from torrent.storage.files import FileState, Progress, Storage

__all__ = [
    "FORMAT_VERSION",
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

FORMAT_VERSION = 1
SUFFIX = ".resume"
# Without a torrent to size it by, a resume file over 4 MiB is refused; with
# one, 1 MiB plus the bitfield and 17 bytes per file (a million files: 17 MB).
MAX_RESUME_SIZE = 4 * MiB
_BASE_SIZE = 1 * MiB

_FILE = struct.Struct(">Qq")
_ABSENT = (1 << 64) - 1


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
    a worker thread). ``have`` is copied before the files are looked at."""
    have_bytes = have.to_bytes()
    states = storage.file_states()
    meta = storage.metainfo
    return ResumeData(info_hash=meta.info_hash, num_pieces=len(have), have=have_bytes,
                      files=tuple(states), download_dir=str(storage.root), uploaded=uploaded,
                      downloaded=downloaded, priorities=tuple(priorities), saved_at=int(time.time()))


# --- encoding -------------------------------------------------------------------------


def encode(data: ResumeData) -> bytes:
    files = b"".join(_FILE.pack(_ABSENT, 0) if s is None else _FILE.pack(s.size, s.mtime_ns)
                     for s in data.files)
    return bencoding.encode({
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
    path = Path(path)
    raw = encode(data)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        tmp = None
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise StorageError(f"cannot save resume data to {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


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
    trusted: Bitfield  # verified pieces whose files did not change: no hashing needed
    recheck: Bitfield  # pieces to hash before they count
    changed_files: tuple[int, ...]  # indexes of files whose size or mtime changed


def trusted_pieces(resume: ResumeData | None, metainfo: Metainfo,
                   states: Sequence[FileState | None], *,
                   download_dir: str | os.PathLike[str] | None = None) -> ResumePlan | None:
    """What of ``resume`` can be believed given the files' current ``states``
    (``Storage.file_states()``); None means a full recheck."""
    if resume is None:
        return None
    try:
        _check_matches(resume, metainfo)
        have = resume.bitfield()
    except TorrentError:
        return None
    if len(states) != len(metainfo.files):
        raise ValueError(f"{len(states)} file states for a torrent of {len(metainfo.files)} files")
    if download_dir is not None and Path(resume.download_dir) != Path(download_dir).resolve():
        return None
    geo = metainfo.geometry
    recheck = Bitfield(metainfo.num_pieces)
    missing = Bitfield(metainfo.num_pieces)
    changed: list[int] = []
    for i, entry in enumerate(metainfo.files):
        now = states[i]
        if entry.is_padding:
            continue
        if now != resume.files[i]:
            changed.append(i)
            for piece in geo.file_pieces(i):
                recheck.set(piece)
        elif now is None:
            for piece in geo.file_pieces(i):
                missing.set(piece)
    recheck = recheck.or_(have.and_(missing))
    return ResumePlan(have.and_not(recheck), recheck, tuple(changed))


class Restored(NamedTuple):
    have: Bitfield
    checked: int  # pieces hashed to get there
    reason: str  # one line for the log or the user


def restore(storage: Storage, resume: ResumeData | None, *, recheck: bool = False,
            progress: Progress | None = None) -> Restored:
    """The verified pieces at start: resume data where it holds, hashing where
    it does not (all of it with ``recheck=True``, the ``--recheck`` flag).
    Blocking: run it in a worker thread. A complete torrent comes back with
    every piece set, ready to seed."""
    meta = storage.metainfo
    plan = None if recheck else trusted_pieces(resume, meta, storage.file_states(),
                                               download_dir=storage.root)
    if plan is None:
        why = "recheck requested" if recheck else ("no usable resume data" if resume is None
                                                   else "resume data does not match")
        have = storage.check_existing(progress)
        return Restored(have, meta.num_pieces, f"full recheck ({why}): {have.count()} of "
                                               f"{meta.num_pieces} pieces verified")
    checked = plan.recheck.count()
    if not checked:
        return Restored(plan.trusted, 0, f"resume data trusted: {plan.trusted.count()} of "
                                         f"{meta.num_pieces} pieces")
    found = storage.check_existing(progress, pieces=plan.recheck)
    have = plan.trusted.or_(found)
    return Restored(have, checked, f"{len(plan.changed_files)} files changed since the resume data was "
                                   f"saved: rechecked {checked} pieces, {have.count()} of "
                                   f"{meta.num_pieces} verified")
