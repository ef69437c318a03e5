/* The quantised kernels' products on AMX, the tile unit of Intel's Xeons since Sapphire Rapids:
 * int8 with tdpbusd (AMX-INT8) and bfloat16 with tdpbf16ps (AMX-BF16), tiles of 16 rows x 16
 * channels.
 *
 * One tdpbusd multiplies a tile of 16 rows x 64 activation bytes by 64 x 16 weights: 16384
 * multiply-adds, 256 times one vpdpbusd's (the bench measures both peaks). The weights are
 * the vector kernels' own (_dot_tiles.h: per vector of 16 channels, G inputs of each channel
 * together, 64 bytes a row of G inputs), which is exactly the layout a B tile reads: 16 such
 * rows, 64 bytes apart. The activations are the row-major rows the vector kernels read. Only
 * the depth must be a whole number of tile rows: 64 bytes (int8) or 32 values (bfloat16),
 * zero-padded. Both should start on cache lines (a tile row across two lines costs two).
 *
 * A call computes the same sums as lstmx_int8_vnni / lstmx_bf16_dot (its signature is theirs):
 *   - int8: exact integers, then the vector kernels' own epilogue, so the same bits;
 *   - bfloat16: float32 sums whose order and rounding inside an instruction the hardware
 *     fixes (not those of vdpbf16ps; docs/quantization.md). Each sum depends on its row of
 *     activations and its channel's weights only, never on which rows share its tile, so the
 *     result does not depend on how rows or channels are split between threads or calls.
 *
 * Tiles are per-thread state: each call configures them and releases them, so that a thread
 * holds AMX's 8 KiB of registers only inside a product. The process must have asked Linux
 * for them once (lstmx_amx_ready, _amx.h). */
#ifndef LSTMX_DOT_AMX_H
#define LSTMX_DOT_AMX_H

#include "_amx.h"
#include "_dot_avx512.h"

#if LSTMX_DOT_BUILT && LSTMX_AMX_COMPILES
#define LSTMX_AMX_BUILT 1
#define LSTMX_AMX_TARGET \
    __attribute__((target("amx-tile,amx-int8,amx-bf16,avx512f,avx512bw,avx512vl")))

/* Rows [r0, r0 + MR * rows) x vectors [v0, v0 + NV) of a product (MR, NV in {1, 2}, rows the
 * configured rows of a row tile): the sums over k < kd rounded up to whole tile rows (kp is a
 * multiple of them) in tiles 0-3, in order of k, then into acc[2 i + j] (16 x 16, 64 bytes a
 * row) for the epilogue. ``DP`` is the tile product, ``E`` bytes a value, ``KT`` values a
 * tile row (64 / E). */
#define LSTMX_AMX_SUMS(MR, NV, DP, E, KT)                                                   \
    do {                                                                                   \
        const char *a0 = (const char *)A + (r0 * kp) * (E);                                \
        const char *a1 = a0 + LSTMX_AMX_ROWS * kp * (E);                                   \
        const char *w0 = (const char *)W + (v0 * LSTMX_DOT_VEC * kp) * (E);                \
        const char *w1 = w0 + LSTMX_DOT_VEC * kp * (E);                                    \
        const ptrdiff_t lda = kp * (E);                                                    \
        ptrdiff_t k;                                                                       \
        _tile_zero(0);                                                                     \
        if (NV > 1) _tile_zero(1);                                                         \
        if (MR > 1) _tile_zero(2);                                                         \
        if (MR > 1 && NV > 1) _tile_zero(3);                                               \
        for (k = 0; k < kd; k += (KT)) {                                                   \
            _tile_loadd(4, a0 + k * (E), lda);                                             \
            _tile_loadd(6, w0 + k * LSTMX_DOT_VEC * (E), LSTMX_AMX_ROW_BYTES);             \
            if (MR > 1) _tile_loadd(5, a1 + k * (E), lda);                                 \
            if (NV > 1) _tile_loadd(7, w1 + k * LSTMX_DOT_VEC * (E), LSTMX_AMX_ROW_BYTES); \
            DP(0, 4, 6);                                                                   \
            if (MR > 1) DP(2, 5, 6);                                                       \
            if (NV > 1) DP(1, 4, 7);                                                       \
            if (MR > 1 && NV > 1) DP(3, 5, 7);                                             \
        }                                                                                  \
        _tile_stored(0, acc[0], LSTMX_AMX_ROW_BYTES);                                      \
        if (NV > 1) _tile_stored(1, acc[1], LSTMX_AMX_ROW_BYTES);                          \
        if (MR > 1) _tile_stored(2, acc[2], LSTMX_AMX_ROW_BYTES);                          \
        if (MR > 1 && NV > 1) _tile_stored(3, acc[3], LSTMX_AMX_ROW_BYTES);                \
    } while (0)

