"""The CPU's multiply-add peaks: register-bound loops of FMA (float32, float64) and of the
dot-product instructions of the quantised kernels (int8, bfloat16), the bench's yardsticks."""

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


cdef extern from *:
    """
    /* The quantised kernels' dot-product instructions on 512-bit vectors, as many
     * accumulators as the FMA loop: vpdpbusd (AVX512_VNNI), 64 int8 multiply-adds into 16
     * int32 sums, and vdpbf16ps (AVX512_BF16), 32 bfloat16 ones into 16 float32 sums. The
     * int32 sums wrap and the float32 ones stop growing at 2**25 (adding 2 no longer changes
     * them): only the instructions' count matters. */
    #if defined(__x86_64__) && ((defined(__clang__) && __clang_major__ >= 9) \\
                                || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 10))
    #include <immintrin.h>
    __attribute__((target("avx512f,avx512vnni")))
    static double lstmx_peak_int8(long long iterations) {
        __m512i acc[LSTMX_PEAK_ACC];
        const __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(1);
        for (int k = 0; k < LSTMX_PEAK_ACC; ++k) acc[k] = _mm512_set1_epi32(k);
        for (long long i = 0; i < iterations; ++i) {
            for (int k = 0; k < LSTMX_PEAK_ACC; ++k) acc[k] = _mm512_dpbusd_epi32(acc[k], a, b);
        }
        for (int k = 1; k < LSTMX_PEAK_ACC; ++k) acc[0] = _mm512_add_epi32(acc[0], acc[k]);
        return (double)_mm512_reduce_add_epi32(acc[0]);
    }
    __attribute__((target("avx512f,avx512bf16")))
    static double lstmx_peak_bf16(long long iterations) {
        __m512 acc[LSTMX_PEAK_ACC];
        const __m512bh one = (__m512bh)_mm512_set1_epi16(0x3f80);  /* bfloat16 1.0 */
        for (int k = 0; k < LSTMX_PEAK_ACC; ++k) acc[k] = _mm512_set1_ps((float)k);
        for (long long i = 0; i < iterations; ++i) {
            for (int k = 0; k < LSTMX_PEAK_ACC; ++k) acc[k] = _mm512_dpbf16_ps(acc[k], one, one);
        }
        for (int k = 1; k < LSTMX_PEAK_ACC; ++k) acc[0] = _mm512_add_ps(acc[0], acc[k]);
        return (double)_mm512_reduce_add_ps(acc[0]);
    }
    /* 1 when this CPU runs the loop of `kind` (0 int8, 1 bfloat16), else 0. */
    static int lstmx_peak_dot_runs(int kind) {
        __builtin_cpu_init();
        if (!__builtin_cpu_supports("avx512f")) return 0;
        return kind == 0 ? __builtin_cpu_supports("avx512vnni") != 0
                         : __builtin_cpu_supports("avx512bf16") != 0;
    }
    static double lstmx_peak_dot_run(int kind, long long iterations) {
        return kind == 0 ? lstmx_peak_int8(iterations) : lstmx_peak_bf16(iterations);
    }
    #else
    static int lstmx_peak_dot_runs(int kind) { return 0; }
    static double lstmx_peak_dot_run(int kind, long long iterations) { return 0; }
    #endif
    """
    int lstmx_peak_dot_runs(int kind) nogil
    double lstmx_peak_dot_run(int kind, long long iterations) nogil


