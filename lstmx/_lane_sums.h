/* Sums of a row in 8 lanes of doubles, for the layer norms of the regularised cell, on AVX-512.
 *
 * Written as Cython loops over an array of 8 lanes (element j into lane j % 8), GCC 12 with
 * AVX-512 kept the lanes as 8 scalar doubles, half of the layer-norm forward's element-wise
 * time (docs/performance.md), where with AVX2 it vectorised them. Here, with AVX-512, the lanes
 * are one zmm register, and the groups of 8 take four accumulators in turn, so that no add
 * waits for the one before; element j adds into lane j % 8 of one of them, in a fixed order,
 * so that the sums have the same bits on every run and team (the 8 lanes add up pairwise in
 * _cell_regularised.pxi). With AVX2's 16 registers the four accumulators spilled (and a
 * 64-byte vector type ran slower than GCC's own vectorisation of the Cython loops), so other
 * builds keep those loops: LSTMX_LANE_SUMS_VECTOR says which. The functions take whole groups
 * of 8 (n8 elements); the caller adds the rest. */
#ifndef LSTMX_LANE_SUMS_H
#define LSTMX_LANE_SUMS_H

#include <stddef.h>
#include <string.h>

#define LSTMX_LANES 8

#if defined(__GNUC__) && defined(__AVX512F__)
#define LSTMX_LANE_SUMS_VECTOR 1
typedef double lstmx_v8d __attribute__((vector_size(64)));
typedef float lstmx_v8f __attribute__((vector_size(32)));

/* out = the 8 values at p as doubles. */
#define LSTMX_LANES_f(out, p)                                                                  \
    do {                                                                                      \
        lstmx_v8f x_;                                                                         \
        memcpy(&x_, (p), sizeof(x_));                                                         \
        (out) = __builtin_convertvector(x_, lstmx_v8d);                                       \
    } while (0)
#define LSTMX_LANES_d(out, p) memcpy(&(out), (p), sizeof(out))

/* out = the 8 products a * b in the row's precision, as doubles. */
#define LSTMX_PRODUCTS_f(out, a, b)                                                            \
    do {                                                                                      \
        lstmx_v8f x_, y_;                                                                     \
        memcpy(&x_, (a), sizeof(x_));                                                         \
        memcpy(&y_, (b), sizeof(y_));                                                         \
        (out) = __builtin_convertvector(x_ * y_, lstmx_v8d);                                  \
    } while (0)
#define LSTMX_PRODUCTS_d(out, a, b)                                                            \
    do {                                                                                      \
        lstmx_v8d x_, y_;                                                                     \
        memcpy(&x_, (a), sizeof(x_));                                                         \
        memcpy(&y_, (b), sizeof(y_));                                                         \
        (out) = x_ * y_;                                                                      \
    } while (0)

/* The groups of 8 go to 4 accumulators in turn (group g to accumulator g % 4, the last
 * n8 % 32 / 8 groups to the first ones), which add up as (0 + 1) + (2 + 3) at the end: with
 * one, every add waited for the last (a 4-cycle chain a group). STEP(a1, a2, j) adds group
 * j / 8 into a1 and a2. */
#define LSTMX_FOUR_WAYS(STEP)                                                                  \
    lstmx_v8d a10 = {0}, a11 = {0}, a12 = {0}, a13 = {0};                                      \
    lstmx_v8d a20 = {0}, a21 = {0}, a22 = {0}, a23 = {0};                                      \
    ptrdiff_t j = 0;                                                                          \
    for (; j + 4 * LSTMX_LANES <= n8; j += 4 * LSTMX_LANES) {                                 \
        STEP(a10, a20, j);                                                                    \
        STEP(a11, a21, j + LSTMX_LANES);                                                      \
        STEP(a12, a22, j + 2 * LSTMX_LANES);                                                  \
        STEP(a13, a23, j + 3 * LSTMX_LANES);                                                  \
    }                                                                                         \
    if (j < n8) { STEP(a10, a20, j); j += LSTMX_LANES; }                                      \
    if (j < n8) { STEP(a11, a21, j); j += LSTMX_LANES; }                                      \
    if (j < n8) { STEP(a12, a22, j); }                                                        \
    a10 = (a10 + a11) + (a12 + a13);                                                          \
    a20 = (a20 + a21) + (a22 + a23);                                                          \
    memcpy(s1, &a10, sizeof(a10));                                                            \
    memcpy(s2, &a20, sizeof(a20))

