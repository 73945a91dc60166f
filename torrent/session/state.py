"""The saved session: which torrents it holds, how each was set, and the
settings changed while it ran.

One directory (the platform's data directory, or one given for tests and a
daemon)::

    session.json              settings changed at run time (dotted key → value)
    torrents/<id>.torrent     the metainfo as added (written once)
    torrents/<id>.json        the torrent's record (save path, paused, limits, queue position, times…)
    resume/<id>.resume        fast resume: verified pieces, file states, file priorities
    resume/<id>.journal       pieces verified since that resume file was saved

One small file per torrent, each replaced atomically, so a torrent's record
is written on its own when it changes, and a corrupt or truncated file costs
that torrent alone: loading reports one warning for it and returns the rest.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torrent.core.errors import StorageError
from torrent.storage.atomic import atomic_write

FORMAT_VERSION = 1
MAX_RECORD = 4 * 1024 * 1024  # a record with thousands of edited trackers is still far below this
MAX_SESSION = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TorrentRecord:
    """How the user set one torrent up; what a restart restores."""

    id: str
    save_path: str
    added_at: float
    position: int = 0
    paused: bool = False
    forced: bool = False
    sequential: bool = False
    first_last: bool = False
    max_down: int = 0  # bytes/s, 0 = none
    max_up: int = 0
    max_peers: int = 0  # 0: the session's default
    upload_slots: int = 0  # 0: the session's default
    trackers: tuple[tuple[str, ...], ...] | None = None  # tiers as edited; None: the torrent's own
    completed_at: float | None = None
    seeding_time: float = 0.0
    magnet: str | None = None  # a torrent added by magnet link, until its metadata arrives
    peers: tuple[tuple[str, int], ...] = field(default=())  # added by the user

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["version"] = FORMAT_VERSION
        return out

    @classmethod
    def from_json(cls, data: Any) -> TorrentRecord:
        """Raises ValueError (with what is wrong) for anything but a valid record."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"format version {data.get('version')!r} is not {FORMAT_VERSION}")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                if f.default is dataclasses.MISSING:
                    raise ValueError(f"{f.name!r} is missing")
                continue
            values[f.name] = _check(f.name, data[f.name])
        return cls(**values)


