"""Piece bitfield: every test runs on the compiled class and on its pure-Python twin.

The ``cython`` parameter fails (never skips) when ``_speedups.bitfield`` is not
built, because the project's test command always builds it. Property tests drive
both implementations with the same operations and check them against each other
and against a plain set of indexes.
"""

from __future__ import annotations

import copy
import os
import pickle
import random
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import compiled_bitfield_class
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torrent.core import speedups
from torrent.core.bitfield import PyBitfield
from torrent.core.errors import BitfieldError, ProtocolError

ROOT = Path(__file__).resolve().parents[2]




@pytest.fixture(scope="module")
def impl(twin) -> type:
    """The Bitfield class of the twin under test (root conftest.py: ``cython`` / ``python``)."""
    return twin.Bitfield


def nbytes(length: int) -> int:
    return (length + 7) // 8


def wire_from_indexes(indexes: set[int] | list[int], length: int) -> bytes:
    """Reference encoder: piece i is bit 7 - i % 8 of byte i // 8."""
    out = bytearray(nbytes(length))
    for i in indexes:
        out[i >> 3] |= 0x80 >> (i & 7)
    return bytes(out)


def build(impl: type, length: int, indexes: set[int] | list[int]):
    bf = impl(length)
    for i in indexes:
        bf.set(i)
    return bf


# --- construction and wire form ---------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 7, 8, 9, 63, 64, 65, 1000])
def test_new_is_all_clear(impl, length):
    bf = impl(length)
    assert len(bf) == length
    assert bf.count() == 0
    assert bf.none()
    assert bf.all() is (length == 0)
    assert bf.to_bytes() == bytes(nbytes(length))
    assert bf.iter_set() == []


def test_negative_length_is_value_error(impl):
    with pytest.raises(ValueError, match="must be >= 0, got -1"):
        impl(-1)
    with pytest.raises(ValueError, match="must be >= 0, got -8"):
        impl.from_bytes(b"", -8)


def test_zero_length(impl):
    bf = impl.from_bytes(b"", 0)
    assert bf == impl(0)
    assert (len(bf), bf.count(), bf.to_bytes()) == (0, 0, b"")
    assert bf.all() and bf.none()
    assert bf.next_set(0) == -1
    assert bf.next_clear(0) == -1
    bf.set_all()
    bf.clear_all()
    assert bf.to_bytes() == b""
    assert bf.and_not(impl(0)).to_bytes() == b""
    assert not bf.any_and_not(impl(0))


def test_wire_order_is_high_bit_first(impl):
    bf = impl(10)
    bf.set(0)
    assert bf.to_bytes() == b"\x80\x00"
    bf.set(9)
    assert bf.to_bytes() == b"\x80\x40"
    bf.set(7)
    bf.set(8)
    assert bf.to_bytes() == b"\x81\xc0"


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_from_bytes_round_trip(impl, kind):
    data = b"\xa5\x0f\xf0\x80"
    bf = impl.from_bytes(kind(data), 25)
    assert bf.to_bytes() == data
    assert bf.count() == 4 + 4 + 4 + 1
    assert bf.iter_set() == [0, 2, 5, 7, 12, 13, 14, 15, 16, 17, 18, 19, 24]


def test_from_bytes_copies_its_input(impl):
    data = bytearray(b"\x80")
    bf = impl.from_bytes(data, 8)
    data[0] = 0
    assert bf.get(0)


@pytest.mark.parametrize(
    ("data", "length", "message"),
    [
        (b"\xff", 10, "bitfield for 10 pieces must be 2 bytes, got 1"),
        (b"\x00\x00\x00", 10, "bitfield for 10 pieces must be 2 bytes, got 3"),
        (b"\x00", 0, "bitfield for 0 pieces must be 0 bytes, got 1"),
        (b"", 1, "bitfield for 1 pieces must be 1 bytes, got 0"),
        (b"\x00" * 12, 100, "bitfield for 100 pieces must be 13 bytes, got 12"),
    ],
)
def test_from_bytes_wrong_size(impl, data, length, message):
    with pytest.raises(BitfieldError) as info:
        impl.from_bytes(data, length)
    assert str(info.value) == message
    assert isinstance(info.value, ProtocolError)


