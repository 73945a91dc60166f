"""RC4 for MSE/PE: every test runs on the compiled module and its pure-Python twin
(root conftest.py ``twin``: ``cython`` / ``python``), checked against RFC 6229.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrent.core import rc4, speedups

# RFC 6229 section 2, second key set, as printed there ("DEC offset: 16 keystream bytes").
RFC6229 = """
key: 0x833222772a
    0:  80 ad 97 bd  c9 73 df 8a   2e 87 9e 92  a4 97 ef da
   16:  20 f0 60 c2  f2 e5 12 65   01 d3 d4 fe  a1 0d 5f c0
  240:  fa a1 48 e9  90 46 18 1f   ec 6b 20 85  f3 b2 0e d9
  256:  f0 da f5 ba  b3 d5 96 83   98 57 84 6f  73 fb fe 5a
  496:  1c 7e 2f c4  63 92 32 fe   29 75 84 b2  96 99 6b c8
  512:  3d b9 b2 49  40 6c c8 ed   ff ac 55 cc  d3 22 ba 12
  752:  e4 f9 f7 e0  06 61 54 bb   d1 25 b7 45  56 9b c8 97
  768:  75 d5 ef 26  2b 44 c4 1a   9c f6 3a e1  45 68 e1 b9
 1008:  6d a4 53 db  f8 1e 82 33   4a 3d 88 66  cb 50 a1 e3
 1024:  78 28 d0 74  11 9c ab 5c   22 b2 94 d7  a9 bf a0 bb
 1520:  ad b8 9c ea  9a 15 fb e6   17 29 5b d0  4b 8c a0 5c
 1536:  62 51 d8 7f  d4 aa ae 9a   7e 4a d5 c2  17 d3 f3 00
 2032:  e7 11 9b d6  dd 9b 22 af   e8 f8 95 85  43 28 81 e2
 2048:  78 5b 60 fd  7e c4 e9 fc   b6 54 5f 35  0d 66 0f ab
 3056:  af ec c0 37  fd b7 b0 83   8e b3 d7 0b  cd 26 83 82
 3072:  db c1 a7 b4  9d 57 35 8c   c9 fa 6d 61  d7 3b 7c f0
 4080:  63 49 d1 26  a3 7a fc ba   89 79 4f 98  04 91 4f dc
 4096:  bf 42 c3 01  8c 2f 7c 66   bf de 52 49  75 76 81 15

key: 0x1910833222772a
    0:  bc 92 22 db  d3 27 4d 8f   c6 6d 14 cc  bd a6 69 0b
   16:  7a e6 27 41  0c 9a 2b e6   93 df 5b b7  48 5a 63 e3
  240:  3f 09 31 aa  03 de fb 30   0f 06 01 03  82 6f 2a 64
  256:  be aa 9e c8  d5 9b b6 81   29 f3 02 7c  96 36 11 81
  496:  74 e0 4d b4  6d 28 64 8d   7d ee 8a 00  64 b0 6c fe
  512:  9b 5e 81 c6  2f e0 23 c5   5b e4 2f 87  bb f9 32 b8
  752:  ce 17 8f c1  82 6e fe cb   c1 82 f5 79  99 a4 61 40
  768:  8b df 55 cd  55 06 1c 06   db a6 be 11  de 4a 57 8a
 1008:  62 6f 5f 4d  ce 65 25 01   f3 08 7d 39  c9 2c c3 49
 1024:  42 da ac 6a  8f 9a b9 a7   fd 13 7c 60  37 82 56 82
 1520:  cc 03 fd b7  91 92 a2 07   31 2f 53 f5  d4 dc 33 d9
 1536:  f7 0f 14 12  2a 1c 98 a3   15 5d 28 b8  a0 a8 a4 1d
 2032:  2a 3a 30 7a  b2 70 8a 9c   00 fe 0b 42  f9 c2 d6 a1
 2048:  86 26 17 62  7d 22 61 ea   b0 b1 24 65  97 ca 0a e9
 3056:  55 f8 77 ce  4f 2e 1d db   bf 8e 13 e2  cd e0 fd c8
 3072:  1b 15 56 cb  93 5f 17 33   37 70 5f bb  5d 50 1f c1
 4080:  ec d0 e9 66  02 be 7f 8d   50 92 81 6c  cc f2 c2 e9
 4096:  02 78 81 fa  b4 99 3a 1c   26 20 24 a9  4f ff 3f 61

