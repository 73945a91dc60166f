"""Fast resume: the file format, atomic saving, and when resume data is trusted."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrent.codec import bencoding
from torrent.storage import resume
from torrent.core.bitfield import Bitfield
from torrent.core.errors import StorageError
from torrent.codec.metainfo import FileEntry, Metainfo
from torrent.storage.resume import ResumeData, ResumeError
from torrent.storage.files import FileState, Storage
from torrent.storage.journal import JournalRecords, PieceJournal, journal_path, read_journal

Spec = Sequence[tuple[str, int] | tuple[str, int, str]]
PL = 1024
SPEC: Spec = [("a", 3000), ("b", 2000), (".pad/0", 120, "p"), ("c", 5000), ("empty", 0), ("d", 1500)]


def make_torrent(spec: Spec, piece_length: int = PL, *, seed: int = 1) -> tuple[Metainfo, bytes]:
    rng = random.Random(seed)
    entries, chunks, offset = [], [], 0
    for item in spec:
        path, length, attr = (*item, "")[:3]
        entries.append(FileEntry(("t", *path.split("/")), length, offset, attr))
        chunks.append(bytes(length) if "p" in attr else rng.randbytes(length))
        offset += length
    data = b"".join(chunks)
    pieces = b"".join(hashlib.sha1(data[i:i + piece_length]).digest() for i in range(0, len(data), piece_length))
    meta = Metainfo(info_hash=hashlib.sha1(pieces).digest(), name="t", piece_length=piece_length,
                    pieces=pieces, files=tuple(entries), multi_file=True)
    return meta, data


def download(store: Storage, data: bytes, pieces: Sequence[int] | None = None) -> Bitfield:
    meta = store.metainfo
    have = Bitfield(meta.num_pieces)
    for i in range(meta.num_pieces) if pieces is None else pieces:
        start, end = meta.geometry.piece_span(i)
        assert store.verify_and_write_sync(i, data[start:end])
        have.set(i)
    store.create_empty_files()
    return have


def sample(meta: Metainfo, **kw: object) -> ResumeData:
    have = Bitfield(meta.num_pieces)
    for i in range(0, meta.num_pieces, 3):
        have.set(i)
    files = tuple(None if f.is_padding else FileState(f.length, 1_700_000_000_123_456_789 + i)
                  for i, f in enumerate(meta.files))
    fields: dict[str, object] = {
        "info_hash": meta.info_hash, "num_pieces": meta.num_pieces, "have": have.to_bytes(), "files": files,
        "download_dir": "/srv/dl/ünï\udcff", "uploaded": 123, "downloaded": 4567,
        "priorities": tuple(i % 8 for i in range(len(meta.files))), "saved_at": 1_700_000_000}
    fields.update(kw)
    return ResumeData(**fields)  # type: ignore[arg-type]


# --- format ---------------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    meta, _ = make_torrent(SPEC)
    data = sample(meta)
    assert resume.decode(resume.encode(data), metainfo=meta) == data
    path = resume.resume_path(tmp_path / "state", meta.info_hash)
    assert path.name == meta.info_hash.hex() + ".resume"
    resume.save(path, data)
    assert resume.load(path, metainfo=meta) == data
    assert resume.load(path) == data  # without a torrent to compare with
    assert data.bitfield().iter_set() == list(range(0, meta.num_pieces, 3))
    assert os.listdir(path.parent) == [path.name]  # no temporary left behind


def test_saving_again_replaces(tmp_path: Path) -> None:
    meta, _ = make_torrent(SPEC)
    path = tmp_path / "x.resume"
    resume.save(path, sample(meta, uploaded=1))
    resume.save(path, sample(meta, uploaded=2))
    assert resume.load(path).uploaded == 2  # type: ignore[union-attr]


def test_missing_file_is_not_a_warning(tmp_path: Path) -> None:
    assert resume.load_or_reason(tmp_path / "none.resume") == "no resume file"
    assert resume.load(tmp_path / "none.resume") is None


@pytest.mark.parametrize("mangle", [
    lambda raw: raw[:-1],
    lambda raw: raw[: len(raw) // 2],
    lambda raw: b"",
    lambda raw: b"garbage",
    lambda raw: raw + b"x",
    lambda raw: raw.replace(b"7:versioni2e", b"7:versioni9e"),
    lambda raw: raw.replace(b"9:info-hash20:", b"9:info-hash19:")[:-1],
    lambda raw: bencoding.encode([1, 2]),
])
def test_corrupt_file_is_none_with_a_reason(tmp_path: Path, mangle: object) -> None:
    meta, _ = make_torrent(SPEC)
    path = tmp_path / "x.resume"
    path.write_bytes(mangle(resume.encode(sample(meta))))  # type: ignore[operator]
    reason = resume.load_or_reason(path, metainfo=meta)
    assert isinstance(reason, str) and str(path) in reason and "\n" not in reason
    assert resume.load(path, metainfo=meta) is None


def test_unknown_version_is_named(tmp_path: Path) -> None:
    meta, _ = make_torrent(SPEC)
    raw = resume.encode(sample(meta)).replace(b"7:versioni2e", b"7:versioni3e")
    with pytest.raises(ResumeError, match="version 3 is not supported"):
        resume.decode(raw)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("info_hash", b"\x01" * 20, "another torrent"),
    ("num_pieces", 3, "the torrent has"),
    ("files", (None,), "the torrent has"),
])
def test_data_for_another_torrent_is_refused(field: str, value: object, message: str) -> None:
    meta, _ = make_torrent(SPEC)
    kw: dict[str, object] = {field: value}
    if field == "num_pieces":
        kw["have"] = b"\0"
    if field == "files":
        kw["priorities"] = ()
    raw = resume.encode(sample(meta, **kw))
    resume.decode(raw)  # well-formed on its own
    with pytest.raises(ResumeError, match=message):
        resume.decode(raw, metainfo=meta)


@pytest.mark.parametrize(("key", "value", "message"), [
    (b"pieces", b"\xff" * 4, "bad piece bitfield"),
    (b"files", b"\0" * 17, "not a multiple of 16"),
    (b"priorities", b"\0", "priorities for"),
    (b"uploaded", -1, "out-of-range"),
    (b"download dir", 5, "invalid 'download dir'"),
])
def test_invalid_fields(key: bytes, value: object, message: str) -> None:
    meta, _ = make_torrent(SPEC)
    top = bencoding.decode(resume.encode(sample(meta)))
    top[key] = value
    with pytest.raises(ResumeError, match=message):
        resume.decode(bencoding.encode(top))


def test_oversized_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    meta, _ = make_torrent(SPEC)
    path = tmp_path / "x.resume"
    raw = resume.encode(sample(meta))
    with open(path, "wb") as fh:
        fh.write(raw)
        fh.truncate(resume.MAX_RESUME_SIZE + 1)  # sparse: cheap however large
    reason = resume.load_or_reason(path)
    assert isinstance(reason, str) and "more than the limit" in reason
    limit = resume.max_resume_size(meta)
    assert limit < resume.MAX_RESUME_SIZE
    os.truncate(path, limit + 1)
    assert "more than the limit" in str(resume.load_or_reason(path, metainfo=meta))
    with pytest.raises(ResumeError, match="more than the limit"):
        resume.decode(raw + bytes(limit), metainfo=meta)


def test_size_limit_grows_with_the_torrent() -> None:
    files = tuple(FileEntry(("t", f"f{i}"), 1, i) for i in range(300_000))
    meta = Metainfo(b"h" * 20, "t", 16384, bytes(20) * 19, files, True)
    data = ResumeData(meta.info_hash, meta.num_pieces, bytes(3), tuple(FileState(1, i) for i in range(300_000)),
                      "/dl", priorities=(1,) * 300_000)
    raw = resume.encode(data)
    assert len(raw) > resume.MAX_RESUME_SIZE
    start = time.perf_counter()
    assert resume.decode(raw, metainfo=meta) == data
    assert time.perf_counter() - start < 2


_META, _ = make_torrent(SPEC)
_RAW = resume.encode(sample(_META))


@given(st.binary(max_size=2000))
def test_random_bytes_as_a_resume_file_load_as_none(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "x.resume"
    path.write_bytes(raw)
    assert resume.load(path) is None
    assert resume.load(path, metainfo=_META) is None


_KEYS = [b"version", b"info-hash", b"num pieces", b"pieces", b"files", b"priorities", b"download dir",
         b"uploaded", b"downloaded", b"saved at", b"other"]
_VALUES = st.recursive(st.one_of(st.integers(-2, 1 << 65), st.binary(max_size=40)),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.binary(max_size=4), inner,
                                                                                   max_size=3), max_leaves=5)


@given(st.dictionaries(st.sampled_from(_KEYS), _VALUES))
def test_well_formed_bencode_with_wrong_fields_is_a_resume_error(top: dict[bytes, object]) -> None:
    base = bencoding.decode(_RAW)
    base.update(top)
    try:
        resume.decode(bencoding.encode(base), metainfo=_META)
    except ResumeError:
        pass


@given(st.lists(st.tuples(st.integers(0, len(_RAW) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_resume_files_never_raise(tmp_path_factory: pytest.TempPathFactory,
                                          edits: list[tuple[int, int]]) -> None:
    raw = bytearray(_RAW)
    for pos, byte in edits:
        raw[pos] = byte
    path = tmp_path_factory.mktemp("fuzz") / "x.resume"
    path.write_bytes(raw)
    result = resume.load_or_reason(path, metainfo=_META)
    assert isinstance(result, (str, ResumeData))


# --- atomic save ----------------------------------------------------------------------


_CRASH_CHILD = r"""
import os, sys
from torrent.storage import resume
old = resume.load(sys.argv[1])
new = old.__class__(**{**{f: getattr(old, f) for f in old.__slots__}, "uploaded": 999})
os.replace = lambda *a: os._exit(3)  # the power goes out between the temporary file and the rename
resume.save(sys.argv[1], new)
"""


def test_crash_before_replace_leaves_the_old_file_valid(tmp_path: Path) -> None:
    meta, _ = make_torrent(SPEC)
    path = tmp_path / "x.resume"
    old = sample(meta)
    resume.save(path, old)
    proc = subprocess.run([sys.executable, "-c", _CRASH_CHILD, str(path)], check=False, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 3, proc.stderr
    leftovers = [p.name for p in tmp_path.iterdir() if p != path]
    assert len(leftovers) == 1 and leftovers[0].endswith(".tmp")  # the crashed attempt, complete but unused
    assert resume.load(path, metainfo=meta) == old
    resume.save(path, sample(meta, uploaded=5))
    assert resume.load(path, metainfo=meta).uploaded == 5  # type: ignore[union-attr]


def test_failed_save_raises_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meta, _ = make_torrent(SPEC)
    path = tmp_path / "x.resume"
    resume.save(path, sample(meta))

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(resume.os, "fsync", fail)
    with pytest.raises(StorageError, match="^cannot save resume data to .*: No space left on device$"):
        resume.save(path, sample(meta, uploaded=7))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["x.resume"]
    assert resume.load(path, metainfo=meta) == sample(meta)


# --- trusting it ----------------------------------------------------------------------


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Metainfo, bytes, Storage, ResumeData]:
    """A torrent downloaded except pieces 1 and 7, with resume data saved."""
    meta, data = make_torrent(SPEC)
    store = Storage(meta, tmp_path / "dl")
    have = download(store, data, [i for i in range(meta.num_pieces) if i not in (1, 7)])
    store.sync()
    return meta, data, store, resume.snapshot(store, have, uploaded=10, downloaded=20)


def test_unchanged_files_are_trusted_without_hashing(seeded: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    meta, _, store, data = seeded
    plan = resume.trusted_pieces(data, meta, store.file_states(), download_dir=store.root)
    assert plan is not None and plan.recheck.none() and plan.changed_files == ()
    assert plan.trusted == data.bitfield()
    monkeypatch.setattr(store, "check_existing", lambda *a, **k: pytest.fail("nothing should be hashed"))
    restored = resume.restore(store, data)
    assert restored.have == data.bitfield() and restored.checked == 0
    assert restored.reason.startswith("resume data trusted")


def test_changed_mtime_rechecks_that_files_pieces(seeded: tuple) -> None:
    meta, _, store, data = seeded
    c = {f.path[-1]: i for i, f in enumerate(meta.files)}["c"]
    path = store.paths[c]
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    plan = resume.trusted_pieces(data, meta, store.file_states())
    assert plan is not None and plan.changed_files == (c,)
    pieces_c = set(meta.geometry.file_pieces(c))
    assert set(plan.recheck.iter_set()) == pieces_c  # claimed or not (7 is in c)
    assert set(plan.trusted.iter_set()) == set(data.bitfield().iter_set()) - pieces_c
    restored = resume.restore(store, data)
    assert restored.have == data.bitfield() and restored.checked == len(pieces_c)
    assert "1 files changed" in restored.reason


def test_changed_size_rechecks_and_loses_the_damaged_pieces(seeded: tuple) -> None:
    meta, _, store, data = seeded
    a = 0
    os.truncate(store.paths[a], 1000)
    plan = resume.trusted_pieces(data, meta, store.file_states())
    assert plan is not None and plan.changed_files == (a,)
    restored = resume.restore(store, data)
    expected = set(data.bitfield().iter_set()) - {0, 1, 2}  # a is 3000 bytes: pieces 0..2, 1000 bytes left
    assert set(restored.have.iter_set()) == expected


def test_a_deleted_file_makes_its_pieces_absent(seeded: tuple) -> None:
    meta, _, store, data = seeded
    d = len(meta.files) - 1
    store.paths[d].unlink()
    restored = resume.restore(store, data)
    assert set(restored.have.iter_set()) == set(data.bitfield().iter_set()) - set(meta.geometry.file_pieces(d))


def test_a_file_that_gained_data_is_rechecked_too(tmp_path: Path) -> None:
    """The resume file said nothing of c; the user copied c in since: its pieces are
    found, except the one it shares with d (d's part of it was never written)."""
    meta, data = make_torrent(SPEC)
    store = Storage(meta, tmp_path / "dl")
    c = 3
    others = [i for i in range(meta.num_pieces) if not set(meta.geometry.file_pieces(c)) & {i}]
    have = download(store, data, others)
    saved = resume.snapshot(store, have)
    assert saved.files[c] is None
    store.paths[c].write_bytes(data[meta.files[c].offset:meta.files[c].offset + meta.files[c].length])
    restored = resume.restore(store, saved)
    assert meta.geometry.file_pieces(c) == range(5, 10) and meta.geometry.file_pieces(c + 2) == range(9, 12)
    assert restored.have.iter_set() == [i for i in range(meta.num_pieces) if i != 9]


def test_claimed_piece_on_a_missing_file_is_not_trusted(seeded: tuple) -> None:
    """A resume file claiming data in a file recorded as absent is inconsistent: recheck."""
    meta, _, store, data = seeded
    d = len(meta.files) - 1
    store.paths[d].unlink()
    files = list(data.files)
    files[d] = None
    forged = ResumeData(data.info_hash, data.num_pieces, data.have, tuple(files), data.download_dir)
    plan = resume.trusted_pieces(forged, meta, store.file_states())
    assert plan is not None and plan.changed_files == ()
    claimed_in_d = set(meta.geometry.file_pieces(d)) & set(data.bitfield().iter_set())
    assert set(plan.recheck.iter_set()) == claimed_in_d and not claimed_in_d & set(plan.trusted.iter_set())


def test_full_recheck_cases(seeded: tuple, tmp_path: Path) -> None:
    meta, _, store, data = seeded
    states = store.file_states()
    assert resume.trusted_pieces(None, meta, states) is None
    assert resume.trusted_pieces(data, meta, states, download_dir=tmp_path / "elsewhere") is None
    other = ResumeData(b"\x02" * 20, data.num_pieces, data.have, data.files, data.download_dir)
    assert resume.trusted_pieces(other, meta, states) is None
    restored = resume.restore(store, None)
    assert restored.have == data.bitfield() and restored.checked == meta.num_pieces
    assert restored.reason.startswith("full recheck (no usable resume data)")
    assert resume.restore(store, other).reason.startswith("full recheck (resume data does not match)")


def test_recheck_flag_hashes_everything_and_catches_silent_corruption(seeded: tuple) -> None:
    meta, data_bytes, store, data = seeded
    with open(store.paths[3], "r+b") as fh:  # same size, mtime restored: resume cannot notice
        st = os.fstat(fh.fileno())
        fh.seek(10)
        fh.write(bytes([data_bytes[meta.files[3].offset + 10] ^ 1]))
    os.utime(store.paths[3], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert resume.restore(store, data).have == data.bitfield()  # trusted, as documented
    restored = resume.restore(store, data, recheck=True)
    bad = (meta.files[3].offset + 10) // PL
    assert set(restored.have.iter_set()) == set(data.bitfield().iter_set()) - {bad}
    assert restored.reason.startswith("full recheck (recheck requested)")


def test_complete_torrent_goes_straight_to_seeding(tmp_path: Path) -> None:
    meta, data = make_torrent(SPEC)
    store = Storage(meta, tmp_path / "dl")
    have = download(store, data)
    saved = resume.snapshot(store, have)
    path = resume.resume_path(tmp_path / "state", meta.info_hash)
    resume.save(path, saved)
    store.close()
    fresh = Storage(meta, tmp_path / "dl")
    assert resume.restore(fresh, resume.load(path, metainfo=meta)).have.all()
    path.unlink()
    assert resume.restore(fresh, resume.load(path, metainfo=meta)).have.all()  # no resume: verified instead


# --- file priorities ------------------------------------------------------------------


def test_priorities_are_saved_with_the_snapshot(seeded: tuple, tmp_path: Path) -> None:
    meta, _, store, data = seeded
    priorities = (0, 7, 1, 255, 0, 3)  # 0: skip; the pad file's entry is kept in place
    snap = resume.snapshot(store, data.bitfield(), priorities=priorities)
    path = tmp_path / "p.resume"
    resume.save(path, snap)
    assert resume.load(path, metainfo=meta).priorities == priorities  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="5 file priorities for 6 files"):
        resume.snapshot(store, data.bitfield(), priorities=priorities[:5])
    with pytest.raises(ValueError, match="priority 256 is not in 0..255"):
        resume.snapshot(store, data.bitfield(), priorities=(1, 1, 1, 256, 1, 1))
    with pytest.raises(ValueError, match="priority -1"):
        resume.encode(sample(meta, priorities=(1, 1, 1, -1, 1, 1)))


# --- the piece journal ----------------------------------------------------------------
#
# SPEC's pieces (PL = 1024): a 0-2, b 2-4, the pad file in 4, c 5-9, d 9-11 (piece 11 is
# 356 bytes). Files are aged before a snapshot, so a later write always changes an mtime.

A, B, C, D = 0, 1, 3, 5
LAST = 11620 - 11 * PL


def age(store: Storage, seconds: int = 100) -> None:
    """Every file on disk modified ``seconds`` ago."""
    for path in store.paths:
        if path is not None and path.exists():
            st = path.stat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - seconds * 1_000_000_000))


