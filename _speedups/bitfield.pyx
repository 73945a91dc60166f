# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: always_allow_keywords=False
"""Compiled piece bitfield (BEP 3 wire layout); twin of ``torrent.core.bitfield.PyBitfield``.

The piece picker runs set algebra over every peer's bitfield (up to millions of
pieces, hundreds of peers), so bulk operations work 64 bits at a time over a C
buffer and single-bit methods touch no Python objects. ``always_allow_keywords``
is off so one-argument methods (``get``/``set``/``clear``) use the cheapest
calling convention (METH_O).
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy, memset

from torrent.core.errors import BitfieldError

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    /* Wire order is MSB-first within each byte, byte 0 first. Loading a word and
       byte-swapping it on little-endian machines makes piece 64k+j bit 63-j, so
       clz finds the lowest piece index. */
    static inline uint64_t bf_be(uint64_t w) {
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        return w;
    #else
        return __builtin_bswap64(w);
    #endif
    }

    /* x86-64's baseline has no POPCNT: without it GCC turns __builtin_popcountll
       into a libgcc call that is several times slower. The popcount-heavy kernels
       are therefore compiled twice, once for POPCNT, and picked at import time. */
    #define BF_KERNELS(SFX, ATTR)                                                  \\
    static ATTR Py_ssize_t bf_popcount_##SFX(const uint64_t *a, Py_ssize_t n) {    \\
        Py_ssize_t c = 0;                                                          \\
        for (Py_ssize_t i = 0; i < n; i++) c += __builtin_popcountll(a[i]);        \\
        return c;                                                                  \\
    }                                                                              \\
    static ATTR Py_ssize_t bf_and_not_##SFX(uint64_t *d, const uint64_t *a,        \\
                                            const uint64_t *b, Py_ssize_t n) {     \\
        Py_ssize_t c = 0;                                                          \\
        for (Py_ssize_t i = 0; i < n; i++) {                                       \\
            uint64_t x = a[i] & ~b[i]; d[i] = x; c += __builtin_popcountll(x);     \\
        }                                                                          \\
        return c;                                                                  \\
    }                                                                              \\
    static ATTR Py_ssize_t bf_and_##SFX(uint64_t *d, const uint64_t *a,            \\
                                        const uint64_t *b, Py_ssize_t n) {         \\
        Py_ssize_t c = 0;                                                          \\
        for (Py_ssize_t i = 0; i < n; i++) {                                       \\
            uint64_t x = a[i] & b[i]; d[i] = x; c += __builtin_popcountll(x);      \\
        }                                                                          \\
        return c;                                                                  \\
    }                                                                              \\
    static ATTR Py_ssize_t bf_or_##SFX(uint64_t *d, const uint64_t *a,             \\
                                       const uint64_t *b, Py_ssize_t n) {          \\
        Py_ssize_t c = 0;                                                          \\
        for (Py_ssize_t i = 0; i < n; i++) {                                       \\
            uint64_t x = a[i] | b[i]; d[i] = x; c += __builtin_popcountll(x);      \\
        }                                                                          \\
        return c;                                                                  \\
    }

    BF_KERNELS(generic, )
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    #define BF_X86_DISPATCH 1
    BF_KERNELS(popcnt, __attribute__((target("popcnt"))))
    #endif

    typedef Py_ssize_t (*bf_count_fn)(const uint64_t *, Py_ssize_t);
    typedef Py_ssize_t (*bf_binop_fn)(uint64_t *, const uint64_t *, const uint64_t *, Py_ssize_t);
    static bf_count_fn bf_popcount = bf_popcount_generic;
    static bf_binop_fn bf_and_not = bf_and_not_generic;
    static bf_binop_fn bf_and = bf_and_generic;
    static bf_binop_fn bf_or = bf_or_generic;

    static void bf_init_kernels(void) {
    #ifdef BF_X86_DISPATCH
        __builtin_cpu_init();
        if (__builtin_cpu_supports("popcnt")) {
            bf_popcount = bf_popcount_popcnt;
            bf_and_not = bf_and_not_popcnt;
            bf_and = bf_and_popcnt;
            bf_or = bf_or_popcnt;
        }
    #endif
    }

    /* Any bit in a and not in b? OR blocks of 16 words together before testing,
       so the common "nothing missing" case is a branch-light, vectorisable scan. */
    static int bf_any_and_not(const uint64_t *a, const uint64_t *b, Py_ssize_t n) {
        Py_ssize_t i = 0;
        for (; i + 16 <= n; i += 16) {
            uint64_t acc = 0;
            for (int j = 0; j < 16; j++) acc |= a[i + j] & ~b[i + j];
            if (acc) return 1;
        }
        for (; i < n; i++) if (a[i] & ~b[i]) return 1;
        return 0;
    }

    /* First set bit at or after start; -1 if none. Padding bits are zero, so a
       hit is always below the length. */
    static Py_ssize_t bf_next_set(const uint64_t *w, Py_ssize_t nwords, Py_ssize_t start) {
        Py_ssize_t k = start >> 6;
        if (k >= nwords) return -1;
        uint64_t x = bf_be(w[k]) & (~(uint64_t)0 >> (start & 63));
        while (!x) {
            if (++k >= nwords) return -1;
            x = w[k];
            if (x) x = bf_be(x);
        }
        return (k << 6) + __builtin_clzll(x);
    }

    /* First clear bit at or after start, below length; -1 if none. */
    static Py_ssize_t bf_next_clear(const uint64_t *w, Py_ssize_t nwords, Py_ssize_t length,
                                    Py_ssize_t start) {
        Py_ssize_t k = start >> 6;
        if (k >= nwords) return -1;
        uint64_t x = ~bf_be(w[k]) & (~(uint64_t)0 >> (start & 63));
        while (!x) {
            if (++k >= nwords) return -1;
            x = ~w[k];
            if (x) x = bf_be(x);
        }
        Py_ssize_t r = (k << 6) + __builtin_clzll(x);
        return r < length ? r : -1;
    }

    /* The list of set indexes, built in C: zero words are skipped, and the list
       is allocated once at its final size (count is known). */
    static PyObject *bf_iter_set(const uint64_t *w, Py_ssize_t nwords, Py_ssize_t count) {
        PyObject *list = PyList_New(count);
        if (list == NULL) return NULL;
        Py_ssize_t j = 0;
        for (Py_ssize_t k = 0; k < nwords; k++) {
            uint64_t x = w[k];
            if (!x) continue;
            x = bf_be(x);
            Py_ssize_t base = k << 6;
            do {
                int off = __builtin_clzll(x);
                x ^= ((uint64_t)1 << 63) >> off;
                if (j >= count) goto miscounted;
                PyObject *v = PyLong_FromSsize_t(base + off);
                if (v == NULL) { Py_DECREF(list); return NULL; }
                PyList_SET_ITEM(list, j, v);
                j++;
            } while (x);
        }
        if (j == count) return list;
    miscounted:
        Py_DECREF(list);
        PyErr_SetString(PyExc_SystemError, "bitfield count out of step with its bits");
        return NULL;
    }
    """
    ctypedef Py_ssize_t (*bf_count_fn)(const uint64_t *, Py_ssize_t) noexcept nogil
    ctypedef Py_ssize_t (*bf_binop_fn)(uint64_t *, const uint64_t *, const uint64_t *,
                                       Py_ssize_t) noexcept nogil
    bf_count_fn bf_popcount
    bf_binop_fn bf_and_not
    bf_binop_fn bf_and
    bf_binop_fn bf_or
    void bf_init_kernels() noexcept
    bint bf_any_and_not(const uint64_t *a, const uint64_t *b, Py_ssize_t n) noexcept nogil
    Py_ssize_t bf_next_set(const uint64_t *w, Py_ssize_t nwords,
                           Py_ssize_t start) noexcept nogil
    Py_ssize_t bf_next_clear(const uint64_t *w, Py_ssize_t nwords, Py_ssize_t length,
                             Py_ssize_t start) noexcept nogil
    list bf_iter_set(const uint64_t *w, Py_ssize_t nwords, Py_ssize_t count)

