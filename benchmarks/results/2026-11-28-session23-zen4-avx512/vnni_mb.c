/* Microbenchmark of lstmx_int8_vnni / lstmx_bf16_dot on in-cache operands. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "/work/main/lstmx/_dot_avx512.h"
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
int main(int argc, char **argv) {
    long rows = atol(argv[1]), N = atol(argv[2]), K = atol(argv[3]); int bf = argc > 4;
    long Np = (N + 15) / 16 * 16;
    uint8_t *A = aligned_alloc(64, rows * K + 64); int8_t *W = aligned_alloc(64, Np * K + 64);
    uint16_t *Ab = aligned_alloc(64, 2 * rows * K + 64); uint16_t *Wb = aligned_alloc(64, 2 * Np * K + 64);
    float *sa = malloc(4 * rows), *sw = malloc(4 * Np), *z = aligned_alloc(64, 4 * rows * N + 64);
    int32_t *ws = malloc(4 * Np);
    for (long i = 0; i < rows * K; i++) { A[i] = rand() & 255; Ab[i] = 0x3f80 + (rand() & 127); }
    for (long i = 0; i < Np * K; i++) { W[i] = (rand() % 255) - 127; Wb[i] = 0x3f80 + (rand() & 127); }
    for (long i = 0; i < rows; i++) sa[i] = 1e-3f;
    for (long i = 0; i < Np; i++) { sw[i] = 1e-3f; ws[i] = 0; }
    for (long i = 0; i < rows * N; i++) z[i] = 0;
    double best = 1e9;
    for (int rep = 0; rep < 30; rep++) {
        int inner = (int)(2e8 / (rows * N * K) + 1);
        double t0 = now();
        for (int it = 0; it < inner; it++) {
            if (bf) lstmx_bf16_dot(0, rows, 0, Np / 16, N, K, Ab, Wb, NULL, z, N);
            else lstmx_int8_vnni(0, rows, 0, Np / 16, N, K, A, sa, W, sw, ws, NULL, z, N, NULL);
        }
        double t = (now() - t0) / inner; if (t < best) best = t;
    }
    printf("%s rows %ld N %ld K %ld: %.1f G MAC/s\n", bf ? "bf16" : "int8", rows, N, K, rows * N * K / best * 1e-9);
    return 0;
}