key: 0x641910833222772a
    0:  bb f6 09 de  94 13 17 2d   07 66 0c b6  80 71 69 26
   16:  46 10 1a 6d  ab 43 11 5d   6c 52 2b 4f  e9 36 04 a9
  240:  cb e1 ff f2  1c 96 f3 ee   f6 1e 8f e0  54 2c bd f0
  256:  34 79 38 bf  fa 40 09 c5   12 cf b4 03  4b 0d d1 a7
  496:  78 67 a7 86  d0 0a 71 47   90 4d 76 dd  f1 e5 20 e3
  512:  8d 3e 9e 1c  ae fc cc b3   fb f8 d1 8f  64 12 0b 32
  752:  94 23 37 f8  fd 76 f0 fa   e8 c5 2d 79  54 81 06 72
  768:  b8 54 8c 10  f5 16 67 f6   e6 0e 18 2f  a1 9b 30 f7
 1008:  02 11 c7 c6  19 0c 9e fd   12 37 c3 4c  8f 2e 06 c4
 1024:  bd a6 4f 65  27 6d 2a ac   b8 f9 02 12  20 3a 80 8e
 1520:  bd 38 20 f7  32 ff b5 3e   c1 93 e7 9d  33 e2 7c 73
 1536:  d0 16 86 16  86 19 07 d4   82 e3 6c da  c8 cf 57 49
 2032:  97 b0 f0 f2  24 b2 d2 31   71 14 80 8f  b0 3a f7 a0
 2048:  e5 96 16 e4  69 78 79 39   a0 63 ce ea  9a f9 56 d1
 3056:  c4 7e 0d c1  66 09 19 c1   11 01 20 8f  9e 69 aa 1f
 3072:  5a e4 f1 28  96 b8 37 9a   2a ad 89 b5  b5 53 d6 b0
 4080:  6b 6b 09 8d  0c 29 3b c2   99 3d 80 bf  05 18 b6 d9
 4096:  81 70 cc 3c  cd 92 a6 98   62 1b 93 9d  d3 8f e7 b9

key: 0x8b37641910833222772a
    0:  ab 65 c2 6e  dd b2 87 60   0d b2 fd a1  0d 1e 60 5c
   16:  bb 75 90 10  c2 96 58 f2   c7 2d 93 a2  d1 6d 29 30
  240:  b9 01 e8 03  6e d1 c3 83   cd 3c 4c 4d  d0 a6 ab 05
  256:  3d 25 ce 49  22 92 4c 55   f0 64 94 33  53 d7 8a 6c
  496:  12 c1 aa 44  bb f8 7e 75   e6 11 f6 9b  2c 38 f4 9b
  512:  28 f2 b3 43  4b 65 c0 98   77 47 00 44  c6 ea 17 0d
  752:  bd 9e f8 22  de 52 88 19   61 34 cf 8a  f7 83 93 04
  768:  67 55 9c 23  f0 52 15 84   70 a2 96 f7  25 73 5a 32
 1008:  8b ab 26 fb  c2 c1 2b 0f   13 e2 ab 18  5e ab f2 41
 1024:  31 18 5a 6d  69 6f 0c fa   9b 42 80 8b  38 e1 32 a2
 1520:  56 4d 3d ae  18 3c 52 34   c8 af 1e 51  06 1c 44 b5
 1536:  3c 07 78 a7  b5 f7 2d 3c   23 a3 13 5c  7d 67 b9 f4
 2032:  f3 43 69 89  0f cf 16 fb   51 7d ca ae  44 63 b2 dd
 2048:  02 f3 1c 81  e8 20 07 31   b8 99 b0 28  e7 91 bf a7
 3056:  72 da 64 62  83 22 8c 14   30 08 53 70  17 95 61 6f
 3072:  4e 0a 8c 6f  79 34 a7 88   e2 26 5e 81  d6 d0 c8 f4
 4080:  43 8d d5 ea  fe a0 11 1b   6f 36 b4 b9  38 da 2a 68
 4096:  5f 6b fc 73  81 58 74 d9   71 00 f0 86  97 93 57 d8

