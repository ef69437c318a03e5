/* gemm_small's two-chain row kernel (_gemm.pxd): 32 columns of one row of C, in registers. */
#ifndef LSTMX_SMALL_ROWS_H
#define LSTMX_SMALL_ROWS_H

#include <stddef.h>
#include <string.h>

/* Columns of C a call sums: SMALL_BLOCK of _gemm.pxd. */
#define LSTMX_SMALL_COLS 32

/* total[j] += (sum of A[p * a_col] * B[p * ldb + j] over even p - p0) + (the same over odd
 * p - p0), for j < 32 and p in [p0, p1), p1 - p0 >= 2: two chains, each summed in order of
 * p from its first product (a multiply; the others multiply-adds), so that a row's sums do
 * not wait on one chain. The Cython loop this replaces summed the same way, but GCC kept
 * its eight vectors of sums on the stack, a load and a store around every multiply-add:
 * here they are vector variables, in registers. */
#if !defined(__GNUC__)
#error "lstmx's kernels need GCC or Clang (setup.py passes them GCC's flags)"
#endif
typedef float lstmx_small_vf __attribute__((vector_size(32)));
typedef double lstmx_small_vd __attribute__((vector_size(32)));
#define LSTMX_TWO_CHAINS(NAME, T, V)                                                        \
static inline void NAME(ptrdiff_t p0, ptrdiff_t p1, const T *A, ptrdiff_t a_col,           \
                        const T *B, ptrdiff_t ldb, T *total)                               \
{                                                                                           \
    enum { NV = LSTMX_SMALL_COLS * sizeof(T) / sizeof(V), W = sizeof(V) / sizeof(T) };     \
    V acc[NV], acc2[NV], b, b2, t;                                                          \
    T a = A[p0 * a_col], a2 = A[(p0 + 1) * a_col];                                          \
    ptrdiff_t p;                                                                            \
    int v;                                                                                  \
    _Pragma("GCC unroll 8")                                                                 \
    for (v = 0; v < NV; v++) {                                                              \
        memcpy(&b, B + p0 * ldb + v * W, sizeof b);                                         \
        memcpy(&b2, B + (p0 + 1) * ldb + v * W, sizeof b2);                                 \
        acc[v] = a * b;                                                                     \
        acc2[v] = a2 * b2;                                                                  \
    }                                                                                       \
    _Pragma("GCC unroll 1")                                                                 \
    for (p = p0 + 2; p + 1 < p1; p += 2) {                                                  \
        a = A[p * a_col];                                                                   \
        a2 = A[(p + 1) * a_col];                                                            \
        _Pragma("GCC unroll 8")                                                             \
        for (v = 0; v < NV; v++) {                                                          \
            memcpy(&b, B + p * ldb + v * W, sizeof b);                                      \
            memcpy(&b2, B + (p + 1) * ldb + v * W, sizeof b2);                              \
            acc[v] += a * b;                                                                \
            acc2[v] += a2 * b2;                                                             \
        }                                                                                   \
    }                                                                                       \
    if ((p1 - p0) % 2) {                                                                    \
        a = A[(p1 - 1) * a_col];                                                            \
        _Pragma("GCC unroll 8")                                                             \
        for (v = 0; v < NV; v++) {                                                          \
            memcpy(&b, B + (p1 - 1) * ldb + v * W, sizeof b);                               \
            acc[v] += a * b;                                                                \
        }                                                                                   \
    }                                                                                       \
    _Pragma("GCC unroll 8")                                                                 \
    for (v = 0; v < NV; v++) {                                                              \
        memcpy(&t, total + v * W, sizeof t);                                                \
        t += acc[v] + acc2[v];                                                              \
        memcpy(total + v * W, &t, sizeof t);                                                \
    }                                                                                       \
}
LSTMX_TWO_CHAINS(lstmx_two_chains_f, float, lstmx_small_vf)
LSTMX_TWO_CHAINS(lstmx_two_chains_d, double, lstmx_small_vd)

#endif
