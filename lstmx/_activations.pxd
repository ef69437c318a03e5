# Vectorisable exp, sigmoid and tanh in float32 and float64 for the cell's element-wise loops.
#
# Inline, so that each kernel variant compiles them for its own instruction set; the maths of
# the cell is in docs/equations.md.
from cython cimport floating
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy


cdef extern from *:
    """
    /* The clamps of exp_ and expf_, as variables whose values the compiler cannot see
       (defined here, not static, so not folded). With the bounds as constants, GCC carried
       each clamp through the whole exp to a constant result and picked it afterwards: four
       compares and three blends a vector where a minimum and a maximum do, and constants
       spilled to the stack (docs/performance.md). The same values and the same order of
       operations: the same results. */
    float lstmx_exp_lo_f = -87.3f, lstmx_exp_hi_f = 87.0f;
    double lstmx_exp_lo_d = -708.0, lstmx_exp_hi_d = 708.0;
    """
    float EXP_LO_F "lstmx_exp_lo_f"
    float EXP_HI_F "lstmx_exp_hi_f"
    double EXP_LO_D "lstmx_exp_lo_d"
    double EXP_HI_D "lstmx_exp_hi_d"


cdef inline float expf_(float x) noexcept nogil:
    """e**x in float32 within ~2 ulp (Cephes' expf), as arithmetic the compiler vectorises.

    x is clamped to [-87.3, 87], where the result and its reciprocal are normal floats: a
    saturated gate is 1 or ~1e-38, never inf, NaN or a (slow) denormal. Constants are typed
    float so that every operation stays in single precision.
    """
    cdef float lo = EXP_LO_F, hi = EXP_HI_F, log2e = 1.44269504088896341
    cdef float round_ = 12582912.0  # 1.5 * 2**23: adding and subtracting it rounds to nearest
    cdef float ln2_hi = 0.693359375, ln2_lo = -2.12194440e-4  # ln 2 in two parts
    cdef float p0 = 1.9875691500e-4, p1 = 1.3981999507e-3, p2 = 8.3334519073e-3
    cdef float p3 = 4.1665795894e-2, p4 = 1.6666665459e-1, p5 = 5.0000001201e-1
    cdef float one = 1, shifted, n, y, scale
    cdef uint32_t bits
    x = hi if x > hi else x
    x = lo if x < lo else x
    shifted = x * log2e + round_
    n = shifted - round_                       # n = round(x / ln 2)
    x = x - n * ln2_hi - n * ln2_lo            # x - n ln 2, in [-ln2/2, ln2/2]
    y = (((((p0 * x + p1) * x + p2) * x + p3) * x + p4) * x + p5) * x * x + x + one
    # 2**n in the exponent field, from the bits of the rounding sum (its low bits are
    # 2**22 + n), as exp_ does: no float-to-int conversion, which is undefined behaviour in
    # C for a NaN x (NaN passes the clamps and propagates through y either way).
    memcpy(&bits, &shifted, sizeof(float))
    bits = (bits + 127) << 23
    memcpy(&scale, &bits, sizeof(float))
    return y * scale


cdef inline double exp_(double x) noexcept nogil:
    """e**x in float64 within ~1 ulp, as arithmetic the compiler vectorises (libm's exp is a
    scalar call, which dominated a float64 forward pass).

    The float32 scheme in double precision: x is clamped to [-708, 708], where the result and
    its reciprocal are normal doubles; n = round(x / ln 2); e**r on |r| <= ln2/2 is its
    Taylor series to r**13 (the first term left out is below 5e-18). 2**n is built in the
    exponent field from the bits of the rounding sum itself (x / ln 2 + 1.5 * 2**52 holds n
    in its low bits), which needs no float-to-int64 conversion, absent before AVX-512.
    """
    cdef double lo = EXP_LO_D, hi = EXP_HI_D, log2e = 1.4426950408889634074
    cdef double round_ = 6755399441055744.0  # 1.5 * 2**52
    cdef double ln2_hi = 6.93145751953125e-1, ln2_lo = 1.42860682030941723212e-6
    cdef double shifted, n, y, scale
    cdef uint64_t bits
    x = hi if x > hi else x
    x = lo if x < lo else x
    shifted = x * log2e + round_
    n = shifted - round_
    x = x - n * ln2_hi - n * ln2_lo
    # Horner from 1/13!: y = 1/2! + x/3! + ... + x**11/13!, then e**x = 1 + x + x**2 y
    y = 1 / 6227020800.0
    y = y * x + 1 / 479001600.0
    y = y * x + 1 / 39916800.0
    y = y * x + 1 / 3628800.0
    y = y * x + 1 / 362880.0
    y = y * x + 1 / 40320.0
    y = y * x + 1 / 5040.0
    y = y * x + 1 / 720.0
    y = y * x + 1 / 120.0
    y = y * x + 1 / 24.0
    y = y * x + 1 / 6.0
    y = y * x + 0.5
    y = y * x * x + x + 1
    memcpy(&bits, &shifted, sizeof(double))
    bits = (bits + 1023) << 52  # the low 12 bits were 2**51 + n, mod 2**12: n + 1023
    memcpy(&scale, &bits, sizeof(double))
    return y * scale


cdef inline floating sigmoid(floating v) noexcept nogil:
    cdef float one = 1  # typed constants keep float arithmetic in single precision
    if floating is float:
        return one / (one + expf_(-v))
    else:
        return 1 / (1 + exp_(-v))


cdef inline floating tanh_(floating v) noexcept nogil:
    # Cephes' tanhf and tanh: below 0.625 an odd polynomial (float) or rational function
    # (double), which keeps relative precision near 0; else 1 - 2 / (e**2|v| + 1). Both are
    # computed so that the loop stays branch-free.
    cdef float q0 = -5.70498872745e-3, q1 = 2.06390887954e-2, q2 = -5.37397155531e-2
    cdef float q3 = 1.33314422036e-1, q4 = -3.33332819422e-1, edge = 0.625
    cdef float one = 1, two = 2
    cdef double p0 = -9.64399179425052238628e-1, p1 = -9.92877231001918586564e1
    cdef double p2 = -1.61468768441708447952e3, r0 = 1.12811678491632931402e2
    cdef double r1 = 2.23548839060100448583e3, r2 = 4.84406305325125486048e3
    cdef floating a, z, small, large
    a = v if v >= 0 else -v
    z = v * v
    if floating is float:
        small = ((((q0 * z + q1) * z + q2) * z + q3) * z + q4) * z * v + v
        large = one - two / (expf_(two * a) + one)
    else:
        small = v + v * z * ((p0 * z + p1) * z + p2) / (((z + r0) * z + r1) * z + r2)
        large = 1 - 2 / (exp_(2 * a) + 1)
    large = large if v >= 0 else -large
    return small if a < edge else large

