"""Path sanitizing: no torrent can name a file outside the download directory."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrent.codec.paths import (
    MAX_COMPONENT_BYTES,
    numbered,
    safe_join,
    sanitize_component,
    sanitize_file_path,
    sanitize_path,
)
from torrent.core.errors import StorageError

RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)}

# --- sanitize_component ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("movie.mkv", "movie.mkv"),
        ("Ünïcødé ✓.txt", "Ünïcødé ✓.txt"),
        ("...", "..."),
        (".hidden", ".hidden"),
        ("  padded  ", "padded"),
        ("a/b", "a_b"),
        ("a\\b", "a_b"),
        ("/etc/passwd", "_etc_passwd"),
        ("x\x00y", "x_y"),
        ("tab\there", "tab_here"),
        ("line\nbreak\r", "line_break_"),
        ("del\x7f", "del_"),
    ],
)
def test_sanitize_component(raw: str, expected: str) -> None:
    assert sanitize_component(raw) == expected


@pytest.mark.parametrize("raw", ["", ".", "..", "   ", " .. ", " . "])
def test_components_that_are_dropped(raw: str) -> None:
    assert sanitize_component(raw) == ""


@pytest.mark.parametrize("raw", ["CON", "con", "Prn", "AUX", "NUL", "COM1", "com9", "LPT1", "lpt9",
                                 "CON.txt", "nul.tar.gz", "aux."])
def test_reserved_windows_names_are_prefixed(raw: str) -> None:
    assert sanitize_component(raw) == "_" + raw.strip()


@pytest.mark.parametrize("raw", ["CONSOLE", "icon", "COM10", "LPT", "con_", "xNUL", "my.con"])
def test_names_that_only_look_reserved_are_kept(raw: str) -> None:
    assert sanitize_component(raw) == raw


def test_control_characters_all_replaced() -> None:
    raw = "".join(chr(i) for i in range(0x20)) + "ok" + "\x7f"
    out = sanitize_component(raw)
    assert not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in out)
    assert "ok" in out


def test_overlong_name_keeps_short_extension() -> None:
    out = sanitize_component("a" * 300 + ".txt")
    assert len(out.encode("utf-8")) <= MAX_COMPONENT_BYTES
    assert out.endswith(".txt")
    assert out.startswith("a" * 200)


def test_overlong_multibyte_name_stays_valid_utf8() -> None:
    out = sanitize_component("é" * 200 + ".mkv")  # 404 bytes
    encoded = out.encode("utf-8")
    assert len(encoded) <= MAX_COMPONENT_BYTES
    assert out.endswith(".mkv")
    assert set(out[:-4]) == {"é"}
    assert len(encoded) >= MAX_COMPONENT_BYTES - 1  # at most one partial character dropped


def test_overlong_name_with_long_extension_is_cut_whole() -> None:
    raw = "b" * 200 + "." + "x" * 100
    out = sanitize_component(raw)
    assert len(out.encode("utf-8")) <= MAX_COMPONENT_BYTES
    assert raw.startswith(out)


def test_name_of_exactly_max_bytes_is_kept() -> None:
    raw = "c" * MAX_COMPONENT_BYTES
    assert sanitize_component(raw) == raw
    assert len(sanitize_component(raw + "c").encode()) == MAX_COMPONENT_BYTES


@given(st.text(max_size=400))
def test_sanitize_component_properties(raw: str) -> None:
    out = sanitize_component(raw)
    assert out not in (".", "..")
    assert "/" not in out and "\\" not in out and "\x00" not in out
    assert len(out.encode("utf-8")) <= MAX_COMPONENT_BYTES
    assert not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in out)
    if out:
        assert out.split(".", 1)[0].upper() not in RESERVED


# --- sanitize_path ---------------------------------------------------------------------


def test_sanitize_path_drops_empty_and_dot_components() -> None:
    assert sanitize_path(["", "a", ".", "..", "b", "  ", "c/d"]) == ("a", "b", "c_d")
    assert sanitize_path([]) == ()
    assert sanitize_path(iter(["..", ".."])) == ()


# --- sanitize_file_path: one file's path in a torrent -----------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([""], ("_",)),  # libtorrent names a file with an empty name "_"
        (["", ""], ("_", "_")),  # ... and each empty element of an all-empty path (its empty_path.torrent)
        (["", "a"], ("a",)),  # a path with a real name keeps today's meaning: empty elements dropped
        (["a", "", "b"], ("a", "b")),
        ([".."], ()),  # ".." and "." are never turned into names: the path is still refused
        (["..", ""], ()),
        (["", "."], ()),
        (["  "], ()),
        ([], ()),
        (["..", "x"], ("x",)),
    ],
)
def test_sanitize_file_path(raw: list[str], expected: tuple[str, ...]) -> None:
    assert sanitize_file_path(raw) == expected


# --- numbered: renaming a file whose path another file has ---------------------------------


@pytest.mark.parametrize(
    ("name", "n", "expected"),
    [
        ("bar.txt", 1, "bar.1.txt"),  # libtorrent's duplicate_files.torrent: foo/bar.txt -> foo/bar.1.txt
        ("bar.txt", 12, "bar.12.txt"),
        ("_", 1, "_.1"),  # its empty_path_multi.torrent: "_" -> "_.1"
        ("foo", 2, "foo.2"),
        ("a.tar.gz", 1, "a.tar.1.gz"),  # the extension is what follows the last dot, as in libtorrent
        (".bashrc", 1, ".1.bashrc"),
        ("a.", 1, "a.1."),
    ],
)
def test_numbered(name: str, n: int, expected: str) -> None:
    assert numbered(name, n) == expected


def test_numbered_long_name_stays_within_name_max_keeping_the_extension() -> None:
    name = "é" * 125 + ".mkv"  # 254 bytes: ".1" more would be 256
    out = numbered(name, 1)
    assert len(out.encode("utf-8")) <= MAX_COMPONENT_BYTES
    assert out.endswith(".1.mkv") and set(out[:-6]) == {"é"}
    assert numbered(name, 10) != out


def test_numbered_name_with_long_extension_is_cut_whole() -> None:
    name = "b" * 10 + "." + "x" * 244  # 255 bytes, the "extension" is most of it
    out = numbered(name, 7)
    assert len(out.encode("utf-8")) <= MAX_COMPONENT_BYTES
    assert out.endswith(".7") and name.startswith(out[:-2])


@given(st.text(min_size=1, max_size=300), st.integers(min_value=1, max_value=10**6))
def test_numbered_properties(raw: str, n: int) -> None:
    name = sanitize_component(raw)
    if not name:
        return
    out = numbered(name, n)
    assert out != name and out != numbered(name, n + 1)
    assert sanitize_component(out) == out  # a name the sanitizer would have produced itself
    assert len(out.encode("utf-8")) <= MAX_COMPONENT_BYTES


# --- safe_join ---------------------------------------------------------------------------


def test_safe_join_nested(tmp_path: Path) -> None:
    out = safe_join(tmp_path, ["dir", "sub", "file.bin"])
    assert out == tmp_path.resolve() / "dir" / "sub" / "file.bin"


def test_safe_join_neutralises_traversal(tmp_path: Path) -> None:
    root = tmp_path / "downloads"
    root.mkdir()
    out = safe_join(root, ["..", "..", "etc", "passwd"])
    assert out == root.resolve() / "etc" / "passwd"
    out = safe_join(root, ["/etc/passwd"])
    assert out.parent == root.resolve()


def test_safe_join_empty_path_is_refused(tmp_path: Path) -> None:
    for components in ([], [""], ["..", ".", "  "]):
        with pytest.raises(StorageError):
            safe_join(tmp_path, components)


def test_safe_join_refuses_symlink_escaping(tmp_path: Path) -> None:
    root = tmp_path / "downloads"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StorageError, match="outside"):
        safe_join(root, ["link", "file.bin"])
    (root / "filelink").symlink_to(outside / "victim")
    with pytest.raises(StorageError):
        safe_join(root, ["filelink"])


def test_safe_join_allows_symlink_staying_inside(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    out = safe_join(tmp_path, ["alias", "f"])
    assert out.resolve() == (tmp_path / "real" / "f").resolve()


def test_safe_join_works_when_the_root_itself_is_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real-root").mkdir()
    (tmp_path / "root-link").symlink_to(tmp_path / "real-root", target_is_directory=True)
    out = safe_join(tmp_path / "root-link", ["a", "b"])
    assert out == (tmp_path / "real-root").resolve() / "a" / "b"


@pytest.fixture(scope="module")
def shared_root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@settings(max_examples=200)
@given(components=st.lists(st.text(max_size=40) | st.sampled_from(["..", ".", "/", "\\", "", "/etc", "..\\.."]),
                           max_size=8))
def test_safe_join_stays_inside(shared_root: Path, components: list[str]) -> None:
    try:
        out = safe_join(shared_root, components)
    except StorageError:
        assert sanitize_path(components) == ()
        return
    base = shared_root.resolve()
    assert out.resolve().is_relative_to(base)
    assert out.resolve() != base
    assert len(out.relative_to(base).parts) == len(sanitize_path(components))
    assert ".." not in out.relative_to(base).parts
    assert os.sep not in "".join(out.relative_to(base).parts)


def test_a_name_cut_to_length_ends_in_no_blank_so_a_second_sanitizing_keeps_it(tmp_path: Path) -> None:
    # Found by fuzz/targets.py (metainfo): cut to 255 bytes just after a space, a name kept the space, which
    # the second sanitizing in safe_join strips; "a…a b…b" and "a…a" were then two files to the torrent and
    # one on disk.
    cut = sanitize_component("a" * 254 + " " + "b" * 10)
    assert cut == "a" * 254
    assert sanitize_component(cut) == cut
    name = sanitize_component("c" * 250 + "\u3000" * 3 + "d" * 9)  # ideographic spaces: blanks too
    assert safe_join(tmp_path, ["d", name]).name == name == "c" * 250