def test_from_bytes_spare_bits_set(impl):
    with pytest.raises(BitfieldError) as info:
        impl.from_bytes(b"\xff\xff", 10)
    assert str(info.value) == "bitfield for 10 pieces has spare bits set in its last byte (0xff)"
    # Every spare bit on its own is rejected; the last real bit is accepted.
    for bit in range(6):
        with pytest.raises(BitfieldError, match="spare bits"):
            impl.from_bytes(bytes([0, 1 << bit]), 10)
    assert impl.from_bytes(b"\xff\xc0", 10).all()
    assert impl.from_bytes(b"\x00\x40", 10).iter_set() == [9]


@pytest.mark.parametrize("data", [5, "ab", None, [0, 1]])
def test_from_bytes_needs_a_buffer(impl, data):
    with pytest.raises(TypeError):
        impl.from_bytes(data, 16)


# --- single bits ------------------------------------------------------------------


def test_get_set_clear(impl):
    bf = impl(20)
    assert not bf.get(3)
    bf.set(3)
    assert bf.get(3) is True
    assert bf[3] is True
    assert bf.get(4) is False
    assert bf[4] is False
    bf.clear(3)
    assert bf.get(3) is False
    assert bf.to_bytes() == bytes(3)


def test_count_changes_only_when_a_bit_changes(impl):
    bf = impl(20)
    bf.set(5)
    bf.set(5)
    assert bf.count() == 1
    bf.clear(6)
    assert bf.count() == 1
    bf.clear(5)
    bf.clear(5)
    assert bf.count() == 0
    bf.set_all()
    bf.set(19)
    assert bf.count() == 20


@pytest.mark.parametrize("method", ["get", "set", "clear", "__getitem__"])
@pytest.mark.parametrize(("length", "index"), [(10, -1), (10, 10), (10, 11), (0, 0), (64, 64)])
def test_index_out_of_range(impl, method, length, index):
    bf = impl(length)
    with pytest.raises(IndexError) as info:
        getattr(bf, method)(index)
    assert str(info.value) == f"piece index {index} out of range for {length} pieces"
    assert bf.count() == 0
    assert bf.to_bytes() == bytes(nbytes(length))


def test_index_must_be_an_integer(impl):
    bf = impl(10)
    with pytest.raises(TypeError):
        bf.get(1.0)
    with pytest.raises(TypeError):
        bf.set("1")


# --- bulk operations --------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 7, 8, 9, 63, 64, 65, 1000])
def test_set_all_and_clear_all(impl, length):
    bf = impl(length)
    bf.set_all()
    assert bf.count() == length
    assert bf.all() and not bf.none()
    assert bf.iter_set() == list(range(length))
    assert bf == impl.from_bytes(bf.to_bytes(), length)  # spare bits stayed zero
    assert bf.to_bytes() == wire_from_indexes(range(length), length)
    bf.clear_all()
    assert bf.count() == 0
    assert bf.none() and not bf.all()
    assert bf.to_bytes() == bytes(nbytes(length))


def test_all_and_none(impl):
    bf = impl(3)
    assert (bf.all(), bf.none()) == (False, True)
    bf.set(1)
    assert (bf.all(), bf.none()) == (False, False)
    bf.set(0)
    bf.set(2)
    assert (bf.all(), bf.none()) == (True, False)


def test_iter_set_and_iter(impl):
    indexes = [0, 1, 63, 64, 65, 127, 128, 200, 999]
    bf = build(impl, 1000, reversed(indexes))
    assert bf.iter_set() == indexes
    assert list(bf) == indexes
    assert [i for i in bf] == indexes


def test_next_set(impl):
    bf = build(impl, 200, [5, 63, 64, 130, 199])
    assert bf.next_set(0) == 5
    assert bf.next_set(5) == 5
    assert bf.next_set(6) == 63
    assert bf.next_set(64) == 64
    assert bf.next_set(65) == 130
    assert bf.next_set(131) == 199
    assert bf.next_set(199) == 199
    assert bf.next_set(200) == -1
    assert impl(200).next_set(0) == -1


