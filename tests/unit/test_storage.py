"""Piece storage on real files: every read is compared with the payload the
torrent was made from, and every file on disk with its slice of that payload."""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import tmpfs

from torrent.codec.metainfo import FileEntry, Metainfo
from torrent.core.bitfield import Bitfield
from torrent.core.errors import StorageError
from torrent.core.settings import KiB, MiB, StorageSettings
from torrent.storage import files as storage_mod
from torrent.storage.files import DiskFullError, FileState, Storage

Spec = Sequence[tuple[str, int] | tuple[str, int, str]]


def make_torrent(spec: Spec, piece_length: int, *, seed: int = 1, name: str = "t") -> tuple[Metainfo, bytes]:
    """A multi-file Metainfo named ``name`` and its payload (pad files are zeros).

    ``spec`` holds ("dir/file", length[, attr]) in payload order.
    """
    rng = random.Random(seed)
    entries, chunks, offset = [], [], 0
    for item in spec:
        path, length, attr = (*item, "")[:3]
        entries.append(FileEntry((name, *path.split("/")), length, offset, attr))
        chunks.append(bytes(length) if "p" in attr else rng.randbytes(length))
        offset += length
    data = b"".join(chunks)
    pieces = b"".join(hashlib.sha1(data[i:i + piece_length]).digest() for i in range(0, len(data), piece_length))
    meta = Metainfo(info_hash=hashlib.sha1(b"%d" % seed + pieces).digest(), name=name, piece_length=piece_length,
                    pieces=pieces, files=tuple(entries), multi_file=True)
    return meta, data


def piece(meta: Metainfo, data: bytes, index: int) -> bytes:
    start, end = meta.geometry.piece_span(index)
    return data[start:end]


def write_all(store: Storage, meta: Metainfo, data: bytes, order: Sequence[int] | None = None) -> None:
    for i in order if order is not None else range(meta.num_pieces):
        assert store.verify_and_write_sync(i, piece(meta, data, i))


def assert_files_match(root: Path, meta: Metainfo, data: bytes) -> None:
    for entry in meta.files:
        path = root.joinpath(*entry.path)
        if entry.is_padding:
            assert not path.exists()
        else:
            assert path.read_bytes() == data[entry.offset:entry.offset + entry.length], entry.path


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def dl(tmp_path: Path) -> Path:
    d = tmp_path / "dl"
    d.mkdir()
    return d


# A piece spanning three files, an empty file, pad files, a short last piece.
SPEC: Spec = [("a.bin", 10), ("empty1", 0), ("b.bin", 5), ("sub/c.bin", 40), (".pad/9", 9, "p"),
              ("sub/deeper/d.bin", 64), ("empty2", 0), ("e.bin", 13)]
PL = 32  # 141 bytes: pieces 0..4, the last 13 bytes long


# --- layout and round trips -----------------------------------------------------------


def test_single_file_round_trip_in_random_order(dl: Path) -> None:
    meta, data = make_torrent([("only.bin", 100_000)], 16 * KiB)
    meta = Metainfo(meta.info_hash, "only.bin", meta.piece_length, meta.pieces,
                    (FileEntry(("only.bin",), 100_000, 0),), multi_file=False)
    store = Storage(meta, dl)
    order = list(range(meta.num_pieces))
    random.Random(3).shuffle(order)
    write_all(store, meta, data, order)
    assert meta.geometry.piece_size(meta.num_pieces - 1) == 100_000 - 6 * 16 * KiB
    assert (dl / "only.bin").read_bytes() == data
    for i in range(meta.num_pieces):
        assert bytes(store.read_piece(i)) == piece(meta, data, i)
    store.close()