cdef extern from *:
    """
    #include "_amx.h"
    /* AMX's tile products, which the quantised kernels run where the CPU has them: four sums'
     * tiles (0-3), each taking one tdpbusd (16 x 16 x 64 int8 multiply-adds) or tdpbf16ps
     * (16 x 16 x 32 bfloat16 ones) of tiles of ones per iteration; four, so that the unit
     * always has an instruction whose sums are ready. Each sum of tile 0 ends at 64 or 32
     * times the iterations (int32 wraps; float32 stops growing at 2**25). */
    #if LSTMX_AMX_COMPILES
    __attribute__((target("amx-tile,amx-int8,amx-bf16")))
    static double lstmx_peak_tile_run(int kind, long long iterations) {
        uint16_t ones[LSTMX_AMX_ROWS * LSTMX_AMX_ROW_BYTES / 2] __attribute__((aligned(64)));
        int32_t out[LSTMX_AMX_ROWS * LSTMX_AMX_ROW_BYTES / 4] __attribute__((aligned(64)));
        float f;
        int k;
        for (k = 0; k < LSTMX_AMX_ROWS * LSTMX_AMX_ROW_BYTES / 2; ++k)
            ones[k] = kind == 0 ? 0x0101 : 0x3f80;  /* int8 1, 1 or bfloat16 1.0 */
        lstmx_amx_configure(LSTMX_AMX_ROWS);
        _tile_loadd(4, ones, LSTMX_AMX_ROW_BYTES);
        _tile_loadd(6, ones, LSTMX_AMX_ROW_BYTES);
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        if (kind == 0) {
            for (long long i = 0; i < iterations; ++i) {
                _tile_dpbusd(0, 4, 6);
                _tile_dpbusd(1, 4, 6);
                _tile_dpbusd(2, 4, 6);
                _tile_dpbusd(3, 4, 6);
            }
        } else {
            for (long long i = 0; i < iterations; ++i) {
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 6);
                _tile_dpbf16ps(2, 4, 6);
                _tile_dpbf16ps(3, 4, 6);
            }
        }
        _tile_stored(0, out, LSTMX_AMX_ROW_BYTES);
        _tile_release();
        memcpy(&f, out, sizeof(f));
        return kind == 0 ? (double)out[0] : (double)f;
    }
    #else
    static double lstmx_peak_tile_run(int kind, long long iterations) { return 0; }
    #endif
    """
    int lstmx_amx_ready() nogil
    double lstmx_peak_tile_run(int kind, long long iterations) nogil

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


# The dot-product loops: kind -> (number in C, instruction, multiply-adds per vector).
_DOTS = {"int8": (0, "vpdpbusd", 64), "bfloat16": (1, "vdpbf16ps", 32)}


def _dot_kind(kind):
    if kind not in _DOTS:
        raise ValueError(f"kind must be one of {', '.join(_DOTS)}; got {kind!r}")
    return _DOTS[kind]


def dot_instruction(kind):
    """The instruction of the ``kind`` (``"int8"`` or ``"bfloat16"``) loop on 512-bit
    vectors, ``"vpdpbusd"`` or ``"vdpbf16ps"``, or None where this CPU (or compiler) has
    none: then the quantised kernels have no such peak to measure."""
    number, name, _ = _dot_kind(kind)
    return name if lstmx_peak_dot_runs(number) else None


def macs_per_iteration(kind):
    """Multiply-adds of one iteration of the ``kind`` loop."""
    return LSTMX_PEAK_ACC * _dot_kind(kind)[2]


def dot_loop(kind, long long iterations):
    """Run the ``kind`` loop ``iterations`` times without the GIL; returns its checksum.
    Raises ValueError where ``dot_instruction(kind)`` is None."""
    cdef int number = _dot_kind(kind)[0]
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0; got {iterations}")
    if not lstmx_peak_dot_runs(number):
        raise ValueError(f"this CPU has no {_DOTS[kind][1]} on 512-bit vectors")
    cdef double out
    with nogil:
        out = lstmx_peak_dot_run(number, iterations)
    return out


# AMX's tile products: kind -> (bit of lstmx_amx_ready and number in C, instruction,
# multiply-adds per tile product).
_TILES = {"int8": (1, "tdpbusd", 16 * 16 * 64), "bfloat16": (2, "tdpbf16ps", 16 * 16 * 32)}


def tile_instruction(kind):
    """The AMX instruction of the ``kind`` (``"int8"`` or ``"bfloat16"``) loop,
    ``"tdpbusd"`` or ``"tdpbf16ps"``, or None where this CPU (or Linux, or the compiler)
    gives this process none."""
    _dot_kind(kind)
    bit, name, _ = _TILES[kind]
    return name if lstmx_amx_ready() & bit else None


def tile_macs_per_iteration(kind):
    """Multiply-adds of one iteration of the ``kind`` tile loop: four tile products."""
    _dot_kind(kind)
    return 4 * _TILES[kind][2]


def tile_loop(kind, long long iterations):
    """Run the ``kind`` tile loop ``iterations`` times without the GIL; returns its checksum.
    Raises ValueError where ``tile_instruction(kind)`` is None."""
    _dot_kind(kind)
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0; got {iterations}")
    if tile_instruction(kind) is None:
        raise ValueError(f"this process has no AMX {_TILES[kind][1]}")
    cdef int number = _TILES[kind][0] - 1
    cdef double out
    with nogil:
        out = lstmx_peak_tile_run(number, iterations)
    return out
