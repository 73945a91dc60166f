# cython: language_level=3
"""SHA-1 piece hashing on OpenSSL's libcrypto with the GIL released.

Each call hashes whole pieces from one buffer without creating a Python
object per piece, and releases the GIL for the duration, so a thread pool
hashes on every core at once. Twin: ``torrent/hashing.py``.
"""

from libc.string cimport memcmp

cdef extern from "openssl/sha.h" nogil:
    unsigned char *SHA1(const unsigned char *d, size_t n, unsigned char *md)

DEF DIGEST = 20


cdef inline Py_ssize_t _piece_count(Py_ssize_t size, Py_ssize_t piece_length) except -1:
    if piece_length <= 0:
        raise ValueError(f"piece_length must be positive, not {piece_length}")
    return (size + piece_length - 1) // piece_length


def sha1(const unsigned char[::1] data not None) -> bytes:
    """SHA-1 digest of ``data``."""
    cdef unsigned char md[DIGEST]
    cdef Py_ssize_t n = data.shape[0]
    cdef const unsigned char *p = &data[0] if n else NULL
    with nogil:
        SHA1(p, <size_t>n, md)
    return md[:DIGEST]


def sha1_pieces(const unsigned char[::1] data not None, Py_ssize_t piece_length) -> bytes:
    """Concatenated digests of consecutive pieces; the last may be short."""
    cdef Py_ssize_t size = data.shape[0]
    cdef Py_ssize_t count = _piece_count(size, piece_length)
    cdef bytearray out = bytearray(count * DIGEST)
    cdef unsigned char *o = out
    cdef const unsigned char *p = &data[0] if size else NULL
    cdef Py_ssize_t i, off, n
    with nogil:
        for i in range(count):
            off = i * piece_length
            n = piece_length if size - off > piece_length else size - off
            SHA1(p + off, <size_t>n, o + i * DIGEST)
    return bytes(out)


def verify_pieces(const unsigned char[::1] data not None, Py_ssize_t piece_length,
                  const unsigned char[::1] expected not None) -> list:
    """Check consecutive pieces against concatenated expected digests.

    Returns one bool per piece. ``expected`` must hold exactly one 20-byte
    digest per piece in ``data``.
    """
    cdef Py_ssize_t size = data.shape[0]
    cdef Py_ssize_t count = _piece_count(size, piece_length)
    if expected.shape[0] != count * DIGEST:
        raise ValueError(f"expected {count * DIGEST} bytes of digests for {count} pieces, got {expected.shape[0]}")
    cdef bytearray ok = bytearray(count)
    cdef unsigned char *okp = ok
    cdef const unsigned char *p = &data[0] if size else NULL
    cdef const unsigned char *e = &expected[0] if count else NULL
    cdef unsigned char md[DIGEST]
    cdef Py_ssize_t i, off, n
    with nogil:
        for i in range(count):
            off = i * piece_length
            n = piece_length if size - off > piece_length else size - off
            SHA1(p + off, <size_t>n, md)
            okp[i] = memcmp(md, e + i * DIGEST, DIGEST) == 0
    return [b != 0 for b in ok]


def verify_piece(const unsigned char[::1] data not None, const unsigned char[::1] digest not None) -> bool:
    """True when SHA-1 of ``data`` equals the 20-byte ``digest``."""
    if digest.shape[0] != DIGEST:
        raise ValueError(f"a SHA-1 digest is 20 bytes, not {digest.shape[0]}")
    cdef unsigned char md[DIGEST]
    cdef Py_ssize_t n = data.shape[0]
    cdef const unsigned char *p = &data[0] if n else NULL
    with nogil:
        SHA1(p, <size_t>n, md)
    return memcmp(md, &digest[0], DIGEST) == 0