/* Every (MR, NV) of a product over rows [r_lo, r_hi) and vectors [v_lo, v_hi): whole row
 * tiles two at a time (a last one alone), then a shorter last row tile with its own
 * configuration; within each, vectors two at a time, so that their weights stay in L1
 * while every row tile passes. TILE(MR, NV) runs the tile at r0, v0 and its epilogue. */
#define LSTMX_AMX_FOR_TILES(TILE)                                                          \
    do {                                                                                   \
        ptrdiff_t r0, v0, whole = (r_hi - r_lo) / LSTMX_AMX_ROWS * LSTMX_AMX_ROWS;        \
        int rows = LSTMX_AMX_ROWS, pass;                                                   \
        for (pass = 0; pass < 2; pass++) {                                                 \
            ptrdiff_t lo = pass == 0 ? r_lo : r_lo + whole;                                \
            ptrdiff_t hi = pass == 0 ? r_lo + whole : r_hi;                                \
            if (hi <= lo)                                                                  \
                continue;                                                                  \
            rows = pass == 0 ? LSTMX_AMX_ROWS : (int)(hi - lo);                            \
            lstmx_amx_configure(rows);                                                     \
            for (v0 = v_lo; v0 < v_hi; v0 += 2) {                                          \
                int two_v = v_hi - v0 >= 2;                                                \
                for (r0 = lo; r0 < hi; r0 += 2 * LSTMX_AMX_ROWS) {                         \
                    int two_r = hi - r0 > LSTMX_AMX_ROWS;                                  \
                    if (two_r && two_v) TILE(2, 2);                                        \
                    else if (two_r) TILE(2, 1);                                            \
                    else if (two_v) TILE(1, 2);                                            \
                    else TILE(1, 1);                                                       \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        _tile_release();                                                                   \
    } while (0)

/* ------------------------------------------------------------------------ int8: tdpbusd */

#define LSTMX_AMX_DPBUSD(c, a, b) _tile_dpbusd(c, a, b)

/* The int8 epilogue of rows [r0, r0 + MR * rows) x vectors [v0, v0 + NV): each sum less 128
 * times its weight row's sum (the activations are q + 128, as on vpdpbusd), then scaled and
 * added as lstmx_vnni_tile does, with its operations: the same bits. */
LSTMX_AMX_TARGET static inline void lstmx_amx_int8_epilogue(
    int MR, int NV, int rows, ptrdiff_t r0, ptrdiff_t v0, ptrdiff_t N, const float *sa,
    const float *sw, const int32_t *wsum, const float *bias, float *z, ptrdiff_t ldz,
    int32_t *raw, int32_t acc[4][LSTMX_AMX_ROWS * LSTMX_DOT_VEC])
{
    int i, j, r;
    for (j = 0; j < NV; j++) {
        ptrdiff_t n0 = (v0 + j) * LSTMX_DOT_VEC;
        ptrdiff_t cols = N - n0 < LSTMX_DOT_VEC ? N - n0 : LSTMX_DOT_VEC;
        __mmask16 mask = LSTMX_DOT_MASK(cols);
        __m512i zero_point = _mm512_slli_epi32(_mm512_loadu_si512((const void *)(wsum + n0)), 7);
        __m512 swv = raw == NULL ? _mm512_loadu_ps(sw + n0) : _mm512_setzero_ps();
        for (i = 0; i < MR; i++) {
            for (r = 0; r < rows; r++) {
                ptrdiff_t row = r0 + i * LSTMX_AMX_ROWS + r;
                __m512i d = _mm512_sub_epi32(
                    _mm512_loadu_si512((const void *)(acc[2 * i + j] + r * LSTMX_DOT_VEC)),
                    zero_point);
                if (raw != NULL) {
                    _mm512_mask_storeu_epi32(raw + row * N + n0, mask, d);
                } else {
                    float *zr = z + row * ldz + n0;
                    __m512 m = _mm512_mul_ps(_mm512_set1_ps(sa[row]), swv);
                    __m512 zv = _mm512_maskz_loadu_ps(mask, bias != NULL ? bias + n0 : zr);
                    _mm512_mask_storeu_ps(zr, mask, _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), m, zv));
                }
            }
        }
    }
}

/* lstmx_int8_vnni on AMX: the same arguments, the same results, for kp a multiple of 64 (the
 * sums run over whole tile rows up to kd or past it, into kp's zero padding). */
LSTMX_AMX_TARGET static void lstmx_int8_amx(
    ptrdiff_t r_lo, ptrdiff_t r_hi, ptrdiff_t v_lo, ptrdiff_t v_hi, ptrdiff_t N, ptrdiff_t kp,
    ptrdiff_t kd, const uint8_t *A, const float *sa, const int8_t *W, const float *sw,
    const int32_t *wsum, const float *bias, float *z, ptrdiff_t ldz, int32_t *raw)
{
    int32_t acc[4][LSTMX_AMX_ROWS * LSTMX_DOT_VEC] __attribute__((aligned(64)));
#define LSTMX_T(MR, NV)                                                                     \
    do {                                                                                   \
        LSTMX_AMX_SUMS(MR, NV, LSTMX_AMX_DPBUSD, 1, LSTMX_AMX_ROW_BYTES);                  \
        lstmx_amx_int8_epilogue(MR, NV, rows, r0, v0, N, sa, sw, wsum, bias, z, ldz, raw,  \
                                acc);                                                      \
    } while (0)
    LSTMX_AMX_FOR_TILES(LSTMX_T);
#undef LSTMX_T
}

/* ------------------------------------------------------------------------ bfloat16: tdpbf16ps */

#define LSTMX_AMX_DPBF16(c, a, b) _tile_dpbf16ps(c, a, b)

/* The bfloat16 epilogue: each sum added to (bias or z) once, as lstmx_bf16_tile does. */
LSTMX_AMX_TARGET static inline void lstmx_amx_bf16_epilogue(
    int MR, int NV, int rows, ptrdiff_t r0, ptrdiff_t v0, ptrdiff_t N, const float *bias,
    float *z, ptrdiff_t ldz, float acc[4][LSTMX_AMX_ROWS * LSTMX_DOT_VEC])
{
    int i, j, r;
    for (j = 0; j < NV; j++) {
        ptrdiff_t n0 = (v0 + j) * LSTMX_DOT_VEC;
        ptrdiff_t cols = N - n0 < LSTMX_DOT_VEC ? N - n0 : LSTMX_DOT_VEC;
        __mmask16 mask = LSTMX_DOT_MASK(cols);
        for (i = 0; i < MR; i++) {
            for (r = 0; r < rows; r++) {
                float *zr = z + (r0 + i * LSTMX_AMX_ROWS + r) * ldz + n0;
                __m512 zv = _mm512_maskz_loadu_ps(mask, bias != NULL ? bias + n0 : zr);
                __m512 sums = _mm512_loadu_ps(acc[2 * i + j] + r * LSTMX_DOT_VEC);
                _mm512_mask_storeu_ps(zr, mask, _mm512_add_ps(zv, sums));
            }
        }
    }
}

/* lstmx_bf16_dot on AMX: the same arguments, for kp a multiple of 32 (the sums run over whole
 * tile rows up to kd or past it, into kp's zero padding). */
LSTMX_AMX_TARGET static void lstmx_bf16_amx(
    ptrdiff_t r_lo, ptrdiff_t r_hi, ptrdiff_t v_lo, ptrdiff_t v_hi, ptrdiff_t N, ptrdiff_t kp,
    ptrdiff_t kd, const uint16_t *A, const uint16_t *W, const float *bias, float *z, ptrdiff_t ldz)
{
    float acc[4][LSTMX_AMX_ROWS * LSTMX_DOT_VEC] __attribute__((aligned(64)));
#define LSTMX_T(MR, NV)                                                                     \
    do {                                                                                   \
        LSTMX_AMX_SUMS(MR, NV, LSTMX_AMX_DPBF16, 2, LSTMX_AMX_ROW_BYTES / 2);              \
        lstmx_amx_bf16_epilogue(MR, NV, rows, r0, v0, N, bias, z, ldz, acc);               \
    } while (0)
    LSTMX_AMX_FOR_TILES(LSTMX_T);
#undef LSTMX_T
}

#else
/* Not built for AVX-512 on x86-64 Linux with GCC 11 or later: no AMX. LSTMX_AMX_BUILT 0 keeps
 * the module from calling these; the names stand for the vector kernels of the same signature. */
#define LSTMX_AMX_BUILT 0
#define lstmx_int8_amx lstmx_int8_vnni
#define lstmx_bf16_amx lstmx_bf16_dot
#endif

#endif
