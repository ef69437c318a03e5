# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# Micro-benchmark of gemm_packed against the rows_tile kernel (_rows_tile.h) on 2 and 3 rows:
# build with `python rows-tile-gemmbench-setup.py build_ext --inplace` beside an lstmx checkout
# at /work/main, then run rows-tile-gemmbench-run.py (it splits rows in 3s; 2 and 3 rows are
# what gemm_packed now runs on rows_tile).
import numpy as np
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from lstmx._gemm cimport gemm_packed, pack_strips, strips, TILE_COLS, gemm_small

cdef double now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9

def bench(Py_ssize_t m, Py_ssize_t k, Py_ssize_t n, Py_ssize_t reps, bint small=False, bint per_strip=False):
    A = np.random.default_rng(0).standard_normal((m, k)).astype(np.float32)
    B = np.random.default_rng(1).standard_normal((k, n)).astype(np.float32)
    C = np.zeros((m, n), np.float32)
    Bp = np.zeros(strips(n) * k * TILE_COLS, np.float32)
    cdef float[:, ::1] a = A, b = B, c = C
    cdef float[::1] bp = Bp
    cdef Py_ssize_t r, s
    cdef double t0, best = 1e9
    pack_strips(k, 1, n, &b[0, 0], n, 1, 0, strips(n), &bp[0])
    for rr in range(5):
        with nogil:
            t0 = now()
            for r in range(reps):
                if small:
                    gemm_small(m, n, k, &a[0, 0], k, &b[0, 0], n, 1, &c[0, 0], n)
                elif per_strip:
                    for s in range(strips(n)):
                        gemm_packed(m, k, &a[0, 0], k, &bp[0], 1, n, s, s + 1, True, &c[0, 0], n, NULL)
                else:
                    gemm_packed(m, k, &a[0, 0], k, &bp[0], 1, n, 0, strips(n), True, &c[0, 0], n, NULL)
            t0 = (now() - t0) / reps
        best = min(best, t0)
    return best

cdef extern from "_rows_tile.h":
    void rows_f "lstmx_rows_f"(Py_ssize_t rows, Py_ssize_t k, const float *A, Py_ssize_t a_row,
        Py_ssize_t a_col, const float *Bp, Py_ssize_t strip, float *C, Py_ssize_t ldc,
        Py_ssize_t cols, int add, const float *bias) noexcept nogil


cdef Py_ssize_t SPLIT = 3
cdef void few(Py_ssize_t m, Py_ssize_t k, const float *A, const float *Bp, Py_ssize_t n, float *C) noexcept nogil:
    cdef Py_ssize_t s, r0, r, ns = strips(n)
    for s in range(ns):
        r0 = 0
        while r0 < m:
            r = m - r0
            if r > SPLIT:
                r = SPLIT
            rows_f(r, k, A + r0 * k, k, 1, Bp + s * k * TILE_COLS, TILE_COLS, C + r0 * n + s * TILE_COLS, n, TILE_COLS, 1, NULL)
            r0 += r

def bench_few(Py_ssize_t m, Py_ssize_t k, Py_ssize_t n, Py_ssize_t reps, Py_ssize_t split=3):
    global SPLIT
    SPLIT = split
    A = np.random.default_rng(0).standard_normal((m, k)).astype(np.float32)
    B = np.random.default_rng(1).standard_normal((k, n)).astype(np.float32)
    C = np.zeros((m, n), np.float32)
    C2 = np.zeros((m, n), np.float32)
    Bp = np.zeros(strips(n) * k * TILE_COLS, np.float32)
    cdef float[:, ::1] a = A, b = B, c = C, c2 = C2
    cdef float[::1] bp = Bp
    cdef Py_ssize_t r
    cdef double t0, best = 1e9
    pack_strips(k, 1, n, &b[0, 0], n, 1, 0, strips(n), &bp[0])
    few(m, k, &a[0,0], &bp[0], n, &c[0,0])
    gemm_packed(m, k, &a[0, 0], k, &bp[0], 1, n, 0, strips(n), True, &c2[0, 0], n, NULL)
    same = np.array_equal(C, C2)
    for rr in range(5):
        with nogil:
            t0 = now()
            for r in range(reps):
                few(m, k, &a[0,0], &bp[0], n, &c[0,0])
            t0 = (now() - t0) / reps
        best = min(best, t0)
    return best, same
