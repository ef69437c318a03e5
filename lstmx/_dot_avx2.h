/* The int8 products of lstmx's AVX2 build on vpdpbusd over 256-bit vectors: AVX-VNNI (the VEX
 * encoding, on CPUs with VNNI and no AVX-512, such as Intel's Alder Lake and Sierra Forest)
 * or AVX512_VNNI with AVX512VL (the EVEX encoding of the same instruction); tiles of up to
 * 6 rows x 16 channels.
 *
 * The weights are packed as for the 512-bit kernels (_dot_tiles.h): a packed vector of 16
 * channels is two ymm halves here, so the packing does not depend on the CPU. A tile's 12
 * sums, the two weight halves and a broadcast take 15 of the 16 ymm registers. The sums and
 * their scaling are those of _dot_avx512.h's lstmx_int8_vnni, operation for operation: the
 * same bits.
 *
 * The two copies (one per encoding) carry their own target attributes and run only where
 * lstmx_ymm_vnni_kind says the CPU can: lstmx_ymm_int8_dot gives the one that does. */
#ifndef LSTMX_DOT_AVX2_H
#define LSTMX_DOT_AVX2_H

#include "_dot_tiles.h"

/* The int8 products' signature (lstmx_int8_vnni's, _dot_avx512.h). */
typedef void (*lstmx_int8_dot_fn)(ptrdiff_t r_lo, ptrdiff_t r_hi, ptrdiff_t v_lo,
                                  ptrdiff_t v_hi, ptrdiff_t N, ptrdiff_t kp, ptrdiff_t kd,
                                  const uint8_t *A,
                                  const float *sa, const int8_t *W, const float *sw,
                                  const int32_t *wsum, const float *bias, float *z,
                                  ptrdiff_t ldz, int32_t *raw);

/* Built into the AVX2 build only: the AVX-512 build has its own, wider products. */
#if defined(__AVX2__) && !defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define LSTMX_YMM_BUILT 1
#define LSTMX_AVXVNNI_TARGET __attribute__((target("avx2,fma,avxvnni")))
#define LSTMX_VNNI256_TARGET __attribute__((target("avx2,fma,avx512f,avx512vl,avx512vnni")))

/* Which copy the CPU runs: 1 AVX-VNNI, 2 AVX512_VNNI with AVX512VL, 0 neither. */
static int lstmx_ymm_vnni_kind(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avxvnni"))
        return 1;
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl"))
        return 2;
    return 0;
}

/* The first ``cols`` lanes of 8 (cols <= 8) as a mask of AVX2's masked loads and stores. */
#define LSTMX_YMM_MASK(cols) _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(cols)),              \
                                                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))

/* One copy of the product, NAME, for the target TARGET with DPBUSD(c, x, w) its vpdpbusd.
 *
 * NAME##_tile: rows [r0, r0 + R) x packed vector v0, its two halves as the tile's vectors
 * w0 and w1 (V = 2, ldw = 32 bytes apart). Each sum starts at -128 times its weight row's
 * sum, as in _dot_avx512.h; then z = float(d) * (sa[r] * sw) + (bias or z), fused, per half,
 * its lanes beyond N neither read nor written. */