key: 0xebb46227c6cc8b37641910833222772a
    0:  72 0c 94 b6  3e df 44 e1   31 d9 50 ca  21 1a 5a 30
   16:  c3 66 fd ea  cf 9c a8 04   36 be 7c 35  84 24 d2 0b
  240:  b3 39 4a 40  aa bf 75 cb   a4 22 82 ef  25 a0 05 9f
  256:  48 47 d8 1d  a4 94 2d bc   24 9d ef c4  8c 92 2b 9f
  496:  08 12 8c 46  9f 27 53 42   ad da 20 2b  2b 58 da 95
  512:  97 0d ac ef  40 ad 98 72   3b ac 5d 69  55 b8 17 61
  752:  3c b8 99 93  b0 7b 0c ed   93 de 13 d2  a1 10 13 ac
  768:  ef 2d 67 6f  15 45 c2 c1   3d c6 80 a0  2f 4a db fe
 1008:  b6 05 95 51  4f 24 bc 9f   e5 22 a6 ca  d7 39 36 44
 1024:  b5 15 a8 c5  01 17 54 f5   90 03 05 8b  db 81 51 4e
 1520:  3c 70 04 7e  8c bc 03 8e   3b 98 20 db  60 1d a4 95
 1536:  11 75 da 6e  e7 56 de 46   a5 3e 2b 07  56 60 b7 70
 2032:  00 a5 42 bb  a0 21 11 cc   2c 65 b3 8e  bd ba 58 7e
 2048:  58 65 fd bb  5b 48 06 41   04 e8 30 b3  80 f2 ae de
 3056:  34 b2 1a d2  ad 44 e9 99   db 2d 7f 08  63 f0 d9 b6
 3072:  84 a9 21 8f  c3 6e 8a 5f   2c cf be ae  53 a2 7d 25
 4080:  a2 22 1a 11  b8 33 cc b4   98 a5 95 40  f0 54 5f 4a
 4096:  5b be b4 78  7d 59 e5 37   3f db ea 6c  6f 75 c2 9b

key: 0xc109163908ebe51debb46227c6cc8b37641910833222772a
    0:  54 b6 4e 6b  5a 20 b5 e2   ec 84 59 3d  c7 98 9d a7
   16:  c1 35 ee e2  37 a8 54 65   ff 97 dc 03  92 4f 45 ce
  240:  cf cc 92 2f  b4 a1 4a b4   5d 61 75 aa  bb f2 d2 01
  256:  83 7b 87 e2  a4 46 ad 0e   f7 98 ac d0  2b 94 12 4f
  496:  17 a6 db d6  64 92 6a 06   36 b3 f4 c3  7a 4f 46 94
  512:  4a 5f 9f 26  ae ee d4 d4   a2 5f 63 2d  30 52 33 d9
  752:  80 a3 d0 1e  f0 0c 8e 9a   42 09 c1 7f  4e eb 35 8c
  768:  d1 5e 7d 5f  fa aa bc 02   07 bf 20 0a  11 77 93 a2
 1008:  34 96 82 bf  58 8e aa 52   d0 aa 15 60  34 6a ea fa
 1024:  f5 85 4c db  76 c8 89 e3   ad 63 35 4e  5f 72 75 e3
 1520:  53 2c 7c ec  cb 39 df 32   36 31 84 05  a4 b1 27 9c
 1536:  ba ef e6 d9  ce b6 51 84   22 60 e0 d1  e0 5e 3b 90
 2032:  e8 2d 8c 6d  b5 4e 3c 63   3f 58 1c 95  2b a0 42 07
 2048:  4b 16 e5 0a  bd 38 1b d7   09 00 a9 cd  9a 62 cb 23
 3056:  36 82 ee 33  bd 14 8b d9   f5 86 56 cd  8f 30 d9 fb
 3072:  1e 5a 0b 84  75 04 5d 9b   20 b2 62 86  24 ed fd 9e
 4080:  63 ed d6 84  fb 82 62 82   fe 52 8f 9c  0e 92 37 bc
 4096:  e4 dd 2e 98  d6 96 0f ae   0b 43 54 54  56 74 33 91

key: 0x1ada31d5cf688221c109163908ebe51debb46227c6cc8b37641910833222772a
    0:  dd 5b cb 00  18 e9 22 d4   94 75 9d 7c  39 5d 02 d3
   16:  c8 44 6f 8f  77 ab f7 37   68 53 53 eb  89 a1 c9 eb
  240:  af 3e 30 f9  c0 95 04 59   38 15 15 75  c3 fb 90 98
  256:  f8 cb 62 74  db 99 b8 0b   1d 20 12 a9  8e d4 8f 0e
  496:  25 c3 00 5a  1c b8 5d e0   76 25 98 39  ab 71 98 ab
  512:  9d cb c1 83  e8 cb 99 4b   72 7b 75 be  31 80 76 9c
  752:  a1 d3 07 8d  fa 91 69 50   3e d9 d4 49  1d ee 4e b2
  768:  85 14 a5 49  58 58 09 6f   59 6e 4b cd  66 b1 06 65
 1008:  5f 40 d5 9e  c1 b0 3b 33   73 8e fa 60  b2 25 5d 31
 1024:  34 77 c7 f7  64 a4 1b ac   ef f9 0b f1  4f 92 b7 cc
 1520:  ac 4e 95 36  8d 99 b9 eb   78 b8 da 8f  81 ff a7 95
 1536:  8c 3c 13 f8  c2 38 8b b7   3f 38 57 6e  65 b7 c4 46
 2032:  13 c4 b9 c1  df b6 65 79   ed dd 8a 28  0b 9f 73 16
 2048:  dd d2 78 20  55 01 26 69   8e fa ad c6  4b 64 f6 6e
 3056:  f0 8f 2e 66  d2 8e d1 43   f3 a2 37 cf  9d e7 35 59
 3072:  9e a3 6c 52  55 31 b8 80   ba 12 43 34  f5 7b 0b 70
 4080:  d5 a3 9e 3d  fc c5 02 80   ba c4 a6 b5  aa 0d ca 7d
 4096:  37 0b 1c 1f  e6 55 91 6d   97 fd 0d 47  ca 1d 72 b8
