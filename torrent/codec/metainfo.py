"""Metainfo (.torrent) files: BEP 3 v1, with BEP 12, 19, 27 and 47 fields.

Parsing is strict where a mistake would corrupt data (piece length, the
``pieces`` blob, file lengths, paths) and lenient where real torrents are
sloppy (unknown keys, malformed tracker lists, non-UTF-8 comments). The
info-hash is the SHA-1 of the ``info`` value exactly as the file holds it.

Odd torrents libtorrent loads load here too, the way it loads them (issue 13):
two files with one path (the later is renamed ``name.1.ext``), a path of empty
names (``_``), a pad file without a path, a symlink without a length, bytes after
the top-level dictionary. What was read differently is said in ``Metainfo.warnings``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from dataclasses import dataclass, field
from typing import Any

from torrent.codec import bencoding
from torrent.codec.geometry import Geometry
from torrent.codec.paths import numbered, sanitize_component, sanitize_file_path, sanitize_path
from torrent.core.errors import BencodeError, MetainfoError
from torrent.core.settings import DEFAULT_LIMITS, Limits

DIGEST_SIZE = 20
# ``creation date`` is seconds since 1970 (UTC). A value outside 1970-01-01..9999-12-31 names no date any
# calendar or ``datetime`` can show (10**20 and -10**15 overflow it), so it is read as absent (None): every
# front end may format a Metainfo's creation_date without guarding it.
MAX_CREATION_DATE = 253_402_300_799  # 9999-12-31 23:59:59 UTC
MAX_RENAMES_NAMED = 10  # renamed files named one by one in the warnings; the rest are counted


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of the payload; ``path`` is sanitized and relative to the
    download directory (it starts with the torrent's name)."""

    path: tuple[str, ...]
    length: int
    offset: int
    attr: str = ""
    symlink: tuple[str, ...] | None = None

    @property
    def is_padding(self) -> bool:
        """BEP 47 pad files fill piece gaps and are never written to disk."""
        return "p" in self.attr

    @property
    def is_executable(self) -> bool:
        return "x" in self.attr

    @property
    def is_hidden(self) -> bool:
        return "h" in self.attr

    @property
    def display_path(self) -> str:
        return "/".join(self.path)


