/* Throughput of lstmx's int8 tile (lstmx/_int8_dot.h) over the blocking of _quantized.pyx, and of
 * the same tile with exact 8-bit activations by vpsignb (-DSIGNED_ACTIVATIONS). Results in
 * README.md of this directory.
 *
 *   gcc -O3 -mavx2 -mfma -I../../../lstmx tile_microbench.c -o tile && ./tile 64 2048 512 100
 *   gcc -O3 -mavx2 -mfma -DSIGNED_ACTIVATIONS -I../../../lstmx tile_microbench.c -o tile_signed
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "_int8_dot.h"

#define BLOCK_COLS 16
#define ROW_BLOCK 128

#ifdef SIGNED_ACTIVATIONS
/* sum_k a_i[k] w_j[k] with a_i signed in [-127, 127]: |a| times w with a's sign. Written as
 * lstmx_int8_dot_tile is (one pointer over the interleaved tile, each sum pinned to a
 * register). */
static inline void tile(ptrdiff_t kp, const uint8_t *a0, const uint8_t *a1, const int8_t *w,
                        int32_t *acc)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i s00 = _mm256_setzero_si256(), s01 = s00, s02 = s00, s03 = s00;
    __m256i s10 = s00, s11 = s00, s12 = s00, s13 = s00;
    __m256i x0, x1, ax0, ax1, y;
    ptrdiff_t k;
#define STEP(s, ax, x)                                                                        \
    s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(y, x)), \
                                              ones));                                          \
    __asm__("" : "+x"(s))
    for (k = 0; k < kp; k += 32, w += 128) {
        x0 = _mm256_loadu_si256((const __m256i *)(a0 + k));
        x1 = _mm256_loadu_si256((const __m256i *)(a1 + k));
        ax0 = _mm256_abs_epi8(x0);
        ax1 = _mm256_abs_epi8(x1);
        y = _mm256_loadu_si256((const __m256i *)w);
        STEP(s00, ax0, x0);
        STEP(s10, ax1, x1);
        y = _mm256_loadu_si256((const __m256i *)(w + 32));
        STEP(s01, ax0, x0);
        STEP(s11, ax1, x1);
        y = _mm256_loadu_si256((const __m256i *)(w + 64));
        STEP(s02, ax0, x0);
        STEP(s12, ax1, x1);
        y = _mm256_loadu_si256((const __m256i *)(w + 96));
        STEP(s03, ax0, x0);
        STEP(s13, ax1, x1);
    }
#undef STEP
    {
        __m256i r0 = _mm256_hadd_epi32(_mm256_hadd_epi32(s00, s01), _mm256_hadd_epi32(s02, s03));
        __m256i r1 = _mm256_hadd_epi32(_mm256_hadd_epi32(s10, s11), _mm256_hadd_epi32(s12, s13));
        _mm_storeu_si128((__m128i *)acc, _mm_add_epi32(_mm256_castsi256_si128(r0),
                                                       _mm256_extracti128_si256(r0, 1)));
        _mm_storeu_si128((__m128i *)(acc + 4), _mm_add_epi32(_mm256_castsi256_si128(r1),
                                                             _mm256_extracti128_si256(r1, 1)));
    }
}
#else
#define tile lstmx_int8_dot_tile
#endif

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void product(ptrdiff_t rows, ptrdiff_t N, ptrdiff_t Kp, const uint8_t *A, const int8_t *W,
                    const int32_t *off, const float *sa, const float *sw, float *z)
{
    int32_t acc[8];
    ptrdiff_t r0, r1, b, r, n;
    for (r0 = 0; r0 < rows; r0 += ROW_BLOCK) {
        r1 = r0 + ROW_BLOCK < rows ? r0 + ROW_BLOCK : rows;
        for (b = 0; b < N; b += BLOCK_COLS)
            for (r = r0; r < r1; r += 2)
                for (n = b; n < b + BLOCK_COLS; n += 4) {
                    tile(Kp, A + r * Kp, A + (r + 1) * Kp, W + n * Kp, acc);
                    lstmx_int8_tile_add(acc, off + n, sa[r], sw + n, z + r * N + n);
                    lstmx_int8_tile_add(acc + 4, off + n, sa[r + 1], sw + n, z + (r + 1) * N + n);
                }
    }
}

int main(int argc, char **argv)
{
    ptrdiff_t rows = atoi(argv[1]), N = atoi(argv[2]), K = atoi(argv[3]), i;
    int reps = atoi(argv[4]), t, r;
    uint8_t *a = aligned_alloc(64, rows * K);
    int8_t *w = aligned_alloc(64, N * K);
    float *z = aligned_alloc(64, 4 * rows * N), *sa = aligned_alloc(64, 4 * rows);
    float *sw = aligned_alloc(64, 4 * N);
    int32_t *off = aligned_alloc(64, 4 * N);
    double best = 1e9, t0, dt;
    for (i = 0; i < rows * K; i++) a[i] = (uint8_t)((i * 13) % 127);
    for (i = 0; i < N * K; i++) w[i] = (int8_t)((i * 7) % 255 - 127);
    for (i = 0; i < N; i++) { off[i] = (int32_t)i; sw[i] = 1e-3f; }
    for (i = 0; i < rows; i++) sa[i] = 1e-2f;
    for (i = 0; i < rows * N; i++) z[i] = 0;
    for (t = 0; t < 5; t++) {
        t0 = now();
        for (r = 0; r < reps; r++) product(rows, N, K, a, w, off, sa, sw, z);
        dt = now() - t0;
        best = dt < best ? dt : best;
    }
    printf("rows %ld N %ld K %ld: %.1f G multiply-adds/s (best of 5: %.1f ms; %g)\n", (long)rows,
           (long)N, (long)K, reps * (double)rows * N * K / best / 1e9, best * 1e3, z[7]);
    return 0;
}