"""

OFFSETS = [0, 16, 240, 256, 496, 512, 752, 768, 1008, 1024, 1520, 1536, 2032, 2048, 3056, 3072, 4080, 4096]


def _parse_vectors(text: str) -> dict[bytes, dict[int, bytes]]:
    vectors: dict[bytes, dict[int, bytes]] = {}
    for line in text.strip().splitlines():
        if line.startswith("key: 0x"):
            key = bytes.fromhex(line[len("key: 0x"):])
            vectors[key] = {}
        elif line.strip():
            offset, _, hexbytes = line.partition(":")
            vectors[key][int(offset)] = bytes.fromhex(hexbytes)
    return vectors


VECTORS = _parse_vectors(RFC6229)
KEYS = list(VECTORS)


@pytest.fixture(scope="module")
def impl(twin) -> type:
    """The RC4 class of the twin under test."""
    return _compiled_rc4() if twin.name == "cython" else rc4.PyRC4


def _compiled_rc4() -> type:
    """``_speedups.rc4.RC4``; ImportError (a failure, never a skip) if it was not built."""
    return speedups.compiled_module("rc4").RC4


def keystream(cls: type, key: bytes, n: int, drop: int = 0) -> bytes:
    return cls(key, drop=drop).process(bytes(n))


# --- known answers ----------------------------------------------------------------------------


def test_vectors_cover_every_rfc_key_length_and_offset() -> None:
    assert sorted(len(k) * 8 for k in KEYS) == [40, 56, 64, 80, 128, 192, 256]
    assert all(sorted(v) == OFFSETS and all(len(b) == 16 for b in v.values()) for v in VECTORS.values())


@pytest.mark.parametrize("key", KEYS, ids=[f"{len(k) * 8}bit" for k in KEYS])
def test_rfc6229_keystream(impl: type, key: bytes) -> None:
    stream = keystream(impl, key, 4096 + 16)
    for offset, expected in VECTORS[key].items():
        assert stream[offset:offset + 16] == expected, f"offset {offset}"


def test_rfc6229_first_key_set(impl: type) -> None:
    # RFC 6229's first vector: key 0x0102030405, keystream at offset 0.
    assert keystream(impl, bytes([1, 2, 3, 4, 5]), 16).hex() == "b2396305f03dc027ccc3524a0a1118a8"


@pytest.mark.parametrize("key", KEYS[::3], ids=lambda k: f"{len(k) * 8}bit")
def test_drop_1024_starts_at_offset_1024(impl: type, key: bytes) -> None:
    # MSE: RC4-drop1024. The RFC's 1024 and 1520 rows are then the first and 496th bytes.
    stream = keystream(impl, key, 512, drop=1024)
    assert stream[:16] == VECTORS[key][1024]
    assert stream[496:512] == VECTORS[key][1520]
    assert stream == keystream(impl, key, 1024 + 512)[1024:]


def test_encrypt_then_decrypt_round_trips(impl: type) -> None:
    plain = os.urandom(5000)
    cipher = impl(b"secret key", drop=1024).process(plain)
    assert cipher != plain
    assert impl(b"secret key", drop=1024).process(cipher) == plain


# --- stream state across calls ----------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(key=st.binary(min_size=1, max_size=256), data=st.binary(max_size=3000),
       cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=8), drop=st.sampled_from([0, 1, 1024]))
def test_chunked_equals_whole(impl: type, key: bytes, data: bytes, cuts: list[int], drop: int) -> None:
    whole = impl(key, drop=drop).process(data)
    points = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    cipher = impl(key, drop=drop)
    pieces = [cipher.process(data[a:b]) for a, b in zip(points, points[1:])]
    assert b"".join(pieces) == whole
    # The same splits through the in-place and into-buffer paths.
    buf = bytearray(data)
    cipher = impl(key, drop=drop)
    for a, b in zip(points, points[1:]):
        cipher.process_into(buf, a, b)
    assert bytes(buf) == whole
    out = bytearray(len(data))
    cipher = impl(key, drop=drop)
    end = 0
    for a, b in zip(points, points[1:]):
        end = cipher.process_to(memoryview(data)[a:b], out, end)
    assert end == len(data) and bytes(out) == whole


def test_large_buffer_in_pieces_across_the_gil_threshold(impl: type) -> None:
    data = os.urandom(300_000)
    cipher = impl(b"k" * 20)
    pieces = [cipher.process(data[a:a + 70_001]) for a in range(0, len(data), 70_001)]
    assert b"".join(pieces) == impl(b"k" * 20).process(data)


# --- buffers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview], ids=["bytes", "bytearray", "memoryview"])
def test_process_accepts_bytes_like(impl: type, kind: type) -> None:
    data = os.urandom(100)
    out = impl(b"key").process(kind(data))
    assert type(out) is bytes
    assert out == impl(b"key").process(data)


def test_process_into_bytearray(impl: type) -> None:
    data = os.urandom(4000)
    buf = bytearray(data)
    assert impl(b"key").process_into(buf) is None
    assert bytes(buf) == impl(b"key").process(data)


def test_process_into_memoryview_slice_leaves_the_rest(impl: type) -> None:
    data = os.urandom(1000)
    buf = bytearray(data)
    impl(b"key").process_into(memoryview(buf)[100:900], 50, 700)
    assert buf[:150] == data[:150]
    assert buf[150:800] == impl(b"key").process(data[150:800])
    assert buf[800:] == data[800:]


def test_process_to_writes_only_its_range(impl: type) -> None:
    data = os.urandom(300)
    dst = bytearray(b"\xaa" * 1000)
    assert impl(b"key").process_to(data, dst, 200) == 500
    assert dst[:200] == b"\xaa" * 200 and dst[500:] == b"\xaa" * 500
    assert dst[200:500] == impl(b"key").process(data)


@pytest.mark.parametrize("shift", [-7, 0, 7])
def test_process_to_overlapping_source(impl: type, shift: int) -> None:
    buf = bytearray(os.urandom(1000))
    src = bytes(buf[100:900])
    impl(b"key").process_to(memoryview(buf)[100:900], buf, 100 + shift)
    assert buf[100 + shift:900 + shift] == impl(b"key").process(src)


def test_twins_agree() -> None:
    data = os.urandom(100_000)
    key = os.urandom(16)
    compiled = _compiled_rc4()(key, drop=1024)
    python = rc4.PyRC4(key, drop=1024)
    assert compiled.process(data[:777]) == python.process(data[:777])
    assert compiled.process(data[777:]) == python.process(data[777:])


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [b"", b"x" * 257], ids=["empty", "257-bytes"])
def test_bad_key_length(impl: type, key: bytes) -> None:
    with pytest.raises(ValueError, match=rf"RC4 key must be 1 to 256 bytes long, got {len(key)}$"):
        impl(key)


def test_longest_key_is_accepted(impl: type) -> None:
    assert impl(b"x" * 256).process(b"abc") == rc4.PyRC4(b"x" * 256).process(b"abc")


def test_negative_drop(impl: type) -> None:
    with pytest.raises(ValueError, match="RC4 drop must be >= 0, got -1"):
        impl(b"key", drop=-1)


def test_key_must_be_bytes_like(impl: type) -> None:
    with pytest.raises(TypeError):
        impl("key")


@pytest.mark.parametrize("start, end", [(-1, None), (5, 4), (0, 11)])
def test_process_into_bad_range(impl: type, start: int, end: int | None) -> None:
    buf = bytearray(b"0123456789")
    with pytest.raises(ValueError, match=r"RC4 range \[.*\] is outside a buffer of 10 bytes"):
        impl(b"key").process_into(buf, start, end)
    assert buf == b"0123456789"


def test_process_into_read_only(impl: type) -> None:
    with pytest.raises((TypeError, BufferError)):
        impl(b"key").process_into(b"read only")


@pytest.mark.parametrize("offset", [-1, 8])
def test_process_to_does_not_fit(impl: type, offset: int) -> None:
    dst = bytearray(10)
    with pytest.raises(ValueError, match="RC4 output of 3 bytes at offset .* does not fit a buffer of 10 bytes"):
        impl(b"key").process_to(b"abc", dst, offset)
    assert dst == bytearray(10)
