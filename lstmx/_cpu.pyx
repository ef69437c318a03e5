"""What this CPU can run: the instruction sets that choose a kernel variant (lstmx._dispatch).

Compiled for baseline x86-64 and imported before any variant, whose own module
initialisation may already use the instructions it was built for.
"""

cdef extern from *:
    """
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static int lstmx_cpu_supports_avx2(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    static int lstmx_cpu_supports_avx512(void) {
        __builtin_cpu_init();
        return lstmx_cpu_supports_avx2() && __builtin_cpu_supports("avx512f")
            && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512dq");
    }
    #else
    static int lstmx_cpu_supports_avx2(void) { return 0; }
    static int lstmx_cpu_supports_avx512(void) { return 0; }
    #endif
    """
    bint lstmx_cpu_supports_avx2()
    bint lstmx_cpu_supports_avx512()

cdef extern from *:
    """
    #include <unistd.h>
    /* One core's data L1 (level 1) or L2 (level 2) in bytes, as glibc reads it from CPUID;
       0 where the C library does not say. */
    static long lstmx_cache_bytes(int level) {
    #if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE)
        long n = sysconf(level == 1 ? _SC_LEVEL1_DCACHE_SIZE : _SC_LEVEL2_CACHE_SIZE);
        return n > 0 ? n : 0;
    #else
        return 0;
    #endif
    }
    """
    long lstmx_cache_bytes(int level)

# What l2_cache_bytes assumes when the C library does not say: the smallest L2 of a core of
# the x86-64 CPUs with AVX2 of the last decade.
DEFAULT_L2_BYTES = 256 * 1024
# And for L1d: the common size of those CPUs' data L1 (Zen 1-4, Skylake).
DEFAULT_L1D_BYTES = 32 * 1024


def cpu_supports(variant):
    """Whether this CPU can run the kernel variant ``"avx2"`` or ``"avx512"``."""
    if variant == "avx2":
        return lstmx_cpu_supports_avx2()
    if variant == "avx512":
        return lstmx_cpu_supports_avx512()
    raise ValueError(f"variant must be 'avx2' or 'avx512'; got {variant!r}")


def l2_cache_bytes():
    """The size of one core's L2 cache in bytes, as the C library reports it (glibc reads
    it from CPUID), or DEFAULT_L2_BYTES when it does not."""
    cdef long n = lstmx_cache_bytes(2)
    return n if n > 0 else DEFAULT_L2_BYTES


def l1d_cache_bytes():
    """The size of one core's L1 data cache in bytes, as the C library reports it, or
    DEFAULT_L1D_BYTES when it does not."""
    cdef long n = lstmx_cache_bytes(1)
    return n if n > 0 else DEFAULT_L1D_BYTES