/* s1[k], s2[k] = the sums of d = v[j] - shift and of d**2 over j < n8, j = k (mod 8). */
#define LSTMX_SHIFTED_SUMS(SUFFIX, T)                                                          \
    static inline void lstmx_shifted_sums_##SUFFIX(ptrdiff_t n8, const T *v, double shift,   \
                                                   double *s1, double *s2)                    \
    {                                                                                         \
        lstmx_v8d d;                                                                          \
        LSTMX_FOUR_WAYS(LSTMX_SHIFTED_STEP_##SUFFIX);                                         \
    }
#define LSTMX_SHIFTED_STEP(SUFFIX, a1, a2, j)                                                  \
    do {                                                                                      \
        LSTMX_LANES_##SUFFIX(d, v + (j));                                                     \
        d -= shift;                                                                           \
        a1 += d;                                                                              \
        a2 += d * d;                                                                          \
    } while (0)
#define LSTMX_SHIFTED_STEP_f(a1, a2, j) LSTMX_SHIFTED_STEP(f, a1, a2, j)
#define LSTMX_SHIFTED_STEP_d(a1, a2, j) LSTMX_SHIFTED_STEP(d, a1, a2, j)

/* With p = double(a[j] * b[j]) (the product in the row's precision): s1[k], s2[k] = the
 * sums of p and of p * c[j] over j < n8, j = k (mod 8). */
#define LSTMX_PRODUCT_SUMS(SUFFIX, T)                                                          \
    static inline void lstmx_product_sums_##SUFFIX(ptrdiff_t n8, const T *a, const T *b,     \
                                                   const T *c, double *s1, double *s2)        \
    {                                                                                         \
        lstmx_v8d p, w;                                                                       \
        LSTMX_FOUR_WAYS(LSTMX_PRODUCT_STEP_##SUFFIX);                                         \
    }
#define LSTMX_PRODUCT_STEP(SUFFIX, a1, a2, j)                                                  \
    do {                                                                                      \
        LSTMX_PRODUCTS_##SUFFIX(p, a + (j), b + (j));                                         \
        LSTMX_LANES_##SUFFIX(w, c + (j));                                                     \
        a1 += p;                                                                              \
        a2 += p * w;                                                                          \
    } while (0)
#define LSTMX_PRODUCT_STEP_f(a1, a2, j) LSTMX_PRODUCT_STEP(f, a1, a2, j)
#define LSTMX_PRODUCT_STEP_d(a1, a2, j) LSTMX_PRODUCT_STEP(d, a1, a2, j)

#else
/* Never called: _cell_regularised.pxi runs its own loops where this is 0. */
#define LSTMX_LANE_SUMS_VECTOR 0
#define LSTMX_SHIFTED_SUMS(SUFFIX, T)                                                          \
    static inline void lstmx_shifted_sums_##SUFFIX(ptrdiff_t n8, const T *v, double shift,   \
                                                   double *s1, double *s2) {}
#define LSTMX_PRODUCT_SUMS(SUFFIX, T)                                                          \
    static inline void lstmx_product_sums_##SUFFIX(ptrdiff_t n8, const T *a, const T *b,     \
                                                   const T *c, double *s1, double *s2) {}
#endif

LSTMX_SHIFTED_SUMS(f, float)
LSTMX_SHIFTED_SUMS(d, double)
LSTMX_PRODUCT_SUMS(f, float)
LSTMX_PRODUCT_SUMS(d, double)

#endif
