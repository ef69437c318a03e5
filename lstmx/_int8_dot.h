/* The exact s8 x s8 dot products of lstmx's int8 kernels without VNNI (_quantized.pyx): tiles of
 * 2 x 4 sums. */
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
/* Output channels (weight rows) of a tile. */
#define LSTMX_INT8_TILE_COLS 4

/* The layout of a tile's weights: its LSTMX_INT8_TILE_COLS rows interleaved a vector at a
 * time, so that one pointer walks them (no register holds a row's address, and none spills):
 * w[n, k] of the tile starting at row n0 is at tile[(k / 32) * 128 + (n - n0) * 32 + k % 32]. */
static inline ptrdiff_t lstmx_int8_tile_index(ptrdiff_t j, ptrdiff_t k)
{
    return (k / LSTMX_INT8_DEPTH_STEP) * (LSTMX_INT8_TILE_COLS * LSTMX_INT8_DEPTH_STEP)
           + j * LSTMX_INT8_DEPTH_STEP + k % LSTMX_INT8_DEPTH_STEP;
}

/* acc[i * 4 + j] = sum_k a_i[k] * w_j[k] for the two activation rows a0, a1 (signed bytes
 * in [-127, 127], held as uint8) and the four weight rows w_j of ``tile`` (signed, in
 * [-127, 127], laid out as lstmx_int8_tile_index says), over kp values, kp a multiple of
 * LSTMX_INT8_DEPTH_STEP.
 *
 * Exact on every branch. vpmaddubsw multiplies unsigned bytes by signed ones and adds pairs
 * into int16 with saturation: it gets |a| and w * sign(a) (vpsignb), whose products are
 * a * w, and a pair of them is at most 2 * 127 * 127 = 32258 in magnitude, so the int16 sums
 * never saturate; vpmaddwd by ones widens them to int32 exactly, and the int32 sums do not
 * overflow while 127 * 127 * kp < 2**31. The scalar branch adds the same integers, so both
 * give the same bits. */
static inline void lstmx_int8_dot_tile(ptrdiff_t kp, const uint8_t *a0, const uint8_t *a1,
                                       const int8_t *tile, int32_t *acc)
{
    ptrdiff_t k;
#if defined(__AVX2__)
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i s00 = _mm256_setzero_si256(), s01 = s00, s02 = s00, s03 = s00;
    __m256i s10 = s00, s11 = s00, s12 = s00, s13 = s00;
    __m256i x0, x1, m0, m1;
    const int8_t *w = tile;
    /* A multiply-add of byte pairs into int16, then of int16 pairs by 1 into int32 lanes;
     * each lane of s_ij keeps its own part of the sum until the end. The empty asm pins each
     * sum to its register: without it GCC copies them between registers and spills one. */
#define LSTMX_STEP(s, m, x, j)                                                              \
    s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(m, _mm256_sign_epi8(    \
            _mm256_loadu_si256((const __m256i *)(w + (j) * LSTMX_INT8_DEPTH_STEP)), x)),     \
            ones));                                                                         \
    __asm__("" : "+x"(s))
    for (k = 0; k < kp; k += LSTMX_INT8_DEPTH_STEP) {
        x0 = _mm256_loadu_si256((const __m256i *)(a0 + k));
        x1 = _mm256_loadu_si256((const __m256i *)(a1 + k));
        m0 = _mm256_abs_epi8(x0);
        m1 = _mm256_abs_epi8(x1);
        LSTMX_STEP(s00, m0, x0, 0);
        LSTMX_STEP(s10, m1, x1, 0);
        LSTMX_STEP(s01, m0, x0, 1);
        LSTMX_STEP(s11, m1, x1, 1);
        LSTMX_STEP(s02, m0, x0, 2);
        LSTMX_STEP(s12, m1, x1, 2);
        LSTMX_STEP(s03, m0, x0, 3);
        LSTMX_STEP(s13, m1, x1, 3);
        w += LSTMX_INT8_TILE_COLS * LSTMX_INT8_DEPTH_STEP;
    }
#undef LSTMX_STEP
    {
        /* The eight lanes of each sum added, four sums at a time: pairwise horizontal adds
         * within 128-bit halves, then the two halves. */
        __m256i r0 = _mm256_hadd_epi32(_mm256_hadd_epi32(s00, s01), _mm256_hadd_epi32(s02, s03));
        __m256i r1 = _mm256_hadd_epi32(_mm256_hadd_epi32(s10, s11), _mm256_hadd_epi32(s12, s13));
        __m128i q0 = _mm_add_epi32(_mm256_castsi256_si128(r0), _mm256_extracti128_si256(r0, 1));
        __m128i q1 = _mm_add_epi32(_mm256_castsi256_si128(r1), _mm256_extracti128_si256(r1, 1));
        _mm_storeu_si128((__m128i *)acc, q0);
        _mm_storeu_si128((__m128i *)(acc + 4), q1);
    }
#else
    int32_t s[2][LSTMX_INT8_TILE_COLS] = {{0}};
    ptrdiff_t j, kk;
    const int8_t *w;
    const int8_t *b0 = (const int8_t *)a0, *b1 = (const int8_t *)a1;
    for (k = 0; k < kp; k += LSTMX_INT8_DEPTH_STEP) {
        w = tile + lstmx_int8_tile_index(0, k);
        for (j = 0; j < LSTMX_INT8_TILE_COLS; j++) {
            for (kk = 0; kk < LSTMX_INT8_DEPTH_STEP; kk++) {
                s[0][j] += (int32_t)b0[k + kk] * w[j * LSTMX_INT8_DEPTH_STEP + kk];
                s[1][j] += (int32_t)b1[k + kk] * w[j * LSTMX_INT8_DEPTH_STEP + kk];
            }
        }
    }
    for (j = 0; j < LSTMX_INT8_TILE_COLS; j++) {
        acc[j] = s[0][j];
        acc[LSTMX_INT8_TILE_COLS + j] = s[1][j];
    }
#endif
}

/* z[j] = (float)acc[j] * (s * sw[j]) + z0[j] for j < 4: a row of a tile's sums scaled back
 * and added to z0 (the bias, or z itself). */
static inline void lstmx_int8_tile_add(const int32_t *acc, float s, const float *sw,
                                       const float *z0, float *z)
{
#if defined(__AVX2__)
    __m128 v = _mm_cvtepi32_ps(_mm_loadu_si128((const __m128i *)acc));
    __m128 m = _mm_mul_ps(_mm_set1_ps(s), _mm_loadu_ps(sw));
#if defined(__FMA__)
    _mm_storeu_ps(z, _mm_fmadd_ps(v, m, _mm_loadu_ps(z0)));
#else
    _mm_storeu_ps(z, _mm_add_ps(_mm_mul_ps(v, m), _mm_loadu_ps(z0)));
#endif
#else
    int j;
    for (j = 0; j < LSTMX_INT8_TILE_COLS; j++)
        z[j] = z0[j] + (float)acc[j] * (s * sw[j]);
#endif
}

#endif