def write(store: Storage, data: bytes, pieces: Sequence[int]) -> None:
    geo = store.metainfo.geometry
    assert store.verify_and_write_many([(i, data[slice(*geo.piece_span(i))]) for i in pieces]) == [True] * len(pieces)


def set_mtime(path: Path, ns: int) -> None:
    os.utime(path, ns=(ns, ns))


class Run:
    """A torrent with resume data saved after ``saved`` pieces, then ``journaled``
    pieces written and recorded, then ``unrecorded`` pieces written when the
    process is killed."""

    def __init__(self, tmp_path: Path, saved: Sequence[int] | None, journaled: Sequence[int],
                 unrecorded: Sequence[int] = ()) -> None:
        self.meta, self.data = make_torrent(SPEC)
        self.store = Storage(self.meta, tmp_path / "dl")
        self.path = journal_path(tmp_path / "state", self.meta.info_hash)
        self.resume: ResumeData | None = None
        if saved is not None:
            have = download(self.store, self.data, saved)
            age(self.store)
            self.resume = resume.snapshot(self.store, have)
        journal = PieceJournal(self.path, self.meta.info_hash, self.meta.num_pieces, armed=True)
        for i in journaled:
            write(self.store, self.data, [i])
            journal.append([i])
        write(self.store, self.data, unrecorded)
        journal.close()

    def records(self) -> JournalRecords:
        records = read_journal(self.path, self.meta.info_hash, self.meta.num_pieces)
        assert records is not None and records.last_write_ns is not None
        return records

    def restore(self, *, journal: bool = True, recheck: bool = False) -> resume.Restored:
        seen: list[int] = []
        restored = resume.restore(self.store, self.resume, journal=self.records() if journal else None,
                                  progress=seen.append, recheck=recheck)
        assert restored.hashed == sum(seen)
        return restored

    def file(self, index: int) -> Path:
        path = self.store.paths[index]
        assert path is not None
        return path


