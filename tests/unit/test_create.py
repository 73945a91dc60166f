"""Creating .torrent files: the bytes are checked by decoding them and by hashing the
payload with ``hashlib`` in the test, and they must load with ``metainfo.parse``."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrent.codec import bencoding, metainfo
from torrent import create
from torrent.core.errors import CreateError, TorrentError
from torrent.core.settings import KiB, MiB

PIECE = 16 * KiB
DATE = 1_700_000_000


def payload(n: int, seed: int) -> bytes:
    """Deterministic, non-repeating-looking bytes."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d-%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:n])


def digests(data: bytes, piece_length: int) -> bytes:
    return b"".join(hashlib.sha1(data[i:i + piece_length]).digest() for i in range(0, len(data), piece_length))


def decode(data: bytes) -> dict[bytes, Any]:
    value = bencoding.decode(data)
    assert isinstance(value, dict)
    return value


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, dict[tuple[str, ...], bytes]]:
    """A directory with nested dirs, an empty file, and symlinks that must be skipped."""
    root = tmp_path / "My Album"
    files = {
        ("b.txt",): payload(5000, 1),
        ("a", "z.bin"): payload(PIECE + 123, 2),
        ("a", "b", "deep.dat"): payload(40000, 3),
        ("empty.txt",): b"",
        ("c",): payload(1, 4),
        ("a", "a.bin"): payload(3 * PIECE, 5),
    }
    for parts, data in files.items():
        path = root.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"must not be included")
    (root / "link-to-file").symlink_to(outside)
    (root / "a" / "link-to-dir").symlink_to(root / "a" / "b", target_is_directory=True)
    return root, files


def sorted_files(files: dict[tuple[str, ...], bytes]) -> list[tuple[tuple[str, ...], bytes]]:
    return sorted(files.items())


# --- single file ---------------------------------------------------------------------------


def test_single_file(tmp_path: Path) -> None:
    data = payload(3 * PIECE + 777, 9)
    path = tmp_path / "movie.mkv"
    path.write_bytes(data)
    out = create.create_torrent(path, piece_length=PIECE, creation_date=DATE)
    top = decode(out)
    info = top[b"info"]
    assert info == {b"name": b"movie.mkv", b"piece length": PIECE, b"length": len(data),
                    b"pieces": digests(data, PIECE)}
    assert top[b"creation date"] == DATE
    assert top[b"created by"].startswith(b"torrent/")
    assert b"announce" not in top and b"announce-list" not in top
    assert b"comment" not in top and b"url-list" not in top

    m = metainfo.parse(out)
    assert m.name == "movie.mkv"
    assert not m.multi_file
    assert m.total_length == len(data)
    assert m.num_pieces == 4
    assert m.info_hash == hashlib.sha1(bencoding.encode(info)).digest()
    assert m.creation_date == DATE


