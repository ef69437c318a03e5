"""Bernoulli masks from Philox4x64-10 on a team of threads, element for element NumPy's.

Element i of a mask reads the i-th of ``numpy.random.Philox(key=key).random(n,
dtype=numpy.float32)`` (24 random bits: p is rounded up to a multiple of 2**-24):
Philox is counter-based (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", 2011),
its block j of four 64-bit outputs a function of the counter j + 1 and the key alone, so any
thread can fill any part of a mask without a shared state, and the bits do not depend on the
team. NumPy's own Philox is the test's oracle.
"""
from cython.parallel cimport prange

from libc.math cimport ceil
from libc.stdint cimport uint32_t, uint64_t

from lstmx._openmp cimport max_threads

ctypedef fused floating:
    float
    double


cdef extern from *:
    """
    /* Philox4x64 with 10 rounds, as Random123 and NumPy define it: each round multiplies
       two words by the constants M0, M1 (128-bit products) and mixes in the other two and
       the key, which grows by the Weyl constants W0, W1 between rounds. */
    #include <stdint.h>
    static inline uint64_t lstmx_mulhilo64(uint64_t a, uint64_t b, uint64_t *hi) {
    #ifdef __SIZEOF_INT128__
        unsigned __int128 p = (unsigned __int128) a * b;
        *hi = (uint64_t) (p >> 64);
        return (uint64_t) p;
    #else  /* from 32-bit halves */
        uint64_t a0 = (uint32_t) a, a1 = a >> 32, b0 = (uint32_t) b, b1 = b >> 32;
        uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
        uint64_t mid = (p00 >> 32) + (uint32_t) p01 + (uint32_t) p10;
        *hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
        return a * b;
    #endif
    }
    /* LSTMX_PHILOX_WAYS blocks at once, counters c0, c0 + 1, ...: a round's products
       wait for the last round's, so one block at a time runs at the multiplier's latency;
       independent blocks side by side fill it. out[4 w + i] is word i of block w. */
    #define LSTMX_PHILOX_WAYS 2
    static inline void lstmx_philox4x64_10(uint64_t c0, uint64_t k0, uint64_t k1,
                                           uint64_t *out) {
        uint64_t x0[LSTMX_PHILOX_WAYS], x1[LSTMX_PHILOX_WAYS];
        uint64_t x2[LSTMX_PHILOX_WAYS], x3[LSTMX_PHILOX_WAYS];
        for (int w = 0; w < LSTMX_PHILOX_WAYS; ++w) {
            x0[w] = c0 + (uint64_t) w; x1[w] = 0; x2[w] = 0; x3[w] = 0;
        }
        for (int r = 0; r < 10; ++r) {
            if (r > 0) {
                k0 += 0x9E3779B97F4A7C15ULL;
                k1 += 0xBB67AE8584CAA73BULL;
            }
            for (int w = 0; w < LSTMX_PHILOX_WAYS; ++w) {
                uint64_t hi0, hi1;
                uint64_t lo0 = lstmx_mulhilo64(0xD2E7470EE14C6C93ULL, x0[w], &hi0);
                uint64_t lo1 = lstmx_mulhilo64(0xCA5A826395121157ULL, x2[w], &hi1);
                x0[w] = hi1 ^ x1[w] ^ k0;
                x1[w] = lo1;
                x2[w] = hi0 ^ x3[w] ^ k1;
                x3[w] = lo0;
            }
        }
        for (int w = 0; w < LSTMX_PHILOX_WAYS; ++w) {
            out[4 * w] = x0[w]; out[4 * w + 1] = x1[w];
            out[4 * w + 2] = x2[w]; out[4 * w + 3] = x3[w];
        }
    }
    """
    enum: PHILOX_WAYS "LSTMX_PHILOX_WAYS"
    void philox4x64_10 "lstmx_philox4x64_10"(uint64_t c0, uint64_t k0, uint64_t k1,
                                              uint64_t *out) noexcept nogil

cdef enum:
    PARALLEL_ELEMENTS = 1 << 16  # elements below which one thread fills a mask


cdef void fill_group(floating *out, Py_ssize_t n, Py_ssize_t group, uint64_t k0, uint64_t k1,
                     uint64_t below_p, floating value, bint below) noexcept nogil:
    """Elements [E group, E (group + 1)) of the mask, E = 8 PHILOX_WAYS: ``value`` where the
    element's uniform u is below p (``below``) or not (else), zero elsewhere.

    u is NumPy's float32 random(): each 64-bit word gives two 32-bit draws, its low half
    first, and a draw d gives u = (d >> 8) / 2**24. So u < p is d >> 8 < ceil(p 2**24)
    (``below_p``): integers, and a product by 0 or 1 rather than a branch that a random
    mask would mispredict half the time."""
    cdef uint64_t words[4 * PHILOX_WAYS]
    cdef uint32_t draws[8 * PHILOX_WAYS]
    cdef Py_ssize_t j, i0 = 8 * PHILOX_WAYS * group
    cdef Py_ssize_t count = 8 * PHILOX_WAYS if n - i0 > 8 * PHILOX_WAYS else n - i0
    cdef uint32_t flip = 0 if below else 1, limit = <uint32_t> below_p
    # NumPy increments the counter before each block: block j runs on counter j + 1.
    philox4x64_10(<uint64_t> (PHILOX_WAYS * group + 1), k0, k1, words)
    # Each word's low half, then its high half: the draws in order, so that the loop below
    # is a vector compare (with the halves picked inside it, it ran element by element).
    for j in range(4 * PHILOX_WAYS):
        draws[2 * j] = <uint32_t> words[j]
        draws[2 * j + 1] = <uint32_t> (words[j] >> 32)
    if count == 8 * PHILOX_WAYS:
        for j in range(8 * PHILOX_WAYS):
            out[i0 + j] = value * <floating> (<uint32_t> ((draws[j] >> 8) < limit) ^ flip)
    else:
        for j in range(count):
            out[i0 + j] = value * <floating> (<uint32_t> ((draws[j] >> 8) < limit) ^ flip)


def bernoulli(floating[::1] out, uint64_t k0, uint64_t k1, double p, double value,
              bint below):
    """out[i] := value where u_i < p (``below``; else where u_i >= p), 0 elsewhere, u_i the
    i-th of ``numpy.random.Philox(key=[k0, k1]).random(n, dtype=numpy.float32)``; out flat
    (see the module docstring). On all the OpenMP threads from PARALLEL_ELEMENTS elements
    on."""
    if not 0 <= p <= 1:
        raise ValueError(f"bernoulli: p must be in [0, 1]; got {p}")
    cdef Py_ssize_t n = out.shape[0], per = 8 * PHILOX_WAYS, groups = (n + per - 1) // per, g
    cdef int threads = max_threads() if n >= PARALLEL_ELEMENTS else 1
    cdef floating v = <floating> value
    cdef floating *o = &out[0] if n > 0 else NULL
    cdef uint64_t below_p = <uint64_t> ceil(p * 16777216.0)  # p 2**24, exact
    for g in prange(groups, nogil=True, num_threads=threads, schedule="static"):
        fill_group(o, n, g, k0, k1, below_p, v, below)
