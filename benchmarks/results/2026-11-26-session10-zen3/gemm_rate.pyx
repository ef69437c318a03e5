# The rate of lstmx's in-house GEMM alone (G multiply-adds a second, one thread, B packed
# once): a scratch benchmark, not part of the package. It includes a copy of
# lstmx/_gemm.pxd as gemm.pxi; build it with the AVX2 flags of setup.py, e.g.
#   cp lstmx/_gemm.pxd gemm.pxi && CFLAGS="-O3 -mavx2 -mfma --param=max-completely-peel-times=7" \
#     cythonize -i -3 -X boundscheck=False -X wraparound=False -X cdivision=True gemm_rate.pyx
# and call gemm_rate.rate(m, k, n, reps) (gemm-rate-packed-rows.txt has the results).
# cython: language_level=3
include "gemm.pxi"
import numpy as np
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
cdef double now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + 1e-9 * ts.tv_nsec
def rate(Py_ssize_t m, Py_ssize_t k, Py_ssize_t n, int reps, bint add=True, Py_ssize_t lda=0):
    lda = lda or k
    A_ = np.random.rand(m, lda).astype(np.float32); B_ = np.random.rand(k, n).astype(np.float32)
    C_ = np.zeros((m, n), np.float32)
    cdef float[:, ::1] A = A_, B = B_, C = C_
    cdef Py_ssize_t per = strips(n // 4)
    Bp_ = np.zeros(4 * per * k * TILE_COLS, np.float32)
    cdef float[::1] Bp = Bp_
    pack_strips(k, 4, n // 4, &B[0, 0], n, 1, 0, per, &Bp[0])
    cdef double best = 1e9, t
    cdef int r
    for r in range(reps):
        t = now()
        gemm_packed(m, k, &A[0, 0], lda, &Bp[0], 4, n // 4, 0, per, add, &C[0, 0], n, <const float *> NULL)
        t = now() - t
        if t < best: best = t
    return m * k * n / best / 1e9

def kernel_rate(Py_ssize_t k, Py_ssize_t lda, int reps):
    """micro_tile alone on L1-resident data."""
    A_ = np.random.rand(TILE_ROWS * lda + k).astype(np.float32)
    Bp_ = np.random.rand(k * TILE_COLS).astype(np.float32)
    C_ = np.zeros(TILE_ROWS * 32, np.float32)
    cdef float[::1] A = A_, Bp = Bp_, C = C_
    cdef double t
    cdef int r
    t = now()
    for r in range(reps):
        micro_tile(k, &A[0], lda, 1, &Bp[0], &C[0], 32, True, <const float *> NULL)
        micro_tile(k, &A[0], lda, 1, &Bp[16], &C[16], 32, True, <const float *> NULL)
    t = now() - t
    return 2 * reps * TILE_ROWS * 16 * k / t / 1e9

def rate_chunks(Py_ssize_t rows, Py_ssize_t chunk, Py_ssize_t k, Py_ssize_t n, int reps):
    """The input projection as forward runs it: x (rows, k) in chunks of `chunk` rows into
    one reused z (chunk, n), from the bias."""
    A_ = np.random.rand(rows, k).astype(np.float32); B_ = np.random.rand(k, n).astype(np.float32)
    C_ = np.zeros((chunk, n), np.float32); b_ = np.random.rand(n).astype(np.float32)
    cdef float[:, ::1] A = A_, B = B_, C = C_
    cdef float[::1] bias = b_
    cdef Py_ssize_t per = strips(n // 4), i
    Bp_ = np.zeros(4 * per * k * TILE_COLS, np.float32)
    cdef float[::1] Bp = Bp_
    pack_strips(k, 4, n // 4, &B[0, 0], n, 1, 0, per, &Bp[0])
    cdef double best = 1e9, t
    cdef int r
    for r in range(reps):
        t = now()
        i = 0
        while i < rows:
            gemm_packed(min(chunk, rows - i), k, &A[i, 0], k, &Bp[0], 4, n // 4, 0, per, False, &C[0, 0], n, &bias[0])
            i += chunk
        t = now() - t
        if t < best: best = t
    return rows * k * n / best / 1e9
