"""The piece journal: records appended after each write, read back after a crash."""

from __future__ import annotations

import logging
import os
import struct
import sys
import threading
from pathlib import Path

import pytest

from torrent.storage import journal as journal_mod
from torrent.storage.journal import HEADER_SIZE, JournalRecords, PieceJournal, journal_path, read_journal

HASH = bytes(range(20))
OTHER = b"\x01" * 20
N = 1000


def opened(path: Path, *, num_pieces: int = N, info_hash: bytes = HASH, **kw: object) -> PieceJournal:
    return PieceJournal(path, info_hash, num_pieces, armed=True, **kw)  # type: ignore[arg-type]


def recorded(path: Path, *, num_pieces: int = N, info_hash: bytes = HASH, **kw: object) -> JournalRecords:
    records = read_journal(path, info_hash, num_pieces, **kw)  # type: ignore[arg-type]
    assert records is not None
    return records


def test_round_trip(tmp_path: Path) -> None:
    path = journal_path(tmp_path / "state" / "resume", HASH)
    assert path.name == HASH.hex() + ".journal"
    assert read_journal(path, HASH, N) is None  # nothing yet
    j = opened(path)
    j.append([5, 7])
    j.append([999])
    j.append([])
    j.append([5])  # written twice (re-downloaded): still one piece
    j.close()
    raw = path.read_bytes()
    assert raw[:8] == b"BTJRNL\r\n" and len(raw) == HEADER_SIZE + 4 * 4
    assert raw[HEADER_SIZE:] == struct.pack(">4I", 5, 7, 999, 5)
    records = recorded(path)
    assert records.pieces.iter_set() == [5, 7, 999] and len(records.pieces) == N
    assert records.reason is None
    assert records.last_write == os.stat(path).st_mtime_ns / 1e9
    j.append([1])  # closed: ignored
    assert recorded(path).pieces.iter_set() == [5, 7, 999]


def test_out_of_range_index_is_a_bug(tmp_path: Path) -> None:
    j = opened(tmp_path / "j")
    with pytest.raises(ValueError, match="out of range"):
        j.append([1, N])
    assert not (tmp_path / "j").exists()  # nothing written


def test_concurrent_appends_lose_and_tear_nothing(tmp_path: Path) -> None:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads, per_thread = 8, 400
        for round_ in range(20):  # each round races for the first append (open + header) too
            path = tmp_path / f"j{round_}"
            j = opened(path, num_pieces=threads * per_thread)
            start = threading.Barrier(threads)

            def work(k: int) -> None:
                mine = list(range(k, threads * per_thread, threads))
                pos, size = 0, 1
                start.wait()
                while pos < per_thread:  # batches of 1..3 records
                    j.append(mine[pos:pos + size])
                    pos, size = pos + size, size % 3 + 1

            pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            j.close()
            raw = path.read_bytes()
            values = struct.unpack(f">{(len(raw) - HEADER_SIZE) // 4}I", raw[HEADER_SIZE:])
            assert sorted(values) == list(range(threads * per_thread))  # every record once, none torn
            assert recorded(path, num_pieces=threads * per_thread).pieces.count() == threads * per_thread
    finally:
        sys.setswitchinterval(interval)


def test_truncated_last_record_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "j"
    j = opened(path)
    j.append([3, 4, 600])
    j.close()
    os.truncate(path, path.stat().st_size - 1)
    records = recorded(path)
    assert records.pieces.iter_set() == [3, 4]
    assert "truncated last record" in str(records.reason) and "\n" not in str(records.reason)
    # A new writer cuts the torn record away so its own records stay aligned.
    j = opened(path)
    j.append([9])
    j.close()
    records = recorded(path)
    assert records.pieces.iter_set() == [3, 4, 9] and records.reason is None


