"""The one place where paths from a torrent become paths on disk.

A torrent names files with lists of components chosen by whoever made it.
Every component passes through ``sanitize_component`` and every join
through ``safe_join``, so no torrent can make us write outside the download
directory: ``..`` and ``.`` vanish, separators and control characters are
neutralised, and the final path is checked against the real download
directory after symlinks are resolved.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from torrent.core.errors import StorageError

# Names Windows reserves; neutralised everywhere so a download directory can
# be shared with (or copied to) a Windows machine.
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"COM{i}" for i in range(1, 10)] + [f"LPT{i}" for i in range(1, 10)]
)
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]")
MAX_COMPONENT_BYTES = 255  # NAME_MAX on Linux filesystems
MAX_KEPT_EXTENSION_BYTES = 16  # a longer "extension" is part of the name, cut with it
# libtorrent's name for an empty path element; kept so that both clients write the same files.
PLACEHOLDER = "_"


def sanitize_component(component: str) -> str:
    """Make one path component safe; returns "" when it must be dropped."""
    name = _UNSAFE_CHARS.sub("_", component).strip()
    if name in ("", ".", ".."):
        return ""
    stem = name.split(".", 1)[0]
    if stem.upper() in _RESERVED:
        name = "_" + name
    return _truncate(name)


def _truncate(name: str) -> str:
    """Shorten to NAME_MAX bytes, keeping a short extension."""
    if len(name.encode("utf-8")) <= MAX_COMPONENT_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext.encode()) > MAX_KEPT_EXTENSION_BYTES:
        stem, ext = name, ""
    budget = MAX_COMPONENT_BYTES - (len(ext.encode("utf-8")) + 1 if ext else 0)
    # A cut just after a blank must not leave it at the end: sanitize_component strips blanks, so the name
    # would change when sanitized again (safe_join does) and two files of the torrent share one on disk.
    stem = stem.encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip()
    return f"{stem}.{ext}" if ext else stem


def sanitize_path(components: Iterable[str]) -> tuple[str, ...]:
    """Sanitize each component and drop the empty ones."""
    return tuple(c for c in map(sanitize_component, components) if c)


def sanitize_file_path(components: Sequence[str]) -> tuple[str, ...]:
    """The path of one file of a torrent: ``sanitize_path``, with libtorrent's name for nothing.

    A path whose every element is empty gets ``PLACEHOLDER`` for each element, as
    libtorrent names it, instead of naming no file. Anything else that sanitizes to
    nothing (``..``, ``.``, blanks) stays nothing: () means the path names no file.
    """
    path = sanitize_path(components)
    if not path and components and not any(components):
        return (PLACEHOLDER,) * len(components)
    return path


def numbered(name: str, n: int) -> str:
    """``name`` with ``.n`` before its extension (``a.txt`` → ``a.1.txt``, ``_`` → ``_.1``).

    libtorrent renames a file whose path another file or a directory already has this
    way; the extension is what follows the last dot. The result is shortened to
    MAX_COMPONENT_BYTES as ``sanitize_component`` shortens any name.
    """
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    out = f"{stem}.{n}{dot}{ext}"
    if len(out.encode("utf-8")) <= MAX_COMPONENT_BYTES:
        return out
    if len(ext.encode("utf-8")) > MAX_KEPT_EXTENSION_BYTES:
        stem, dot, ext = name, "", ""
    suffix = f".{n}{dot}{ext}"
    budget = MAX_COMPONENT_BYTES - len(suffix.encode("utf-8"))
    return stem.encode("utf-8")[:budget].decode("utf-8", "ignore") + suffix


def safe_join(root: str | os.PathLike[str], components: Iterable[str],
              resolved: dict[Path, Path] | None = None) -> Path:
    """Join sanitized components under ``root`` and prove the result stays there.

    Resolves symlinks in the existing part of the path, so a symlink planted
    inside the download directory cannot redirect a write outside it.
    ``resolved`` caches the directories already resolved, for the many files
    of one torrent (100 000 files share a few hundred directories).
    """
    parts = sanitize_path(components)
    if not parts:
        raise StorageError("a file in the torrent has an empty path")
    cache: dict[Path, Path] = {} if resolved is None else resolved
    root = Path(root)
    base = cache.get(root)
    if base is None:
        base = cache[root] = root.resolve()
    target = base.joinpath(*parts)
    parent = target.parent
    real_parent = cache.get(parent)
    if real_parent is None:
        real_parent = cache[parent] = parent.resolve()
    real = real_parent / target.name
    if os.path.islink(real):
        real = real.resolve()
    if real != base and base not in real.parents:
        raise StorageError(f"refusing to write {target}: it resolves outside {base}")
    return target