#define LSTMX_YMM_PRODUCT(NAME, TARGET, DPBUSD)                                             \
TARGET static inline __attribute__((always_inline)) void NAME##_tile(                       \
    const int R, ptrdiff_t r0, ptrdiff_t v0, ptrdiff_t N, ptrdiff_t kp, ptrdiff_t kd,       \
    const uint8_t *A, const float *sa, const int8_t *W, const float *sw,                    \
    const int32_t *wsum, const float *bias, float *z, ptrdiff_t ldz, int32_t *raw)          \
{                                                                                           \
    const int V = 2;                                                                        \
    const ptrdiff_t ldw = 32;                                                               \
    const int8_t *w = W + v0 * LSTMX_DOT_VEC * kp;                                          \
    const uint8_t *a = A + r0 * kp;                                                         \
    const __m256i zero = _mm256_setzero_si256();                                            \
    ptrdiff_t k;                                                                            \
    int32_t bits;                                                                           \
    int r, h;                                                                               \
    __m256i x, w0, w1, w2, w3, i0, i1;                                                      \
    (void)w2; (void)w3;                                                                     \
    i0 = _mm256_sub_epi32(zero, _mm256_slli_epi32(_mm256_loadu_si256(                       \
        (const __m256i *)(wsum + v0 * LSTMX_DOT_VEC)), 7));                                 \
    i1 = _mm256_sub_epi32(zero, _mm256_slli_epi32(_mm256_loadu_si256(                       \
        (const __m256i *)(wsum + v0 * LSTMX_DOT_VEC + 8)), 7));                             \
    LSTMX_DOT_DECLARE(__m256i, i0, i1, zero, zero);                                         \
    for (k = 0; k < kd; k += 4) {                                                           \
        LSTMX_DOT_LOAD_W(_mm256_loadu_si256, w + k * LSTMX_DOT_VEC);                        \
        LSTMX_DOT_ROWS(_mm256_set1_epi32, a + k, DPBUSD);                                   \
    }                                                                                       \
    {                                                                                       \
        __m256i acc[LSTMX_DOT_TILE_ROWS][4];                                                \
        LSTMX_DOT_STORE(acc);                                                               \
        for (h = 0; h < 2; h++) {                                                           \
            ptrdiff_t n0 = v0 * LSTMX_DOT_VEC + 8 * h;                                      \
            ptrdiff_t cols = N - n0 < 8 ? N - n0 : 8;                                       \
            __m256i mask = LSTMX_YMM_MASK(cols > 0 ? cols : 0);                             \
            __m256 swv = raw == NULL ? _mm256_loadu_ps(sw + n0) : _mm256_setzero_ps();      \
            if (cols <= 0)                                                                  \
                break;                                                                      \
            for (r = 0; r < R; r++) {                                                       \
                __m256i d = acc[r][h];                                                      \
                if (raw != NULL) {                                                          \
                    _mm256_maskstore_epi32((int *)(raw + (r0 + r) * N + n0), mask, d);      \
                } else {                                                                    \
                    float *zr = z + (r0 + r) * ldz + n0;                                    \
                    __m256 m = _mm256_mul_ps(_mm256_set1_ps(sa[r0 + r]), swv);              \
                    __m256 zv = _mm256_maskload_ps(bias != NULL ? bias + n0 : zr, mask);    \
                    _mm256_maskstore_ps(zr, mask,                                           \
                                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), m, zv));     \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    }                                                                                       \
}                                                                                           \
                                                                                            \
/* As lstmx_int8_vnni (_dot_avx512.h), the same arguments and the same results. */          \
TARGET static void NAME(                                                                    \
    ptrdiff_t r_lo, ptrdiff_t r_hi, ptrdiff_t v_lo, ptrdiff_t v_hi, ptrdiff_t N,            \
    ptrdiff_t kp, ptrdiff_t kd, const uint8_t *A, const float *sa, const int8_t *W,         \
    const float *sw, const int32_t *wsum, const float *bias, float *z, ptrdiff_t ldz,       \
    int32_t *raw)                                                                           \
{                                                                                           \
    ptrdiff_t v0;                                                                           \
    for (v0 = v_lo; v0 < v_hi; v0++) {                                                      \
        LSTMX_DOT_FOR_ROW_TILES(LSTMX_YMM_EACH, NAME##_tile);                               \
    }                                                                                       \
}

#define LSTMX_YMM_EACH(TILE, RR) TILE(RR, r0, v0, N, kp, kd, A, sa, W, sw, wsum, bias, z, ldz, \
                                      raw)
#define LSTMX_AVXVNNI_OP(c, wv) c = _mm256_dpbusd_avx_epi32(c, x, wv)
#define LSTMX_VNNI256_OP(c, wv) c = _mm256_dpbusd_epi32(c, x, wv)
LSTMX_YMM_PRODUCT(lstmx_int8_avxvnni, LSTMX_AVXVNNI_TARGET, LSTMX_AVXVNNI_OP)
LSTMX_YMM_PRODUCT(lstmx_int8_vnni256, LSTMX_VNNI256_TARGET, LSTMX_VNNI256_OP)

/* The copy lstmx_ymm_vnni_kind says the CPU runs, or NULL. */
static lstmx_int8_dot_fn lstmx_ymm_int8_dot(void)
{
    switch (lstmx_ymm_vnni_kind()) {
    case 1: return lstmx_int8_avxvnni;
    case 2: return lstmx_int8_vnni256;
    default: return NULL;
    }
}

#else
/* Not the AVX2 build (or not GCC): no 256-bit products. */
#define LSTMX_YMM_BUILT 0
static int lstmx_ymm_vnni_kind(void) { return 0; }
static lstmx_int8_dot_fn lstmx_ymm_int8_dot(void) { return NULL; }
#endif

#endif