@pytest.mark.parametrize(("mangle", "message"), [
    (lambda raw: b"garbage!" + raw[8:], "not a piece journal"),
    (lambda raw: raw[:8] + struct.pack(">I", 2) + raw[12:], "version 2 is not supported"),
    (lambda raw: raw[:10], "too short"),
    (lambda raw: raw.replace(b"\r\n", b"\n", 1), "not a piece journal"),
])
def test_garbage_header_is_ignored_with_a_reason(tmp_path: Path, mangle: object, message: str) -> None:
    path = tmp_path / "j"
    j = opened(path)
    j.append([1, 2])
    j.close()
    path.write_bytes(mangle(path.read_bytes()))  # type: ignore[operator]
    records = recorded(path)
    assert records.pieces.none() and records.last_write is None
    assert message in str(records.reason) and str(path) in str(records.reason)


def test_out_of_range_record_ends_the_file(tmp_path: Path) -> None:
    path = tmp_path / "j"
    j = opened(path)
    j.append([1, 2])
    j.close()
    with open(path, "ab") as fh:
        fh.write(struct.pack(">3I", 3, N, 4))
    records = recorded(path)
    assert records.pieces.iter_set() == [1, 2, 3]
    assert f"names piece {N}" in str(records.reason)


@pytest.mark.parametrize(("kw", "message"), [
    ({"info_hash": OTHER}, "another torrent"),
    ({"num_pieces": N + 1}, "describes 1000 pieces"),
    ({"download_dir": "/elsewhere"}, "another download directory"),
])
def test_another_torrents_journal_is_not_believed(tmp_path: Path, kw: dict, message: str) -> None:
    path = tmp_path / "j"
    j = opened(path)
    j.append([1, 2])
    j.close()
    records = recorded(path, **kw)
    assert records.pieces.none() and records.last_write is None and message in str(records.reason)


def test_download_directory_is_part_of_the_identity(tmp_path: Path) -> None:
    path = tmp_path / "j"
    j = opened(path, download_dir=tmp_path / "dl")
    j.append([1])
    j.close()
    assert recorded(path, download_dir=tmp_path / "dl" / "x" / "..").pieces.iter_set() == [1]  # resolved
    assert recorded(path).pieces.none()  # written with a directory, read without
    assert recorded(path, download_dir=tmp_path / "other").pieces.none()


def test_a_file_longer_than_any_journal_is_refused_past_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "j"
    num_pieces = 3
    j = opened(path, num_pieces=num_pieces)
    j.append([0, 1, 2] * 10)  # 30 records: the limit
    j.append([0])  # over it: not written
    j.close()
    assert path.stat().st_size == journal_mod.max_journal_size(num_pieces)
    with open(path, "ab") as fh:
        fh.write(struct.pack(">I", 1) * 1000)
    records = recorded(path, num_pieces=num_pieces)
    assert records.pieces.iter_set() == [0, 1, 2] and "longer than a journal" in str(records.reason)


def test_records_are_dropped_until_armed_by_a_resume_save(tmp_path: Path) -> None:
    path = tmp_path / "j"
    j = PieceJournal(path, HASH, N)
    assert not j.active
    j.append([1])
    assert not path.exists()
    j.rotate()
    j.commit()  # the first resume save of this process
    assert j.active
    j.append([2])
    assert recorded(path).pieces.iter_set() == [2]
    j.discard()  # e.g. a full recheck: the resume file on disk may claim refuted pieces
    assert not j.active
    j.append([3])
    assert not path.exists()


def test_rotate_then_commit(tmp_path: Path) -> None:
    path = tmp_path / "j"
    old = tmp_path / "j.old"
    j = opened(path)
    j.append([1, 2])
    j.rotate()
    assert old.exists() and not path.exists()
    j.append([3])
    assert recorded(path).pieces.iter_set() == [1, 2, 3]  # both files are read
    j.commit()
    assert not old.exists()
    assert recorded(path).pieces.iter_set() == [3]
    j.rotate()
    j.commit()
    assert read_journal(path, HASH, N) is None
    j.rotate()  # nothing to rotate
    j.commit()
    assert sorted(os.listdir(tmp_path)) == []


