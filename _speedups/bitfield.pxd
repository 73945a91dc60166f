# Declarations of the compiled piece bitfield, so that other Cython modules (a
# compiled picker, say) can ``cimport`` it and reach the words without Python calls.
cimport cython
from libc.stdint cimport uint64_t


# final: direct C calls, no subclass vtable. no_gc: the only object field holds an
# int, so the type cannot be part of a reference cycle.
@cython.final
@cython.no_gc
cdef class Bitfield:
    # Storage: _nwords 64-bit words (at least _nbytes bytes, padded to a multiple
    # of 8). Byte i of the wire form is byte i of the buffer; every bit past
    # _length (spare bits and padding) is always zero, so word loops need no tail
    # handling. _count is the number of set pieces, kept current by every method.
    cdef uint64_t *_words
    cdef Py_ssize_t _length
    cdef Py_ssize_t _nbytes
    cdef Py_ssize_t _nwords
    cdef Py_ssize_t _count
    # count() hands back one int object per value instead of allocating a new
    # one per call (counts above 256 are not cached by CPython); it is refreshed
    # lazily when _count has moved on, so set/clear pay nothing for it.
    cdef object _count_obj
    cdef Py_ssize_t _count_obj_value

    cdef int _alloc(self, Py_ssize_t length, bint zero) except -1
    cdef int _check_same(self, Bitfield other) except -1