def test_half_written_file_rehashes_only_unrecorded_pieces(tmp_path: Path) -> None:
    """c had pieces 5-6 at the save; 7 was recorded since; 8 was written but the kill
    came before its record. Only c's unrecorded pieces (8, 9) are hashed."""
    run = Run(tmp_path, saved=range(7), journaled=[7], unrecorded=[8])
    restored = run.restore()
    assert restored.have.iter_set() == list(range(9))
    # 9 lies in a hole of c (never written): not read, beyond the filesystem block it shares with 8.
    assert restored.checked == 2 and PL <= restored.hashed <= 2 * PL and restored.refuted == 0
    assert restored.reason == ("1 files changed since the resume data was saved (1 by our own writes, per the "
                               "journal): trusted 8 pieces (1 from the journal), rechecked 2 pieces, 9 of 12 verified")
    # Without the journal, the same files cost the whole of c.
    without = run.restore(journal=False)
    assert without.have == restored.have and without.checked == 5 and 4 * PL <= without.hashed <= 5 * PL


def test_unchanged_files_hash_nothing_and_trust_the_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Piece 3 was written before the snapshot looked at the files but after it took the
    bitfield; the journal recorded it. Every file is as recorded: nothing is hashed."""
    run = Run(tmp_path, saved=None, journaled=[])
    have = download(run.store, run.data, [i for i in range(12) if i not in (1, 7)])
    journal = PieceJournal(run.path, run.meta.info_hash, run.meta.num_pieces, armed=True)
    journal.append([3])
    age(run.store)
    have.clear(3)
    run.resume = resume.snapshot(run.store, have)
    monkeypatch.setattr(run.store, "check_existing", lambda *a, **k: pytest.fail("nothing should be hashed"))
    restored = run.restore()
    assert restored.have.iter_set() == [i for i in range(12) if i not in (1, 7)]
    assert restored.checked == 0 and restored.hashed == 0
    assert restored.reason == "resume data trusted: 10 of 12 pieces (1 from the journal)"


@pytest.mark.parametrize(("after_ns", "checked", "read"), [
    (0, 2, 1),
    (1_900_000_000, 2, 1),  # within the slack: a kill between a write and its record
    (2_100_000_000, 5, 4),  # beyond it: someone else changed c
])
def test_a_file_modified_after_the_journal_is_rechecked_whole(tmp_path: Path, after_ns: int, checked: int,
                                                              read: int) -> None:
    run = Run(tmp_path, saved=range(7), journaled=[7], unrecorded=[8])
    set_mtime(run.file(C), run.records().last_write_ns + after_ns)  # type: ignore[operator]
    restored = run.restore()
    assert restored.have.iter_set() == list(range(9))  # 8 is found either way
    assert restored.checked == checked and read * PL <= restored.hashed <= checked * PL  # holes are not read


@pytest.mark.parametrize("change", ["older", "size"])
def test_a_file_changed_otherwise_is_rechecked_whole(tmp_path: Path, change: str) -> None:
    run = Run(tmp_path, saved=range(7), journaled=[7])
    c = run.file(C)
    if change == "older":  # e.g. restored from a backup: older than the resume record
        assert run.resume is not None and run.resume.files[C] is not None
        set_mtime(c, run.resume.files[C].mtime_ns - 1)
    else:  # appended to: a size no write of ours makes
        with open(c, "ab") as fh:
            fh.write(b"x")
    restored = run.restore()
    assert restored.checked == 5 and 3 * PL <= restored.hashed <= 5 * PL  # holes of c are not read
    assert restored.have.iter_set() == list(range(8))
    assert "1 by our own writes" not in restored.reason


def test_a_file_created_since_the_save_trusts_its_records(tmp_path: Path) -> None:
    """d did not exist at the save; the journal recorded all of it since."""
    run = Run(tmp_path, saved=range(9), journaled=[9, 10, 11])
    assert run.resume is not None and run.resume.files[D] is None
    restored = run.restore()
    assert restored.have.all() and restored.checked == 0 and restored.hashed == 0 and restored.refuted == 0
    assert restored.reason == "resume data trusted: 12 of 12 pieces (3 from the journal)"


def test_a_piece_is_trusted_only_if_every_file_it_touches_allows_it(tmp_path: Path) -> None:
    """Piece 9 spans c (changed by us) and d (changed after the journal): d's pieces
    are rechecked whole, 9 with them, though the journal recorded 9."""
    run = Run(tmp_path, saved=range(7), journaled=[7, 8, 9, 10, 11])
    set_mtime(run.file(D), run.records().last_write_ns + 10_000_000_000)  # type: ignore[operator]
    restored = run.restore()
    assert restored.have.all()
    assert restored.checked == 3 and restored.hashed == 2 * PL + LAST


def test_resume_claims_on_a_file_recorded_absent_are_not_believed(tmp_path: Path) -> None:
    """The resume data claims piece 7 of c but recorded c absent (inconsistent); c was
    created since by our write of 5: 7 is rechecked, and it is not there."""
    run = Run(tmp_path, saved=range(5), journaled=[5])
    assert run.resume is not None and run.resume.files[C] is None
    forged = run.resume.bitfield()
    forged.set(7)
    run.resume = ResumeData(**{**{f: getattr(run.resume, f) for f in ResumeData.__slots__},  # type: ignore[arg-type]
                               "have": forged.to_bytes()})
    restored = run.restore()
    assert restored.have.iter_set() == list(range(6))
    assert restored.checked == 4  # 6, 7, 8, 9
    assert restored.refuted == 1  # the resume file on disk claims 7: save before journaling


def test_journal_claims_on_a_missing_file_are_rechecked(tmp_path: Path) -> None:
    run = Run(tmp_path, saved=range(9), journaled=[])
    PieceJournal(run.path, run.meta.info_hash, run.meta.num_pieces, armed=True).append([10])  # d never written
    restored = run.restore()
    assert restored.have.iter_set() == list(range(9))
    assert restored.checked == 1 and restored.hashed == 0 and restored.refuted == 1  # no file, nothing to read


def test_journal_only_restart(tmp_path: Path) -> None:
    """Killed before the first resume save: a, b and c (created by the writes, at full
    length) trust the journal; c's unrecorded pieces and missing d are rechecked."""
    run = Run(tmp_path, saved=None, journaled=range(7))
    restored = run.restore()
    assert restored.have.iter_set() == list(range(7))
    # 7, 8, 9: holes of c (read only where they share a filesystem block with data); 10, 11: no d.
    assert restored.checked == 5 and restored.hashed <= 3 * PL
    assert restored.reason.startswith("no resume data; journal of 7 pieces: 3 files written by us since, "
                                      "1 files rechecked whole: trusted 7 pieces (7 from the journal)")