def test_multi_file_round_trip(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    assert [len(meta.geometry.piece_slices(0))] == [3]  # a.bin, b.bin, sub/c.bin
    store = Storage(meta, dl)
    write_all(store, meta, data, [4, 0, 2, 1, 3])
    store.create_empty_files()
    assert_files_match(dl, meta, data)
    assert not (dl / "t" / ".pad").exists()
    for i in range(meta.num_pieces):
        assert bytes(store.read_piece(i)) == piece(meta, data, i)
    store.close()


def test_empty_files_are_created_only_on_request(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    write_all(store, meta, data)
    assert not (dl / "t" / "empty1").exists()
    store.create_empty_files()
    assert (dl / "t" / "empty1").stat().st_size == 0 and (dl / "t" / "empty2").stat().st_size == 0


def test_read_block_at_every_offset(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    write_all(store, meta, data)
    for i in range(meta.num_pieces):
        size = meta.geometry.piece_size(i)
        base = i * PL
        for begin in range(size):
            for length in {1, 7, size - begin}:
                if begin + length <= size:
                    assert store.read_block(i, begin, length) == data[base + begin:base + begin + length]


def test_write_block_at_arbitrary_offsets(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    rng = random.Random(5)
    for i in range(meta.num_pieces):
        size = meta.geometry.piece_size(i)
        cuts = sorted({0, size, *rng.sample(range(1, size), min(3, size - 1))})
        blocks = list(itertools.pairwise(cuts))
        rng.shuffle(blocks)
        for begin, end in blocks:
            store.write_block(i, begin, memoryview(piece(meta, data, i))[begin:end])
    store.create_empty_files()
    assert_files_match(dl, meta, data)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_write_pieces_run_in_one_buffer(dl: Path, kind: type) -> None:
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    store.write_pieces(1, kind(data[PL:3 * PL]))  # pieces 1 and 2
    store.write_pieces(3, kind(data[3 * PL:]))  # 3 and the short last one
    store.write_pieces(0, kind(data[:PL]))
    store.create_empty_files()
    assert_files_match(dl, meta, data)
    with pytest.raises(ValueError):
        store.write_pieces(0, data[:PL + 1])  # not whole pieces
    with pytest.raises(ValueError):
        store.write_pieces(4, data[4 * PL:] + b"x")  # past the end


def test_argument_checks(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    with pytest.raises(ValueError):
        store.write_piece(0, data[:PL - 1])
    with pytest.raises(ValueError):
        store.write_piece(4, data[4 * PL:] + b"\0")
    with pytest.raises(IndexError):
        store.write_piece(5, b"x")
    with pytest.raises(ValueError):
        store.write_block(4, 10, b"1234")  # runs past the 13-byte last piece
    for begin, length in [(-1, 2), (0, 0), (30, 3)]:
        with pytest.raises(ValueError):
            store.read_block(0, begin, length)
    assert not (dl / "t").exists()


def test_verify_and_write_rejects_bad_data_and_writes_nothing(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    bad = bytearray(piece(meta, data, 0))
    bad[5] ^= 1
    assert store.verify_piece(0, bytes(bad)) is False
    assert store.verify_and_write_sync(0, bad) is False
    assert store.verify_piece(0, piece(meta, data, 0)[:-1]) is False
    assert not (dl / "t").exists()
    assert store.verify_and_write_sync(0, piece(meta, data, 0)) is True


def test_files_are_created_sparse_at_their_final_length(dl: Path) -> None:
    size = 64 * MiB
    meta = Metainfo(b"s" * 20, "big.bin", 16 * KiB, bytes(20) * (size // (16 * KiB)),
                    (FileEntry(("big.bin",), size, 0),), multi_file=False)
    store = Storage(meta, dl)
    store.write_block(2000, 0, b"\xab" * 16 * KiB)
    st = (dl / "big.bin").stat()
    assert st.st_size == size
    assert st.st_blocks * 512 < 1 * MiB
    assert store.read_block(2000, 100, 10) == b"\xab" * 10


def test_an_existing_file_of_the_wrong_size_is_set_to_the_torrents_length(dl: Path) -> None:
    meta, data = make_torrent([("x.bin", 100)], 32)
    (dl / "t").mkdir()
    (dl / "t" / "x.bin").write_bytes(b"z" * 500)
    store = Storage(meta, dl)
    store.write_piece(0, piece(meta, data, 0))
    assert (dl / "t" / "x.bin").stat().st_size == 100


def test_executable_attribute_sets_mode(dl: Path) -> None:
    meta, data = make_torrent([("run.sh", 10, "x"), ("plain", 10)], 32)
    Storage(meta, dl).write_piece(0, data)
    assert os.stat(dl / "t" / "run.sh").st_mode & 0o100
    assert not os.stat(dl / "t" / "plain").st_mode & 0o100


# --- descriptors ----------------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_fd_cache_is_bounded(dl: Path) -> None:
    meta, data = make_torrent([(f"f{i:03}", 7) for i in range(300)], 16)
    before = open_fds()
    store = Storage(meta, dl, settings=StorageSettings(max_open_files=8))
    write_all(store, meta, data)
    assert store.open_files == 8
    assert open_fds() - before <= 8 + 1  # + the download directory
    for i in range(meta.num_pieces):
        assert bytes(store.read_piece(i)) == piece(meta, data, i)
    assert store.open_files == 8
    store.close()
    assert open_fds() == before
    assert_files_match(dl, meta, data)


def test_fd_cache_under_concurrent_use(dl: Path) -> None:
    """Eviction never closes a descriptor another thread is using: with a
    cache of 2 and 8 threads, every byte still lands in the right file."""
    meta, data = make_torrent([(f"d{i % 5}/f{i:03}", 3 + i % 11) for i in range(150)], 24, seed=9)
    store = Storage(meta, dl, settings=StorageSettings(max_open_files=2))
    before = open_fds()
    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(lambda i: store.verify_and_write_sync(i, piece(meta, data, i)),
                            range(meta.num_pieces)))
        reads = list(pool.map(lambda i: bytes(store.read_piece(i)) == piece(meta, data, i),
                              range(meta.num_pieces) ))
    assert all(reads)
    store.close()
    assert open_fds() <= before
    assert_files_match(dl, meta, data)


def test_closed_storage_refuses_work(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    write_all(store, meta, data)
    store.sync()
    store.close()
    with pytest.raises(StorageError, match="^storage for t is closed$"):
        store.read_piece(0)


# --- recheck --------------------------------------------------------------------------


def test_check_existing_on_an_empty_directory_creates_nothing(tmp_path: Path) -> None:
    meta, _ = make_torrent(SPEC, PL)
    store = Storage(meta, tmp_path / "not-yet")
    assert store.check_existing().count() == 0
    assert not (tmp_path / "not-yet").exists()


def test_check_existing_finds_exactly_the_good_pieces(dl: Path) -> None:
    batches_of_3 = StorageSettings(check_batch=3 * 1024)  # many batches of 3 pieces
    spec = [("a", 5000), ("b", 3000), (".pad/x", 192, "p"), ("c", 9000), ("d", 4000), ("e", 2345)]
    meta, data = make_torrent(spec, 1024, seed=4)
    geo = meta.geometry
    store = Storage(meta, dl)
    written = [i for i in range(meta.num_pieces) if i % 7 != 3]
    write_all(store, meta, data, written)
    expected = set(written)

    # Corrupt one byte in piece 10 (inside file c).
    c_off = meta.files[3].offset
    with open(dl / "t" / "c", "r+b") as fh:
        fh.seek(10 * 1024 + 100 - c_off)
        fh.write(b"\xff" if data[10 * 1024 + 100] != 0xFF else b"\x00")
    expected.discard(10)
    # Truncate d by 1000 bytes: the pieces touching its last 1000 bytes go.
    d_off, d_len = meta.files[4].offset, meta.files[4].length
    os.truncate(dl / "t" / "d", d_len - 1000)
    expected -= set(range((d_off + d_len - 1000) // 1024, (d_off + d_len - 1) // 1024 + 1))
    # Delete b: all its pieces go.
    (dl / "t" / "b").unlink()
    expected -= set(geo.file_pieces(1))

    done: list[int] = []
    store.close()
    store = Storage(meta, dl, settings=batches_of_3)
    found = store.check_existing(done.append, threads=2)
    assert found.iter_set() == sorted(expected)
    assert 0 < sum(done) < geo.total_length  # only pieces holding data were read
    assert not (dl / "t" / "b").exists()  # a check never creates files
    # Subsets check only what they are asked.
    subset = store.check_existing(pieces=[10, 11, 12, 0])
    assert subset.iter_set() == sorted({10, 11, 12, 0} & expected)
    bf = Bitfield(meta.num_pieces)
    bf.set(meta.num_pieces - 1)
    assert store.check_existing(pieces=bf).iter_set() == sorted({meta.num_pieces - 1} & expected)


def test_check_existing_reads_no_hole(dl: Path) -> None:
    """A sparse file with one piece written: only that piece is read and hashed;
    a piece of zeros in a hole is still found (its hash is that of zeros)."""
    piece = 64 * KiB  # a multiple of any filesystem block: holes are whole pieces
    size = 64 * piece
    meta, data = make_torrent([("big", size)], piece)
    store = Storage(meta, dl)
    write_all(store, meta, data, [5])
    done: list[int] = []
    assert Storage(meta, dl).check_existing(done.append).iter_set() == [5]
    assert sum(done) == piece
    meta0 = Metainfo(b"z" * 20, "zeros", piece, hashlib.sha1(bytes(piece)).digest() * 64,
                     (FileEntry(("zeros",), size, 0),), multi_file=False)
    Storage(meta0, dl).write_piece(0, bytes(piece))  # the file exists, sparse beyond its first piece
    assert Storage(meta0, dl).check_existing().all()


def test_check_existing_sees_a_file_deleted_while_its_descriptor_is_cached(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    write_all(store, meta, data)
    assert store.open_files > 0
    (dl / "t" / "e.bin").unlink()  # the cached descriptor still reads the deleted inode
    assert store.check_existing().iter_set() == [0, 1, 2, 3]


def test_check_existing_with_pieces_bigger_than_a_batch(dl: Path) -> None:
    meta, data = make_torrent([("a", 3000), ("b", 1500)], 1024)
    store = Storage(meta, dl, settings=StorageSettings(check_batch=100, check_memory=100))
    write_all(store, meta, data)
    assert store.check_existing(threads=1).all()


def test_check_existing_progress_may_abort(dl: Path) -> None:
    meta, data = make_torrent([("a", 20_000)], 1024)
    store = Storage(meta, dl, settings=StorageSettings(check_batch=1024))
    write_all(store, meta, data)

    def stop(n: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.check_existing(stop)
    assert store.check_existing().all()


def test_complete_download_verifies_fully(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    write_all(Storage(meta, dl), meta, data)
    assert Storage(meta, dl).check_existing().all()


# --- deselected files -----------------------------------------------------------------


def test_deselected_files(dl: Path) -> None:
    # Pieces of 32: a [0,40) b [40,64) c [64,100) d [100,150)
    meta, data = make_torrent([("a", 40), ("b", 24), ("c", 36), ("d", 50), ("z", 0)], 32)
    wanted_files = [True, False, False, True, False]
    store = Storage(meta, dl, file_wanted=wanted_files.__getitem__)
    write_all(store, meta, data, [0, 1, 3, 4])  # the pieces touching a or d (piece 2 [64,96) is c alone)
    store.create_empty_files()
    t = dl / "t"
    assert (t / "a").read_bytes() == data[:40]
    assert (t / "d").read_bytes() == data[100:150]
    # b shares piece 1 with a: created (sparse, with the shared bytes).
    assert (t / "b").read_bytes()[:24] == data[40:64]
    # c shares piece 3 [96,128) with d: its last 4 bytes are there.
    assert (t / "c").read_bytes()[-4:] == data[96:100]
    assert not (t / "z").exists()  # a deselected empty file is not created
    wanted_files[4] = True  # storage reads the owner's selection each time
    store.create_empty_files()
    assert (t / "z").exists()
    full = Storage(meta, dl)
    assert full.check_existing().iter_set() == [0, 1, 3, 4]


def test_a_deselected_file_sharing_no_piece_is_never_created(dl: Path) -> None:
    meta, data = make_torrent([("a", 64), ("skip", 64), ("c", 64)], 32)
    store = Storage(meta, dl, file_wanted=[True, False, True].__getitem__)
    write_all(store, meta, data, [0, 1, 4, 5])
    assert tree(dl) == ["t", "t/a", "t/c"]


# --- resume state ---------------------------------------------------------------------


def test_file_states(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    assert store.file_states() == [None] * len(meta.files)
    write_all(store, meta, data)
    store.create_empty_files()
    states = store.file_states()
    for entry, state in zip(meta.files, states):
        if entry.is_padding:
            assert state is None
        else:
            st = os.stat(dl.joinpath(*entry.path))
            assert state == FileState(entry.length, st.st_mtime_ns)


# --- path safety ----------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    return d


def test_symlink_present_at_start_is_refused(dl: Path, outside: Path) -> None:
    meta, _ = make_torrent(SPEC, PL)
    (dl / "t").symlink_to(outside)
    with pytest.raises(StorageError, match="outside"):
        Storage(meta, dl)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("where", ["t", "t/sub", "t/sub/deeper", "t/a.bin"])
def test_symlink_planted_after_start_is_refused(dl: Path, outside: Path, where: str) -> None:
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    link = dl / where
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside / "target")
    if where != "t/a.bin":
        (outside / "target").mkdir()
    failed = None
    for i in range(meta.num_pieces):
        try:
            store.write_piece(i, piece(meta, data, i))
        except StorageError as exc:
            assert str(exc).startswith("refusing to") and "\n" not in str(exc)
            failed = i
            break
    assert failed is not None
    assert [p for p in outside.rglob("*") if p.is_file()] == []
    # Reads refuse too, instead of serving someone else's bytes.
    with pytest.raises(StorageError, match="^refusing to"):
        store.read_piece(failed)
    assert failed not in store.check_existing().iter_set()
    assert [p for p in outside.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("where", ["t", "t/sub", "t/a.bin"])
def test_open_refuses_links_even_when_the_path_check_is_raced(dl: Path, outside: Path, where: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A link swapped in between safe_join's check and the open: the open walks
    the tree with O_NOFOLLOW, so it still refuses."""
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    monkeypatch.setattr(storage_mod, "safe_join", lambda root, parts: Path(root, *parts))  # check "passed"
    link = dl / where
    link.parent.mkdir(parents=True, exist_ok=True)
    if where == "t/a.bin":
        link.symlink_to(outside / "a.bin")
    else:
        link.symlink_to(outside)
    with pytest.raises(StorageError) as info:
        store.write_piece(0, piece(meta, data, 0))
    assert str(info.value).startswith("refusing to follow the symlink ")
    assert list(outside.iterdir()) == []


def test_symlink_to_inside_is_also_refused_on_open(dl: Path) -> None:
    """safe_join allows a link that stays inside; opening walks without
    following any link, which is stricter and documented."""
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    (dl / "elsewhere").mkdir()
    (dl / "t").mkdir()
    (dl / "t" / "sub").symlink_to(dl / "elsewhere")
    with pytest.raises(StorageError, match="^refusing to follow the symlink .*/t/sub: files are only"):
        store.write_piece(1, piece(meta, data, 1))


def test_a_fifo_in_place_of_a_file_is_refused(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    (dl / "t").mkdir()
    os.mkfifo(dl / "t" / "a.bin")
    store = Storage(meta, dl)
    with pytest.raises(StorageError, match="^refusing to use .*: it is not a regular file$"):
        store.write_piece(0, piece(meta, data, 0))


def test_a_file_in_the_way_of_a_directory(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    (dl / "t").mkdir()
    (dl / "t" / "sub").write_bytes(b"")
    store = Storage(meta, dl)
    with pytest.raises(StorageError, match="^cannot use .*/t/sub: a file is in the way"):
        store.write_piece(1, piece(meta, data, 1))


def test_reading_a_deleted_file_is_a_storage_error(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    write_all(store, meta, data)
    store.close()
    (dl / "t" / "e.bin").unlink()
    os.truncate(dl / "t" / "sub" / "c.bin", 3)
    store = Storage(meta, dl)
    with pytest.raises(StorageError, match="^.*/e.bin is missing") as info:
        store.read_block(4, 0, 5)
    assert "\n" not in str(info.value)
    with pytest.raises(StorageError, match="^.*/c.bin is shorter than the torrent says"):
        store.read_block(1, 0, 32)


# --- full disk and friends ------------------------------------------------------------


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (we run as root in CI); fails — never skips — if it cannot be
    mounted, since the RLIMIT_FSIZE test below covers a different errno."""
    with tmpfs(tmp_path / "tiny") as mnt:
        yield mnt


def test_disk_full(tiny_fs: Path) -> None:
    meta, data = make_torrent([("small", 300 * KiB), ("big", 2 * MiB)], 64 * KiB, seed=7)
    store = Storage(meta, tiny_fs)
    written = []
    with pytest.raises(DiskFullError) as info:
        for i in range(meta.num_pieces):
            store.write_piece(i, piece(meta, data, i))
            written.append(i)
    err = info.value
    msg = str(err)
    assert msg.startswith("disk full writing ") and "\n" not in msg
    assert str(tiny_fs / "t" / "big") in msg and "more needed" in msg
    assert isinstance(err, StorageError) and err.needed > 1 * MiB and err.free < 64 * KiB
    assert 10 <= len(written) < meta.num_pieces
    # Everything reported written is intact; the failed piece is not.
    store.close()
    store = Storage(meta, tiny_fs)
    found = store.check_existing()
    assert found.iter_set() == written


def test_read_only_filesystem(tiny_fs: Path) -> None:
    meta, data = make_torrent([("a", 100), ("b", 100)], 64)
    store = Storage(meta, tiny_fs)
    store.write_piece(0, piece(meta, data, 0))  # a and b's first 28 bytes
    store.close()
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    store = Storage(meta, tiny_fs)
    assert bytes(store.read_piece(0)) == piece(meta, data, 0)  # seeding from read-only files works
    with pytest.raises(StorageError, match="^read-only filesystem writing .*choose another"):
        store.write_piece(1, piece(meta, data, 1))
    store.close()


_FSIZE_CHILD = r"""
import hashlib, json, resource, signal, sys
from torrent.codec.metainfo import FileEntry, Metainfo
from torrent.core.errors import StorageError
from torrent.storage.files import Storage
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
root, limit = sys.argv[1], int(sys.argv[2])
data = bytes(range(256)) * 1024  # 256 KiB
pl = 16384
pieces = b"".join(hashlib.sha1(data[i:i + pl]).digest() for i in range(0, len(data), pl))
meta = Metainfo(b"f" * 20, "f", pl, pieces, (FileEntry(("f", "x.bin"), len(data), 0),), True)
store = Storage(meta, root)
# Sparse creation extends past the limit, so that must fail first, cleanly:
try:
    store.write_piece(0, data[:pl])
    print(json.dumps({"ok": True}))
except StorageError as exc:
    print(json.dumps({"error": str(exc), "type": type(exc).__name__}))
"""


def test_file_size_limit_is_a_one_line_error(tmp_path: Path) -> None:
    """RLIMIT_FSIZE (EFBIG) in a child: the portable way to make writes fail without root."""
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000)); "
            "exec(sys.stdin.read())")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "dl"), "100000"], input=_FSIZE_CHILD,
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["type"] == "StorageError"
    assert result["error"].startswith("file too large for the filesystem creating ")
    assert "\n" not in result["error"]


def test_error_messages_are_one_line_and_name_the_path(dl: Path) -> None:
    meta, _ = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    for code, start in [(errno.EACCES, "permission denied"), (errno.EROFS, "read-only filesystem"),
                        (errno.EIO, "I/O error"), (errno.EFBIG, "file too large"),
                        (errno.EMFILE, "too many open files"), (errno.EINVAL, "cannot complete")]:
        err = store._error(OSError(code, os.strerror(code)), "writing", 0)
        assert type(err) is StorageError
        assert str(err).startswith(start) and str(dl / "t" / "a.bin") in str(err) and "\n" not in str(err)
    err = store._error(OSError(errno.EDQUOT, "quota"), "writing", 0)
    assert isinstance(err, DiskFullError) and str(err).startswith("disk quota exceeded writing")
    assert err.needed == meta.payload_length


# --- files changed behind a seeding torrent (read_piece never hands out a piece that fails its hash) ---------


def _rewrite_keeping_mtime(path: Path) -> None:
    """Other bytes, same size, mtime put back: only the ctime shows it."""
    st = path.stat()
    path.write_bytes(bytes(b ^ 0x5A for b in path.read_bytes()))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture
def counted_hashes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many pieces storage hashes (the real hashing, counted)."""
    calls: list[int] = []
    real = storage_mod.hashing.verify_piece
    monkeypatch.setattr(storage_mod.hashing, "verify_piece",
                        lambda data, digest: (calls.append(1), real(data, digest))[1])
    return calls


def test_a_rewrite_with_its_mtime_put_back_is_never_served(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    write_all(store, meta, data)
    assert bytes(store.read_piece(2)) == piece(meta, data, 2)
    _rewrite_keeping_mtime(dl / "t" / "sub" / "deeper" / "d.bin")  # pieces 2 and 3
    for index in (2, 3):
        with pytest.raises(storage_mod.DataChangedError, match=r"^.*/d\.bin changed on disk: piece \d no longer "
                                                               "matches its hash; recheck") as info:
            store.read_piece(index)
        assert info.value.pieces == (index,)
        with pytest.raises(storage_mod.DataChangedError):
            store.read_block(index, 4, 8)
    for index in (0, 1, 4):  # the other files are as they were
        assert bytes(store.read_piece(index)) == piece(meta, data, index)
    assert list(store.check_existing().iter_set()) == [0, 1, 4]


def test_fast_resume_knows_the_files_as_they_were_when_it_trusted_them(dl: Path) -> None:
    """No recheck, no open before the first read: the states fast resume compared are the known ones."""
    meta, data = make_torrent(SPEC, PL)
    writer = Storage(meta, dl)
    write_all(writer, meta, data)
    writer.close()
    store = Storage(meta, dl)
    store.file_states()  # what resume.restore compares with the resume data, before trusting it
    _rewrite_keeping_mtime(dl / "t" / "e.bin")
    assert store.file_states()[7] == FileState(13, (dl / "t" / "e.bin").stat().st_mtime_ns)
    with pytest.raises(storage_mod.DataChangedError, match="e.bin changed on disk: piece 4"):
        store.read_piece(4)


def test_a_file_deleted_under_an_open_descriptor_is_an_error(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    write_all(store, meta, data)
    assert bytes(store.read_piece(2)) == piece(meta, data, 2)  # d.bin is open
    path = dl / "t" / "sub" / "deeper" / "d.bin"
    path.unlink()
    with pytest.raises(storage_mod.DataChangedError, match=r"d\.bin was deleted or replaced on disk") as info:
        store.read_piece(3)  # the descriptor still reads the old inode, intact
    assert info.value.pieces == (2, 3)
    assert "\n" not in str(info.value)
    with pytest.raises(storage_mod.DataChangedError, match=r"d\.bin is missing \(moved or deleted\?\): recheck"):
        store.read_piece(3)  # the descriptor went with it: the path is looked at again
    path.write_bytes(data[64:128])  # put back, as a new file: served once each piece hashes
    assert bytes(store.read_piece(3)) == piece(meta, data, 3)


def test_a_file_replaced_by_rename_is_an_error(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    write_all(store, meta, data)
    store.read_piece(4)
    path = dl / "t" / "e.bin"
    (dl / "new").write_bytes(path.read_bytes())  # even with the same bytes: the torrent's file is gone
    os.replace(dl / "new", path)
    with pytest.raises(storage_mod.DataChangedError, match="e.bin was deleted or replaced"):
        store.read_piece(4)


def test_a_truncated_file_is_an_error_even_where_its_bytes_remain(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    write_all(store, meta, data)
    store.read_piece(2)
    os.truncate(dl / "t" / "sub" / "deeper" / "d.bin", 40)  # piece 2 (d.bin 0..32) is still all there
    with pytest.raises(storage_mod.DataChangedError, match=r"d\.bin changed size on disk \(64 B, now 40 B\)") as info:
        store.read_piece(2)
    assert info.value.pieces == (3,)  # d.bin from byte 40 on
    with pytest.raises(storage_mod.DataChangedError, match=r"d\.bin is shorter than the torrent says"):
        store.read_piece(3)


def test_only_pieces_of_changed_files_are_hashed_until_a_full_recheck(dl: Path, counted_hashes: list[int]) -> None:
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    for i in (3, 0, 4, 1, 2):  # our own writes, in any order, change nothing known
        store.write_piece(i, piece(meta, data, i))
    for i in range(meta.num_pieces):
        assert bytes(store.read_piece(i)) == piece(meta, data, i)
    assert counted_hashes == []
    path = dl / "t" / "e.bin"
    os.chmod(path, 0o600)  # the ctime moves, the bytes do not: piece 4 is served, hashed each time
    for _ in range(2):
        assert bytes(store.read_piece(4)) == piece(meta, data, 4)
    assert store.read_block(4, 2, 5) == piece(meta, data, 4)[2:7]  # a block: its whole piece hashed first
    assert bytes(store.read_piece(2)) == piece(meta, data, 2)
    assert len(counted_hashes) == 3
    assert list(store.check_existing().iter_set()) == list(range(meta.num_pieces))
    counted_hashes.clear()
    assert bytes(store.read_piece(4)) == piece(meta, data, 4)  # known again since the full recheck
    assert counted_hashes == []


def test_a_change_between_our_writes_is_not_taken_for_ours(dl: Path) -> None:
    """Downloading into a file someone else rewrites: our next write to it must not make the change known."""
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    store.write_piece(2, piece(meta, data, 2))
    path = dl / "t" / "sub" / "deeper" / "d.bin"
    with open(path, "r+b") as fh:
        fh.write(b"\xff" * 8)  # piece 2, behind our back
    store.write_piece(3, piece(meta, data, 3))
    with pytest.raises(storage_mod.DataChangedError, match="piece 2 no longer matches"):
        store.read_piece(2)
    assert bytes(store.read_piece(3)) == piece(meta, data, 3)  # hashed, and good


# --- reads that must not wait (serving on the event loop) ------------------------------------


def test_a_piece_in_the_page_cache_is_read_without_waiting(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    write_all(store, meta, data)
    for index in range(meta.num_pieces):  # across three files, a pad file (zeros), the short last piece
        assert store.read_piece_cached(index) == piece(meta, data, index)


def test_a_read_that_would_open_a_file_goes_to_a_worker(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    write_all(Storage(meta, dl), meta, data)
    store = Storage(meta, dl)  # no file open yet: opening checks the path, which is a worker's job
    assert store.read_piece_cached(2) is None
    assert bytes(store.read_piece(2)) == piece(meta, data, 2)
    assert store.read_piece_cached(2) == piece(meta, data, 2)


def test_a_piece_not_in_the_page_cache_goes_to_a_worker(dl: Path) -> None:
    meta, data = make_torrent([("big.bin", 1 << 20)], 1 << 18)
    store = Storage(meta, dl)
    write_all(store, meta, data)
    assert store.read_piece_cached(1) == piece(meta, data, 1)
    path = dl / "t" / "big.bin"
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # clean pages can be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    assert store.read_piece_cached(1) is None  # it would wait for the disk
    assert bytes(store.read_piece(1)) == piece(meta, data, 1)


def test_a_changed_file_is_never_read_without_the_full_check(dl: Path) -> None:
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    write_all(store, meta, data)
    assert store.read_piece_cached(2) == piece(meta, data, 2)
    _rewrite_keeping_mtime(dl / "t" / "sub" / "deeper" / "d.bin")
    assert store.read_piece_cached(2) is None  # the worker's read_piece tells what changed
    with pytest.raises(storage_mod.DataChangedError):
        store.read_piece(2)


def test_a_file_system_without_nowait_reads_sends_every_read_to_a_worker(dl: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    meta, data = make_torrent(SPEC, PL)
    store = Storage(meta, dl)
    write_all(store, meta, data)
    calls = []

    def refused(fd: int, buffers: list, offset: int, flags: int = 0) -> int:
        calls.append(flags)
        raise OSError(errno.EOPNOTSUPP, "not supported")

    monkeypatch.setattr(storage_mod.os, "preadv", refused)
    assert store.read_piece_cached(0) is None
    assert store.read_piece_cached(1) is None
    assert calls == [os.RWF_NOWAIT]  # asked once, then not again
    monkeypatch.undo()
    assert bytes(store.read_piece(1)) == piece(meta, data, 1)
