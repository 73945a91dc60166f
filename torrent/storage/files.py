"""Piece storage: pieces in and out of the files of one torrent.

Every method does blocking I/O or hashing: they run in worker threads (DESIGN
rule 4) and are safe to call from several threads at once. Downloads verify
and write in batches through ``verifier.PieceVerifier``.

Files
    Every path is resolved once through ``paths.safe_join`` and again on each
    open. The open itself walks the directories below the download directory
    with ``O_NOFOLLOW`` and ``dir_fd``, so a symlink planted anywhere under it
    — before or after start — is refused (``StorageError``) instead of being
    followed; nothing is ever created or written outside the download
    directory. (That is stricter than ``safe_join``: a symlink pointing to
    another place *inside* the download directory is refused too.)
    Files are created on their first write, sparse: ``ftruncate`` to their
    final length, with no data blocks until pieces arrive (a file already at
    that path with another size is set to the torrent's length then). A file
    never written is never created. BEP 47 pad files are never created, never
    written, and read as zeros. Symlink entries (BEP 47 ``l``) are not
    created. Empty files are made by ``create_empty_files``.
    Open descriptors are kept in a small LRU (``MAX_OPEN_FILES``), reference
    counted so that a descriptor one thread uses is never closed under it.

Files changed under us (``read_piece``)
    A piece read for serving is never one that fails its hash. Hashing every
    piece served would cost a SHA-1 per piece: 0.56 CPU-s per GiB, as much
    again as the seeder's whole user CPU (0.60 s/GiB, ``torrent bench``).
    Instead each file keeps a *known* state — size, mtime, ctime, link count
    — taken when it was first seen (opened, or stated for fast resume), when a
    full recheck opened it, and after each of our own writes that found it as
    known. After a serving read, an ``fstat`` of the descriptor (about 1 µs)
    is compared with it. The same state: the bytes are what was verified.
    The ctime catches a rewrite whose mtime was put back (no user can set
    it); the link count a file deleted or replaced while our descriptor still
    reads its old inode. A file deleted or resized is a ``DataChangedError``
    at once; a piece read from a file otherwise changed is hashed, and a
    ``DataChangedError`` if it fails. That file stays suspect (its pieces are
    hashed when served) until a full recheck.

Deselected files (``file_wanted``)
    The torrent owns the file priorities; storage only reads them through the
    ``file_wanted`` callable it is given. Storage writes whatever piece it is
    given, and the picker asks only for pieces touching at least one wanted
    file. A piece shared by a wanted and a deselected file is still written
    whole, so the deselected neighbour *is* created (sparse, holding only that
    boundary data) — the whole piece is needed to verify it and to serve it.
    This is the simple alternative to libtorrent's part-file; a deselected file
    that shares no piece with a wanted file is never created,
    ``create_empty_files`` skips deselected files, and the space a full disk
    still lacks counts wanted files only.

Errors
    Every ``OSError`` becomes a ``StorageError`` with one line a user can act
    on; disk full and quota become ``DiskFullError`` carrying the path, the
    space the torrent still needs and the free space. A write that fails
    part-way raises: the caller must keep that piece unverified. Data already
    written is never removed.
"""

from __future__ import annotations

import errno
import os
import queue
import stat
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from torrent.codec.geometry import FileSlice
from torrent.codec.metainfo import DIGEST_SIZE, Metainfo
from torrent.codec.paths import safe_join
from torrent.core import hashing
from torrent.core.bitfield import Bitfield
from torrent.core.errors import StorageError
from torrent.core.settings import StorageSettings
from torrent.core.units import format_size

__all__ = ["DataChangedError", "DiskFullError", "FileState", "Storage"]

Buffer = bytes | bytearray | memoryview
Progress = Callable[[int], None]

_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # NONBLOCK: a planted FIFO must not hang us
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class DiskFullError(StorageError):
    """The disk (or the user's quota) is full; fields let a front end say more."""

    def __init__(self, message: str, path: Path, needed: int, free: int) -> None:
        super().__init__(message)
        self.path = path
        self.needed = needed  # bytes the torrent still needs on disk (estimate)
        self.free = free  # bytes free for us on that filesystem


class DataChangedError(StorageError):
    """A file changed on disk behind the torrent: ``pieces`` are no longer
    good (a recheck tells what still is)."""

    def __init__(self, message: str, pieces: Iterable[int] = ()) -> None:
        super().__init__(message)
        self.pieces = tuple(pieces)


Signature = tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, links: what changes when the data can