def test_next_clear(impl):
    bf = impl(200)
    bf.set_all()
    for i in (5, 63, 64, 130, 199):
        bf.clear(i)
    assert bf.next_clear(0) == 5
    assert bf.next_clear(6) == 63
    assert bf.next_clear(65) == 130
    assert bf.next_clear(131) == 199
    assert bf.next_clear(200) == -1
    bf.set(199)
    assert bf.next_clear(131) == -1  # padding past the end is not a clear piece
    assert impl(200).next_clear(77) == 77


@pytest.mark.parametrize("method", ["next_set", "next_clear"])
def test_next_start_out_of_range(impl, method):
    bf = impl(10)
    for start in (-1, 11):
        with pytest.raises(IndexError) as info:
            getattr(bf, method)(start)
        assert str(info.value) == f"start {start} out of range for 10 pieces"
    assert getattr(bf, method)(10) == -1


def test_set_algebra(impl):
    mine = build(impl, 130, [0, 1, 64, 129])
    theirs = build(impl, 130, [1, 2, 64, 100, 129])
    assert theirs.and_not(mine).iter_set() == [2, 100]
    assert mine.and_not(theirs).iter_set() == [0]
    assert mine.and_(theirs).iter_set() == [1, 64, 129]
    assert (mine & theirs).iter_set() == [1, 64, 129]
    assert mine.or_(theirs).iter_set() == [0, 1, 2, 64, 100, 129]
    assert (mine | theirs).iter_set() == [0, 1, 2, 64, 100, 129]
    assert mine.or_(theirs).count() == 6
    assert theirs.and_not(mine).count() == 2
    # Operands are untouched and results are new objects.
    assert mine.iter_set() == [0, 1, 64, 129]
    result = mine.or_(impl(130))
    assert result == mine and result is not mine
    result.set(5)
    assert not mine.get(5)


def test_any_and_not(impl):
    mine = impl(1000)
    theirs = impl(1000)
    assert not theirs.any_and_not(mine)  # they have nothing
    theirs.set(999)
    assert theirs.any_and_not(mine)  # last piece, last word
    mine.set(999)
    assert not theirs.any_and_not(mine)
    for i in range(0, 1000, 3):
        theirs.set(i)
        mine.set(i)
    mine.set(500)
    assert not theirs.any_and_not(mine)  # nothing missing, mine is not full
    assert mine.any_and_not(theirs)
    mine.set_all()
    assert not theirs.any_and_not(mine)


@pytest.mark.parametrize("op", ["and_not", "and_", "or_", "any_and_not", "__and__", "__or__"])
def test_length_mismatch(impl, op):
    with pytest.raises(ValueError, match="bitfield lengths differ: 10 and 11"):
        getattr(impl(10), op)(impl(11))


def test_set_algebra_needs_a_bitfield(impl):
    bf = impl(8)
    with pytest.raises(TypeError):
        bf & 1
    with pytest.raises(TypeError):
        bf | b"\x00"
    for op in ("and_not", "and_", "or_", "any_and_not"):
        with pytest.raises(TypeError):
            getattr(bf, op)(None)


# --- value behaviour --------------------------------------------------------------


def test_eq(impl):
    a = build(impl, 10, [1, 9])
    assert a == build(impl, 10, [9, 1])
    assert a != build(impl, 10, [1])
    # Same wire bytes, different piece counts: not equal.
    assert impl.from_bytes(b"\x80\x00", 10) != impl.from_bytes(b"\x80\x00", 16)
    assert a != a.to_bytes()
    assert (a == 3) is False


def test_unhashable(impl):
    with pytest.raises(TypeError):
        hash(impl(8))


def test_copy_is_independent(impl):
    a = build(impl, 70, [3, 69])
    for b in (a.copy(), copy.copy(a)):
        assert b == a and b is not a
        assert b.count() == 2
        b.set(4)
        b.clear(69)
        assert a.iter_set() == [3, 69]


def test_pickle(impl):
    a = build(impl, 70, [3, 69])
    b = pickle.loads(pickle.dumps(a))
    assert type(b) is impl
    assert b == a and b.count() == 2