@dataclass(frozen=True, slots=True)
class Metainfo:
    info_hash: bytes
    name: str
    piece_length: int
    pieces: bytes = field(repr=False)
    files: tuple[FileEntry, ...]
    multi_file: bool
    private: bool = False
    trackers: tuple[tuple[str, ...], ...] = ()
    web_seeds: tuple[str, ...] = ()
    comment: str | None = None
    created_by: str | None = None
    creation_date: int | None = None
    source: str | None = None
    has_v2: bool = False
    info_bytes: bytes = field(default=b"", repr=False)
    # What was read differently from what the file says (renamed files, ignored bytes): one line each,
    # for the user. Bounded however large the torrent.
    warnings: tuple[str, ...] = field(default=(), compare=False)
    geometry: Geometry = field(init=False, repr=False)
    _payload_length: int = field(init=False, repr=False, compare=False)
    _pad_pieces: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "geometry", Geometry(self.piece_length, tuple(f.length for f in self.files)))
        # Asked by every snapshot: summed once, not over 100 000 files twice a second.
        payload = 0
        pads: dict[int, int] = {}
        pl = self.piece_length
        for f in self.files:
            if not f.is_padding:
                payload += f.length
                continue
            start, end = f.offset, f.offset + f.length
            for piece in range(start // pl, (end - 1) // pl + 1):  # pads do not overlap: at most every piece once
                pads[piece] = pads.get(piece, 0) + min(end, (piece + 1) * pl) - max(start, piece * pl)
        object.__setattr__(self, "_payload_length", payload)
        object.__setattr__(self, "_pad_pieces", tuple(pads.items()))

    def pad_bytes(self, pieces: Any) -> int:
        """Bytes of BEP 47 pad files in the pieces set in ``pieces`` (a bitfield): what a count of
        verified pieces must leave out to be the user's bytes."""
        get = pieces.get
        return sum([n for index, n in self._pad_pieces if get(index)])

    @property
    def info_hash_hex(self) -> str:
        return self.info_hash.hex()

    @property
    def total_length(self) -> int:
        return self.geometry.total_length

    @property
    def payload_length(self) -> int:
        """Bytes the user gets: BEP 47 pad files excluded."""
        return self._payload_length

    @property
    def num_pieces(self) -> int:
        return len(self.pieces) // DIGEST_SIZE

    def piece_hash(self, index: int) -> bytes:
        if not 0 <= index < self.num_pieces:
            raise IndexError(f"piece {index} out of range 0..{self.num_pieces - 1}")
        return self.pieces[index * DIGEST_SIZE:(index + 1) * DIGEST_SIZE]

    @property
    def announce_urls(self) -> tuple[str, ...]:
        """Every tracker once, tier order kept."""
        return tuple(dict.fromkeys(url for tier in self.trackers for url in tier))

    def magnet(self) -> str:
        from torrent.codec.magnet import Magnet

        return Magnet(
            info_hash=self.info_hash,
            display_name=self.name,
            trackers=self.announce_urls,
            web_seeds=self.web_seeds,
            exact_length=self.payload_length,
        ).to_uri()


def read_file(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """The bytes of a .torrent file; anything but a regular file (a directory, a FIFO, a device such as
    /dev/zero) and anything over ``limits.bencode_max_size`` bytes is refused with a MetainfoError, as
    are I/O failures.

    The file is opened without blocking, so a FIFO with no writer is refused at once instead of hanging,
    and at most the limit plus one byte is ever read, even from a file that grows while we read it.
    """
    name = os.fspath(path)
    limit = limits.bencode_max_size
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
                     | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise MetainfoError(f"cannot read {name}: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MetainfoError(f"{name} is {_file_kind(st.st_mode)}, not a .torrent file")
        size = st.st_size
        if size > limit:
            raise MetainfoError(f"{name}: {size} bytes is too large for a .torrent file "
                                f"(limit {limit} bytes, limits.bencode_max_size)")
        chunks: list[bytes] = []
        got = 0
        while got <= limit:
            chunk = os.read(fd, min(limit + 1 - got, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:
            raise MetainfoError(f"{name}: more than {limit} bytes is too large for a .torrent file "
                                f"(limit {limit} bytes, limits.bencode_max_size)")
        return b"".join(chunks)
    except OSError as exc:
        raise MetainfoError(f"cannot read {name}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "something other than a regular file"


def load(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS) -> Metainfo:
    """Read and parse a .torrent file; I/O failures become MetainfoError."""
    data = read_file(path, limits=limits)
    try:
        return parse(data, limits=limits)
    except MetainfoError as exc:
        raise MetainfoError(f"{os.fspath(path)}: {exc}") from exc


def parse(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Metainfo:
    """Parse the bytes of a .torrent file (bytes after its top-level dictionary are ignored, with a warning)."""
    try:
        top, spans, end = bencoding.decode_torrent(data, limits=limits)
    except BencodeError as exc:
        raise MetainfoError(f"not a torrent file ({exc})") from exc
    if not isinstance(top, dict):
        raise MetainfoError("not a torrent file: the top level is not a dictionary")
    info = top.get(b"info")
    if not isinstance(info, dict):
        raise MetainfoError("missing or invalid 'info' dictionary")
    warnings: list[str] = []
    if trailing := len(data) - end:
        warnings.append(f"{trailing} byte{'s' * (trailing != 1)} after the end of the torrent's dictionary ignored")
    begin, end = spans[b"info"]
    info_bytes = bytes(data[begin:end])
    return parse_info(info, info_bytes, top, limits=limits, warnings=warnings)


def parse_info(info: dict[bytes, Any], info_bytes: bytes, top: dict[bytes, Any] | None = None,
               *, limits: Limits = DEFAULT_LIMITS, warnings: list[str] | None = None) -> Metainfo:
    """Build a Metainfo from a decoded info dict (also used for magnet
    metadata fetched from peers, where ``top`` is absent). ``warnings`` are
    the caller's, kept ahead of the ones found here."""
    top = top or {}
    warnings = list(warnings or ())
    info_hash = hashlib.sha1(info_bytes).digest()

    piece_length = info.get(b"piece length")
    if not isinstance(piece_length, int) or isinstance(piece_length, bool):
        raise MetainfoError("'piece length' is missing or not an integer")
    if not limits.min_piece_length <= piece_length <= limits.max_piece_length:
        raise MetainfoError(f"piece length {piece_length} is outside "
                            f"{limits.min_piece_length}..{limits.max_piece_length}")

    pieces = info.get(b"pieces")
    if pieces is None:
        if info.get(b"meta version") == 2:
            raise MetainfoError("v2-only torrents (BEP 52) are not supported yet; a hybrid torrent would load")
        raise MetainfoError("'pieces' is missing")
    if not isinstance(pieces, bytes):
        raise MetainfoError("'pieces' is not a byte string")
    if len(pieces) % DIGEST_SIZE:
        raise MetainfoError(f"'pieces' is {len(pieces)} bytes, not a multiple of {DIGEST_SIZE}")

    name = _decode_text(info.get(b"name.utf-8") or info.get(b"name"))
    safe_name = sanitize_component(name or "") or info_hash.hex()

    if (b"length" in info) == (b"files" in info):
        raise MetainfoError("the info dictionary must have exactly one of 'length' and 'files'")
    if b"length" in info:
        length = _length(info[b"length"], "'length'")
        files = (FileEntry((safe_name,), length, 0, _attr(info)),)
        multi_file = False
    else:
        files = _parse_files(info[b"files"], safe_name, limits, warnings)
        multi_file = True

    total = sum(f.length for f in files)
    if total == 0:
        raise MetainfoError("the torrent holds no data (total length 0)")
    expected = -(-total // piece_length)
    if len(pieces) // DIGEST_SIZE != expected:
        raise MetainfoError(f"'pieces' holds {len(pieces) // DIGEST_SIZE} hashes but "
                            f"{total} bytes in pieces of {piece_length} need {expected}")

    private = info.get(b"private")
    return Metainfo(
        info_hash=info_hash,
        name=safe_name,
        piece_length=piece_length,
        pieces=pieces,
        files=files,
        multi_file=multi_file,
        private=private == 1,
        trackers=_trackers(top),
        web_seeds=_web_seeds(top.get(b"url-list")),
        comment=_decode_text(top.get(b"comment.utf-8") or top.get(b"comment")),
        created_by=_decode_text(top.get(b"created by")),
        creation_date=_creation_date(top.get(b"creation date")),
        source=_decode_text(info.get(b"source")),
        has_v2=info.get(b"meta version") == 2,
        info_bytes=info_bytes,
        warnings=tuple(warnings),
    )


def _parse_files(raw: Any, root: str, limits: Limits, warnings: list[str]) -> tuple[FileEntry, ...]:
    """The files under ``root`` in one pass: each path sanitized and placed in a tree of
    directories; only when two files (or a file and a directory) share a name, a second
    pass renames the later files as libtorrent does."""
    if not isinstance(raw, list) or not raw:
        raise MetainfoError("'files' must be a non-empty list")
    if len(raw) > limits.max_files:
        raise MetainfoError(f"the torrent lists {len(raw)} files, more than the limit of {limits.max_files}")
    files: list[FileEntry] = []
    # The directories as a tree of ids (0 is the torrent's own directory), and the names of the files in
    # each: a file is placed in as many look-ups as its path is deep, and holds no memory of its own here.
    subdirs: dict[int, dict[str, int]] = {0: {}}
    names: dict[int, set[str]] = {}
    shared = False
    offset = 0
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise MetainfoError(f"file #{i} is not a dictionary")
        attr = _attr(entry)
        # BEP 47 symlinks take no payload bytes; libtorrent reads one without a length as empty.
        length = 0 if "l" in attr and b"length" not in entry else _length(entry.get(b"length"), f"file #{i} length")
        path = _file_path(entry, i, attr, length)
        if "p" not in attr:  # pad files are never written, so never in the way
            parent = 0
            for name in path[:-1]:
                children = subdirs[parent]
                parent = children.get(name, -1)
                if parent < 0:
                    parent = children[name] = len(subdirs)
                    subdirs[parent] = {}
            here = names.get(parent)
            if here is None:
                here = names[parent] = set()
            if path[-1] in here:
                shared = True
            here.add(path[-1])
        symlink = None
        if "l" in attr:
            target = entry.get(b"symlink path")
            if isinstance(target, list) and all(isinstance(c, bytes) for c in target):
                symlink = sanitize_path(_decode_text(c) or "" for c in target)
        files.append(FileEntry((root, *path), length, offset, attr, symlink))
        offset += length
    if shared or any(not here.isdisjoint(subdirs[d]) for d, here in names.items()):
        _rename_collisions(files, subdirs, warnings)
    return tuple(files)


def _file_path(entry: dict[bytes, Any], i: int, attr: str, length: int) -> tuple[str, ...]:
    """One file's sanitized path below the torrent's directory."""
    components = entry.get(b"path.utf-8") or entry.get(b"path")
    is_list = isinstance(components, list)
    if is_list and not all(isinstance(c, bytes) for c in components):
        raise MetainfoError(f"file #{i} has a missing or malformed 'path'")
    path = sanitize_file_path([_decode_text(c) or "" for c in components]) if is_list else ()
    if path:
        return path
    if "p" in attr:
        return (".pad", str(length))  # libtorrent's name for a pad file without one; it is never written
    raise MetainfoError(f"file #{i} has an empty path" if is_list else f"file #{i} has a missing or malformed 'path'")


def _rename_collisions(files: list[FileEntry], subdirs: dict[int, dict[str, int]], warnings: list[str]) -> None:
    """Rename each file whose name a directory or an earlier file has in its directory, as
    libtorrent does: ``name.1.ext``, ``name.2.ext``… the first number free. Directories keep
    their names.

    Each name resumes counting where its previous copy stopped, so n copies of one name cost
    n look-ups. Only names shortened to NAME_MAX can make copies of different names walk over
    each other's numbers; that walk is bounded, and a torrent needing more is refused.
    """
    taken = {d: set(children) for d, children in subdirs.items()}
    last: dict[tuple[int, str], int] = {}
    walk_left = len(files) + len(subdirs)
    renamed = 0
    for i, entry in enumerate(files):
        if entry.is_padding:
            continue
        parent = 0
        for name in entry.path[1:-1]:
            parent = subdirs[parent][name]
        here, name = taken[parent], entry.path[-1]
        if name not in here:
            here.add(name)
            continue
        n = last.get((parent, name), 0)
        while True:
            n += 1
            new = numbered(name, n)
            if new not in here:
                break
            walk_left -= 1
            if walk_left < 0:
                raise MetainfoError("too many files share a name: no free names left to rename them to")
        last[parent, name] = n
        here.add(new)
        files[i] = dataclasses.replace(entry, path=(*entry.path[:-1], new))
        renamed += 1
        if renamed <= MAX_RENAMES_NAMED:
            warnings.append(f"file #{i} '{_shown(entry.display_path)}' is renamed '{new}': "
                            "another file or a directory has that name")
    if renamed > MAX_RENAMES_NAMED:
        warnings.append(f"... and {renamed - MAX_RENAMES_NAMED} more files renamed")


def _shown(path: str, limit: int = 200) -> str:
    """A path short enough for a one-line message: its end, where the names differ."""
    return path if len(path) <= limit else "..." + path[-limit:]


def _creation_date(value: Any) -> int | None:
    """Seconds since 1970, or None when absent, not an integer, or outside MAX_CREATION_DATE's range."""
    if type(value) is not int or not 0 <= value <= MAX_CREATION_DATE:
        return None
    return value


def _length(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MetainfoError(f"{what} is missing, not an integer or negative")
    return value


def _attr(entry: dict[bytes, Any]) -> str:
    attr = entry.get(b"attr")
    return attr.decode("ascii", "replace") if isinstance(attr, bytes) else ""


def _decode_text(value: Any) -> str | None:
    if not isinstance(value, bytes):
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _trackers(top: dict[bytes, Any]) -> tuple[tuple[str, ...], ...]:
    """BEP 12: announce-list tiers win over announce; junk entries are dropped."""
    tiers: list[tuple[str, ...]] = []
    seen: set[str] = set()
    announce_list = top.get(b"announce-list")
    if isinstance(announce_list, list):
        for tier in announce_list:
            if not isinstance(tier, list):
                continue
            urls = []
            for raw in tier:
                url = _decode_text(raw)
                if url and url.strip() and url.strip() not in seen:
                    seen.add(url.strip())
                    urls.append(url.strip())
            if urls:
                tiers.append(tuple(urls))
    if not tiers:
        url = _decode_text(top.get(b"announce"))
        if url and url.strip():
            tiers.append((url.strip(),))
    return tuple(tiers)


def _web_seeds(value: Any) -> tuple[str, ...]:
    if isinstance(value, bytes):
        value = [value]
    if not isinstance(value, list):
        return ()
    urls = (_decode_text(v) for v in value)
    return tuple(dict.fromkeys(u.strip() for u in urls if u and u.strip()))
