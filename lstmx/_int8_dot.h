/* The exact u8 x s8 dot products of lstmx's int8 kernels (_quantized.pyx): a 2 x 4 tile. */
#ifndef LSTMX_INT8_DOT_H
#define LSTMX_INT8_DOT_H

#include <stddef.h>
#include <stdint.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

/* Depth of a product is padded (with zeros) to a multiple of this: one 256-bit vector of
 * bytes, so that the vector loop has no remainder. */
#define LSTMX_INT8_DEPTH_STEP 32

/* acc[i * 4 + j] = sum_k a_i[k] * w[j * ldw + k] for the two activation rows a0, a1
 * (unsigned, each value at most 127) and four weight rows w (signed, in [-127, 127]), over
 * kp values, kp a multiple of LSTMX_INT8_DEPTH_STEP.
 *
 * Exact on every branch: a pair of products is at most 2 * 127 * 127 = 32258 in magnitude,
 * so vpmaddubsw's int16 sums never saturate; vpmaddwd by ones widens them to int32 exactly,
 * and the int32 sums do not overflow while 127 * 127 * kp < 2**31. The scalar branch adds
 * the same integers, so both give the same bits. */
static inline void lstmx_int8_dot_tile(ptrdiff_t kp, const uint8_t *a0, const uint8_t *a1,
                                       const int8_t *w, ptrdiff_t ldw, int32_t *acc)
{
    const int8_t *w0 = w, *w1 = w + ldw, *w2 = w + 2 * ldw, *w3 = w + 3 * ldw;
    ptrdiff_t k;
#if defined(__AVX2__)
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i s00 = _mm256_setzero_si256(), s01 = s00, s02 = s00, s03 = s00;
    __m256i s10 = s00, s11 = s00, s12 = s00, s13 = s00;
    __m256i x0, x1, y;
    /* One multiply-add of byte pairs into int16, then of int16 pairs by 1 into int32 lanes:
     * each lane of s_ij holds its own part of the sum until the end. */
#define LSTMX_STEP(s, x) \
    s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), ones))
    for (k = 0; k < kp; k += LSTMX_INT8_DEPTH_STEP) {
        x0 = _mm256_loadu_si256((const __m256i *)(a0 + k));
        x1 = _mm256_loadu_si256((const __m256i *)(a1 + k));
        y = _mm256_loadu_si256((const __m256i *)(w0 + k));
        LSTMX_STEP(s00, x0);
        LSTMX_STEP(s10, x1);
        y = _mm256_loadu_si256((const __m256i *)(w1 + k));
        LSTMX_STEP(s01, x0);
        LSTMX_STEP(s11, x1);
        y = _mm256_loadu_si256((const __m256i *)(w2 + k));
        LSTMX_STEP(s02, x0);
        LSTMX_STEP(s12, x1);
        y = _mm256_loadu_si256((const __m256i *)(w3 + k));
        LSTMX_STEP(s03, x0);
        LSTMX_STEP(s13, x1);
    }
#undef LSTMX_STEP
    {
        /* The eight lanes of each accumulator added: four sums at a time, by pairwise
         * horizontal adds of two accumulators' halves. */
        __m256i r0 = _mm256_hadd_epi32(_mm256_hadd_epi32(s00, s01), _mm256_hadd_epi32(s02, s03));
        __m256i r1 = _mm256_hadd_epi32(_mm256_hadd_epi32(s10, s11), _mm256_hadd_epi32(s12, s13));
        __m128i q0 = _mm_add_epi32(_mm256_castsi256_si128(r0), _mm256_extracti128_si256(r0, 1));
        __m128i q1 = _mm_add_epi32(_mm256_castsi256_si128(r1), _mm256_extracti128_si256(r1, 1));
        _mm_storeu_si128((__m128i *)acc, q0);
        _mm_storeu_si128((__m128i *)(acc + 4), q1);
    }
#else
    int32_t s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
    for (k = 0; k < kp; k++) {
        s00 += (int32_t)a0[k] * w0[k];
        s01 += (int32_t)a0[k] * w1[k];
        s02 += (int32_t)a0[k] * w2[k];
        s03 += (int32_t)a0[k] * w3[k];
        s10 += (int32_t)a1[k] * w0[k];
        s11 += (int32_t)a1[k] * w1[k];
        s12 += (int32_t)a1[k] * w2[k];
        s13 += (int32_t)a1[k] * w3[k];
    }
    acc[0] = s00; acc[1] = s01; acc[2] = s02; acc[3] = s03;
    acc[4] = s10; acc[5] = s11; acc[6] = s12; acc[7] = s13;
#endif
}

#endif