def test_repr_is_short(impl):
    text = repr(build(impl, 1_000_000, [1, 2]))
    assert "length=1000000" in text and "count=2" in text
    assert len(text) < 60


def test_compiled_without_init_is_an_empty_field():
    """``__new__`` alone must leave a safe, zero-length field, never a NULL buffer."""
    compiled = compiled_bitfield_class()
    bf = compiled.__new__(compiled)
    assert (len(bf), bf.count(), bf.to_bytes(), bf.iter_set()) == (0, 0, b"", [])
    assert bf.next_clear(0) == -1 and bf.all() and bf.copy() == compiled(0)
    bf.__init__(9)
    bf.set(8)
    assert bf.to_bytes() == b"\x00\x80"


def test_large_field(impl):
    n = 3_000_001
    bf = impl(n)
    bf.set_all()
    assert bf.count() == n and bf.all()
    bf.clear(n - 1)
    assert bf.next_clear(0) == n - 1
    other = impl(n)
    other.set(n - 1)
    assert other.any_and_not(bf)
    assert other.and_not(bf).iter_set() == [n - 1]
    assert len(bf.iter_set()) == n - 1


# --- properties: both implementations against each other and against a set ----------

LENGTHS = st.integers(min_value=0, max_value=2000)
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def wire_bytes(draw, length: int) -> bytes:
    """Random wire bytes for ``length`` pieces with spare bits masked off: raw
    Hypothesis bytes, or bits at a drawn density (so all-ones words appear too)."""
    size = nbytes(length)
    if draw(st.booleans()):
        raw = bytearray(draw(st.binary(min_size=size, max_size=size)))
    else:
        density = draw(st.sampled_from([0.0, 0.01, 0.5, 0.99, 1.0]))
        rnd = random.Random(draw(st.integers(min_value=0, max_value=2**32 - 1)))
        chosen = [i for i in range(length) if rnd.random() < density]
        raw = bytearray(wire_from_indexes(chosen, length))
    if length & 7:
        raw[-1] &= (0xFF << (8 - (length & 7))) & 0xFF
    return bytes(raw)


@st.composite
def field_pair(draw):
    length = draw(LENGTHS)
    return length, draw(wire_bytes(length)), draw(wire_bytes(length))


OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["set", "clear", "get", "next_set", "next_clear", "and_not", "and_", "or_",
             "any_and_not", "set_all", "clear_all", "copy", "swap"]
        ),
        st.integers(min_value=0, max_value=2001),
        st.booleans(),
    ),
    max_size=60,
)


def same_state(c, p) -> None:
    assert c.to_bytes() == p.to_bytes()
    assert (len(c), c.count(), c.all(), c.none()) == (len(p), p.count(), p.all(), p.none())


def outcome(fn, *args):
    """Result or exception type, so both implementations can be compared on errors too."""
    try:
        return fn(*args)
    except (IndexError, ValueError) as exc:
        return type(exc)


@settings(PROPERTY_SETTINGS, max_examples=300)
@given(fields=field_pair(), ops=OPS)
def test_compiled_matches_twin(fields, ops):
    compiled = compiled_bitfield_class()
    length, data_a, data_b = fields
    ca, cb = compiled.from_bytes(data_a, length), compiled.from_bytes(data_b, length)
    pa, pb = PyBitfield.from_bytes(data_a, length), PyBitfield.from_bytes(data_b, length)
    same_state(ca, pa)
    same_state(cb, pb)
    for name, number, keep in ops:
        # Indexes run one past the end, so IndexError paths are compared too.
        index = number % (length + 2) if length else number % 2
        if name in ("set", "clear", "get", "next_set", "next_clear"):
            assert outcome(getattr(ca, name), index) == outcome(getattr(pa, name), index)
        elif name in ("and_not", "and_", "or_"):
            cr, pr = getattr(ca, name)(cb), getattr(pa, name)(pb)
            same_state(cr, pr)
            assert cr.iter_set() == pr.iter_set()
            if keep:
                ca, pa = cr, pr
        elif name == "any_and_not":
            assert ca.any_and_not(cb) == pa.any_and_not(pb)
            assert cb.any_and_not(ca) == pb.any_and_not(pa)
        elif name in ("set_all", "clear_all"):
            getattr(ca, name)()
            getattr(pa, name)()
        elif name == "copy":
            ca, pa = ca.copy(), pa.copy()
        else:
            ca, cb, pa, pb = cb, ca, pb, pa
        same_state(ca, pa)
    assert ca.iter_set() == pa.iter_set()
    assert (ca == cb) == (pa == pb)
    for start in range(0, length + 1, 7):
        assert ca.next_set(start) == pa.next_set(start)
        assert ca.next_clear(start) == pa.next_clear(start)


