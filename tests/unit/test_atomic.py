"""Atomic replacement of small files: the old version or the new, and never a temporary file left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from torrent.storage import atomic
from torrent.storage.atomic import atomic_write


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_creates_the_file_and_its_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.json"
    atomic_write(path, b"hello")
    assert path.read_bytes() == b"hello"
    assert listing(path.parent) == ["state.json"]


def test_replaces_content_and_accepts_str_paths(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"a much longer old content than the new one")
    atomic_write(str(path), b"new")
    assert path.read_bytes() == b"new"
    atomic_write(path, b"")
    assert path.read_bytes() == b""
    atomic_write(path, bytearray(b"\x00" * 100_000))
    assert path.read_bytes() == b"\x00" * 100_000
    assert listing(tmp_path) == ["state.json"]


def test_short_writes_are_continued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    calls = []

    def short_write(fd: int, data: bytes) -> int:
        calls.append(len(data))
        return real_write(fd, bytes(data)[:3])

    monkeypatch.setattr(atomic.os, "write", short_write)
    path = tmp_path / "f"
    atomic_write(path, b"0123456789")
    monkeypatch.undo()
    assert path.read_bytes() == b"0123456789"
    assert calls == [10, 7, 4, 1]


def test_write_error_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"old")

    def failing_write(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "write", failing_write)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, b"new content")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert listing(tmp_path) == ["state.json"]


def test_fsync_error_leaves_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        atomic_write(path, b"new")
    monkeypatch.undo()
    assert listing(tmp_path) == []


def test_a_directory_where_the_file_should_be(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.mkdir()
    (path / "inside").write_bytes(b"kept")
    with pytest.raises(OSError):
        atomic_write(path, b"new")
    assert listing(tmp_path) == ["state.json"]
    assert (path / "inside").read_bytes() == b"kept"


def test_a_file_where_the_directory_should_be(tmp_path: Path) -> None:
    (tmp_path / "dir").write_bytes(b"not a directory")
    with pytest.raises(OSError):
        atomic_write(tmp_path / "dir" / "state.json", b"new")
    assert listing(tmp_path) == ["dir"]