def _check(name: str, value: Any) -> Any:
    """Types of record fields as JSON gives them back."""
    def fail() -> ValueError:
        return ValueError(f"{name!r} has an invalid value {str(value)[:60]!r}")

    if name in ("id", "save_path"):
        if not isinstance(value, str) or not value:
            raise fail()
        if name == "id" and (len(value) != 40 or any(c not in "0123456789abcdef" for c in value)):
            raise fail()
        return value
    if name == "magnet":
        if value is not None and not isinstance(value, str):
            raise fail()
        return value
    if name in ("paused", "forced", "sequential", "first_last"):
        if not isinstance(value, bool):
            raise fail()
        return value
    if name in ("position", "max_down", "max_up", "max_peers", "upload_slots"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise fail()
        return value
    if name in ("added_at", "seeding_time", "completed_at"):
        if value is None and name == "completed_at":
            return None
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < float("inf"):
            raise fail()  # NaN fails the comparison too
        return float(value)
    if name == "trackers":
        if value is None:
            return None
        if not isinstance(value, list) or not all(
                isinstance(tier, list) and all(isinstance(u, str) for u in tier) for tier in value):
            raise fail()
        return tuple(tuple(tier) for tier in value)
    if name == "peers":
        if not isinstance(value, list) or not all(
                isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and p[0]
                and type(p[1]) is int and 0 < p[1] < 65536 for p in value):
            raise fail()
        return tuple((p[0], p[1]) for p in value)
    raise fail()


@dataclass(frozen=True, slots=True)
class SavedTorrent:
    record: TorrentRecord
    source: bytes | None  # the .torrent as added; None for a magnet without metadata


@dataclass(frozen=True, slots=True)
class LoadedState:
    settings: dict[str, Any]  # dotted keys as saved (checked by the caller)
    torrents: tuple[SavedTorrent, ...]  # in queue order
    warnings: tuple[str, ...]  # one line per file that could not be used


class StateStore:
    """Reads and writes the session directory; every method blocks (worker thread)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.torrents_dir = self.directory / "torrents"
        self.resume_dir = self.directory / "resume"

    def record_path(self, torrent_id: str) -> Path:
        return self.torrents_dir / f"{torrent_id}.json"

    def source_path(self, torrent_id: str) -> Path:
        return self.torrents_dir / f"{torrent_id}.torrent"

    @property
    def session_path(self) -> Path:
        return self.directory / "session.json"

    # ---- loading -------------------------------------------------------------------------

    def load(self) -> LoadedState:
        warnings: list[str] = []
        settings = self._load_settings(warnings)
        torrents: list[SavedTorrent] = []
        try:
            names = sorted(os.listdir(self.torrents_dir))
        except FileNotFoundError:
            names = []
        except OSError as exc:
            warnings.append(f"cannot read {self.torrents_dir}: {exc.strerror or exc}")
            names = []
        for name in names:
            if not name.endswith(".json"):
                continue
            saved = self.load_torrent(name[:-5], warnings)
            if saved is not None:
                torrents.append(saved)
        torrents.sort(key=lambda t: (t.record.position, t.record.added_at))
        return LoadedState(settings, tuple(torrents), tuple(warnings))

    def load_torrent(self, torrent_id: str, warnings: list[str]) -> SavedTorrent | None:
        """One torrent's record and source, or None (with a warning unless it is simply absent)."""
        path = self.record_path(torrent_id)
        try:
            raw = _read(path, MAX_RECORD)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            warnings.append(f"saved torrent {path} is unusable: {_why(exc)}")
            return None
        try:
            record = TorrentRecord.from_json(json.loads(raw))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            warnings.append(f"saved torrent {path} is corrupt ({exc}); that torrent was not restored")
            return None
        if record.id != torrent_id:
            warnings.append(f"saved torrent {path} names another torrent ({record.id}); not restored")
            return None
        source = None
        try:
            source = _read(self.source_path(torrent_id), 1 << 30)
        except FileNotFoundError:
            if record.magnet is None:
                warnings.append(f"saved torrent {self.source_path(torrent_id)} is missing; "
                                "that torrent was not restored")
                return None
        except (OSError, ValueError) as exc:
            if record.magnet is None:
                warnings.append(f"saved torrent {self.source_path(torrent_id)} is unusable: {_why(exc)}; "
                                "that torrent was not restored")
                return None
        return SavedTorrent(record, source)  # a magnet's source: its metadata, once fetched

    def load_settings(self) -> tuple[dict[str, Any], list[str]]:
        """The saved run-time settings and any warning about them."""
        warnings: list[str] = []
        return self._load_settings(warnings), warnings

    def _load_settings(self, warnings: list[str]) -> dict[str, Any]:
        try:
            raw = _read(self.session_path, MAX_SESSION)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            warnings.append(f"saved session settings {self.session_path} are unusable: {_why(exc)}")
            return {}
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
                raise ValueError("not a session file of this version")
            settings = data.get("settings", {})
            if not isinstance(settings, dict):
                raise ValueError("'settings' is not an object")
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            warnings.append(f"saved session settings {self.session_path} are corrupt ({exc}); defaults used")
            return {}
        return settings

    # ---- saving --------------------------------------------------------------------------

    def save_torrent(self, record: TorrentRecord, source: bytes | None) -> None:
        """Write a torrent's record (and its source, the first time); StorageError if refused."""
        try:
            if source is not None and not self.source_path(record.id).exists():
                atomic_write(self.source_path(record.id), source)
            atomic_write(self.record_path(record.id), json.dumps(record.to_json(), indent=1).encode())
        except OSError as exc:
            raise StorageError(f"cannot save the session to {self.directory}: {exc.strerror or exc}") from exc

    def save_settings(self, settings: dict[str, Any]) -> None:
        data = {"version": FORMAT_VERSION, "settings": settings}
        try:
            atomic_write(self.session_path, json.dumps(data, indent=1, sort_keys=True).encode())
        except OSError as exc:
            raise StorageError(f"cannot save the session to {self.directory}: {exc.strerror or exc}") from exc

    def delete_torrent(self, torrent_id: str) -> None:
        for path in (self.record_path(torrent_id), self.source_path(torrent_id)):
            try:
                path.unlink()
            except FileNotFoundError:
                pass


def _read(path: Path, limit: int) -> bytes:
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise ValueError(f"{size} bytes, more than the limit of {limit}")
        return fh.read(limit + 1)


def _why(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
