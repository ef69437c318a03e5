/* The quantised kernels' products on AVX-512's dot-product instructions: int8 with vpdpbusd
 * (AVX512_VNNI) and bfloat16 with vdpbf16ps (AVX512_BF16), tiles of up to 6 rows x 64 columns.
 *
 * Both multiply rows of activations (row-major, ``lda`` apart) by weights packed a vector of 16
 * output channels at a time: a vector's weights for ``G`` consecutive inputs (G = 4 int8 or 2
 * bfloat16, 4 bytes) sit together, so that one broadcast of a row's G activations meets 16
 * channels in one instruction, each lane summing its own channel:
 *     w[n, k] is at packed[((n / 16) * (kp / G) + k / G) * 16 * G + (n % 16) * G + k % G].
 * A tile's sums stay in registers over the whole depth (24 of the 32 zmm registers) and go to
 * memory once, columns in lanes, so no horizontal adds are needed.
 *
 * The functions carry their own target attributes and run only where lstmx_dot_has_vnni /
 * lstmx_dot_has_bf16 say the CPU can; the rest of the module needs only AVX-512F/BW/VL. */
#ifndef LSTMX_DOT_AVX512_H
#define LSTMX_DOT_AVX512_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Output channels of a packed vector: one zmm of int32 or float32 sums. */
#define LSTMX_DOT_VEC 16
/* Rows and vectors of a tile: 24 accumulators, 4 weight vectors and a broadcast. */
#define LSTMX_DOT_TILE_ROWS 6
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

/* 4 bytes at p as one int32, whatever their alignment and type. */
#define LSTMX_DOT_LOAD32(p, out) memcpy(&(out), (p), 4)

/* The tiles' sums as 24 named variables c<row><vector> (starting at i<vector>), each pinned
 * to its register after
 * every update (an empty asm): held in an array, GCC 12 keeps a copy of each in memory and
 * moves it between registers at every instruction. Those of rows >= R or vectors >= V are
 * dead code for the constant R and V of each copy of a tile. */
#define LSTMX_DOT_DECLARE(type, i0, i1, i2, i3)                                            \
    type c00 = i0, c01 = i1, c02 = i2, c03 = i3, c10 = i0, c11 = i1, c12 = i2, c13 = i3,   \
         c20 = i0, c21 = i1, c22 = i2, c23 = i3, c30 = i0, c31 = i1, c32 = i2, c33 = i3,   \
         c40 = i0, c41 = i1, c42 = i2, c43 = i3, c50 = i0, c51 = i1, c52 = i2, c53 = i3

/* w0 .. w(V-1): the weight vectors at p of each of the tile's vectors, ldw apart. */
#define LSTMX_DOT_LOAD_W(load, p)                                                          \
    do {                                                                                   \
        w0 = load((const void *)(p));                                                      \
        if (V > 1) w1 = load((const void *)((p) + ldw));                                   \
        if (V > 2) w2 = load((const void *)((p) + 2 * ldw));                               \
        if (V > 3) w3 = load((const void *)((p) + 3 * ldw));                               \
    } while (0)

/* For each row r < R: x = the 4 bytes at p + r * kp broadcast, then OP(c<r><v>, w<v>) for
 * each v < V. */
#define LSTMX_DOT_ROW(r, bcast, p, OP, c0, c1, c2, c3)                                     \
    if ((r) < R) {                                                                         \
        LSTMX_DOT_LOAD32((p) + (r) * kp, bits);                                            \
        x = bcast(bits);                                                                   \
        OP(c0, w0); __asm__("" : "+v"(c0));                                                \
        if (V > 1) { OP(c1, w1); __asm__("" : "+v"(c1)); }                                 \
        if (V > 2) { OP(c2, w2); __asm__("" : "+v"(c2)); }                                 \
        if (V > 3) { OP(c3, w3); __asm__("" : "+v"(c3)); }                                 \
    }
#define LSTMX_DOT_ROWS(bcast, p, OP)                                                       \
    do {                                                                                   \
        LSTMX_DOT_ROW(0, bcast, p, OP, c00, c01, c02, c03)                                 \
        LSTMX_DOT_ROW(1, bcast, p, OP, c10, c11, c12, c13)                                 \
        LSTMX_DOT_ROW(2, bcast, p, OP, c20, c21, c22, c23)                                 \
        LSTMX_DOT_ROW(3, bcast, p, OP, c30, c31, c32, c33)                                 \
        LSTMX_DOT_ROW(4, bcast, p, OP, c40, c41, c42, c43)                                 \
        LSTMX_DOT_ROW(5, bcast, p, OP, c50, c51, c52, c53)                                 \
    } while (0)