def test_journal_only_restart_rechecks_a_file_touched_since(tmp_path: Path) -> None:
    run = Run(tmp_path, saved=None, journaled=range(12))
    set_mtime(run.file(A), run.records().last_write_ns + 3_000_000_000)  # type: ignore[operator]
    restored = run.restore()
    assert restored.have.all()
    assert restored.checked == 3 and restored.hashed == 3 * PL  # a: 0, 1, 2 (2 is shared with b)


def test_journal_only_restart_with_a_short_file(tmp_path: Path) -> None:
    run = Run(tmp_path, saved=None, journaled=range(12))
    os.truncate(run.file(C), 100)
    restored = run.restore()
    assert restored.have.iter_set() == [0, 1, 2, 3, 4, 10, 11]
    assert restored.checked == 5


def test_recheck_ignores_resume_data_and_journal(tmp_path: Path) -> None:
    run = Run(tmp_path, saved=range(7), journaled=[7], unrecorded=[8])
    c = run.file(C)
    st = c.stat()
    with open(c, "r+b") as fh:  # silent damage to journaled piece 7, mtime kept: trusted without recheck
        fh.seek(7 * PL - 5120)
        byte = fh.read(1)[0]
        fh.seek(7 * PL - 5120)
        fh.write(bytes([byte ^ 1]))
    os.utime(c, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert run.restore().have.iter_set() == list(range(9))
    restored = run.restore(recheck=True)
    assert restored.have.iter_set() == [0, 1, 2, 3, 4, 5, 6, 8]
    assert restored.refuted == 1  # 7, claimed by the journal
    assert restored.checked == 12 and 9 * PL <= restored.hashed <= 10 * PL  # 10, 11: d does not exist
    assert restored.reason.startswith("full recheck (recheck requested)") and "journal" not in restored.reason


def test_journal_ignored_when_the_resume_data_does_not_match(tmp_path: Path) -> None:
    run = Run(tmp_path, saved=range(7), journaled=[7])
    assert run.resume is not None
    run.resume = ResumeData(**{**{f: getattr(run.resume, f) for f in ResumeData.__slots__},  # type: ignore[arg-type]
                               "download_dir": str(tmp_path / "elsewhere")})
    restored = run.restore()
    assert restored.checked == 12 and restored.have.iter_set() == list(range(8))
    assert restored.reason.startswith("full recheck (resume data does not match; journal ignored)")


def test_a_journal_for_another_piece_count_is_ignored(tmp_path: Path) -> None:
    run = Run(tmp_path, saved=range(7), journaled=[7])
    records = JournalRecords(Bitfield(13), run.records().last_write)
    restored = resume.restore(run.store, run.resume, journal=records)
    assert restored.checked == 5 and "journal ignored: it describes 13 pieces" in restored.reason


def test_journal_without_a_valid_record_changes_nothing(tmp_path: Path) -> None:
    run = Run(tmp_path, saved=range(7), journaled=[7])
    run.path.write_bytes(b"junk" * 20)
    records = read_journal(run.path, run.meta.info_hash, run.meta.num_pieces)
    assert records is not None and records.last_write is None
    restored = resume.restore(run.store, run.resume, journal=records)
    assert restored.checked == 5 and "journal: " in restored.reason and "not a piece journal" in restored.reason
    no_resume = resume.restore(run.store, None, journal=records)
    assert no_resume.checked == 12
    assert no_resume.reason.startswith("full recheck (no usable resume data, no valid journal record)")


_KILLED_CHILD = r"""
import os, pickle, signal, sys
from pathlib import Path
from torrent.storage import resume
from torrent.storage.files import Storage
from torrent.storage.journal import PieceJournal, journal_path
from torrent.core.bitfield import Bitfield

meta, data, root = pickle.loads(Path(sys.argv[1]).read_bytes())
store = Storage(meta, root)
state = Path(root).parent / "state"
journal = PieceJournal(journal_path(state, meta.info_hash), meta.info_hash, meta.num_pieces)
have = Bitfield(meta.num_pieces)

def verified(pieces):
    geo = meta.geometry
    results = store.verify_and_write_many([(i, data[slice(*geo.piece_span(i))]) for i in pieces])
    assert results == [True] * len(pieces)
    journal.append(pieces)                     # what the verifier does in its worker
    for i in pieces:
        have.set(i)

def save():                                    # what the session does every 30 s
    snap = resume.snapshot(store, have)
    journal.rotate()
    resume.save(resume.resume_path(state, meta.info_hash), snap)
    journal.commit()

save()                                         # right after restore: arms the journal
verified([0, 1, 2])
verified([3, 4, 5])
for path in store.paths:                       # make the next writes visibly newer
    if path is not None and path.exists():
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 100_000_000_000))
save()
verified([6, 7])
verified([9, 10, 11])
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_sigkill_then_restart_hashes_only_what_no_record_covers(tmp_path: Path) -> None:
    import pickle
    import signal

    meta, data = make_torrent(SPEC)
    root = tmp_path / "dl"
    args = tmp_path / "args.pickle"
    args.write_bytes(pickle.dumps((meta, data, str(root))))
    proc = subprocess.run([sys.executable, "-c", _KILLED_CHILD, str(args)], check=False, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    state = tmp_path / "state"
    saved = resume.load(resume.resume_path(state, meta.info_hash), metainfo=meta)
    assert saved is not None and saved.bitfield().iter_set() == list(range(6))
    records = read_journal(journal_path(state, meta.info_hash), meta.info_hash, meta.num_pieces)
    assert records is not None and records.pieces.iter_set() == [6, 7, 9, 10, 11]
    restored = resume.restore(Storage(meta, root), saved, journal=records)
    assert restored.have.iter_set() == [i for i in range(12) if i != 8]
    assert restored.checked == 1 and restored.hashed == PL  # 8: never written, touches c


def test_journal_only_restart_of_a_complete_torrent_hashes_nothing(tmp_path: Path) -> None:
    run = Run(tmp_path, saved=None, journaled=range(12))
    run.store.create_empty_files()
    restored = run.restore()
    assert restored.have.all() and restored.checked == 0 and restored.hashed == 0
    assert restored.reason == "no resume data; journal trusted: 12 of 12 pieces (12 from the journal)"
