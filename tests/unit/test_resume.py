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
    lambda raw: raw.replace(b"7:versioni1e", b"7:versioni9e"),
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
    raw = resume.encode(sample(meta)).replace(b"7:versioni1e", b"7:versioni2e")
    with pytest.raises(ResumeError, match="version 2 is not supported"):
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
