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


def cpu_supports(variant):
    """Whether this CPU can run the kernel variant ``"avx2"`` or ``"avx512"``."""
    if variant == "avx2":
        return lstmx_cpu_supports_avx2()
    if variant == "avx512":
        return lstmx_cpu_supports_avx512()
    raise ValueError(f"variant must be 'avx2' or 'avx512'; got {variant!r}")
