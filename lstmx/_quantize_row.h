/* One row of activations rounded to int8 levels, a vector at a time, on AVX-512.
 *
 * As Cython loops, GCC 12 vectorised the rounding 64 values an iteration (64 bytes out), so a
 * row of 48 values ran as 32 and 16 single ones, and one of 63 left 31 to scalar code: int8
 * at H=63 spent twice as long rounding its rows as at H=64 (docs/performance.md). Here the
 * vectors are GNU C vector types of 16 floats, whole vectors first; the last values of a row
 * run as the row's last whole vector, which overlaps values done before: a max and an
 * element-wise rounding give the same result twice. Every value gets the same IEEE operations
 * as in the Cython loops, so the results are theirs. Rows shorter than a vector, and the
 * builds without AVX-512, keep the Cython loops (LSTMX_QUANTIZE_ROW_VECTOR is 0): with AVX2,
 * 8 int32 narrow to 8 bytes lane by lane, and the vectors here ran 3% slower than GCC's own
 * vectorisation at H=256. */
#ifndef LSTMX_QUANTIZE_ROW_H
#define LSTMX_QUANTIZE_ROW_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_vector_width.h"

#if LSTMX_VECTOR_BYTES == 64
#define LSTMX_QUANTIZE_ROW_VECTOR 1
#include <immintrin.h>
#else
#define LSTMX_QUANTIZE_ROW_VECTOR 0
#endif

#define LSTMX_QV (LSTMX_VECTOR_BYTES / 4)
typedef float lstmx_qf __attribute__((vector_size(LSTMX_VECTOR_BYTES)));
typedef int32_t lstmx_qi __attribute__((vector_size(LSTMX_VECTOR_BYTES)));
typedef uint32_t lstmx_qu __attribute__((vector_size(LSTMX_VECTOR_BYTES)));
typedef uint8_t lstmx_qb __attribute__((vector_size(LSTMX_QV)));

/* acc and the bits of |v[j]|, j < LSTMX_QV, lane by lane: the larger. (GCC makes a compare
 * and a blend of the vector expression, a chain three times as long as one max.) */
static inline lstmx_qu lstmx_abs_bits_max_step(lstmx_qu acc, const float *v)
{
    lstmx_qu x;
    memcpy(&x, v, sizeof(x));
    x &= 0x7fffffffu;
#if LSTMX_QUANTIZE_ROW_VECTOR
    return (lstmx_qu)_mm512_max_epu32((__m512i)x, (__m512i)acc);
#else
    /* (Not called: quantize_rows keeps its Cython loops in these builds.) */
    lstmx_qu take = (lstmx_qu)(x > acc);
    return (x & take) | (acc & ~take);
#endif
}

/* max over k < K of the bits of |v[k]|, K >= LSTMX_QV: for non-negative floats (and inf and
 * NaN above every finite float) the order of the bits is the order of the values. */
static inline uint32_t lstmx_abs_bits_max(ptrdiff_t K, const float *v)
{
    uint32_t top = 0;
    lstmx_qu acc = {0};
    ptrdiff_t k = 0;
    for (; k + LSTMX_QV <= K; k += LSTMX_QV)
        acc = lstmx_abs_bits_max_step(acc, v + k);
    if (k < K)
        acc = lstmx_abs_bits_max_step(acc, v + K - LSTMX_QV);
    for (int j = 0; j < LSTMX_QV; j++)
        top = acc[j] > top ? acc[j] : top;
    return top;
}

/* q[j] = rint(clip(v[j] / s, -levels, levels)) + zero, j < LSTMX_QV. */
static inline void lstmx_round_bytes_step(const float *v, float s, float levels, int32_t zero,
                                          uint8_t *q)
{
    const float rounder = 12582912.0f; /* 1.5 * 2**23: adding and subtracting it rounds to even */
    const lstmx_qf top = (lstmx_qf){0} + levels, bottom = (lstmx_qf){0} - levels;
    lstmx_qf x, u;
    lstmx_qi over, under;
    lstmx_qb bytes;
    memcpy(&x, v, sizeof(x));
    u = x / s;
    over = u > top;
    u = (lstmx_qf)(((lstmx_qi)top & over) | ((lstmx_qi)u & ~over));
    under = u < bottom;
    u = (lstmx_qf)(((lstmx_qi)bottom & under) | ((lstmx_qi)u & ~under));
    bytes = __builtin_convertvector(
        __builtin_convertvector((u + rounder) - rounder, lstmx_qi) + zero, lstmx_qb);
    memcpy(q, &bytes, sizeof(bytes));
}

/* q[k] = rint(clip(v[k] / s, -levels, levels)) + zero, k < K, K >= LSTMX_QV. */
static inline void lstmx_round_bytes(ptrdiff_t K, const float *v, float s, float levels,
                                     int32_t zero, uint8_t *q)
{
    ptrdiff_t k = 0;
    for (; k + LSTMX_QV <= K; k += LSTMX_QV)
        lstmx_round_bytes_step(v + k, s, levels, zero, q + k);
    if (k < K)
        lstmx_round_bytes_step(v + K - LSTMX_QV, s, levels, zero, q + K - LSTMX_QV);
}

#endif
