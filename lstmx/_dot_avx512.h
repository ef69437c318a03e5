/* The quantised kernels' products on AVX-512's dot-product instructions: int8 with vpdpbusd
 * (AVX512_VNNI) and bfloat16 with vdpbf16ps (AVX512_BF16), tiles of up to 6 rows x 64 columns.
 *
 * Both multiply rows of activations (row-major, ``lda`` apart) by weights packed as
 * _dot_tiles.h says. A tile's sums stay in registers over the whole depth (24 of the 32 zmm
 * registers) and go to memory once, columns in lanes, so no horizontal adds are needed.
 *
 * The functions carry their own target attributes and run only where lstmx_dot_has_vnni /
 * lstmx_dot_has_bf16 say the CPU can; the rest of the module needs only AVX-512F/BW/VL. */
#ifndef LSTMX_DOT_AVX512_H
#define LSTMX_DOT_AVX512_H

#include "_dot_tiles.h"

/* Packed vectors of a tile: 24 accumulators, 4 weight vectors and a broadcast. */
#define LSTMX_DOT_TILE_VECS 4

#if defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define LSTMX_DOT_BUILT 1
#define LSTMX_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define LSTMX_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define LSTMX_DOT_INLINE static inline __attribute__((always_inline))

static int lstmx_dot_has_vnni(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") != 0;
}

static int lstmx_dot_has_bf16(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") != 0;
}

/* The first ``cols`` lanes (1 to 16). */
#define LSTMX_DOT_MASK(cols) ((__mmask16)((cols) >= 16 ? 0xFFFF : (1u << (cols)) - 1u))

/* Rows [r_lo, r_hi) x vectors [v_lo, v_hi) a tile at a time: a block of 4 vectors (kp * 64
 * bytes) meets every row tile in turn. Each (R, V) calls TILE(R, V), its own copy of the
 * tile, so that every loop over them unrolls and the sums live in registers. */
#define LSTMX_DOT_VECS(TILE, RR)                                                            \
    switch (V) {                                                                           \
    case 4: TILE(RR, 4); break;                                                            \
    case 3: TILE(RR, 3); break;                                                            \
    case 2: TILE(RR, 2); break;                                                            \
    default: TILE(RR, 1);                                                                  \
    }
#define LSTMX_DOT_FOR_TILES(TILE)                                                          \
    do {                                                                                   \
        ptrdiff_t v0;                                                                      \
        int V;                                                                             \
        for (v0 = v_lo; v0 < v_hi; v0 += LSTMX_DOT_TILE_VECS) {                            \
            V = v_hi - v0 < LSTMX_DOT_TILE_VECS ? (int)(v_hi - v0) : LSTMX_DOT_TILE_VECS;  \
            LSTMX_DOT_FOR_ROW_TILES(LSTMX_DOT_VECS, TILE);                                 \
        }                                                                                  \
    } while (0)

/* ------------------------------------------------------------------------ int8: vpdpbusd */

/* Rows [r0, r0 + R) x vectors [v0, v0 + V) of the int8 product (see lstmx_int8_vnni).
 * acc[r][v] lane j sums a[r, k] * w[n, k] over k for n = 16 (v0 + v) + j: vpdpbusd adds
 * four u8 x s8 products to each int32 lane exactly (no int16 step, so no saturation), and
 * the sums stay below 2**31 while 255 * 127 * kp does. */
LSTMX_VNNI_TARGET LSTMX_DOT_INLINE void lstmx_vnni_tile(
    const int R, const int V, ptrdiff_t r0, ptrdiff_t v0, ptrdiff_t N, ptrdiff_t kp,
    ptrdiff_t kd, const uint8_t *A, const float *sa, const int8_t *W, const float *sw,
    const int32_t *wsum, const float *bias, float *z, ptrdiff_t ldz, int32_t *raw)
{
    const ptrdiff_t ldw = LSTMX_DOT_VEC * kp;
    const int8_t *w = W + v0 * ldw;
    const uint8_t *a = A + r0 * kp;
    ptrdiff_t k;
    int32_t bits;
    int r, v;
    __m512i x, w0, w1, w2, w3, i0, i1, i2, i3;
    /* Each sum starts at -128 sum_k w_k, so that it ends at
     * sum_k (q_k + 128) w_k - 128 sum_k w_k = sum_k q_k w_k, exactly (int32 arithmetic wraps,
     * and the result fits). */
#define LSTMX_START(v) (V > (v) ? _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(    \
        _mm512_loadu_si512((const void *)(wsum + (v0 + (v)) * LSTMX_DOT_VEC)), 7))             \
                                : _mm512_setzero_si512())
    i0 = LSTMX_START(0);
    i1 = LSTMX_START(1);
    i2 = LSTMX_START(2);
    i3 = LSTMX_START(3);
#undef LSTMX_START
    LSTMX_DOT_DECLARE(__m512i, i0, i1, i2, i3);
    for (k = 0; k < kd; k += 4) {
        LSTMX_DOT_LOAD_W(_mm512_loadu_si512, w + k * 16);
#define LSTMX_OP(c, wv) c = _mm512_dpbusd_epi32(c, x, wv)
        LSTMX_DOT_ROWS(_mm512_set1_epi32, a + k, LSTMX_OP);
#undef LSTMX_OP
    }
    {
        __m512i acc[LSTMX_DOT_TILE_ROWS][LSTMX_DOT_TILE_VECS];
        LSTMX_DOT_STORE(acc);
        for (v = 0; v < V; v++) {
            ptrdiff_t n0 = (v0 + v) * LSTMX_DOT_VEC;
            ptrdiff_t cols = N - n0 < LSTMX_DOT_VEC ? N - n0 : LSTMX_DOT_VEC;
            __mmask16 mask = LSTMX_DOT_MASK(cols);
            __m512 swv = raw == NULL ? _mm512_loadu_ps(sw + n0) : _mm512_setzero_ps();
            for (r = 0; r < R; r++) {
                __m512i d = acc[r][v];
                if (raw != NULL) {
                    _mm512_mask_storeu_epi32(raw + (r0 + r) * N + n0, mask, d);
                } else {
                    /* z = float(d) * (s_r * sw) + (bias or z), fused: as lstmx_int8_tile_add. */
                    float *zr = z + (r0 + r) * ldz + n0;
                    __m512 m = _mm512_mul_ps(_mm512_set1_ps(sa[r0 + r]), swv);
                    __m512 zv = _mm512_maskz_loadu_ps(mask, bias != NULL ? bias + n0 : zr);
                    _mm512_mask_storeu_ps(zr, mask,
                                          _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), m, zv));
                }
            }
        }
    }
}

/* z[r, n] = float(sum_k q[r, k] W[n, k]) * (sa[r] * sw[n]) + (bias[n], or z[r, n] when bias
 * is NULL) for rows [r_lo, r_hi) and the channels of vectors [v_lo, v_hi) below N, with
 * A = q + 128 (rows of kp bytes) and wsum[n] = sum_k W[n, k]; or, when raw is not NULL,
 * raw[r, n] = sum_k q[r, k] W[n, k] (N apart).
 * W packed as the head of this file says (G = 4), with N padded to 16 and kp to 4; wsum and
 * sw padded likewise. The sums run over k < kd (kd <= kp, a multiple of 4: past it the
 * weights are zero padding). The sums are exact: the same integers as the other instruction
 * sets give. */
LSTMX_VNNI_TARGET static void lstmx_int8_vnni(
    ptrdiff_t r_lo, ptrdiff_t r_hi, ptrdiff_t v_lo, ptrdiff_t v_hi, ptrdiff_t N, ptrdiff_t kp,
    ptrdiff_t kd, const uint8_t *A, const float *sa, const int8_t *W, const float *sw,
    const int32_t *wsum, const float *bias, float *z, ptrdiff_t ldz, int32_t *raw)
{
#define LSTMX_T(RR, VV) lstmx_vnni_tile(RR, VV, r0, v0, N, kp, kd, A, sa, W, sw, wsum, bias, z, \
                                        ldz, raw)
    LSTMX_DOT_FOR_TILES(LSTMX_T);
#undef LSTMX_T
}

/* ------------------------------------------------------------------------ bfloat16: vdpbf16ps */

/* Rows [r0, r0 + R) x vectors [v0, v0 + V) of the bfloat16 product (see lstmx_bf16_dot).
 * vdpbf16ps adds two bfloat16 products (exact in float32) to each float32 lane, rounding to
 * nearest even, with bfloat16 subnormals read as zero and float32 ones flushed to zero. */