@st.composite
def model_pair(draw):
    length = draw(st.integers(min_value=0, max_value=2000))
    pieces = st.integers(min_value=0, max_value=max(length - 1, 0))
    mine = draw(st.sets(pieces, max_size=300)) if length else set()
    theirs = draw(st.sets(pieces, max_size=300)) if length else set()
    dense = draw(st.booleans())
    if dense:  # complement, so near-full fields are tested as well as sparse ones
        mine = set(range(length)) - mine
    return length, mine, theirs


@PROPERTY_SETTINGS
@given(case=model_pair(), drop=st.lists(st.integers(min_value=0, max_value=1999), max_size=20))
def test_matches_set_model(impl, case, drop):
    length, mine, theirs = case
    a = build(impl, length, sorted(mine, reverse=True))
    b = impl.from_bytes(wire_from_indexes(theirs, length), length)
    for i in drop:
        if i < length:
            a.clear(i)
            mine.discard(i)

    assert a.to_bytes() == wire_from_indexes(mine, length)
    assert a.count() == len(mine)
    assert a.all() == (len(mine) == length)
    assert a.none() == (not mine)
    assert a.iter_set() == sorted(mine)
    assert [a.get(i) for i in range(length)] == [i in mine for i in range(length)]

    next_set, next_clear = [-1] * (length + 1), [-1] * (length + 1)
    for i in range(length - 1, -1, -1):
        next_set[i] = i if i in mine else next_set[i + 1]
        next_clear[i] = i if i not in mine else next_clear[i + 1]
    assert [a.next_set(i) for i in range(length + 1)] == next_set
    assert [a.next_clear(i) for i in range(length + 1)] == next_clear

    assert a.and_not(b).iter_set() == sorted(mine - theirs)
    assert b.and_not(a).iter_set() == sorted(theirs - mine)
    assert a.and_(b).iter_set() == sorted(mine & theirs)
    assert a.or_(b).iter_set() == sorted(mine | theirs)
    assert a.or_(b).count() == len(mine | theirs)
    assert a.any_and_not(b) == bool(mine - theirs)
    assert b.any_and_not(a) == bool(theirs - mine)
    assert (a == b) == (mine == theirs)


@PROPERTY_SETTINGS
@given(length=LENGTHS, data=st.data())
def test_from_bytes_accepts_exactly_the_valid_wire_forms(impl, length, data):
    size = nbytes(length)
    raw = data.draw(st.binary(min_size=max(size - 2, 0), max_size=size + 2))
    spare = size * 8 - length
    valid = len(raw) == size and not (spare and raw[-1] & ((1 << spare) - 1))
    if valid:
        assert impl.from_bytes(raw, length).to_bytes() == raw
    else:
        with pytest.raises(BitfieldError):
            impl.from_bytes(raw, length)


# --- the selector -------------------------------------------------------------------


def run_python(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != speedups.PURE_ENV}
    environ.update(env)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_env_var_forces_the_twin():
    code = "import torrent.core.bitfield as b; print(b.Bitfield is b.PyBitfield)"
    assert run_python(code, **{speedups.PURE_ENV: "1"}) == "True"


def test_selector_prefers_the_compiled_bitfield_class():
    compiled_bitfield_class()
    code = (
        "import torrent.core.bitfield as b, _speedups.bitfield as c, torrent.core.speedups as s; "
        "print(b.Bitfield is c.Bitfield, s._status['bitfield'])"
    )
    assert run_python(code) == "True compiled"
