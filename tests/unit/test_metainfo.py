"""Metainfo parsing: torrents built by hand with ``bencoding.encode`` (or as raw
bytes where key order matters), checked against values worked out in the test."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from torrent.codec import bencoding, metainfo
from torrent.codec.geometry import Geometry
from torrent.codec.magnet import parse_magnet
from torrent.codec.metainfo import FileEntry, Metainfo
from torrent.core.errors import MetainfoError
from torrent.core.settings import Limits

PIECE = 16384


def digests(data: bytes, piece_length: int = PIECE) -> bytes:
    return b"".join(hashlib.sha1(data[i:i + piece_length]).digest() for i in range(0, len(data), piece_length))


def pieces_for(total: int, piece_length: int = PIECE) -> bytes:
    """Any 20-byte values, one per piece: parsing does not check payload hashes."""
    count = -(-total // piece_length)
    return b"".join(hashlib.sha1(b"%d" % i).digest() for i in range(count))


def single_info(length: int = 40000, name: bytes = b"file.bin",
                extra: dict[bytes, Any] | None = None) -> dict[bytes, Any]:
    info: dict[bytes, Any] = {b"name": name, b"piece length": PIECE, b"length": length,
                              b"pieces": pieces_for(length)}
    info.update(extra or {})
    return info


def multi_info(files: list[tuple[list[bytes], int]], name: bytes = b"album") -> dict[bytes, Any]:
    total = sum(length for _, length in files)
    info: dict[bytes, Any] = {
        b"name": name,
        b"piece length": PIECE,
        b"files": [{b"length": length, b"path": path} for path, length in files],
        b"pieces": pieces_for(total),
    }
    return info


def torrent(info: Any, top: dict[bytes, Any] | None = None) -> bytes:
    return bencoding.encode({b"info": info, **(top or {})})


def parse_info_dict(info: dict[bytes, Any], top: dict[bytes, Any] | None = None) -> Metainfo:
    return metainfo.parse(torrent(info, top))


# --- single and multi-file ---------------------------------------------------------------


def test_single_file() -> None:
    info = single_info(length=40000)
    m = parse_info_dict(info, {b"announce": b"http://tracker.example/announce"})
    assert m.name == "file.bin"
    assert not m.multi_file
    assert m.files == (FileEntry(("file.bin",), 40000, 0),)
    assert m.piece_length == PIECE
    assert m.total_length == 40000
    assert m.num_pieces == 3  # 16384 + 16384 + 7232
    assert m.pieces == info[b"pieces"]
    assert m.piece_hash(2) == info[b"pieces"][40:60]
    with pytest.raises(IndexError):
        m.piece_hash(3)
    with pytest.raises(IndexError):
        m.piece_hash(-1)
    assert m.info_hash == hashlib.sha1(bencoding.encode(info)).digest()
    assert m.info_hash_hex == hashlib.sha1(bencoding.encode(info)).hexdigest()
    assert m.info_bytes == bencoding.encode(info)


def test_multi_file_with_short_last_piece() -> None:
    files = [([b"disc 1", b"01.flac"], 20000), ([b"disc 1", b"02.flac"], 5000), ([b"cover.jpg"], 100)]
    m = parse_info_dict(multi_info(files))
    assert m.multi_file
    assert m.name == "album"
    assert [f.path for f in m.files] == [
        ("album", "disc 1", "01.flac"), ("album", "disc 1", "02.flac"), ("album", "cover.jpg")]
    assert [f.length for f in m.files] == [20000, 5000, 100]
    assert [f.offset for f in m.files] == [0, 20000, 25000]
    assert m.total_length == 25100
    assert m.num_pieces == 2
    assert m.geometry.piece_size(1) == 25100 - PIECE
    assert m.files[0].display_path == "album/disc 1/01.flac"


def test_exact_multiple_of_piece_length() -> None:
    m = parse_info_dict(single_info(length=2 * PIECE))
    assert m.num_pieces == 2
    assert m.geometry.piece_size(1) == PIECE


def test_empty_file_in_multi_file_torrent() -> None:
    files = [([b"a"], 100), ([b"empty"], 0), ([b"b"], 50)]
    m = parse_info_dict(multi_info(files))
    assert [(f.path[-1], f.length, f.offset) for f in m.files] == [("a", 100, 0), ("empty", 0, 100), ("b", 50, 100)]
    assert m.total_length == 150
    assert m.geometry.file_pieces(1) == range(0)


def test_geometry_matches_files() -> None:
    files = [([b"x"], 30000), ([b"y"], 0), ([b"z"], 10000)]
    m = parse_info_dict(multi_info(files))
    assert isinstance(m.geometry, Geometry)
    assert m.geometry.piece_length == PIECE
    assert m.geometry.file_lengths == (30000, 0, 10000)
    assert m.geometry.file_offsets == tuple(f.offset for f in m.files)
    assert m.geometry.num_pieces == m.num_pieces == 3
    assert m.geometry.total_length == 40000


def test_pad_file_attr() -> None:
    files = [{b"length": 1000, b"path": [b"a.bin"]},
             {b"length": PIECE - 1000, b"path": [b".pad", b"15384"], b"attr": b"p"},
             {b"length": 10, b"path": [b"b.bin"], b"attr": b"xh"}]
    info = {b"name": b"padded", b"piece length": PIECE, b"files": files, b"pieces": pieces_for(PIECE + 10)}
    m = parse_info_dict(info)
    assert [f.is_padding for f in m.files] == [False, True, False]
    assert m.files[1].attr == "p"
    assert m.files[2].is_executable and m.files[2].is_hidden
    assert not m.files[0].is_executable and not m.files[0].is_hidden
    assert m.files[2].offset == PIECE


def test_pad_files_count_in_geometry_but_not_in_magnet_length() -> None:
    files = [{b"length": 1000, b"path": [b"a.bin"]},
             {b"length": PIECE - 1000, b"path": [b".pad", b"15384"], b"attr": b"p"},
             {b"length": 10, b"path": [b"b.bin"]}]
    info = {b"name": b"padded", b"piece length": PIECE, b"files": files, b"pieces": pieces_for(PIECE + 10)}
    m = parse_info_dict(info)
    assert m.total_length == PIECE + 10  # pieces cover the pad bytes
    assert m.payload_length == 1010  # what lands on disk
    assert parse_magnet(m.magnet()).exact_length == 1010


def test_pad_files_sharing_a_path_are_accepted() -> None:
    # libtorrent names every pad file ".pad/<size>", so two pads of one size share a path.
    # Pad files are never written to disk, so they cannot collide with anything.
    files = [{b"length": 1000, b"path": [b"a.bin"]},
             {b"length": PIECE - 1000, b"path": [b".pad", b"15384"], b"attr": b"p"},
             {b"length": 1000, b"path": [b"b.bin"]},
             {b"length": PIECE - 1000, b"path": [b".pad", b"15384"], b"attr": b"p"},
             {b"length": 10, b"path": [b"c.bin"]}]
    info = {b"name": b"padded", b"piece length": PIECE, b"files": files, b"pieces": pieces_for(2 * PIECE + 10)}
    m = parse_info_dict(info)
    assert [f.is_padding for f in m.files] == [False, True, False, True, False]
    assert m.total_length == 2 * PIECE + 10


def test_symlink_attr_keeps_sanitized_target() -> None:
    files = [{b"length": 10, b"path": [b"real"]},
             {b"length": 0, b"path": [b"link"], b"attr": b"l", b"symlink path": [b"..", b"real"]}]
    info = {b"name": b"d", b"piece length": PIECE, b"files": files, b"pieces": pieces_for(10)}
    m = parse_info_dict(info)
    assert m.files[1].symlink == ("real",)


# --- info-hash ------------------------------------------------------------------------------


def test_info_hash_is_sha1_of_exact_bytes_with_unsorted_keys() -> None:
    pieces = pieces_for(5)
    # Keys deliberately out of order, plus an unknown key: a re-encoding would sort them.
    info = (b"d6:pieces20:" + pieces + b"4:name1:x12:piece lengthi16384e6:lengthi5e3:zzz3:abce")
    data = b"d4:info" + info + b"8:announce10:http://t/ae"
    m = metainfo.parse(data)
    assert m.info_hash == hashlib.sha1(info).digest()
    assert m.info_bytes == info
    resorted = bencoding.encode(bencoding.decode(info))
    assert resorted != info
    assert m.info_hash != hashlib.sha1(resorted).digest()
    assert m.name == "x" and m.total_length == 5


def test_parse_accepts_memoryview() -> None:
    data = torrent(single_info())
    expected = hashlib.sha1(bencoding.encode(single_info())).digest()
    m = metainfo.parse(memoryview(data))
    assert m.info_hash == expected
    assert type(m.info_bytes) is bytes


# --- trackers, web seeds, flags, text ---------------------------------------------------


def test_announce_only() -> None:
    m = parse_info_dict(single_info(), {b"announce": b" http://a.example/announce "})
    assert m.trackers == (("http://a.example/announce",),)
    assert m.announce_urls == ("http://a.example/announce",)


def test_no_trackers() -> None:
    m = parse_info_dict(single_info())
    assert m.trackers == ()
    assert m.announce_urls == ()


def test_announce_list_tiers_with_junk() -> None:
    announce_list = [
        [b"http://a/1", b"http://a/2", b"http://a/1"],  # duplicate inside a tier
        b"http://not-a-tier",  # not a list
        [],  # empty tier
        [5, b"udp://b/1", [b"nested"], b"", b"   "],  # non-bytes, blank
        [b"http://a/2"],  # duplicate across tiers: tier becomes empty
        [b"udp://c/1"],
    ]
    m = parse_info_dict(single_info(), {b"announce": b"http://ignored/", b"announce-list": announce_list})
    assert m.trackers == (("http://a/1", "http://a/2"), ("udp://b/1",), ("udp://c/1",))
    assert m.announce_urls == ("http://a/1", "http://a/2", "udp://b/1", "udp://c/1")


def test_announce_list_of_only_junk_falls_back_to_announce() -> None:
    m = parse_info_dict(single_info(), {b"announce": b"http://a/", b"announce-list": [[], [7], b"x"]})
    assert m.trackers == (("http://a/",),)


def test_announce_list_not_a_list_is_ignored() -> None:
    m = parse_info_dict(single_info(), {b"announce": b"http://a/", b"announce-list": b"http://b/"})
    assert m.trackers == (("http://a/",),)


@pytest.mark.parametrize(
    ("url_list", "expected"),
    [
        (b"http://seed/file", ("http://seed/file",)),
        ([b"http://s1/", b"http://s2/", b"http://s1/", b"", 3], ("http://s1/", "http://s2/")),
        (42, ()),
        ([], ()),
    ],
    ids=["string", "list", "int", "empty-list"],
)
def test_url_list(url_list: Any, expected: tuple[str, ...]) -> None:
    m = parse_info_dict(single_info(), {b"url-list": url_list})
    assert m.web_seeds == expected


@pytest.mark.parametrize(("value", "expected"), [(1, True), (0, False), (b"1", False), (2, False)])
def test_private_flag(value: Any, expected: bool) -> None:
    assert parse_info_dict(single_info(extra={b"private": value})).private is expected


def test_private_absent() -> None:
    assert parse_info_dict(single_info()).private is False


def test_optional_text_fields() -> None:
    m = parse_info_dict(
        single_info(extra={b"source": b"SRC"}),
        {b"comment": b"caf\xe9", b"created by": b"maker 1.0", b"creation date": 1_700_000_000})
    assert m.comment == "café"  # not UTF-8: read as Latin-1 rather than refused
    assert m.created_by == "maker 1.0"
    assert m.creation_date == 1_700_000_000
    assert m.source == "SRC"


def test_comment_utf8_preferred_and_bad_creation_date_ignored() -> None:
    m = parse_info_dict(single_info(), {b"comment": b"plain", b"comment.utf-8": "grüß".encode(),
                                           b"creation date": b"yesterday"})
    assert m.comment == "grüß"
    assert m.creation_date is None


def test_name_and_path_utf8_preferred() -> None:
    files = [{b"length": 5, b"path": [b"bad\xff"], b"path.utf-8": ["naïve.txt".encode()]}]
    info = {b"name": b"old", b"name.utf-8": "répertoire".encode(), b"piece length": PIECE,
            b"files": files, b"pieces": pieces_for(5)}
    m = parse_info_dict(info)
    assert m.name == "répertoire"
    assert m.files[0].path == ("répertoire", "naïve.txt")


def test_non_utf8_names_are_decoded_not_refused() -> None:
    files = [{b"length": 5, b"path": [b"\xc9t\xe9.txt"]}]
    info = {b"name": b"Caf\xe9", b"piece length": PIECE, b"files": files, b"pieces": pieces_for(5)}
    m = parse_info_dict(info)
    assert m.name == "Café"
    assert m.files[0].path == ("Café", "Été.txt")


def test_missing_or_unusable_name_falls_back_to_info_hash() -> None:
    for info in (single_info(name=b".."), {k: v for k, v in single_info().items() if k != b"name"}):
        m = parse_info_dict(info)
        assert m.name == hashlib.sha1(bencoding.encode(info)).hexdigest()
        assert m.files[0].path == (m.name,)


# --- BEP 52 -------------------------------------------------------------------------------


def test_hybrid_v1_v2_loads_as_v1() -> None:
    info = single_info(extra={b"meta version": 2, b"file tree": {b"file.bin": {b"": {b"length": 40000}}}})
    m = parse_info_dict(info, {b"piece layers": {}})
    assert m.has_v2
    assert m.num_pieces == 3


def test_v1_only_has_no_v2() -> None:
    assert parse_info_dict(single_info()).has_v2 is False


def test_v2_only_is_refused_with_a_clear_message() -> None:
    info = {b"name": b"v2", b"piece length": PIECE, b"meta version": 2,
            b"file tree": {b"v2": {b"": {b"length": 5, b"pieces root": b"\x00" * 32}}}}
    with pytest.raises(MetainfoError, match="v2"):
        parse_info_dict(info)


# --- path safety -----------------------------------------------------------------------------


HOSTILE_COMPONENTS = [b"..", b".", b"/etc/passwd", b"a/b", b"x\x00y", b"C:\\Windows", b"\\\\server\\share",
                      b"", b"  ..  ", b"../../escape", b"\x01\x1f", b"con", b"~"]


def test_hostile_path_components_are_neutralised() -> None:
    files = [([b"..", b"..", b"etc", b"passwd"], 1),
             ([b"/etc/passwd"], 1),
             ([b"a/b", b"..", b"c"], 1),
             ([b"x\x00y"], 1),
             ([b"C:\\Windows", b"system32"], 1),
             ([b"", b".", b"sub", b"", b"f"], 1),
             ([b"../../escape"], 1),
             ([b"\\\\server\\share"], 1)]
    m = parse_info_dict(multi_info(files, name=b"../root"))
    for f in m.files:
        assert f.path[0] == m.name
        for part in f.path:
            assert part not in ("", ".", "..")
            assert "/" not in part and "\\" not in part and "\x00" not in part
    assert "/" not in m.name and m.name not in ("", ".", "..")
    assert m.files[0].path[1:] == ("etc", "passwd")
    assert m.files[5].path[1:] == ("sub", "f")


@pytest.mark.parametrize("component", HOSTILE_COMPONENTS)
def test_each_hostile_component(component: bytes) -> None:
    files = [([component, b"leaf"], 3)]
    m = parse_info_dict(multi_info(files))
    (entry,) = m.files
    assert entry.path[0] == "album" and entry.path[-1] == "leaf"
    for part in entry.path:
        assert part and part not in (".", "..")
        assert "/" not in part and "\\" not in part
        assert not any(ord(ch) < 0x20 for ch in part)


def test_path_that_sanitizes_to_nothing_is_refused() -> None:
    with pytest.raises(MetainfoError, match="empty path"):
        parse_info_dict(multi_info([([b"..", b".", b""], 5)]))


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        ([[b"a"], [b"a"]], ["a", "a.1"]),  # identical: the later one is renamed
        ([[b"a"], [b"..", b"a"]], ["a", "a.1"]),  # identical after sanitizing
        ([[b"x/y"], [b"x\\y"]], ["x_y", "x_y.1"]),  # both become x_y
        ([[b"dir"], [b"dir", b"file"]], ["dir.1", "dir/file"]),  # a file named like a directory is renamed
        ([[b"dir", b"file"], [b"dir"]], ["dir/file", "dir.1"]),  # whichever comes first
        ([[b"a", b"b", b"c"], [b"a", b"b"]], ["a/b/c", "a/b.1"]),
        ([[b"a.txt"], [b"a.txt"], [b"a.1.txt"], [b"a.txt"]], ["a.txt", "a.1.txt", "a.1.1.txt", "a.2.txt"]),
        ([[b"a.txt"], [b"a.txt"], [b"a.1.txt", b"x"]], ["a.txt", "a.2.txt", "a.1.txt/x"]),
    ],
    ids=["same", "dotdot", "separators", "file-then-dir", "dir-then-file", "deep", "renamed-name-taken-later",
         "renamed-name-is-a-directory"],
)
def test_colliding_paths_are_renamed(paths: list[list[bytes]], expected: list[str]) -> None:
    m = parse_info_dict(multi_info([(p, 10) for p in paths]))
    assert [f.display_path for f in m.files] == [f"album/{e}" for e in expected]
    assert len({f.path for f in m.files}) == len(m.files)
    written = {f.path for f in m.files}
    assert not any(f.path[:k] in written for f in m.files for k in range(1, len(f.path)))  # no file is a directory


# --- malformed torrents ---------------------------------------------------------------------


def without(d: dict[bytes, Any], key: bytes) -> dict[bytes, Any]:
    return {k: v for k, v in d.items() if k != key}


MALFORMED: list[tuple[str, bytes, str]] = [
    ("not-bencode", b"this is not a torrent", "not a torrent"),
    ("truncated", torrent(single_info())[:-5], "not a torrent"),
    ("top-not-dict", bencoding.encode([b"info"]), "top level"),
    ("missing-info", bencoding.encode({b"announce": b"http://a/"}), "info"),
    ("info-not-dict", bencoding.encode({b"info": b"nope"}), "info"),
    ("piece-length-0", torrent(single_info(extra={b"piece length": 0})), "piece length"),
    ("piece-length-negative", torrent(single_info(extra={b"piece length": -16384})), "piece length"),
    ("piece-length-str", torrent(single_info(extra={b"piece length": b"16384"})), "piece length"),
    ("piece-length-missing", torrent(without(single_info(), b"piece length")), "piece length"),
    ("pieces-missing", torrent(without(single_info(), b"pieces")), "pieces"),
    ("pieces-not-bytes", torrent(single_info(extra={b"pieces": [b"x" * 20]})), "pieces"),
    ("pieces-not-multiple-of-20", torrent(single_info(extra={b"pieces": pieces_for(40000) + b"x"})), "multiple of 20"),
    ("too-few-pieces", torrent(single_info(extra={b"pieces": pieces_for(40000)[:40]})), "need 3"),
    ("too-many-pieces", torrent(single_info(extra={b"pieces": pieces_for(40000) + b"\x00" * 20})), "need 3"),
    ("both-length-and-files", torrent(single_info(extra={b"files": [{b"length": 1, b"path": [b"a"]}]})), "exactly one"),
    ("neither-length-nor-files", torrent(without(single_info(), b"length")), "exactly one"),
    ("negative-length", torrent(single_info(extra={b"length": -1})), "length"),
    ("length-not-int", torrent(single_info(extra={b"length": b"10"})), "length"),
    ("files-not-list", torrent(without(single_info(extra={b"files": {b"a": 1}}), b"length")), "non-empty list"),
    ("files-empty", torrent(without(single_info(extra={b"files": []}), b"length")), "non-empty list"),
    ("file-entry-not-dict", torrent(multi_info([([b"a"], 10)]) | {b"files": [b"a"]}), "not a dictionary"),
    ("file-negative-length", torrent(multi_info([([b"a"], 10)]) | {b"files": [{b"length": -10, b"path": [b"a"]}]}),
     "length"),
    ("file-missing-length", torrent(multi_info([([b"a"], 10)]) | {b"files": [{b"path": [b"a"]}]}), "length"),
    ("path-not-list", torrent(multi_info([([b"a"], 10)]) | {b"files": [{b"length": 10, b"path": b"a"}]}), "path"),
    ("path-item-not-bytes", torrent(multi_info([([b"a"], 10)]) | {b"files": [{b"length": 10, b"path": [b"a", 1]}]}),
     "path"),
    ("path-missing", torrent(multi_info([([b"a"], 10)]) | {b"files": [{b"length": 10}]}), "path"),
    ("total-zero-single", torrent(single_info(length=0, extra={b"pieces": b""})), "total length 0"),
    ("total-zero-multi", torrent(multi_info([([b"a"], 0), ([b"b"], 0)])), "total length 0"),
]


@pytest.mark.parametrize(("data", "words"), [(d, w) for _, d, w in MALFORMED], ids=[i for i, _, _ in MALFORMED])
def test_malformed_torrents_raise_metainfo_error(data: bytes, words: str) -> None:
    with pytest.raises(MetainfoError) as info:
        metainfo.parse(data)
    assert words in str(info.value)


def test_piece_length_bool_is_refused() -> None:
    # bencode has no booleans, but parse_info is also fed dicts built in Python (BEP 9 metadata).
    info = single_info(extra={b"piece length": True})
    with pytest.raises(MetainfoError, match="piece length"):
        metainfo.parse_info(info, bencoding.encode(single_info()))


def test_file_length_bool_is_refused() -> None:
    info = single_info(extra={b"length": True})
    with pytest.raises(MetainfoError, match="length"):
        metainfo.parse_info(info, b"")


def test_piece_length_outside_limits() -> None:
    limits = Limits(max_piece_length=8192)
    with pytest.raises(MetainfoError, match="piece length 16384"):
        metainfo.parse(torrent(single_info()), limits=limits)


def test_too_many_files() -> None:
    files = [([b"f%d" % i], 1) for i in range(5)]
    with pytest.raises(MetainfoError, match="5 files"):
        metainfo.parse(torrent(multi_info(files)), limits=Limits(max_files=4))
    assert len(metainfo.parse(torrent(multi_info(files)), limits=Limits(max_files=5)).files) == 5


# --- load ------------------------------------------------------------------------------------


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "ok.torrent"
    path.write_bytes(torrent(single_info()))
    assert metainfo.load(path).info_hash == hashlib.sha1(bencoding.encode(single_info())).digest()
    assert metainfo.load(str(path)).name == "file.bin"


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MetainfoError, match="cannot read") as info:
        metainfo.load(tmp_path / "absent.torrent")
    assert "absent.torrent" in str(info.value)


def test_load_directory(tmp_path: Path) -> None:
    with pytest.raises(MetainfoError) as info:
        metainfo.load(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_load_oversized_file(tmp_path: Path) -> None:
    path = tmp_path / "huge.torrent"
    with open(path, "wb") as fh:  # sparse: no real disk space used
        fh.truncate(Limits().bencode_max_size + 1)
    with pytest.raises(MetainfoError, match="too large"):
        metainfo.load(path)
    small = tmp_path / "small.torrent"
    small.write_bytes(torrent(single_info()))
    with pytest.raises(MetainfoError, match="too large"):
        metainfo.load(small, limits=Limits(bencode_max_size=os.path.getsize(small) - 1))


def test_load_malformed_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.torrent"
    path.write_bytes(b"d4:infoi1ee")
    with pytest.raises(MetainfoError) as info:
        metainfo.load(path)
    assert "bad.torrent" in str(info.value) and "info" in str(info.value)


# --- magnet ---------------------------------------------------------------------------------


def test_magnet_round_trips_through_parse_magnet() -> None:
    info = single_info(name="my file & co.bin".encode())
    m = parse_info_dict(info, {b"announce-list": [[b"http://a/ann?x=1&y=2"], [b"udp://b:80"]],
                                 b"url-list": [b"http://seed/"]})
    uri = m.magnet()
    expected_hash = hashlib.sha1(bencoding.encode(info)).digest()
    assert uri.startswith("magnet:?")
    assert expected_hash.hex() in uri
    parsed = parse_magnet(uri)
    assert parsed.info_hash == expected_hash
    assert parsed.display_name == "my file & co.bin"
    assert parsed.trackers == ("http://a/ann?x=1&y=2", "udp://b:80")
    assert parsed.web_seeds == ("http://seed/",)
    assert parsed.exact_length == 40000


# --- creation date and what read_file accepts (issue 13) -----------------------------------


@pytest.mark.parametrize("date", [10**20, -10**15, 10**400, -1, 253_402_300_800])
def test_creation_date_out_of_range_reads_as_absent(date: int) -> None:
    """A date no calendar can show (datetime overflows) is None, so every front end can format the value."""
    m = metainfo.parse(torrent(single_info(), {b"creation date": date}))
    assert m.creation_date is None


@pytest.mark.parametrize("date", [0, 1_700_000_000, 253_402_300_799])
def test_creation_date_in_range_is_kept(date: int) -> None:
    from datetime import datetime, timezone

    m = metainfo.parse(torrent(single_info(), {b"creation date": date}))
    assert m.creation_date == date
    datetime.fromtimestamp(date, timezone.utc)  # formattable


@pytest.mark.timeout(10)  # before the fix, open() waited for a writer for ever
def test_read_file_refuses_a_fifo_without_a_writer_at_once(tmp_path: Path) -> None:
    import time

    fifo = tmp_path / "pipe.torrent"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(MetainfoError, match="FIFO") as info:
        metainfo.read_file(fifo)
    assert time.monotonic() - started < 2
    assert str(fifo) in str(info.value) and "not a .torrent file" in str(info.value)


def test_read_file_refuses_a_device_such_as_dev_zero() -> None:
    with pytest.raises(MetainfoError, match="/dev/zero is a character device"):
        metainfo.load("/dev/zero")


def test_read_file_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(MetainfoError, match="is a directory"):
        metainfo.read_file(tmp_path)


def test_read_file_caps_at_the_settings_limit_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "big.torrent"
    path.write_bytes(b"d" + b"0" * 200)
    with pytest.raises(MetainfoError, match=r"limit 100 bytes, limits\.bencode_max_size"):
        metainfo.read_file(path, limits=Limits(bencode_max_size=100))
    assert metainfo.read_file(path, limits=Limits(bencode_max_size=201)) == b"d" + b"0" * 200


# --- odd torrents libtorrent loads (issue 13) --------------------------------------------
# Each torrent is built here with our encoder, modelled on one of libtorrent's own test torrents, and loaded
# by libtorrent 2.1 too: our file list (names and sizes, pad files aside) must be the one it would write.


def libtorrent_files(data: bytes) -> list[tuple[str, int]]:
    """What libtorrent writes for ``data``: its (path, size) per non-pad file, its renames applied."""
    import libtorrent as lt

    params = lt.load_torrent_buffer(data)
    layout = params.ti.layout()
    return [(params.renamed_files.get(i, layout.file_path(i)), layout.file_size(i))
            for i in range(layout.num_files()) if not layout.file_flags(i) & lt.file_storage.flag_pad_file]


def our_files(m: Metainfo) -> list[tuple[str, int]]:
    return [(f.display_path, f.length) for f in m.files if not f.is_padding]


def odd_torrent(files: list[dict[bytes, Any]], name: bytes = b"temp") -> bytes:
    total = sum(f.get(b"length", 0) for f in files)
    return torrent({b"name": name, b"piece length": PIECE, b"files": files, b"pieces": pieces_for(total)})


def test_duplicate_paths_later_file_renamed_like_libtorrent() -> None:
    # libtorrent's duplicate_files.torrent, plus a third copy.
    data = odd_torrent([{b"length": 425, b"path": [b"foo", b"bar.txt"]},
                        {b"length": 300, b"path": [b"foo", b"bar.txt"]},
                        {b"length": 7, b"path": [b"foo", b"bar.txt"]}])
    m = metainfo.parse(data)
    assert our_files(m) == [("temp/foo/bar.txt", 425), ("temp/foo/bar.1.txt", 300), ("temp/foo/bar.2.txt", 7)]
    assert our_files(m) == libtorrent_files(data)
    assert [f.offset for f in m.files] == [0, 425, 725]
    assert m.info_hash == hashlib.sha1(bencoding.encode(bencoding.decode(data)[b"info"])).digest()
    assert m.warnings == (
        "file #1 'temp/foo/bar.txt' is renamed 'bar.1.txt': another file or a directory has that name",
        "file #2 'temp/foo/bar.txt' is renamed 'bar.2.txt': another file or a directory has that name")


@pytest.mark.parametrize(
    "paths",
    [
        [[b"dir"], [b"dir", b"file"]],
        [[b"dir", b"file"], [b"dir"]],
        [[b"a", b"b", b"c"], [b"a", b"b"], [b"a", b"b"]],
        [[b"/", b"foo"], [b"\\", b"foo"]],  # libtorrent's invalid_directory_name.torrent
        [[b"x.tar.gz"], [b"x.tar.gz"], [b".bashrc"], [b".bashrc"]],
    ],
    ids=["file-then-dir", "dir-then-file", "file-is-a-parent", "invalid-directory-name", "extensions"],
)
def test_file_colliding_with_a_file_or_directory_renamed_like_libtorrent(paths: list[list[bytes]]) -> None:
    data = odd_torrent([{b"length": 10 + i, b"path": p} for i, p in enumerate(paths)])
    assert our_files(metainfo.parse(data)) == libtorrent_files(data)


@pytest.mark.parametrize(
    "paths",
    [
        [[b"", b""]],  # libtorrent's empty_path.torrent: temp/_/_
        [[b"abcde"], [b""], [b""]],  # its empty_path_multi.torrent: temp/_ and temp/_.1
    ],
    ids=["empty-path", "empty-path-multi"],
)
def test_empty_path_elements_named_like_libtorrent(paths: list[list[bytes]]) -> None:
    data = odd_torrent([{b"length": 425 - i, b"path": p} for i, p in enumerate(paths)])
    m = metainfo.parse(data)
    assert our_files(m) == libtorrent_files(data)
    assert all(part for f in m.files for part in f.path)


@pytest.mark.parametrize("pad_path", [None, [], b"not a list", [b".."]],
                         ids=["absent", "empty-list", "not-a-list", "dotdot"])
def test_pad_file_without_a_usable_path_is_accepted(pad_path: Any) -> None:
    # libtorrent's pad_file_no_path.torrent: the pad is named .pad/<size> and is never written.
    pad: dict[bytes, Any] = {b"attr": b"p", b"length": PIECE - 45}
    if pad_path is not None:
        pad[b"path"] = pad_path
    data = odd_torrent([{b"path": [b"foo", b"bar.txt"], b"length": 45}, pad, {b"path": [b"baz"], b"length": 100}])
    m = metainfo.parse(data)
    assert our_files(m) == [("temp/foo/bar.txt", 45), ("temp/baz", 100)] == libtorrent_files(data)
    pad = m.files[1]
    assert pad.is_padding and pad.path == ("temp", ".pad", str(PIECE - 45)) and pad.length == PIECE - 45
    assert m.files[2].offset == PIECE and m.payload_length == 145


def test_pad_file_with_a_malformed_path_list_is_still_refused() -> None:
    data = odd_torrent([{b"path": [b"a"], b"length": 45}, {b"attr": b"p", b"length": 10, b"path": [b"x", 3]}])
    with pytest.raises(MetainfoError, match="file #1 has a missing or malformed 'path'"):
        metainfo.parse(data)
    with pytest.raises(RuntimeError, match="invalid 'name'"):  # libtorrent refuses it too
        libtorrent_files(data)


def test_symlink_without_length_is_accepted_as_zero_length() -> None:
    # libtorrent's symlink_zero_size.torrent: a BEP 47 symlink takes no payload bytes.
    data = odd_torrent([{b"length": 425, b"path": [b"a", b"b", b"bar"]},
                        {b"attr": b"l", b"path": [b"a", b"b", b"foo"], b"symlink path": [b"a", b"b", b"bar"]}])
    m = metainfo.parse(data)
    assert our_files(m) == [("temp/a/b/bar", 425), ("temp/a/b/foo", 0)] == libtorrent_files(data)
    assert m.files[1].symlink == ("a", "b", "bar") and m.total_length == 425


def test_file_without_length_is_still_refused_unless_a_symlink() -> None:
    data = odd_torrent([{b"length": 425, b"path": [b"a"]}, {b"attr": b"x", b"path": [b"b"]}])
    with pytest.raises(MetainfoError, match="file #1 length"):
        metainfo.parse(data)


@pytest.mark.parametrize("tail", [b"\n", b"\r\n\r\n", b"\x00" * 100, b"d4:infode"])
def test_trailing_bytes_after_the_top_level_dict_accepted_with_a_warning(tmp_path: Path, tail: bytes) -> None:
    body = torrent(multi_info([([b"a"], 1000), ([b"b"], 20000)]), {b"announce": b"http://t.example/a"})
    info_hash = metainfo.parse(body).info_hash
    path = tmp_path / "tail.torrent"
    path.write_bytes(body + tail)
    for m in (metainfo.parse(body + tail), metainfo.load(path)):
        assert m.info_hash == info_hash  # the SHA-1 of the info bytes, whatever follows the dictionary
        assert m.trackers == (("http://t.example/a",),)
        assert our_files(m) == libtorrent_files(body + tail)
        plural = "s" if len(tail) > 1 else ""
        assert m.warnings == (f"{len(tail)} byte{plural} after the end of the torrent's dictionary ignored",)
    assert metainfo.parse(body).warnings == ()


@pytest.mark.parametrize(
    ("paths", "words"),
    [
        ([[b".."]], "empty path"),
        ([[b"..", b"."]], "empty path"),
        ([[b".", b".."], [b"x"]], "empty path"),
        ([[]], "empty path"),
    ],
    ids=["dotdot", "dotdot-dot", "dot-dotdot", "no-elements"],
)
def test_paths_of_only_dot_names_are_still_refused(paths: list[list[bytes]], words: str) -> None:
    # libtorrent names these "_"; here ".." and "." stay names the sanitizer drops, and a path of nothing else
    # names no file.
    with pytest.raises(MetainfoError, match=words):
        metainfo.parse(odd_torrent([{b"length": 10, b"path": p} for p in paths]))


def test_pad_file_with_path_keeps_it_and_pads_never_collide() -> None:
    data = odd_torrent([{b"length": 100, b"path": [b"x"]},
                        {b"length": PIECE - 100, b"path": [b"x"], b"attr": b"p"},  # a pad named like a file
                        {b"length": 5, b"path": [b"y"]}])
    m = metainfo.parse(data)
    assert [f.display_path for f in m.files] == ["temp/x", "temp/x", "temp/y"]
    assert our_files(m) == libtorrent_files(data)


def test_many_copies_of_one_name_are_renamed_in_one_cheap_pass() -> None:
    # Each copy starts counting where the previous one stopped: 20 000 copies cost 20 000 look-ups,
    # not 200 million (libtorrent refuses this torrent: too many duplicate file names).
    count = 20_000
    m = metainfo.parse(odd_torrent([{b"length": 1, b"path": [b"same.bin"]}] * count))
    assert [f.path[-1] for f in m.files[:3]] == ["same.bin", "same.1.bin", "same.2.bin"]
    assert m.files[-1].path[-1] == f"same.{count - 1}.bin"
    assert len({f.path for f in m.files}) == count
    assert len(m.warnings) <= 11  # a few names, then a count: bounded however many files were renamed
    assert m.warnings[-1] == f"... and {count - 1 - 10} more files renamed"


def test_renaming_that_cannot_find_free_names_cheaply_is_refused() -> None:
    # 255-byte names that differ only in their last bytes all shorten to one numbered name: each copy would
    # have to walk past every name the previous copies took. The walk is bounded, then the torrent refused.
    names = [b"x" * 252 + b"%03d" % i for i in range(300)]
    files = [{b"length": 1, b"path": [n]} for n in names for _ in range(2)]
    with pytest.raises(MetainfoError, match="too many files share"):
        metainfo.parse(odd_torrent(files))


def test_pad_bytes_counts_each_pieces_share_of_the_pad_files() -> None:
    """A pad over a piece boundary counts in both pieces; pieces without a pad count nothing."""
    pl = 100
    files = (FileEntry(("t", "a"), 150, 0), FileEntry(("t", ".pad", "130"), 130, 150, "p"),
             FileEntry(("t", "b"), 70, 280), FileEntry(("t", ".pad", "50"), 50, 350, "p"),
             FileEntry(("t", "c"), 10, 400))
    meta = Metainfo(b"i" * 20, "t", pl, b"\0" * 20 * 5, files, False)
    assert meta.payload_length == 230 and meta.total_length == 410

    class Have:
        def __init__(self, *pieces: int) -> None:
            self.pieces = set(pieces)

        def get(self, index: int) -> bool:
            return index in self.pieces

    assert meta.pad_bytes(Have(0, 1, 2, 3, 4)) == 180
    assert meta.pad_bytes(Have(1)) == 50 and meta.pad_bytes(Have(2)) == 80 and meta.pad_bytes(Have(3)) == 50
    assert meta.pad_bytes(Have(0, 4)) == 0