def test_output_is_canonical_bencode(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(payload(100, 1))
    out = create.create_torrent(path, creation_date=DATE, trackers=["http://t/a"], comment="c")
    assert bencoding.encode(bencoding.decode(out)) == out  # sorted keys, nothing odd


# --- directory -----------------------------------------------------------------------------


def test_directory(tree: tuple[Path, dict[tuple[str, ...], bytes]]) -> None:
    root, files = tree
    out = create.create_torrent(root, piece_length=PIECE, creation_date=DATE)
    info = decode(out)[b"info"]
    expected = sorted_files(files)
    assert info[b"name"] == b"My Album"
    assert b"length" not in info
    assert info[b"files"] == [{b"length": len(data), b"path": [p.encode() for p in parts]} for parts, data in expected]
    assert info[b"pieces"] == digests(b"".join(data for _, data in expected), PIECE)

    m = metainfo.parse(out)
    assert m.multi_file and m.name == "My Album"
    assert [f.path for f in m.files] == [("My Album", *parts) for parts, _ in expected]
    assert [f.length for f in m.files] == [len(data) for _, data in expected]
    assert ("My Album", "empty.txt") in [f.path for f in m.files]
    assert not any("link" in part for f in m.files for part in f.path)


def test_files_sorted_by_path(tmp_path: Path) -> None:
    root = tmp_path / "d"
    # Created out of order; the torrent lists them sorted whatever order the directory returns.
    for rel in ("c", "a/x", "B", "a/y/z"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    info = decode(create.create_torrent(root, creation_date=DATE))[b"info"]
    assert [f[b"path"] for f in info[b"files"]] == [[b"B"], [b"a", b"x"], [b"a", b"y", b"z"], [b"c"]]


def test_pieces_cross_regions_and_files(tmp_path: Path) -> None:
    # More than one 8 MiB hashing region, file boundaries inside pieces.
    root = tmp_path / "big"
    root.mkdir()
    sizes = [5 * MiB + 3, 1, 0, 4 * MiB - 7, 777_777]
    datas = []
    for i, size in enumerate(sizes):
        data = os.urandom(size)
        datas.append(data)
        (root / f"part{i}").write_bytes(data)
    out = create.create_torrent(root, piece_length=PIECE, creation_date=DATE, threads=2)
    assert decode(out)[b"info"][b"pieces"] == digests(b"".join(datas), PIECE)


def test_thread_count_does_not_change_the_bytes(tree: tuple[Path, dict[tuple[str, ...], bytes]]) -> None:
    root, _ = tree
    one = create.create_torrent(root, piece_length=PIECE, creation_date=DATE, threads=1)
    three = create.create_torrent(root, piece_length=PIECE, creation_date=DATE, threads=3)
    assert one == three


def test_progress_and_on_start(tree: tuple[Path, dict[tuple[str, ...], bytes]]) -> None:
    root, files = tree
    total = sum(len(d) for d in files.values())
    started: list[int] = []
    progress: list[int] = []
    create.create_torrent(root, piece_length=PIECE, creation_date=DATE, on_start=started.append,
                          progress=progress.append)
    assert started == [total]
    assert sum(progress) == total
    assert all(n > 0 for n in progress)


def test_auto_piece_length_is_used_when_none_given(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(payload(100, 1))
    info = decode(create.create_torrent(path, creation_date=DATE))[b"info"]
    assert info[b"piece length"] == create.auto_piece_length(100) == 16 * KiB


# --- piece length ---------------------------------------------------------------------------


@given(st.integers(0, 1 << 46))
def test_auto_piece_length_is_the_smallest_fitting_power_of_two(total: int) -> None:
    size = create.auto_piece_length(total)
    assert 16 * KiB <= size <= 16 * MiB
    assert size & (size - 1) == 0
    pieces = -(-total // size)
    assert pieces <= 1500 or size == 16 * MiB
    if size > 16 * KiB:  # half the size would have made too many pieces
        assert -(-total // (size // 2)) > 1500


@pytest.mark.parametrize(
    ("total", "expected"),
    [(0, 16 * KiB), (1500 * 16 * KiB, 16 * KiB), (1500 * 16 * KiB + 1, 32 * KiB), (1 << 50, 16 * MiB)],
)
def test_auto_piece_length_bounds(total: int, expected: int) -> None:
    assert create.auto_piece_length(total) == expected


@pytest.mark.parametrize("size", [16 * KiB, 32 * KiB, 1 * MiB, 512 * MiB])
def test_check_piece_length_accepts(size: int) -> None:
    assert create.check_piece_length(size) == size


@pytest.mark.parametrize("size", [0, -16384, 1, 8 * KiB, 16 * KiB + 1, 24 * KiB, 3 * MiB, 1024 * MiB])
def test_check_piece_length_rejects(size: int) -> None:
    with pytest.raises(CreateError, match="power of two"):
        create.check_piece_length(size)


def test_create_with_bad_piece_length(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with pytest.raises(CreateError):
        create.create_torrent(path, piece_length=20000)


# --- trackers and optional fields ----------------------------------------------------------


@pytest.mark.parametrize(
    ("trackers", "announce", "announce_list"),
    [
        ([], None, None),
        (["http://a/ann"], b"http://a/ann", None),
        (["http://a/ann", "udp://b:80"], b"http://a/ann", [[b"http://a/ann"], [b"udp://b:80"]]),
        ([["http://a/1", "http://a/2"]], b"http://a/1", [[b"http://a/1", b"http://a/2"]]),
        ([["http://a/1"], [], "udp://c"], b"http://a/1", [[b"http://a/1"], [b"udp://c"]]),
        ([("http://x",)], b"http://x", None),
    ],
    ids=["none", "one", "two-tiers", "one-tier-two-urls", "empty-tier-dropped", "tuple-tier"],
)
def test_trackers_as_tiers(tmp_path: Path, trackers: list[Any], announce: bytes | None,
                           announce_list: list[list[bytes]] | None) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"data")
    out = create.create_torrent(path, trackers=trackers, creation_date=DATE)
    top = decode(out)
    assert top.get(b"announce") == announce
    assert top.get(b"announce-list") == announce_list
    m = metainfo.parse(out)
    if announce_list is not None:
        assert m.trackers == tuple(tuple(u.decode() for u in tier) for tier in announce_list)
    elif announce is not None:
        assert m.trackers == ((announce.decode(),),)
    else:
        assert m.trackers == ()


def test_private_source_comment_web_seeds(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"data")
    out = create.create_torrent(path, private=True, source="TRK", comment="hello ✓",
                                web_seeds=["http://seed/a", "http://seed/b"], creation_date=DATE)
    top = decode(out)
    assert top[b"info"][b"private"] == 1
    assert top[b"info"][b"source"] == b"TRK"
    assert top[b"comment"] == "hello ✓".encode()
    assert top[b"url-list"] == [b"http://seed/a", b"http://seed/b"]
    m = metainfo.parse(out)
    assert m.private and m.source == "TRK" and m.comment == "hello ✓"
    assert m.web_seeds == ("http://seed/a", "http://seed/b")


def test_not_private_by_default_and_private_changes_the_hash(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"data")
    public = create.create_torrent(path, creation_date=DATE)
    private = create.create_torrent(path, creation_date=DATE, private=True)
    assert b"private" not in decode(public)[b"info"]
    assert metainfo.parse(public).info_hash != metainfo.parse(private).info_hash


def test_creation_date_defaults_to_now(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"data")
    before = int(time.time())
    date = decode(create.create_torrent(path))[b"creation date"]
    assert before <= date <= int(time.time())


# --- errors ----------------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CreateError, match="cannot read"):
        create.create_torrent(tmp_path / "absent")


def test_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "sub").mkdir()
    with pytest.raises(CreateError, match="no files"):
        create.create_torrent(tmp_path / "empty")


def test_directory_of_only_symlinks(tmp_path: Path) -> None:
    (tmp_path / "target").write_bytes(b"data")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "link").symlink_to(tmp_path / "target")
    with pytest.raises(CreateError, match="no files"):
        create.create_torrent(tmp_path / "d")


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "zero").write_bytes(b"")
    with pytest.raises(CreateError, match="no data"):
        create.create_torrent(tmp_path / "zero")


def test_directory_of_empty_files(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"")
    (tmp_path / "d" / "b").write_bytes(b"")
    with pytest.raises(CreateError, match="no data"):
        create.create_torrent(tmp_path / "d")


def test_special_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(CreateError, match="neither"):
        create.create_torrent(fifo)


def test_unsafe_file_name_in_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "bad\x01name").write_bytes(b"x")
    with pytest.raises(CreateError, match="cannot be stored safely"):
        create.create_torrent(tmp_path / "d")


def test_create_errors_are_torrent_errors(tmp_path: Path) -> None:
    with pytest.raises(TorrentError):
        create.create_torrent(tmp_path / "absent")