def test_rotate_when_a_failed_save_left_old_records_merges_them(tmp_path: Path) -> None:
    path = tmp_path / "j"
    old = tmp_path / "j.old"
    j = opened(path)
    j.append([1, 2])
    j.rotate()
    # The resume save failed: no commit. More records, and the next snapshot.
    j.append([2, 3])
    os.utime(old, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    os.utime(path, ns=(1_000_000_005_000_000_000, 1_000_000_005_000_000_000))
    j.rotate()
    assert not path.exists()
    records = recorded(path)
    assert records.pieces.iter_set() == [1, 2, 3]
    assert old.stat().st_size == HEADER_SIZE + 3 * 4  # deduplicated
    assert records.last_write == 1_000_000_005.0  # the newest record's time, not the merge's
    j.append([4])
    j.commit()
    assert recorded(path).pieces.iter_set() == [4]
    assert os.listdir(tmp_path) == ["j"]


def test_rotate_merges_into_a_damaged_old_file(tmp_path: Path) -> None:
    path = tmp_path / "j"
    old = tmp_path / "j.old"
    old.write_bytes(b"junk")
    j = opened(path)
    j.append([7])
    j.rotate()
    records = recorded(path)
    assert records.pieces.iter_set() == [7] and records.reason is None


def test_discard_deletes_both(tmp_path: Path) -> None:
    path = tmp_path / "j"
    j = opened(path)
    j.append([1])
    j.rotate()
    j.append([2])
    j.discard()
    assert os.listdir(tmp_path) == []
    assert read_journal(path, HASH, N) is None


def test_an_unwritable_directory_disables_the_journal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "state").write_bytes(b"")  # a file where the directory should be (fails even for root)
    j = opened(tmp_path / "state" / "x.journal")
    with caplog.at_level(logging.WARNING, logger="torrent.storage.journal"):
        j.append([1])
        j.append([2])
        j.rotate()
        j.commit()
        j.discard()
    assert not j.active
    warnings = [r for r in caplog.records if "disabled" in r.getMessage()]
    assert len(warnings) == 1


def test_a_failed_write_disables_until_the_next_resume_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "j"
    j = opened(path)
    j.append([1])

    def full(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    with caplog.at_level(logging.WARNING, logger="torrent.storage.journal"):
        monkeypatch.setattr(journal_mod.os, "write", full)
        j.append([2])
        monkeypatch.undo()
        j.append([3])  # disabled: dropped, no second warning
    assert [r.getMessage() for r in caplog.records if "disabled" in r.getMessage()] == [
        f"piece journal {path} disabled: No space left on device; pieces verified from now on are rechecked "
        "after a crash, until the next resume save"]
    assert recorded(path).pieces.iter_set() == [1]
    j.rotate()
    j.commit()
    j.append([4])
    assert recorded(path).pieces.iter_set() == [4]


def test_a_short_write_leaves_a_torn_record_that_readers_and_writers_survive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "j"
    j = opened(path)
    j.append([1])
    real = os.write
    monkeypatch.setattr(journal_mod.os, "write", lambda fd, data: real(fd, data[:6]))
    j.append([2, 3])
    monkeypatch.undo()
    assert not j.active
    records = recorded(path)
    assert records.pieces.iter_set() == [1, 2]  # the torn record is dropped
    assert "truncated last record" in str(records.reason)
    fresh = opened(path)  # e.g. the next run, after its first resume save
    fresh.append([8])
    fresh.close()
    records = recorded(path)
    assert records.pieces.iter_set() == [1, 2, 8] and records.reason is None


def test_a_journal_whose_header_is_not_ours_is_started_again(tmp_path: Path) -> None:
    path = tmp_path / "j"
    j = opened(path, info_hash=OTHER)
    j.append([1])
    j.close()
    j = opened(path)
    j.append([2])
    j.close()
    records = recorded(path)
    assert records.pieces.iter_set() == [2] and records.reason is None


def test_random_bytes_never_raise(tmp_path: Path) -> None:
    import random
    rng = random.Random(7)
    path = tmp_path / "j"
    j = opened(path)
    j.append(list(range(50)))
    j.close()
    good = path.read_bytes()
    for _ in range(300):
        raw = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        path.write_bytes(raw[:rng.randint(0, len(raw))])
        records = read_journal(path, HASH, N)
        assert records is not None and len(records.pieces) == N
        assert (records.last_write is None) == records.pieces.none()
