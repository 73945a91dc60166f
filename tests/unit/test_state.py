"""The saved session directory: records, sources and settings; a bad file costs its torrent alone."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from torrent.core.errors import StorageError
from torrent.session.state import FORMAT_VERSION, MAX_RECORD, MAX_SESSION, StateStore, TorrentRecord

ID_A, ID_B, ID_C = "a" * 40, "b" * 40, "c0ffee" + "0" * 34
SOURCE = b"d4:infod4:name1:xee"  # the store keeps the bytes; it does not parse them


def full_record(torrent_id: str = ID_A) -> TorrentRecord:
    """Every field away from its default."""
    return TorrentRecord(
        id=torrent_id, save_path="/downloads/ü space", added_at=1_700_000_000.25, position=3, paused=True,
        forced=True, sequential=True, first_last=True, max_down=1000, max_up=2000, max_peers=7, upload_slots=2,
        trackers=(("http://t1/announce", "udp://t2:80"), ("http://t3/announce",)), completed_at=1_700_000_500.5,
        seeding_time=42.5, magnet=None, peers=(("10.0.0.1", 6881), ("2001:db8::1", 51413)))


def test_every_field_is_non_default_in_the_sample() -> None:
    record = full_record()
    for f in dataclasses.fields(TorrentRecord):
        if f.default is not dataclasses.MISSING and f.name != "magnet":
            assert getattr(record, f.name) != f.default, f.name


def test_round_trip_of_every_field(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    record = full_record()
    store.save_torrent(record, SOURCE)
    loaded = StateStore(tmp_path).load()
    assert loaded.warnings == ()
    assert len(loaded.torrents) == 1
    assert loaded.torrents[0].record == record
    assert loaded.torrents[0].source == SOURCE
    assert store.record_path(ID_A).is_file() and store.source_path(ID_A).read_bytes() == SOURCE


def test_round_trip_of_defaults_and_a_magnet_without_source(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    plain = TorrentRecord(id=ID_A, save_path="/d", added_at=5.0)
    magnet = TorrentRecord(id=ID_B, save_path="/d", added_at=6.0, position=1,
                           magnet=f"magnet:?xt=urn:btih:{ID_B}")
    store.save_torrent(plain, SOURCE)
    store.save_torrent(magnet, None)
    loaded = store.load()
    assert loaded.warnings == ()
    assert [(t.record, t.source) for t in loaded.torrents] == [(plain, SOURCE), (magnet, None)]
    assert not store.source_path(ID_B).exists()


def test_saving_again_replaces_the_record_and_keeps_the_first_source(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    record = full_record()
    store.save_torrent(record, SOURCE)
    changed = dataclasses.replace(record, paused=False, seeding_time=99.0)
    store.save_torrent(changed, b"other bytes")
    saved = store.load_torrent(ID_A, [])
    assert saved is not None and saved.record == changed and saved.source == SOURCE


def test_settings_round_trip(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert store.load_settings() == ({}, [])  # nothing saved yet
    settings = {"network.listen_port": 7000, "rates.alt_days": "sat,sun", "queue.seed_ratio": 1.5,
                "rates.alt_enabled": True}
    store.save_settings(settings)
    assert store.load_settings() == (settings, [])
    assert store.load().settings == settings
    assert json.loads(store.session_path.read_text())["version"] == FORMAT_VERSION


def test_empty_or_missing_directory_loads_nothing(tmp_path: Path) -> None:
    loaded = StateStore(tmp_path / "not there").load()
    assert (loaded.settings, loaded.torrents, loaded.warnings) == ({}, (), ())


def test_queue_order_is_restored_by_position_then_added_at(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    ids = [f"{n:02x}" * 20 for n in range(6)]
    # File names sort one way, positions another.
    positions = [4, 0, 5, 1, 3, 2]
    for torrent_id, position in zip(ids, positions, strict=True):
        store.save_torrent(TorrentRecord(id=torrent_id, save_path="/d", added_at=10.0, position=position), SOURCE)
    tie = "ff" * 20  # same position as ids[1]: the earlier added goes first
    store.save_torrent(TorrentRecord(id=tie, save_path="/d", added_at=5.0, position=0), SOURCE)
    order = [t.record.id for t in store.load().torrents]
    assert order == [tie, ids[1], ids[3], ids[5], ids[4], ids[0], ids[2]]


def test_delete_torrent(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save_torrent(full_record(ID_A), SOURCE)
    store.save_torrent(dataclasses.replace(full_record(ID_B), position=0), SOURCE)
    store.delete_torrent(ID_A)
    assert not store.record_path(ID_A).exists() and not store.source_path(ID_A).exists()
    assert [t.record.id for t in store.load().torrents] == [ID_B]
    store.delete_torrent(ID_A)  # already gone: no error
    store.delete_torrent(ID_C)  # never there
    assert store.load_torrent(ID_A, []) is None


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    for n in range(3):
        store.save_torrent(dataclasses.replace(full_record(ID_A), position=n), SOURCE)
        store.save_torrent(full_record(ID_B), None)
        store.save_settings({"network.listen_port": 7000 + n})
    found = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert found == ["session.json", f"torrents/{ID_A}.json", f"torrents/{ID_A}.torrent", f"torrents/{ID_B}.json"]


def test_save_failure_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "torrents").write_bytes(b"a file where the directory should be")
    store = StateStore(tmp_path)
    with pytest.raises(StorageError, match=str(tmp_path)):
        store.save_torrent(full_record(), SOURCE)
    (tmp_path / "session.json").mkdir()
    with pytest.raises(StorageError):
        store.save_settings({})


def test_load_torrent_of_an_absent_record_is_none_without_warning(tmp_path: Path) -> None:
    warnings: list[str] = []
    assert StateStore(tmp_path).load_torrent(ID_A, warnings) is None
    assert warnings == []


# ---- damaged files: one warning naming the file, the rest still load ----------------------------


@pytest.fixture
def three(tmp_path: Path) -> StateStore:
    store = StateStore(tmp_path)
    for position, torrent_id in enumerate((ID_A, ID_B, ID_C)):
        store.save_torrent(TorrentRecord(id=torrent_id, save_path="/d", added_at=1.0, position=position), SOURCE)
    store.save_settings({"network.listen_port": 7000})
    return store


def record_json(store: StateStore, torrent_id: str) -> dict[str, object]:
    return json.loads(store.record_path(torrent_id).read_text())


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data))


def assert_only_b_lost(store: StateStore, path: Path) -> str:
    loaded = store.load()
    assert [t.record.id for t in loaded.torrents] == [ID_A, ID_C]
    assert loaded.settings == {"network.listen_port": 7000}
    assert len(loaded.warnings) == 1, loaded.warnings
    (warning,) = loaded.warnings
    assert str(path) in warning and "\n" not in warning
    return warning


def test_corrupt_json_record(three: StateStore) -> None:
    three.record_path(ID_B).write_bytes(b"{not json at all")
    assert_only_b_lost(three, three.record_path(ID_B))


def test_truncated_record(three: StateStore) -> None:
    path = three.record_path(ID_B)
    path.write_bytes(path.read_bytes()[:30])
    assert_only_b_lost(three, path)


def test_empty_record(three: StateStore) -> None:
    three.record_path(ID_B).write_bytes(b"")
    assert_only_b_lost(three, three.record_path(ID_B))


def test_record_that_is_not_utf8(three: StateStore) -> None:
    three.record_path(ID_B).write_bytes(b'{"id": "\xff\xfe"}')
    assert_only_b_lost(three, three.record_path(ID_B))


@pytest.mark.parametrize(("name", "value"), [
    ("paused", "yes"), ("position", -1), ("position", 1.5), ("position", True), ("max_down", "10"),
    ("added_at", "yesterday"), ("added_at", False), ("completed_at", -3.0), ("save_path", ""), ("save_path", 5),
    ("trackers", "http://t/announce"), ("trackers", [["http://t", 5]]), ("peers", [["1.2.3.4"]]),
    ("peers", [["1.2.3.4", "80"]]), ("magnet", 5), ("id", "A" * 40), ("id", "a" * 39),
])
def test_record_with_a_wrong_type_or_value(three: StateStore, name: str, value: object) -> None:
    data = record_json(three, ID_B)
    data[name] = value
    write_json(three.record_path(ID_B), data)
    warning = assert_only_b_lost(three, three.record_path(ID_B))
    assert repr(name) in warning


@pytest.mark.parametrize("data", [[], "text", 5, None])
def test_record_that_is_not_an_object(three: StateStore, data: object) -> None:
    write_json(three.record_path(ID_B), data)
    assert_only_b_lost(three, three.record_path(ID_B))


def test_record_missing_a_required_field(three: StateStore) -> None:
    data = record_json(three, ID_B)
    del data["save_path"]
    write_json(three.record_path(ID_B), data)
    assert "'save_path' is missing" in assert_only_b_lost(three, three.record_path(ID_B))


@pytest.mark.parametrize("version", [None, 0, 2, "1"])
def test_record_of_another_format_version(three: StateStore, version: object) -> None:
    data = record_json(three, ID_B)
    if version is None:
        del data["version"]
    else:
        data["version"] = version
    write_json(three.record_path(ID_B), data)
    assert_only_b_lost(three, three.record_path(ID_B))


def test_unknown_fields_are_ignored(three: StateStore) -> None:
    data = record_json(three, ID_B)
    data["from_a_newer_version"] = [1, 2]
    write_json(three.record_path(ID_B), data)
    loaded = three.load()
    assert loaded.warnings == () and len(loaded.torrents) == 3


def test_record_naming_another_id(three: StateStore) -> None:
    data = record_json(three, ID_B)
    data["id"] = "d" * 40
    write_json(three.record_path(ID_B), data)
    warning = assert_only_b_lost(three, three.record_path(ID_B))
    assert "d" * 40 in warning


def test_record_copied_under_another_torrents_name(three: StateStore) -> None:
    # ID_A's record also saved as ID_B's: ID_A must not be restored twice.
    three.record_path(ID_B).write_bytes(three.record_path(ID_A).read_bytes())
    assert_only_b_lost(three, three.record_path(ID_B))


def test_missing_torrent_source(three: StateStore) -> None:
    three.source_path(ID_B).unlink()
    assert_only_b_lost(three, three.source_path(ID_B))


def test_oversized_record(three: StateStore) -> None:
    path = three.record_path(ID_B)
    with open(path, "r+b") as fh:
        fh.truncate(MAX_RECORD + 1)  # sparse: cheap
    assert "limit" in assert_only_b_lost(three, path)


def test_record_of_exactly_the_limit_is_read(three: StateStore) -> None:
    path = three.record_path(ID_B)
    raw = path.read_bytes()
    path.write_bytes(raw + b" " * (MAX_RECORD - len(raw)))
    loaded = three.load()
    assert loaded.warnings == () and len(loaded.torrents) == 3


def test_oversized_torrent_source(three: StateStore) -> None:
    path = three.source_path(ID_B)
    with open(path, "r+b") as fh:
        fh.truncate((1 << 30) + 1)  # sparse: cheap
    assert_only_b_lost(three, path)


def test_record_that_is_a_directory(three: StateStore) -> None:
    path = three.record_path(ID_B)
    path.unlink()
    path.mkdir()
    assert_only_b_lost(three, path)


def test_stray_files_in_the_torrents_directory_are_ignored(three: StateStore) -> None:
    (three.torrents_dir / f"{ID_B}.json.x1y2.tmp").write_bytes(b"half a rec")
    (three.torrents_dir / "notes.txt").write_bytes(b"hello")
    loaded = three.load()
    assert loaded.warnings == () and len(loaded.torrents) == 3


def test_several_damaged_records_give_one_warning_each(three: StateStore) -> None:
    three.record_path(ID_A).write_bytes(b"[")
    three.source_path(ID_C).unlink()
    loaded = three.load()
    assert [t.record.id for t in loaded.torrents] == [ID_B]
    assert len(loaded.warnings) == 2
    assert str(three.record_path(ID_A)) in loaded.warnings[0]
    assert str(three.source_path(ID_C)) in loaded.warnings[1]


@pytest.mark.parametrize("content", [
    b"{broken", b"", b"[]", b'{"version": 2, "settings": {}}', b'{"version": 1, "settings": []}', b"\xff\xfe\x00",
])
def test_corrupt_session_file(three: StateStore, content: bytes) -> None:
    three.session_path.write_bytes(content)
    loaded = three.load()
    assert loaded.settings == {}
    assert [t.record.id for t in loaded.torrents] == [ID_A, ID_B, ID_C]
    assert len(loaded.warnings) == 1 and str(three.session_path) in loaded.warnings[0]
    settings, warnings = three.load_settings()
    assert settings == {} and len(warnings) == 1 and str(three.session_path) in warnings[0]


def test_oversized_session_file(three: StateStore) -> None:
    with open(three.session_path, "r+b") as fh:
        fh.truncate(MAX_SESSION + 1)
    loaded = three.load()
    assert loaded.settings == {} and len(loaded.torrents) == 3
    assert len(loaded.warnings) == 1 and str(three.session_path) in loaded.warnings[0]


# ---- known bugs ----------------------------------------------------------------------------------

DEEP = b"[" * 100_000  # 100 kB, far below MAX_RECORD: json.loads raises RecursionError, not ValueError


def test_deeply_nested_record_costs_that_torrent_alone(three: StateStore) -> None:
    three.record_path(ID_B).write_bytes(DEEP)
    assert_only_b_lost(three, three.record_path(ID_B))


def test_deeply_nested_session_file_gives_a_warning(three: StateStore) -> None:
    three.session_path.write_bytes(DEEP)
    settings, warnings = three.load_settings()
    assert settings == {} and len(warnings) == 1


@pytest.mark.parametrize("name", ["added_at", "seeding_time", "completed_at"])
def test_non_finite_times_are_rejected(name: str) -> None:
    data = full_record().to_json()
    data[name] = float("nan")
    with pytest.raises(ValueError, match=name):
        TorrentRecord.from_json(json.loads(json.dumps(data)))


@pytest.mark.parametrize("port", [70000, -1, 0, True])
def test_peer_ports_out_of_range_are_rejected(port: object) -> None:
    data = full_record().to_json()
    data["peers"] = [["10.0.0.1", port]]
    with pytest.raises(ValueError, match="peers"):
        TorrentRecord.from_json(json.loads(json.dumps(data)))
