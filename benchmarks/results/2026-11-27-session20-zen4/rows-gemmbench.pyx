# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# gemm_packed alone: bench(m, k, n, reps, 0) times C = A @ B with B packed, returns (best s, max error).
import numpy as np
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from lstmx._gemm cimport gemm_packed, pack_strips, strips, TILE_COLS

cdef extern from "_rows_tile.h":
    void rows6 "lstmx_rows6_f"(Py_ssize_t k, const float *A, Py_ssize_t a_row, Py_ssize_t a_col,
        const float *Bp, Py_ssize_t strip, float *C, Py_ssize_t ldc, Py_ssize_t cols, int add, const float *bias) noexcept nogil
    void rows2 "lstmx_rows2_f"(Py_ssize_t k, const float *A, Py_ssize_t a_row, Py_ssize_t a_col,
        const float *Bp, Py_ssize_t strip, float *C, Py_ssize_t ldc, Py_ssize_t cols, int add, const float *bias) noexcept nogil

cdef double now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9

def bench(Py_ssize_t m, Py_ssize_t k, Py_ssize_t n, Py_ssize_t reps, int how):
    A = np.random.default_rng(0).standard_normal((m, k)).astype(np.float32)
    B = np.random.default_rng(1).standard_normal((k, n)).astype(np.float32)
    C = np.zeros((m, n), np.float32)
    Bp = np.zeros(strips(n) * k * TILE_COLS, np.float32)
    cdef float[:, ::1] a = A, b = B, c = C
    cdef float[::1] bp = Bp
    cdef Py_ssize_t r, s, ns = strips(n)
    cdef double t0, best = 1e9
    pack_strips(k, 1, n, &b[0, 0], n, 1, 0, ns, &bp[0])
    for rr in range(5):
        with nogil:
            t0 = now()
            for r in range(reps):
                if how == 0:
                    gemm_packed(m, k, &a[0, 0], k, &bp[0], 1, n, 0, ns, True, &c[0, 0], n, NULL)
                else:
                    for s in range(ns):
                        if m >= 6:
                            rows6(k, &a[0, 0], k, 1, &bp[s * k * TILE_COLS], TILE_COLS, &c[0, s * TILE_COLS], n, 16, 1, NULL)
                            rows6(k, &a[0, 0], k, 1, &bp[s * k * TILE_COLS + 16], TILE_COLS, &c[0, s * TILE_COLS + 16], n, 16, 1, NULL)
                        if m == 8:
                            rows2(k, &a[6, 0], k, 1, &bp[s * k * TILE_COLS], TILE_COLS, &c[6, s * TILE_COLS], n, 32, 1, NULL)
            t0 = (now() - t0) / reps
        best = min(best, t0)
    C[:] = 0
    gemm_packed(m, k, &a[0, 0], k, &bp[0], 1, n, 0, ns, False, &c[0, 0], n, NULL)
    return best, float(np.abs(C - A @ B).max())
