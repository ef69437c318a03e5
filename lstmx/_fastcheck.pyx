"""The per-step fast path of input validation: is an array already what the kernels take?

Checking in C costs ~50 ns against ~1 us for the same checks on NumPy attributes from
Python, which matters when a whole LSTMCell step (B = 1) costs a few microseconds. Anything
that fails here goes through the full checks of ``lstmx._validation``.
"""
cimport numpy as cnp

cnp.import_array()


def ready(a, int typenum, Py_ssize_t d0, Py_ssize_t d1):
    """Whether ``a`` is an aligned, C-contiguous, native-order 2-D ndarray of ``typenum`` and
    shape (d0, d1), where d0 < 0 stands for any size >= 1."""
    if type(a) is not cnp.ndarray:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray> a
    return (cnp.PyArray_TYPE(arr) == typenum and cnp.PyArray_NDIM(arr) == 2
            and cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)
            and cnp.PyArray_ISNOTSWAPPED(arr)
            and (arr.shape[0] == d0 or (d0 < 0 and arr.shape[0] >= 1)) and arr.shape[1] == d1)
