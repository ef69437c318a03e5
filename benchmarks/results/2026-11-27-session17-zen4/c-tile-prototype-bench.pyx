# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# The prototype of the C tile (c-tile-prototype-tile6.h) against gemm_packed's Cython micro_tile
# of commit 6efe1d2, in isolation (built like rows-tile-gemmbench.pyx, module name mt).
import numpy as np
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from lstmx._gemm cimport gemm_packed, pack_strips, strips, TILE_COLS
cdef extern from "tile6.h":
    void tile6_f(Py_ssize_t k, const float *A, Py_ssize_t a_row, const float *Bp, float *C, Py_ssize_t ldc, int add) noexcept nogil

cdef double now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9

def bench(Py_ssize_t m, Py_ssize_t k, Py_ssize_t n, Py_ssize_t reps, bint mine):
    A = np.random.default_rng(0).standard_normal((m, k)).astype(np.float32)
    B = np.random.default_rng(1).standard_normal((k, n)).astype(np.float32)
    C = np.zeros((m, n), np.float32)
    Bp = np.zeros(strips(n) * k * TILE_COLS, np.float32)
    cdef float[:, ::1] a = A, b = B, c = C
    cdef float[::1] bp = Bp
    cdef Py_ssize_t r, s, i0, q
    cdef double t0, best = 1e9
    pack_strips(k, 1, n, &b[0, 0], n, 1, 0, strips(n), &bp[0])
    for rr in range(7):
        with nogil:
            t0 = now()
            for r in range(reps):
                if mine:
                    for s in range(strips(n)):
                        i0 = 0
                        while i0 < m:
                            for q in range(2):
                                tile6_f(k, &a[i0, 0], k, &bp[s * k * TILE_COLS + q * 16], &c[i0, s * 32 + q * 16], n, 1)
                            i0 += 6
                else:
                    gemm_packed(m, k, &a[0, 0], k, &bp[0], 1, n, 0, strips(n), True, &c[0, 0], n, NULL)
            t0 = (now() - t0) / reps
        best = min(best, t0)
    return best