bf_init_kernels()

# Storage of every zero-length bitfield (and of one not yet allocated): never
# written, since every loop over it runs zero times; never freed.
cdef uint64_t _EMPTY[1]
_EMPTY[0] = 0


cdef inline Py_ssize_t _nbytes_for(Py_ssize_t length) noexcept nogil:
    return (length >> 3) + ((length & 7) != 0)


cdef object _index_error(Py_ssize_t index, Py_ssize_t length):
    return IndexError(f"piece index {index} out of range for {length} pieces")


cdef object _start_error(Py_ssize_t start, Py_ssize_t length):
    return IndexError(f"start {start} out of range for {length} pieces")


@cython.final
@cython.no_gc
cdef class Bitfield:
    """Which pieces a peer (or we) have, as a packed BEP 3 bitfield.

    Bit ``i`` is piece ``i``; the first byte's high bit is piece 0. ``count()``
    is O(1); bulk operations run a 64-bit word at a time.
    """

    __hash__ = None  # mutable

    def __cinit__(self):
        self._words = _EMPTY
        self._length = 0
        self._nbytes = 0
        self._nwords = 0
        self._count = 0
        self._count_obj = 0
        self._count_obj_value = 0

    def __init__(self, Py_ssize_t length):
        if length < 0:
            raise ValueError(f"bitfield length must be >= 0, got {length}")
        self._alloc(length, True)

    def __dealloc__(self):
        if self._words != _EMPTY:
            free(self._words)

    cdef int _alloc(self, Py_ssize_t length, bint zero) except -1:
        """Give self storage for ``length`` pieces, count 0; zeroed when asked
        (callers that overwrite every word skip it)."""
        cdef Py_ssize_t nwords = (length >> 6) + ((length & 63) != 0)
        cdef uint64_t *words = _EMPTY
        if nwords:
            words = <uint64_t *>(calloc(nwords, 8) if zero else malloc(nwords * 8))
            if words == NULL:
                raise MemoryError(f"cannot allocate a bitfield of {length} pieces")
        if self._words != _EMPTY:
            free(self._words)
        self._words = words
        self._length = length
        self._nbytes = _nbytes_for(length)
        self._nwords = nwords
        self._count = 0
        return 0

    cdef int _check_same(self, Bitfield other) except -1:
        if other._length != self._length:
            raise ValueError(f"bitfield lengths differ: {self._length} and {other._length}")
        return 0

    @classmethod
    def from_bytes(cls, data, Py_ssize_t length):
        """Parse a wire bitfield; ``BitfieldError`` if its size or spare bits are wrong."""
        cdef Py_buffer view
        cdef Py_ssize_t expected
        cdef unsigned char last, spare_mask
        cdef Bitfield bf
        if length < 0:
            raise ValueError(f"bitfield length must be >= 0, got {length}")
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            expected = _nbytes_for(length)
            if view.len != expected:
                raise BitfieldError(
                    f"bitfield for {length} pieces must be {expected} bytes, got {view.len}"
                )
            if length & 7:
                last = (<unsigned char *>view.buf)[expected - 1]
                spare_mask = 0xFF >> (length & 7)
                if last & spare_mask:
                    raise BitfieldError(
                        f"bitfield for {length} pieces has spare bits set in its last byte "
                        f"(0x{last:02x})"
                    )
            bf = Bitfield.__new__(Bitfield)
            bf._alloc(length, False)
            if bf._nwords:
                bf._words[bf._nwords - 1] = 0  # padding past the wire bytes
                memcpy(bf._words, view.buf, expected)
            bf._count = bf_popcount(bf._words, bf._nwords)
            return bf
        finally:
            PyBuffer_Release(&view)

    def to_bytes(self):
        """The wire form (``ceil(len/8)`` bytes, spare bits zero)."""
        return PyBytes_FromStringAndSize(<char *>self._words, self._nbytes)

    def copy(self):
        """An independent bitfield with the same bits."""
        cdef Bitfield bf = Bitfield.__new__(Bitfield)
        bf._alloc(self._length, False)
        memcpy(bf._words, self._words, self._nwords * 8)
        bf._count = self._count
        return bf

    def __copy__(self):
        return self.copy()

    def __reduce__(self):
        return (Bitfield.from_bytes, (self.to_bytes(), self._length))

    def __len__(self):
        return self._length

    def __eq__(self, other):
        if not isinstance(other, Bitfield):
            return NotImplemented
        cdef Bitfield o = <Bitfield>other
        return (
            o._length == self._length
            and o._count == self._count
            and memcmp(o._words, self._words, self._nbytes) == 0
        )

    def __repr__(self):
        return f"Bitfield(length={self._length}, count={self._count})"

    def get(self, Py_ssize_t index):
        """True if piece ``index`` is set; IndexError outside ``[0, len)``."""
        if <size_t>index >= <size_t>self._length:
            raise _index_error(index, self._length)
        return ((<unsigned char *>self._words)[index >> 3] & (0x80 >> (index & 7))) != 0

    def __getitem__(self, Py_ssize_t index):
        if <size_t>index >= <size_t>self._length:
            raise _index_error(index, self._length)
        return ((<unsigned char *>self._words)[index >> 3] & (0x80 >> (index & 7))) != 0

    def set(self, Py_ssize_t index):
        """Mark piece ``index`` as present."""
        if <size_t>index >= <size_t>self._length:
            raise _index_error(index, self._length)
        cdef unsigned char *p = <unsigned char *>self._words + (index >> 3)
        cdef unsigned char mask = 0x80 >> (index & 7)
        if not (p[0] & mask):
            p[0] |= mask
            self._count += 1

    def clear(self, Py_ssize_t index):
        """Mark piece ``index`` as missing."""
        if <size_t>index >= <size_t>self._length:
            raise _index_error(index, self._length)
        cdef unsigned char *p = <unsigned char *>self._words + (index >> 3)
        cdef unsigned char mask = 0x80 >> (index & 7)
        if p[0] & mask:
            p[0] &= ~mask
            self._count -= 1

    def set_all(self):
        """Every piece present (a seed)."""
        if not self._nbytes:
            return
        memset(self._words, 0xFF, self._nbytes)
        (<unsigned char *>self._words)[self._nbytes - 1] = <unsigned char>(
            0xFF << ((8 - (self._length & 7)) & 7)
        )
        self._count = self._length

    def clear_all(self):
        """No piece present."""
        memset(self._words, 0, self._nwords * 8)
        self._count = 0

    def count(self):
        """Number of set pieces, O(1)."""
        if self._count_obj_value != self._count:
            self._count_obj = self._count
            self._count_obj_value = self._count
        return self._count_obj

    def all(self):
        """True if every piece is set (also for a zero-length field)."""
        return self._count == self._length

    def none(self):
        """True if no piece is set."""
        return self._count == 0

    def iter_set(self):
        """Indexes of the set pieces, ascending, as a list."""
        return bf_iter_set(self._words, self._nwords, self._count)

    def __iter__(self):
        return iter(bf_iter_set(self._words, self._nwords, self._count))

    def next_set(self, Py_ssize_t start):
        """First set index >= ``start`` or -1; ``start`` may be ``len(self)``."""
        if <size_t>start > <size_t>self._length:
            raise _start_error(start, self._length)
        return bf_next_set(self._words, self._nwords, start)

    def next_clear(self, Py_ssize_t start):
        """First clear index >= ``start`` or -1; ``start`` may be ``len(self)``."""
        if <size_t>start > <size_t>self._length:
            raise _start_error(start, self._length)
        return bf_next_clear(self._words, self._nwords, self._length, start)

    def and_not(self, Bitfield other not None):
        """Pieces in self missing from ``other`` (``self & ~other``)."""
        self._check_same(other)
        cdef Bitfield r = Bitfield.__new__(Bitfield)
        r._alloc(self._length, False)
        r._count = bf_and_not(r._words, self._words, other._words, self._nwords)
        return r

    def and_(self, Bitfield other not None):
        """Pieces in both."""
        self._check_same(other)
        cdef Bitfield r = Bitfield.__new__(Bitfield)
        r._alloc(self._length, False)
        r._count = bf_and(r._words, self._words, other._words, self._nwords)
        return r

    def or_(self, Bitfield other not None):
        """Pieces in either."""
        self._check_same(other)
        cdef Bitfield r = Bitfield.__new__(Bitfield)
        r._alloc(self._length, False)
        r._count = bf_or(r._words, self._words, other._words, self._nwords)
        return r

    def any_and_not(self, Bitfield other not None):
        """Is some piece in self missing from ``other``? (interest test, no allocation)"""
        self._check_same(other)
        if self._count == 0 or other._count == other._length:
            return False
        return bf_any_and_not(self._words, other._words, self._nwords)

    def __and__(self, other):
        if not isinstance(other, Bitfield):
            return NotImplemented
        return self.and_(other)

    def __or__(self, other):
        if not isinstance(other, Bitfield):
            return NotImplemented
        return self.or_(other)