# preadv2's "only from the page cache" flag (Linux 4.14 and later); None where there is none.
_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)


def _signature(st: os.stat_result) -> Signature:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink


class FileState(NamedTuple):
    """What fast resume compares: a file's size and modification time."""

    size: int
    mtime_ns: int


class _Missing(Exception):
    """A file to read does not exist (yet) or is shorter than the torrent says."""

    def __init__(self, message: str, got: int = 0) -> None:
        super().__init__(message)
        self.got = got  # bytes read before the data ran out


class _Handle:
    """One open descriptor; closed when evicted and no thread uses it."""

    __slots__ = ("evicted", "fd", "refs", "sized", "writable")

    def __init__(self, fd: int, writable: bool) -> None:
        self.fd = fd
        self.writable = writable
        self.refs = 0
        self.evicted = False
        self.sized = False  # extended to the final length already


class Storage:
    """The files of one torrent under ``download_dir``."""

    def __init__(self, metainfo: Metainfo, download_dir: str | os.PathLike[str], *,
                 settings: StorageSettings | None = None,
                 file_wanted: Callable[[int], bool] | None = None) -> None:
        self.settings = settings or StorageSettings()
        self.metainfo = metainfo
        self.geometry = metainfo.geometry
        self.root = Path(download_dir).resolve()
        self._max_open = self.settings.max_open_files
        self._file_wanted = file_wanted or (lambda index: True)
        self._files = metainfo.files
        # Resolved once: pad files have no path on disk.
        resolved: dict[Path, Path] = {}
        self.paths: tuple[Path | None, ...] = tuple(
            None if f.is_padding else safe_join(self.root, f.path, resolved) for f in self._files)
        self._lock = threading.Lock()
        # One writer at a time: the kernel serialises buffered writes to a
        # file anyway, and two threads racing for the inode lock spin on it
        # (5% of a download's CPU, measured with perf).
        self._write_lock = threading.Lock()
        self._cache: OrderedDict[int, _Handle] = OrderedDict()
        self._dirty: set[int] = set()
        self._known: dict[int, Signature] = {}  # file index → its state when its data was last known good
        self._nowait = _NOWAIT is not None  # read_piece_cached may try; off where the file system refuses
        self._root_fd: int | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"Storage({self.metainfo.name!r} in {str(self.root)!r}, {len(self._cache)} open)"

    # --- writing ----------------------------------------------------------------------

    def write_piece(self, index: int, data: Buffer) -> None:
        """Write one whole piece (already verified by the caller)."""
        size = self.geometry.piece_size(index)
        if len(data) != size:
            raise ValueError(f"piece {index} is {size} bytes, got {len(data)}")
        self._write(index * self.geometry.piece_length, data)

    def write_pieces(self, first_index: int, data: Buffer) -> None:
        """Write a run of consecutive whole pieces held in one buffer."""
        geo = self.geometry
        start = first_index * geo.piece_length
        geo.piece_size(first_index)  # range check
        if not data or start + len(data) > geo.total_length or (
                len(data) % geo.piece_length and start + len(data) != geo.total_length):
            raise ValueError(f"{len(data)} bytes from piece {first_index} is not a run of whole pieces")
        self._write(start, data)

    def write_block(self, index: int, begin: int, data: Buffer) -> None:
        """Write ``data`` at ``begin`` within piece ``index``."""
        self._check_range(index, begin, len(data))
        self._write(index * self.geometry.piece_length + begin, data)

    def _parts(self, start: int, view: memoryview) -> Iterator[tuple[FileSlice, memoryview]]:
        """Each file's slice of the payload bytes at ``start`` that ``view`` holds, with its part of
        ``view``; pad files' slices too (their paths are None)."""
        pos = 0
        for part in self.geometry.slices(start, len(view)):
            yield part, view[pos:pos + part.length]
            pos += part.length

    def _write(self, start: int, data: Buffer) -> None:
        with self._write_lock:
            self._write_unlocked(start, data)

    def _write_unlocked(self, start: int, data: Buffer) -> None:
        for part, chunk in self._parts(start, memoryview(data).cast("B")):
            if self.paths[part.file_index] is None:  # pad file: never on disk
                continue
            handle = self._acquire(part.file_index, create=True)
            try:
                self._pwrite_all(handle, part.file_index, chunk, part.offset)
            finally:
                self._release(handle)

    def _pwrite_all(self, handle: _Handle, file_index: int, chunk: memoryview, offset: int) -> None:
        done, n = 0, len(chunk)
        try:
            before = os.fstat(handle.fd)
            while done < n:
                written = os.pwritev(handle.fd, [chunk[done:]], offset + done)
                if written <= 0:  # pragma: no cover - the kernel raises instead
                    raise OSError(errno.EIO, "write returned 0")
                done += written
            self._wrote(file_index, before, os.fstat(handle.fd))
        except OSError as exc:
            raise self._error(exc, "writing", file_index) from exc
        self._dirty.add(file_index)

    def _wrote(self, file_index: int, before: os.stat_result, after: os.stat_result) -> None:
        """Our own write is no change: the file's state after it becomes the
        known one, if the file was as known before it (else it stays suspect)."""
        was = _signature(before)
        with self._lock:
            if self._known.get(file_index, was) == was:
                self._known[file_index] = _signature(after)

    def create_empty_files(self) -> None:
        """Create the torrent's wanted empty files (no piece ever writes them)."""
        for i, entry in enumerate(self._files):
            if entry.length == 0 and self.paths[i] is not None and self._file_wanted(i) and entry.symlink is None:
                self._release(self._acquire(i, create=True))

    # --- reading ----------------------------------------------------------------------

    def read_block(self, index: int, begin: int, length: int) -> bytes:
        """``length`` bytes at ``begin`` in piece ``index``, for serving a peer.

        The caller only asks for pieces it has; a file missing, short or
        changed so that the piece fails its hash is a ``DataChangedError``.
        """
        self._check_range(index, begin, length)
        buf = bytearray(length)
        if self._read_into(index * self.geometry.piece_length + begin, memoryview(buf), watch=True) is not None:
            return bytes(self.read_piece(index)[begin:begin + length])  # a file changed: only a piece that hashes
        return bytes(buf)

    def read_piece(self, index: int) -> bytearray:
        """A whole piece in a fresh buffer, for serving: never one that fails
        its hash (``DataChangedError`` instead; see the module docstring)."""
        buf = bytearray(self.geometry.piece_size(index))
        changed = self._read_into(index * self.geometry.piece_length, memoryview(buf), watch=True)
        if changed is not None and not self.verify_piece(index, buf):
            raise DataChangedError(f"{self.paths[changed]} changed on disk: piece {index} no longer matches its "
                                   "hash; recheck to find what is still good", (index,))
        return buf

    def read_piece_cached(self, index: int) -> bytearray | None:
        """``read_piece`` without waiting: the piece if every byte of it is in the page cache, its files
        are open already and none has changed; None otherwise (``read_piece`` in a worker then). A seeder
        serves most pieces from the page cache, and a read there costs less than the hop to a worker
        thread and back, which under load waits for the scheduler twice."""
        if not self._nowait:
            return None
        buf = bytearray(self.geometry.piece_size(index))
        for part, chunk in self._parts(index * self.geometry.piece_length, memoryview(buf)):
            if self.paths[part.file_index] is None:
                continue  # a pad file: the fresh buffer holds its zeros
            handle = self._cached_handle(part.file_index)
            if handle is None:
                return None
            try:
                if os.preadv(handle.fd, [chunk], part.offset, _NOWAIT) != part.length:
                    return None  # partly cached, or short: the worker's read tells which
                if _signature(os.fstat(handle.fd)) != self._known.get(part.file_index):
                    return None  # perhaps changed: the worker's read checks it under the write lock
            except OSError as exc:  # EAGAIN: not in the page cache; anything else the worker's read reports
                if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                    self._nowait = False  # a file system that cannot say: every read goes to a worker
                return None
            finally:
                self._release(handle)
        return buf

    def _read_into(self, start: int, view: memoryview, *, watch: bool = False) -> int | None:
        """Fill ``view`` from the payload at ``start``. With ``watch``, the
        first file read that is not as known (None: all are)."""
        changed = None
        for part, chunk in self._parts(start, view):
            if self.paths[part.file_index] is None:  # pad file: zeros (the buffer may be a reused one)
                chunk[:] = bytes(part.length)
                continue
            try:
                if self._read_slice(part.file_index, chunk, part.offset, watch=watch) and changed is None:
                    changed = part.file_index
            except _Missing as exc:
                pl = self.geometry.piece_length
                raise DataChangedError(f"{exc}: recheck to find what is still good",
                                       range(start // pl, (start + len(view) - 1) // pl + 1)) from None
        return changed

    def _read_slice(self, file_index: int, chunk: memoryview, offset: int, *, watch: bool = False) -> bool:
        """Fill ``chunk`` from a file; ``_Missing`` if it is absent or too
        short. With ``watch``: has the file changed since it was known good?"""
        handle = self._acquire(file_index, create=False)
        if handle is None:
            raise _Missing(f"{self.paths[file_index]} is missing (moved or deleted?)")
        try:
            done, n = 0, len(chunk)
            while done < n:
                got = os.preadv(handle.fd, [chunk[done:]], offset + done)
                if got == 0:
                    raise _Missing(f"{self.paths[file_index]} is shorter than the torrent says "
                                   f"({format_size(offset + done)}, expected "
                                   f"{format_size(self._files[file_index].length)})", done)
                done += got
            if not watch:
                return False
            # After the read: a write that changed these bytes had already moved the ctime. Inline, as this
            # is every piece served: 1.5-2 µs a read, the fstat most of it (1.3 % of a seeder's user CPU at
            # 256 KiB pieces; hashing each piece instead doubled it).
            st = os.fstat(handle.fd)
            return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink) != self._known.get(file_index) \
                and self._changed(file_index, handle)
        except OSError as exc:
            raise self._error(exc, "reading", file_index) from exc
        finally:
            self._release(handle)

    def _changed(self, file_index: int, handle: _Handle) -> bool:
        """The file is not as known, at first sight: is it really? Raises if
        its data is gone for sure."""
        st = os.fstat(handle.fd)
        now = _signature(st)
        if now == self._known.setdefault(file_index, now):  # not seen yet: as it is now
            return False
        with self._write_lock:  # a write of ours in flight records the state it leaves first
            st = os.fstat(handle.fd)
            now = _signature(st)
            known = self._known.get(file_index, now)
        if now == known:
            return False
        path, geo = self.paths[file_index], self.geometry
        if st.st_nlink == 0:
            with self._lock:  # the next open finds whatever is at the path now
                if self._cache.get(file_index) is handle:
                    self._evict(file_index, handle)
            raise DataChangedError(f"{path} was deleted or replaced on disk: put it back and recheck, or "
                                   "recheck to download it again", geo.file_pieces(file_index))
        if st.st_size != known[0]:
            entry = self._files[file_index]
            lost = range(0)
            if st.st_size < entry.length:  # the pieces from the new end on
                lost = range((entry.offset + st.st_size) // geo.piece_length,
                             (entry.offset + entry.length - 1) // geo.piece_length + 1)
            raise DataChangedError(f"{path} changed size on disk ({format_size(known[0])}, now "
                                   f"{format_size(st.st_size)}): recheck to find what is still good", lost)
        return True

    # --- hashing ----------------------------------------------------------------------

    def verify_piece(self, index: int, data: Buffer) -> bool:
        """Does ``data`` hash to piece ``index``'s SHA-1? (compiled, GIL released)"""
        if len(data) != self.geometry.piece_size(index):
            return False
        return hashing.verify_piece(data, self.metainfo.piece_hash(index))

    def verify_and_write_sync(self, index: int, data: Buffer) -> bool:
        """Hash a piece; write it only when it is good. False: discard and re-fetch."""
        (result,) = self.verify_and_write_many([(index, data)])
        if isinstance(result, StorageError):
            raise result
        return result

    def verify_and_write_many(self, pieces: Sequence[tuple[int, Buffer]], *,
                              on_disk: Collection[int] = ()) -> list[bool | StorageError]:
        """``verify_and_write_sync`` for several pieces, hashed side by side
        (the multi-buffer kernel is over twice as fast as one stream). Per
        piece: True (written), False (bad hash, not written) or the
        StorageError its write raised. Pieces at the positions in ``on_disk``
        were written block by block as they arrived: their buffer is filled
        from the files first, and a good one is not written again."""
        results: list[bool | StorageError | None] = [None] * len(pieces)
        for position in on_disk:
            index, data = pieces[position]
            try:
                self.read_written(index, data)
            except StorageError as exc:
                results[position] = exc
        digests = hashing.sha1_many([data for _, data in pieces])
        for position, ((index, data), digest) in enumerate(zip(pieces, digests)):
            if results[position] is not None:
                continue
            if len(data) != self.geometry.piece_size(index) or digest != self.metainfo.piece_hash(index):
                results[position] = False
                continue
            try:
                if position not in on_disk:
                    self.write_piece(index, data)
            except StorageError as exc:
                results[position] = exc
            else:
                results[position] = True
        return results  # type: ignore[return-value]  # every position is set

    def read_written(self, index: int, into: Buffer) -> None:
        """Fill ``into`` with piece ``index`` as written, verified or not (to hash what arrived)."""
        view = memoryview(into).cast("B")
        if len(view) != self.geometry.piece_size(index):
            raise ValueError(f"piece {index} is {self.geometry.piece_size(index)} bytes, got a {len(view)} byte buffer")
        self._read_into(index * self.geometry.piece_length, view)

    def check_existing(self, progress: Progress | None = None, *,
                       pieces: Bitfield | Iterable[int] | None = None,
                       threads: int | None = None) -> Bitfield:
        """Which pieces are on disk and hash correctly (a recheck).

        Reads sequentially in piece-aligned batches of about ``CHECK_BATCH``
        and hashes them in a small pool (``threads``, default up to 2), so
        reading and hashing overlap; at most ``threads + 1`` batches are in
        memory (bounded by ``CHECK_MEMORY``). Idle cached descriptors are
        closed first, so a file deleted or replaced since it was opened is seen
        as it is now; a full check also makes the state each file has when it
        opens it the known one. ``pieces`` limits the check to
        those pieces (a partial recheck after fast resume). Missing or short
        files make the pieces they touch absent; they are not errors. Pieces
        lying wholly in holes of sparse files (never written) are absent
        without being read, unless their hash is that of zeros: after a crash
        half-way through a large download, the part never fetched costs a few
        ``lseek`` calls, not a pass of SHA-1 over zeros.
        ``progress(nbytes)`` is called in this thread after each batch hashed; it
        may raise to abort the check. Nothing is created or written.
        """
        geo = self.geometry
        result = Bitfield(geo.num_pieces)
        self._drop_idle()  # look at the files as they are now, not at inodes deleted since
        if pieces is None:
            self._known.clear()  # what this check reads is the truth from now on
        wanted = range(geo.num_pieces) if pieces is None else pieces
        readable = self._pieces_with_data().or_(self._zero_pieces())
        runs = _runs((i for i in (wanted.iter_set() if hasattr(wanted, "iter_set") else sorted(set(wanted)))
                      if _checked_index(i, geo.num_pieces) and readable.get(i)), geo.num_pieces)
        if not runs:
            return result
        pl = geo.piece_length
        # No batch longer than the longest run to read: a check of a 128 KiB torrent allocating 8 MiB
        # buffers left 200 MB resident after 1 000 of them (glibc kept the freed buffers in each thread's arena).
        batch_pieces = max(1, min(self.settings.check_batch // pl, max(count for _, count in runs)))
        threads = max(1, threads or min(2, os.cpu_count() or 1))
        nbuf = max(2, min(threads + 1, self.settings.check_memory // (batch_pieces * pl)))
        buffers: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(nbuf):
            buffers.put(bytearray(batch_pieces * pl))
        digests = self.metainfo.pieces

        def verify(buf: bytearray, first: int, length: int) -> list[bool]:
            try:
                count = -(-length // pl)
                expected = digests[first * DIGEST_SIZE:(first + count) * DIGEST_SIZE]
                return hashing.verify_pieces(memoryview(buf)[:length], pl, expected)
            finally:
                buffers.put(buf)

        # (future or None, first piece, byte length, bad pieces)
        pending: deque[tuple[Future[list[bool]] | None, int, int, set[int]]] = deque()

        def collect() -> None:
            future, first, length, bad = pending.popleft()
            if future is not None:
                for k, good in enumerate(future.result()):
                    if good and first + k not in bad:
                        result.set(first + k)
            if progress:
                progress(length)

        pool = ThreadPoolExecutor(threads, thread_name_prefix="recheck")
        try:
            for first, count in runs:
                for batch_first in range(first, first + count, batch_pieces):
                    batch_count = min(batch_pieces, first + count - batch_first)
                    start = batch_first * pl
                    length = min(batch_count * pl, geo.total_length - start)
                    while len(pending) >= nbuf:
                        collect()
                    buf = buffers.get()
                    bad = self._fill_batch(memoryview(buf), start, length)
                    if len(bad) == batch_count:  # nothing to hash (e.g. no file yet)
                        buffers.put(buf)
                        pending.append((None, batch_first, length, bad))
                    else:
                        pending.append((pool.submit(verify, buf, batch_first, length),
                                        batch_first, length, bad))
            while pending:
                collect()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return result

    def pieces_with_data(self) -> Bitfield:
        """Pieces that may hold their data: at least one byte allocated on disk (or a
        filesystem that cannot tell), or all zeros by their hash. Fast resume
        distrusts a record claiming any other piece (blocking: an lseek per extent)."""
        return self._pieces_with_data().or_(self._zero_pieces())

    def _pieces_with_data(self) -> Bitfield:
        """Pieces holding at least one allocated byte of a file (SEEK_DATA), or
        touching a file on a filesystem that cannot tell."""
        geo = self.geometry
        pl = geo.piece_length
        found = Bitfield(geo.num_pieces)
        for index, path in enumerate(self.paths):
            entry = self._files[index]
            if path is None or entry.length == 0:
                continue
            try:
                handle = self._acquire(index, create=False)
            except StorageError:
                continue  # unreadable: its pieces will fail the check anyway
            if handle is None:
                continue  # missing: no data
            try:
                for begin, end in _data_extents(handle.fd, entry.length):
                    for piece in range((entry.offset + begin) // pl, (entry.offset + end - 1) // pl + 1):
                        found.set(piece)
            finally:
                self._release(handle)
        return found

    def _zero_pieces(self) -> Bitfield:
        """Pieces whose data is all zeros by their hash (a hole may hold them)."""
        geo = self.geometry
        n = geo.num_pieces
        zeros = Bitfield(n)
        digests = self.metainfo.pieces
        for size in {geo.piece_length, geo.piece_size(n - 1)} if n else ():
            target = hashing.sha1(bytes(size))
            at = digests.find(target)
            while at >= 0:
                if at % DIGEST_SIZE == 0 and geo.piece_size(at // DIGEST_SIZE) == size:
                    zeros.set(at // DIGEST_SIZE)
                at = digests.find(target, at + 1)
        return zeros

    def _fill_batch(self, view: memoryview, start: int, length: int) -> set[int]:
        """Read ``length`` payload bytes from ``start`` into ``view``; the
        pieces that could not be read in full."""
        pl = self.geometry.piece_length
        bad: set[int] = set()
        pos = 0
        for part in self.geometry.slices(start, length):
            chunk = view[pos:pos + part.length]
            slice_start = start + pos
            pos += part.length
            if self.paths[part.file_index] is None:
                chunk[:] = bytes(part.length)  # pad file: zeros (buffers are reused)
                continue
            try:
                self._read_slice(part.file_index, chunk, part.offset)
            except _Missing as exc:
                lost_from = slice_start + exc.got
            except StorageError:  # unreadable, or a path we refuse to follow
                lost_from = slice_start
            else:
                continue
            bad.update(range(lost_from // pl, (slice_start + part.length - 1) // pl + 1))
        return bad

    # --- state for fast resume --------------------------------------------------------

    def file_states(self) -> list[FileState | None]:
        """(size, mtime_ns) of each file on disk; None for pad and missing files
        and for anything that is not a regular file. A file not seen before
        becomes known as it is now: fast resume trusts what it compares."""
        states: list[FileState | None] = []
        for index, path in enumerate(self.paths):
            if path is None:
                states.append(None)
                continue
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                states.append(None)
                continue
            if stat.S_ISREG(st.st_mode):
                states.append(FileState(st.st_size, st.st_mtime_ns))
                self._known.setdefault(index, _signature(st))  # fast resume trusts it as it is now
            else:
                states.append(None)
        return states

    def sync(self) -> None:
        """fsync every file written since the last sync (call before saving
        resume data at exit)."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        for i in sorted(dirty):
            handle = self._acquire(i, create=False)
            if handle is None:
                continue
            try:
                os.fsync(handle.fd)
            except OSError as exc:
                raise self._error(exc, "flushing", i) from exc
            finally:
                self._release(handle)

    def close(self) -> None:
        """Close every descriptor (those in use close when their call ends)."""
        with self._lock:
            self._closed = True
            handles = list(self._cache.values())
            self._cache.clear()
            for handle in handles:
                handle.evicted = True
                if handle.refs == 0:
                    os.close(handle.fd)
            if self._root_fd is not None:
                os.close(self._root_fd)
                self._root_fd = None

    @property
    def open_files(self) -> int:
        """Descriptors held in the cache (for tests and stats)."""
        return len(self._cache)

    # --- descriptors ------------------------------------------------------------------

    def _acquire(self, file_index: int, *, create: bool) -> _Handle | None:
        """A referenced handle (``_release`` it), or None when reading a file
        that does not exist."""
        with self._lock:
            if self._closed:
                raise StorageError(f"storage for {self.metainfo.name} is closed")
            handle = self._take_open(file_index, create)
        if handle is None:
            handle = self._open_handle(file_index, create)
            if handle is None:
                return None
        if create and not handle.sized:
            self._extend(handle, file_index)
        return handle

    def _cached_handle(self, file_index: int) -> _Handle | None:
        """A referenced handle if the file is open already (``_release`` it); None rather than open it."""
        with self._lock:
            return None if self._closed else self._take_open(file_index, False)

    def _take_open(self, file_index: int, create: bool) -> _Handle | None:
        """Under ``_lock``: the file's open handle, referenced, if it serves (writable to create)."""
        handle = self._cache.get(file_index)
        if handle is None or (create and not handle.writable):
            return None
        self._cache.move_to_end(file_index)
        handle.refs += 1
        return handle

    def _open_handle(self, file_index: int, create: bool) -> _Handle | None:
        fd, writable = self._open(file_index, create)
        if fd is None:
            return None
        new = _Handle(fd, writable)
        new.refs = 1
        with self._lock:
            if self._closed:
                os.close(fd)
                raise StorageError(f"storage for {self.metainfo.name} is closed")
            old = self._cache.get(file_index)
            if old is not None and (old.writable or not writable):
                # Another thread opened it meanwhile: use theirs.
                os.close(fd)
                old.refs += 1
                self._cache.move_to_end(file_index)
                return old
            if old is not None:
                self._evict(file_index, old)
            self._cache[file_index] = new
            while len(self._cache) > self._max_open:
                index, victim = next(iter(self._cache.items()))
                self._evict(index, victim)
        return new

    def _evict(self, index: int, handle: _Handle) -> None:
        """Under the lock: drop from the cache; close now or at last release."""
        del self._cache[index]
        handle.evicted = True
        if handle.refs == 0:
            os.close(handle.fd)

    def _drop_idle(self) -> None:
        with self._lock:
            for index, handle in list(self._cache.items()):
                if handle.refs == 0:
                    self._evict(index, handle)

    def _release(self, handle: _Handle | None) -> None:
        if handle is None:
            return
        with self._lock:
            handle.refs -= 1
            if handle.refs == 0 and handle.evicted:
                os.close(handle.fd)

    def _extend(self, handle: _Handle, file_index: int) -> None:
        """First write: make the file exactly its final length (sparse)."""
        length = self._files[file_index].length
        try:
            st = os.fstat(handle.fd)
            if st.st_size != length:
                os.ftruncate(handle.fd, length)
                self._wrote(file_index, st, os.fstat(handle.fd))
        except OSError as exc:
            self._release(handle)
            raise self._error(exc, "creating", file_index) from exc
        handle.sized = True

    def _open(self, file_index: int, create: bool) -> tuple[int | None, bool]:
        """Open a file by walking from the download directory without following
        any symlink. Returns (fd, writable), or (None, False) if it does not
        exist and ``create`` is false."""
        entry = self._files[file_index]
        path = self.paths[file_index]
        assert path is not None
        # No second resolve here: the walk below opens each component with O_NOFOLLOW from the download
        # directory's own descriptor, so a symlink planted since the paths were proven is refused, not
        # followed (and resolving 100 000 paths again cost seconds).
        parts = path.relative_to(self.root).parts
        root_fd = self._get_root_fd(create)
        if root_fd is None:
            return None, False
        dir_fd = root_fd
        try:
            for k, name in enumerate(parts[:-1]):
                if create:
                    try:
                        os.mkdir(name, 0o777, dir_fd=dir_fd)
                    except FileExistsError:
                        pass
                try:
                    next_fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                except FileNotFoundError:
                    if create:
                        raise
                    return None, False
                except OSError as exc:
                    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                        raise self._not_followed(dir_fd, name, self.root.joinpath(*parts[:k + 1])) from exc
                    raise
                if dir_fd != root_fd:
                    os.close(dir_fd)
                dir_fd = next_fd
            name = parts[-1]
            mode = 0o777 if entry.is_executable else 0o666
            try:
                fd = os.open(name, os.O_RDWR | _OPEN_FLAGS | (os.O_CREAT if create else 0), mode, dir_fd=dir_fd)
                writable = True
            except FileNotFoundError:
                if create:
                    raise
                return None, False
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise self._not_followed(dir_fd, name, path) from exc
                if create or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ETXTBSY):
                    raise
                fd = os.open(name, os.O_RDONLY | _OPEN_FLAGS, dir_fd=dir_fd)  # seeding from read-only files
                writable = False
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                raise StorageError(f"refusing to use {path}: it is not a regular file")
            self._known.setdefault(file_index, _signature(st))
            return fd, writable
        except OSError as exc:
            raise self._error(exc, "writing" if create else "opening", file_index) from exc
        finally:
            if dir_fd != root_fd:
                os.close(dir_fd)

    def _not_followed(self, dir_fd: int, name: str, path: Path) -> StorageError:
        try:
            is_link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            is_link = False
        if is_link:
            return StorageError(f"refusing to follow the symlink {path}: files are only written "
                                f"inside {self.root}")
        return StorageError(f"cannot use {path}: a file is in the way of a directory")

    def _get_root_fd(self, create: bool) -> int | None:
        with self._lock:
            if self._root_fd is not None:
                return self._root_fd
        try:
            if create:
                os.makedirs(self.root, exist_ok=True)
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if create:
                raise StorageError(f"cannot create the download directory {self.root}") from None
            return None
        except OSError as exc:
            raise StorageError(_describe(exc, "opening the download directory", self.root)) from exc
        with self._lock:
            if self._closed:
                os.close(fd)
                raise StorageError(f"storage for {self.metainfo.name} is closed")
            if self._root_fd is None:
                self._root_fd = fd
            else:
                os.close(fd)
            return self._root_fd

    # --- errors -----------------------------------------------------------------------

    def _error(self, exc: OSError, action: str, file_index: int) -> StorageError:
        path = self.paths[file_index] or self.root
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            needed = self._space_needed()
            try:
                vfs = os.statvfs(self.root)
                free = vfs.f_bavail * vfs.f_frsize
            except OSError:
                free = 0
            what = "disk full" if exc.errno == errno.ENOSPC else "disk quota exceeded"
            return DiskFullError(f"{what} {action} {path}: about {format_size(needed)} more needed "
                                 f"to finish, {format_size(free)} free", path, needed, free)
        return StorageError(_describe(exc, action, path))

    def _space_needed(self) -> int:
        """Bytes of wanted files not yet allocated on disk (an estimate: sparse
        files count their allocated blocks)."""
        needed = 0
        for i, path in enumerate(self.paths):
            if path is None or not self._file_wanted(i):
                continue
            length = self._files[i].length
            try:
                st = os.stat(path, follow_symlinks=False)
                needed += max(0, length - st.st_blocks * 512)
            except OSError:
                needed += length
        return needed

    def _check_range(self, index: int, begin: int, length: int) -> None:
        size = self.geometry.piece_size(index)
        if begin < 0 or length <= 0 or begin + length > size:
            raise ValueError(f"block {begin}+{length} is outside piece {index} of {size} bytes")


def _describe(exc: OSError, action: str, path: Path) -> str:
    """One line for an OSError, with a hint when there is an obvious one."""
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied {action} {path}: check the download directory's owner and mode"
    if code == errno.EROFS:
        return f"read-only filesystem {action} {path}: choose another download directory"
    if code == errno.EFBIG:
        return f"file too large for the filesystem {action} {path} (a FAT disk, or a file size limit)"
    if code == errno.EIO:
        return f"I/O error {action} {path}: the disk may be failing"
    if code == errno.ENAMETOOLONG:
        return f"name too long {action} {path}"
    if code == errno.EMFILE or code == errno.ENFILE:
        return f"too many open files {action} {path}: raise the open-file limit (ulimit -n)"
    return f"cannot complete {action} {path}: {exc.strerror or exc}"


def _data_extents(fd: int, length: int) -> list[tuple[int, int]]:
    """(begin, end) byte ranges of a file's allocated data within ``length``."""
    extents: list[tuple[int, int]] = []
    offset = 0
    while offset < length:
        try:
            begin = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break  # only a hole from here on
            return [(0, length)]  # the filesystem cannot tell: treat it all as data
        if begin >= length:
            break
        end = min(os.lseek(fd, begin, os.SEEK_HOLE), length)
        extents.append((begin, end))
        offset = end
    return extents


def _checked_index(index: int, num_pieces: int) -> bool:
    if not 0 <= index < num_pieces:
        raise IndexError(f"piece {index} out of range 0..{num_pieces - 1}")
    return True


def _runs(pieces: Bitfield | Iterable[int], num_pieces: int) -> list[tuple[int, int]]:
    """Sorted (first, count) runs of consecutive piece indexes."""
    indexes = pieces.iter_set() if hasattr(pieces, "iter_set") else sorted(set(pieces))
    runs: list[tuple[int, int]] = []
    for i in indexes:
        if not 0 <= i < num_pieces:
            raise IndexError(f"piece {i} out of range 0..{num_pieces - 1}")
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs
