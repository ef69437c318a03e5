# Checks of one kernel argument with NumPy's C API, and scratch arrays: before a kernel runs.
#
# Included by _kernels.pyx and _quantized.pyx (each imports numpy as np, cimports numpy as
# cnp, and imports lstmx._workspace's MIN_BYTES as POOL_MIN_BYTES and empty as pooled_empty).
# A TypeError or ValueError names the argument, what it must be and what it is. The C API
# reads an array's type, flags and shape in nanoseconds, where a typed memoryview's
# acquisition costs about half a microsecond: a dozen of them outweighed the arithmetic of a
# short sequence.

cdef cnp.ndarray workspace(Py_ssize_t n, cnp.dtype dtype):
    """Scratch of n elements: from lstmx._workspace when large (fresh pages cost a page
    fault each), else from NumPy without the Python call."""
    if n * dtype.itemsize < POOL_MIN_BYTES:
        return np.empty(n, dtype)
    return pooled_empty(n, dtype)


cdef inline void *data(cnp.ndarray a) noexcept:
    return NULL if a is None else cnp.PyArray_DATA(a)


cdef int expect(cnp.ndarray a, str name, int typenum, Py_ssize_t d0, Py_ssize_t d1=-1,
                Py_ssize_t d2=-1) except -1:
    """Raise unless ``a`` is an aligned, C-contiguous, native-order array of ``typenum`` and
    shape (d0[, d1[, d2]])."""
    cdef int ndim = 1 if d1 < 0 else (2 if d2 < 0 else 3)
    cdef Py_ssize_t want[3]
    want[0], want[1], want[2] = d0, d1, d2
    if a is None:
        raise TypeError(f"kernel argument {name} is None; expected an array")
    if (cnp.PyArray_TYPE(a) != typenum or not cnp.PyArray_IS_C_CONTIGUOUS(a)
            or not cnp.PyArray_ISALIGNED(a) or not cnp.PyArray_ISNOTSWAPPED(a)):
        raise TypeError(f"kernel argument {name} must be an aligned C-contiguous "
                        f"native-order {np.dtype(cnp.PyArray_DescrFromType(typenum))} array; "
                        f"got {(<object> a).dtype} with flags {(<object> a).flags}")
    cdef int k
    cdef bint same = cnp.PyArray_NDIM(a) == ndim
    for k in range(ndim if same else 0):
        same = same and a.shape[k] == want[k]
    if not same:
        raise ValueError(f"kernel argument {name} must have shape "
                         f"{tuple(want[k] for k in range(ndim))}; got {(<object> a).shape}")
    return 0


cdef int expect_output(cnp.ndarray a, str name, int typenum, Py_ssize_t d0,
                       Py_ssize_t d1=-1, Py_ssize_t d2=-1) except -1:
    """``expect``, and writeable: ``a`` receives results."""
    expect(a, name, typenum, d0, d1, d2)
    if not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"kernel argument {name} receives results and must be writeable")
    return 0


cdef int expect_ndim(cnp.ndarray a, str name, int ndim) except -1:
    """Raise unless ``a`` is an array of ``ndim`` dimensions (its sizes are read next)."""
    if a is None:
        raise TypeError(f"kernel argument {name} is None; expected a {ndim}-D array")
    if cnp.PyArray_NDIM(a) != ndim:
        raise ValueError(f"kernel argument {name} must be {ndim}-D; got shape "
                         f"{(<object> a).shape}")
    return 0


cdef int expect_lengths(cnp.ndarray lengths, Py_ssize_t B, Py_ssize_t T) except -1:
    cdef Py_ssize_t bi
    cdef const Py_ssize_t *ln
    if lengths is None:
        return 0
    expect(lengths, "lengths", cnp.NPY_INTP, B)
    ln = <const Py_ssize_t *> cnp.PyArray_DATA(lengths)
    for bi in range(B):
        if ln[bi] < 1 or ln[bi] > T:
            raise ValueError(f"kernel argument lengths[{bi}] = {ln[bi]} is outside [1, {T}]")
    return 0
