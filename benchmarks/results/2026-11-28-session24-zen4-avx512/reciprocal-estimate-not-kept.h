/* NOT KEPT (session 24): the cell with this reciprocal ran no faster on Zen 4, whose cell is
 * bound by its count of vector operations, not by vdivps (docs/performance.md). */
/* 1/x over a row of float32 values, for the sigmoids and tanhs of the cell's element-wise loops.
 *
 * A division is the slowest instruction of the cell: on Zen 4 a 512-bit vdivps took half the
 * forward cell's time (docs/performance.md). The instruction set's reciprocal estimate refined
 * by Newton steps r' = r + r (1 - x r) costs a few multiply-adds instead: vrcp14ps (AVX-512,
 * relative error below 2**-14) needs one step, vrcpps (AVX2, below 1.5 * 2**-12) two, and each
 * step squares the error, so the result is within 0.6 ulp of 1/x (a division: 0.5 ulp). The
 * cell's denominators are 1 + e**v and e**2|v| + 1 with the exponent clamped to [-87.3, 87]:
 * normal numbers in [1, 7e37], whose reciprocals are normal too (the estimates flush only
 * subnormal results to zero), and NaN stays NaN. Other builds divide. */
#ifndef LSTMX_RECIPROCAL_H
#define LSTMX_RECIPROCAL_H

#include <stddef.h>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

static inline void lstmx_reciprocal_f32(float *x, ptrdiff_t n)
{
    ptrdiff_t j = 0;
#if defined(__AVX512F__)
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 v, r;
    for (; j + 16 <= n; j += 16) {
        v = _mm512_loadu_ps(x + j);
        r = _mm512_rcp14_ps(v);
        _mm512_storeu_ps(x + j, _mm512_fmadd_ps(r, _mm512_fnmadd_ps(v, r, one), r));
    }
    if (j < n) {
        /* The last lanes, masked: ones elsewhere, so no lane divides zero. */
        __mmask16 mask = (__mmask16)((1u << (n - j)) - 1u);
        v = _mm512_mask_loadu_ps(one, mask, x + j);
        r = _mm512_rcp14_ps(v);
        _mm512_mask_storeu_ps(x + j, mask, _mm512_fmadd_ps(r, _mm512_fnmadd_ps(v, r, one), r));
    }
#elif defined(__AVX2__) && defined(__FMA__)
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 v, r;
    for (; j + 8 <= n; j += 8) {
        v = _mm256_loadu_ps(x + j);
        r = _mm256_rcp_ps(v);
        r = _mm256_fmadd_ps(r, _mm256_fnmadd_ps(v, r, one), r);
        _mm256_storeu_ps(x + j, _mm256_fmadd_ps(r, _mm256_fnmadd_ps(v, r, one), r));
    }
    if (j < n) {
        /* The last values through the same instructions (padded with ones), so that a value
         * gets the same bits wherever a thread's share of the row ends. */
        float last[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        ptrdiff_t k;
        for (k = 0; j + k < n; k++)
            last[k] = x[j + k];
        v = _mm256_loadu_ps(last);
        r = _mm256_rcp_ps(v);
        r = _mm256_fmadd_ps(r, _mm256_fnmadd_ps(v, r, one), r);
        _mm256_storeu_ps(last, _mm256_fmadd_ps(r, _mm256_fnmadd_ps(v, r, one), r));
        for (k = 0; j + k < n; k++)
            x[j + k] = last[k];
    }
#else
    for (; j < n; j++)
        x[j] = 1.0f / x[j];
#endif
}

#endif