/* The sums into acc[r][v] for the epilogue, which indexes them. */
#define LSTMX_DOT_STORE(acc)                                                               \
    do {                                                                                   \
        acc[0][0] = c00; acc[0][1] = c01; acc[0][2] = c02; acc[0][3] = c03;                \
        acc[1][0] = c10; acc[1][1] = c11; acc[1][2] = c12; acc[1][3] = c13;                \
        acc[2][0] = c20; acc[2][1] = c21; acc[2][2] = c22; acc[2][3] = c23;                \
        acc[3][0] = c30; acc[3][1] = c31; acc[3][2] = c32; acc[3][3] = c33;                \
        acc[4][0] = c40; acc[4][1] = c41; acc[4][2] = c42; acc[4][3] = c43;                \
        acc[5][0] = c50; acc[5][1] = c51; acc[5][2] = c52; acc[5][3] = c53;                \
    } while (0)

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
        ptrdiff_t v0, r0, t;                                                               \
        /* The fewest tiles that hold the rows, as even as can be (8 rows: 4 + 4, not     \
         * 6 + 2): a tile of one or two rows loads 4 weight vectors for 4 or 8 products. */ \
        ptrdiff_t tiles = (r_hi - r_lo + LSTMX_DOT_TILE_ROWS - 1) / LSTMX_DOT_TILE_ROWS;   \
        int R, V;                                                                          \
        for (v0 = v_lo; v0 < v_hi; v0 += LSTMX_DOT_TILE_VECS) {                            \
            V = v_hi - v0 < LSTMX_DOT_TILE_VECS ? (int)(v_hi - v0) : LSTMX_DOT_TILE_VECS;  \
            for (t = 0, r0 = r_lo; t < tiles; t++, r0 += R) {                              \
                R = (int)((r_hi - r_lo) / tiles + (t < (r_hi - r_lo) % tiles));            \
                switch (R) {                                                               \
                case 6: LSTMX_DOT_VECS(TILE, 6); break;                                     \
                case 5: LSTMX_DOT_VECS(TILE, 5); break;                                     \
                case 4: LSTMX_DOT_VECS(TILE, 4); break;                                     \
                case 3: LSTMX_DOT_VECS(TILE, 3); break;                                     \
                case 2: LSTMX_DOT_VECS(TILE, 2); break;                                     \
                default: LSTMX_DOT_VECS(TILE, 1);                                           \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    } while (0)

/* ------------------------------------------------------------------------ int8: vpdpbusd */

/* Rows [r0, r0 + R) x vectors [v0, v0 + V) of the int8 product (see lstmx_int8_vnni).
 * acc[r][v] lane j sums a[r, k] * w[n, k] over k for n = 16 (v0 + v) + j: vpdpbusd adds
 * four u8 x s8 products to each int32 lane exactly (no int16 step, so no saturation), and
 * the sums stay below 2**31 while 255 * 127 * kp does. */
LSTMX_VNNI_TARGET LSTMX_DOT_INLINE void lstmx_vnni_tile(
    const int R, const int V, ptrdiff_t r0, ptrdiff_t v0, ptrdiff_t N, ptrdiff_t kp,
    const uint8_t *A, const float *sa, const int8_t *W, const float *sw, const int32_t *wsum,
    const float *bias, float *z, ptrdiff_t ldz, int32_t *raw)
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
    for (k = 0; k < kp; k += 4) {
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
 * sw padded likewise. The sums are exact: the same integers as the other instruction sets give. */
LSTMX_VNNI_TARGET static void lstmx_int8_vnni(
    ptrdiff_t r_lo, ptrdiff_t r_hi, ptrdiff_t v_lo, ptrdiff_t v_hi, ptrdiff_t N, ptrdiff_t kp,
    const uint8_t *A, const float *sa, const int8_t *W, const float *sw, const int32_t *wsum,
    const float *bias, float *z, ptrdiff_t ldz, int32_t *raw)
{
#define LSTMX_T(RR, VV) lstmx_vnni_tile(RR, VV, r0, v0, N, kp, A, sa, W, sw, wsum, bias, z, ldz, \
                                        raw)
    LSTMX_DOT_FOR_TILES(LSTMX_T);
#undef LSTMX_T
}

/* ------------------------------------------------------------------------ bfloat16: vdpbf16ps */

/* Rows [r0, r0 + R) x vectors [v0, v0 + V) of the bfloat16 product (see lstmx_bf16_dot).
 * vdpbf16ps adds two bfloat16 products (exact in float32) to each float32 lane, rounding to
 * nearest even, with bfloat16 subnormals read as zero and float32 ones flushed to zero. */
LSTMX_BF16_TARGET LSTMX_DOT_INLINE void lstmx_bf16_tile(
    const int R, const int V, ptrdiff_t r0, ptrdiff_t v0, ptrdiff_t N, ptrdiff_t kp,
    const uint16_t *A, const uint16_t *W, const float *bias, float *z, ptrdiff_t ldz)
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
    for (k = 0; k < kp; k += 2) {
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
 * rows [r_lo, r_hi) and the channels of vectors [v_lo, v_hi) below N: A bfloat16 bits (rows of kp, zero-padded), W packed as the
 * head of this file says (G = 2), N padded to 16 and kp to 2. Each sum runs over k in order,
 * two products at a time, and is added to z once. */
LSTMX_BF16_TARGET static void lstmx_bf16_dot(
    ptrdiff_t r_lo, ptrdiff_t r_hi, ptrdiff_t v_lo, ptrdiff_t v_hi, ptrdiff_t N, ptrdiff_t kp,
    const uint16_t *A, const uint16_t *W, const float *bias, float *z, ptrdiff_t ldz)
{
#define LSTMX_T(RR, VV) lstmx_bf16_tile(RR, VV, r0, v0, N, kp, A, W, bias, z, ldz)
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
                            ptrdiff_t N, ptrdiff_t kp, const uint8_t *A, const float *sa,
                            const int8_t *W, const float *sw, const int32_t *wsum,
                            const float *bias, float *z, ptrdiff_t ldz, int32_t *raw) {}
static void lstmx_bf16_dot(ptrdiff_t r_lo, ptrdiff_t r_hi, ptrdiff_t v_lo, ptrdiff_t v_hi,
                           ptrdiff_t N, ptrdiff_t kp, const uint16_t *A, const uint16_t *W,
                           const float *bias, float *z, ptrdiff_t ldz) {}
#endif

#endif
