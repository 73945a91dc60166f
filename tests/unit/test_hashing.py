"""SHA-1 piece hashing: every test runs on the compiled module and its pure-Python twin,
checked against ``hashlib``.

The ``cython`` parameter fails (never skips) when ``_speedups.hashing`` is not
built, because the project's test command always builds it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrent.core import hashing, speedups

@pytest.fixture(scope="module")
def impl(twin) -> SimpleNamespace:
    """The hashing functions of the twin under test (root conftest.py: ``cython`` / ``python``)."""
    return twin.hashing


BUFFER_KINDS = [bytes, bytearray, memoryview]


def as_kind(kind: type, data: bytes) -> bytes | bytearray | memoryview:
    return memoryview(bytearray(data)) if kind is memoryview else kind(data)


def reference_pieces(data: bytes, piece_length: int) -> bytes:
    return b"".join(hashlib.sha1(data[i:i + piece_length]).digest() for i in range(0, len(data), piece_length))


DATA = bytes(range(256)) * 257  # 65792 bytes: not a multiple of any power of two above 256


# --- sha1 --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BUFFER_KINDS, ids=["bytes", "bytearray", "memoryview"])
@pytest.mark.parametrize("data", [b"", b"abc", DATA], ids=["empty", "abc", "64k"])
def test_sha1(impl: SimpleNamespace, kind: type, data: bytes) -> None:
    digest = impl.sha1(as_kind(kind, data))
    assert type(digest) is bytes
    assert digest == hashlib.sha1(data).digest()


def test_sha1_known_vector(impl: SimpleNamespace) -> None:
    # FIPS 180 test vector for "abc".
    assert impl.sha1(b"abc").hex() == "a9993e364706816aba3e25717850c26c9cd0d89d"


def test_sha1_of_slice_view(impl: SimpleNamespace) -> None:
    view = memoryview(DATA)[1000:5000]
    assert impl.sha1(view) == hashlib.sha1(DATA[1000:5000]).digest()


# --- sha1_pieces -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", BUFFER_KINDS, ids=["bytes", "bytearray", "memoryview"])
@pytest.mark.parametrize(
    ("size", "piece_length", "count"),
    [
        (65792, 16384, 5),  # last piece short: 4 × 16384 + 256
        (65536, 16384, 4),  # exact multiple
        (65792, 65792, 1),  # single piece, exactly the data
        (100, 1 << 20, 1),  # single piece longer than the data
        (10, 1, 10),  # one byte per piece
    ],
    ids=["short-last", "exact", "single", "single-short", "bytewise"],
)
def test_sha1_pieces(impl: SimpleNamespace, kind: type, size: int, piece_length: int, count: int) -> None:
    data = DATA[:size]
    out = impl.sha1_pieces(as_kind(kind, data), piece_length)
    assert type(out) is bytes
    assert len(out) == 20 * count
    for i in range(count):
        assert out[20 * i:20 * i + 20] == hashlib.sha1(data[i * piece_length:(i + 1) * piece_length]).digest()


@pytest.mark.parametrize("kind", BUFFER_KINDS, ids=["bytes", "bytearray", "memoryview"])
def test_sha1_pieces_empty(impl: SimpleNamespace, kind: type) -> None:
    assert impl.sha1_pieces(as_kind(kind, b""), 16384) == b""


@pytest.mark.parametrize("piece_length", [0, -1, -16384])
def test_sha1_pieces_non_positive_piece_length(impl: SimpleNamespace, piece_length: int) -> None:
    with pytest.raises(ValueError, match="piece_length"):
        impl.sha1_pieces(DATA, piece_length)
    with pytest.raises(ValueError):
        impl.sha1_pieces(b"", piece_length)


# --- verify_pieces ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", BUFFER_KINDS, ids=["bytes", "bytearray", "memoryview"])
def test_verify_pieces_all_good(impl: SimpleNamespace, kind: type) -> None:
    expected = reference_pieces(DATA, 16384)
    assert impl.verify_pieces(as_kind(kind, DATA), 16384, as_kind(kind, expected)) == [True] * 5


@pytest.mark.parametrize("bad", [0, 2, 4])
def test_verify_pieces_flags_the_corrupted_piece(impl: SimpleNamespace, bad: int) -> None:
    corrupted = bytearray(DATA)
    corrupted[bad * 16384 + 7] ^= 0xFF
    result = impl.verify_pieces(corrupted, 16384, reference_pieces(DATA, 16384))
    assert result == [i != bad for i in range(5)]
    assert all(type(x) is bool for x in result)


def test_verify_pieces_flags_a_wrong_digest(impl: SimpleNamespace) -> None:
    expected = bytearray(reference_pieces(DATA, 16384))
    expected[3 * 20 + 19] ^= 1
    assert impl.verify_pieces(DATA, 16384, bytes(expected)) == [True, True, True, False, True]


def test_verify_pieces_empty(impl: SimpleNamespace) -> None:
    assert impl.verify_pieces(b"", 16384, b"") == []


@pytest.mark.parametrize("delta", [-20, -1, 1, 20])
def test_verify_pieces_wrong_expected_length(impl: SimpleNamespace, delta: int) -> None:
    expected = reference_pieces(DATA, 16384)
    expected = expected[:delta] if delta < 0 else expected + b"\x00" * delta
    with pytest.raises(ValueError, match="digests"):
        impl.verify_pieces(DATA, 16384, expected)


def test_verify_pieces_non_positive_piece_length(impl: SimpleNamespace) -> None:
    with pytest.raises(ValueError):
        impl.verify_pieces(DATA, 0, b"")


# --- verify_piece -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BUFFER_KINDS, ids=["bytes", "bytearray", "memoryview"])
def test_verify_piece(impl: SimpleNamespace, kind: type) -> None:
    digest = hashlib.sha1(DATA).digest()
    assert impl.verify_piece(as_kind(kind, DATA), as_kind(kind, digest)) is True
    assert impl.verify_piece(as_kind(kind, DATA[:-1]), as_kind(kind, digest)) is False
    wrong = bytearray(digest)
    wrong[0] ^= 0x80
    assert impl.verify_piece(as_kind(kind, DATA), as_kind(kind, bytes(wrong))) is False


def test_verify_piece_empty_data(impl: SimpleNamespace) -> None:
    assert impl.verify_piece(b"", hashlib.sha1(b"").digest()) is True


@pytest.mark.parametrize("length", [0, 19, 21, 32])
def test_verify_piece_wrong_digest_length(impl: SimpleNamespace, length: int) -> None:
    with pytest.raises(ValueError, match="20"):
        impl.verify_piece(DATA, b"\x00" * length)


# --- properties ---------------------------------------------------------------------------


@settings(max_examples=150)
@given(data=st.binary(max_size=3000), piece_length=st.integers(1, 700))
def test_matches_hashlib(impl: SimpleNamespace, data: bytes, piece_length: int) -> None:
    assert impl.sha1(data) == hashlib.sha1(data).digest()
    expected = reference_pieces(data, piece_length)
    assert impl.sha1_pieces(data, piece_length) == expected
    assert impl.verify_pieces(bytearray(data), piece_length, expected) == [True] * (len(expected) // 20)


@settings(max_examples=80)
@given(data=st.binary(min_size=1, max_size=2000), piece_length=st.integers(1, 300), st_data=st.data())
def test_verify_pieces_finds_exactly_the_flipped_pieces(impl: SimpleNamespace, data: bytes, piece_length: int,
                                                         st_data: st.DataObject) -> None:
    expected = reference_pieces(data, piece_length)
    flips = st_data.draw(st.sets(st.integers(0, len(data) - 1), max_size=5))
    corrupted = bytearray(data)
    for i in flips:
        corrupted[i] ^= 0x5A
    bad = {i // piece_length for i in flips}
    want = [i not in bad for i in range(len(expected) // 20)]
    assert impl.verify_pieces(corrupted, piece_length, expected) == want


# --- selector ------------------------------------------------------------------------------


def test_selector_uses_the_compiled_module_unless_forced() -> None:
    module = speedups.compiled_module("hashing")
    if speedups.pure_forced():
        assert hashing.sha1 is hashing.py_sha1
    else:
        assert hashing.sha1 is module.sha1
        assert hashing.sha1_pieces is module.sha1_pieces
        assert hashing.verify_pieces is module.verify_pieces
        assert hashing.verify_piece is module.verify_piece


# --- the GIL ------------------------------------------------------------------------------

BIG = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def big_buffer() -> bytearray:
    return bytearray(os.urandom(1024)) * (BIG // 1024)


def main_thread_progress_during(call: Callable[[], object], repeats: int) -> int:
    """Count main-thread loop iterations while a worker runs ``call`` ``repeats`` times.

    The switch interval is raised far above the length of the calls, so the
    interpreter never forces the worker to give up the GIL: the main thread
    can only run while the worker is inside ``call`` if ``call`` releases the
    GIL itself. The main thread gives the GIL away between iterations by
    blocking briefly, so a worker that wants it back gets it at once.
    """
    state = SimpleNamespace(inside=False)
    done = threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(repeats):
                state.inside = True
                call()
                state.inside = False
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            state.inside = False
            done.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(2.0)
    try:
        count = 0
        thread = threading.Thread(target=worker, name="hash-gil-probe")
        thread.start()
        while not done.wait(0.0002):
            if state.inside:
                count += 1
        thread.join()
    finally:
        sys.setswitchinterval(old)
    if errors:
        raise errors[0]
    return count


@pytest.mark.parametrize("count", [0, 1, 2, 3, 4, 5, 9])
def test_sha1_many_matches_hashlib_for_each_buffer(impl: SimpleNamespace, count: int) -> None:
    # Mixed lengths and kinds, including empty: the multi-buffer lanes finish at different blocks.
    sizes = [262144, 0, 55, 64, 65792, 16384, 1, 119, 262143][:count]
    buffers = [as_kind(BUFFER_KINDS[i % 3], DATA[:n] if n <= len(DATA) else DATA * 4) for i, n in enumerate(sizes)]
    assert impl.sha1_many(buffers) == [hashlib.sha1(b).digest() for b in buffers]


def test_sha1_many_rejects_a_non_buffer(impl: SimpleNamespace) -> None:
    with pytest.raises(TypeError):
        impl.sha1_many([b"abc", 42])


@pytest.mark.parametrize("function", ["sha1", "sha1_pieces", "sha1_many", "verify_pieces", "verify_piece"])
def test_compiled_functions_release_the_gil(big_buffer: bytearray, function: str, twins) -> None:
    module = twins["cython"].hashing
    digest = hashlib.sha1(big_buffer).digest()
    calls: dict[str, Callable[[], object]] = {
        "sha1": lambda: module.sha1(big_buffer),
        "sha1_pieces": lambda: module.sha1_pieces(big_buffer, 1 << 18),
        "sha1_many": lambda: module.sha1_many([big_buffer, big_buffer]),
        # 16 MiB pieces: 4 digests; any 80 bytes will do, only the time spent matters.
        "verify_pieces": lambda: module.verify_pieces(big_buffer, 1 << 24, b"\x00" * 80),
        "verify_piece": lambda: module.verify_piece(big_buffer, digest),
    }
    count = main_thread_progress_during(calls[function], repeats=2)
    assert count > 3, f"main thread ran {count} times while {function} hashed 2 × 64 MiB"


def test_gil_probe_detects_a_call_that_holds_the_gil(big_buffer: bytearray) -> None:
    # bytes.find keeps the GIL while it scans; the probe must see no progress.
    frozen = bytes(big_buffer)
    needle = b"\xff" * 12
    assert needle not in frozen[:2048]  # the buffer repeats a 1 KiB block: the scan runs to the end
    count = main_thread_progress_during(lambda: frozen.find(needle), repeats=2)
    assert count == 0