LSTMX_BF16_TARGET LSTMX_DOT_INLINE void lstmx_bf16_tile(
    const int R, const int V, ptrdiff_t r0, ptrdiff_t v0, ptrdiff_t N, ptrdiff_t kp,
    ptrdiff_t kd, const uint16_t *A, const uint16_t *W, const float *bias, float *z, ptrdiff_t ldz)
{
    const ptrdiff_t ldw = LSTMX_DOT_VEC * kp;
    const uint16_t *w = W + v0 * ldw;
    const uint16_t *a = A + r0 * kp;
    ptrdiff_t k;
    int32_t bits;
    int r, v;
    __m512bh x, w0, w1, w2, w3;
    __m512 zero = _mm512_setzero_ps();
    LSTMX_DOT_DECLARE(__m512, zero, zero, zero, zero);
    for (k = 0; k < kd; k += 2) {
        LSTMX_DOT_LOAD_W((__m512bh)_mm512_loadu_si512, w + k * 16);
#define LSTMX_OP(c, wv) c = _mm512_dpbf16_ps(c, x, wv)
        LSTMX_DOT_ROWS((__m512bh)_mm512_set1_epi32, a + k, LSTMX_OP);
#undef LSTMX_OP
    }
    {
        __m512 acc[LSTMX_DOT_TILE_ROWS][LSTMX_DOT_TILE_VECS];
        LSTMX_DOT_STORE(acc);
        for (v = 0; v < V; v++) {
            ptrdiff_t n0 = (v0 + v) * LSTMX_DOT_VEC;
            ptrdiff_t cols = N - n0 < LSTMX_DOT_VEC ? N - n0 : LSTMX_DOT_VEC;
            __mmask16 mask = LSTMX_DOT_MASK(cols);
            for (r = 0; r < R; r++) {
                float *zr = z + (r0 + r) * ldz + n0;
                __m512 zv = _mm512_maskz_loadu_ps(mask, bias != NULL ? bias + n0 : zr);
                _mm512_mask_storeu_ps(zr, mask, _mm512_add_ps(zv, acc[r][v]));
            }
        }
    }
}

/* z[r, n] = sum_k a[r, k] w[n, k] + (bias[n], or z[r, n] when bias is NULL) in float32 for
 * rows [r_lo, r_hi) and the channels of vectors [v_lo, v_hi) below N: A bfloat16 bits (rows
 * of kp, zero-padded), W packed as the head of this file says (G = 2), N padded to 16 and kp
 * to 2. Each sum runs over k < kd (kd <= kp, even) in order, two products at a time, and is
 * added to z once. */
LSTMX_BF16_TARGET static void lstmx_bf16_dot(
    ptrdiff_t r_lo, ptrdiff_t r_hi, ptrdiff_t v_lo, ptrdiff_t v_hi, ptrdiff_t N, ptrdiff_t kp,
    ptrdiff_t kd, const uint16_t *A, const uint16_t *W, const float *bias, float *z,
    ptrdiff_t ldz)
{
#define LSTMX_T(RR, VV) lstmx_bf16_tile(RR, VV, r0, v0, N, kp, kd, A, W, bias, z, ldz)
    LSTMX_DOT_FOR_TILES(LSTMX_T);
#undef LSTMX_T
}

#else
/* Not built for AVX-512 (or not with GCC): the CPU checks say no, so the generic products
 * run and these are never called. */
#define LSTMX_DOT_BUILT 0
static int lstmx_dot_has_vnni(void) { return 0; }
static int lstmx_dot_has_bf16(void) { return 0; }
static void lstmx_int8_vnni(ptrdiff_t r_lo, ptrdiff_t r_hi, ptrdiff_t v_lo, ptrdiff_t v_hi,
                            ptrdiff_t N, ptrdiff_t kp, ptrdiff_t kd, const uint8_t *A,
                            const float *sa, const int8_t *W, const float *sw,
                            const int32_t *wsum, const float *bias, float *z, ptrdiff_t ldz,
                            int32_t *raw) {}
static void lstmx_bf16_dot(ptrdiff_t r_lo, ptrdiff_t r_hi, ptrdiff_t v_lo, ptrdiff_t v_hi,
                           ptrdiff_t N, ptrdiff_t kp, ptrdiff_t kd, const uint16_t *A,
                           const uint16_t *W, const float *bias, float *z, ptrdiff_t ldz) {}
#endif

#endif
