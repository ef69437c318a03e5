"""The CPU's fused multiply-add peak: a register-bound FMA loop, the bench's yardstick."""

cdef extern from *:
    """
    /* Twelve independent accumulators: enough to cover the FMA latency (4-5 cycles) times the
     * FMA units (2) of current x86 cores, so the loop runs at the issue rate, not the latency.
     * acc = acc * m + c with m < 1 converges to c / (1 - m) = 1: no overflow, no subnormals.
     * The ISA is chosen at run time (GCC target attributes), so the build stays portable. */
    #define LSTMX_PEAK_ACC 12
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    #include <immintrin.h>
    #define LSTMX_PEAK_X86 1

    /* One function per ISA and type: P and S spell its intrinsics (P##set1_##S is
     * _mm256_set1_ps, say), ATTR is its target attribute. */
    #define LSTMX_PEAK_FN(NAME, ATTR, VEC, P, S, FMA, T, LANES)                 \\
        ATTR static double NAME(long long iterations) {                         \\
            VEC acc[LSTMX_PEAK_ACC];                                            \\
            const VEC m = P##set1_##S((T)0.999), c = P##set1_##S((T)0.001);     \\
            T out[LANES];                                                       \\
            for (int k = 0; k < LSTMX_PEAK_ACC; ++k) acc[k] = P##set1_##S((T)k); \\
            for (long long i = 0; i < iterations; ++i) {                        \\
                for (int k = 0; k < LSTMX_PEAK_ACC; ++k) acc[k] = FMA(acc[k], m, c); \\
            }                                                                   \\
            for (int k = 1; k < LSTMX_PEAK_ACC; ++k) acc[0] = P##add_##S(acc[0], acc[k]); \\
            P##storeu_##S(out, acc[0]);                                         \\
            double sum = 0;                                                     \\
            for (int k = 0; k < LANES; ++k) sum += out[k];                      \\
            return sum;                                                         \\
        }

    /* Without FMA: a multiply and an add per element, as a baseline x86-64 build computes. */
    static inline __m128 lstmx_sse_fma_ps(__m128 a, __m128 b, __m128 c) {
        return _mm_add_ps(_mm_mul_ps(a, b), c);
    }
    static inline __m128d lstmx_sse_fma_pd(__m128d a, __m128d b, __m128d c) {
        return _mm_add_pd(_mm_mul_pd(a, b), c);
    }
    #define LSTMX_AVX512 __attribute__((target("avx512f")))
    #define LSTMX_AVX2 __attribute__((target("avx2,fma")))
    LSTMX_PEAK_FN(lstmx_peak_avx512_f32, LSTMX_AVX512, __m512, _mm512_, ps, _mm512_fmadd_ps,
                  float, 16)
    LSTMX_PEAK_FN(lstmx_peak_avx512_f64, LSTMX_AVX512, __m512d, _mm512_, pd, _mm512_fmadd_pd,
                  double, 8)
    LSTMX_PEAK_FN(lstmx_peak_avx2_f32, LSTMX_AVX2, __m256, _mm256_, ps, _mm256_fmadd_ps,
                  float, 8)
    LSTMX_PEAK_FN(lstmx_peak_avx2_f64, LSTMX_AVX2, __m256d, _mm256_, pd, _mm256_fmadd_pd,
                  double, 4)
    LSTMX_PEAK_FN(lstmx_peak_sse2_f32, , __m128, _mm_, ps, lstmx_sse_fma_ps, float, 4)
    LSTMX_PEAK_FN(lstmx_peak_sse2_f64, , __m128d, _mm_, pd, lstmx_sse_fma_pd, double, 2)
    #endif

    /* Any other CPU: plain C, which the compiler vectorises as it can. */
    #define LSTMX_PEAK_SCALAR(T)                                              \\
        T acc[LSTMX_PEAK_ACC];                                                \\
        for (int k = 0; k < LSTMX_PEAK_ACC; ++k) acc[k] = (T)k;               \\
        for (long long i = 0; i < iterations; ++i) {                          \\
            for (int k = 0; k < LSTMX_PEAK_ACC; ++k) acc[k] = acc[k] * (T)0.999 + (T)0.001; \\
        }                                                                     \\
        double sum = 0;                                                       \\
        for (int k = 0; k < LSTMX_PEAK_ACC; ++k) sum += acc[k];               \\
        return sum;
    static double lstmx_peak_scalar_f32(long long iterations) { LSTMX_PEAK_SCALAR(float) }
    static double lstmx_peak_scalar_f64(long long iterations) { LSTMX_PEAK_SCALAR(double) }

    /* 0 scalar, 1 sse2, 2 avx2+fma, 3 avx512f: the widest this CPU runs. */
    static int lstmx_peak_best_isa(void) {
    #ifdef LSTMX_PEAK_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) return 3;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 2;
        return 1;
    #else
        return 0;
    #endif
    }

    /* Runs the loop of `isa` (as lstmx_peak_best_isa numbers them); the caller checked it. */
    static double lstmx_peak_run(int isa, int is_double, long long iterations) {
    #ifdef LSTMX_PEAK_X86
        switch (isa) {
        case 3: return is_double ? lstmx_peak_avx512_f64(iterations)
                                 : lstmx_peak_avx512_f32(iterations);
        case 2: return is_double ? lstmx_peak_avx2_f64(iterations)
                                 : lstmx_peak_avx2_f32(iterations);
        case 1: return is_double ? lstmx_peak_sse2_f64(iterations)
                                 : lstmx_peak_sse2_f32(iterations);
        }
    #endif
        return is_double ? lstmx_peak_scalar_f64(iterations) : lstmx_peak_scalar_f32(iterations);
    }
    """
    int lstmx_peak_best_isa() nogil
    double lstmx_peak_run(int isa, int is_double, long long iterations) nogil
    int LSTMX_PEAK_ACC

# Vector width in bytes of each ISA; the scalar loop counts as one element.
_ISAS = {0: ("scalar", 0), 1: ("sse2", 16), 2: ("avx2+fma", 32), 3: ("avx512f", 64)}


def best_isa():
    """The widest loop this CPU runs: ``"avx512f"``, ``"avx2+fma"``, ``"sse2"`` or
    ``"scalar"`` (not x86)."""
    return _ISAS[lstmx_peak_best_isa()][0]


def accumulators():
    """Independent accumulators (vector registers) the loop keeps in flight."""
    return LSTMX_PEAK_ACC


def flops_per_iteration(bint is_double):
    """Floating-point operations of one iteration of the loop (a multiply and an add per
    element of each accumulator) in the ISA of ``best_isa()``."""
    width = _ISAS[lstmx_peak_best_isa()][1]
    lanes = width // (8 if is_double else 4) if width else 1
    return 2 * LSTMX_PEAK_ACC * lanes


def fma_loop(bint is_double, long long iterations):
    """Run the loop ``iterations`` times without the GIL (threads run it side by side);
    returns its checksum, which only keeps the compiler from dropping the work."""
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0; got {iterations}")
    cdef int isa = lstmx_peak_best_isa()
    cdef double out
    with nogil:
        out = lstmx_peak_run(isa, is_double, iterations)
    return out
