# Rational sigmoid and tanh in float32 for the quantised models' cells: about half the
# operations of _activations' exp-based ones, within 2.2e-7 (sigmoid) and 3.9e-7 (tanh).
#
# A quantised model rounds h to 8 bits (int8) or to 8 significant bits (bfloat16) at every
# step, two to four orders of magnitude above these functions' errors for |h| in [0.1, 1];
# the float models keep _activations' (1-2 ulp). docs/quantization.md has the error model, and
# tools/rational_tanh.py fits the coefficients.
from cython cimport floating

from lstmx._activations cimport sigmoid as sigmoid_exp, tanh_ as tanh_exp


cdef extern from *:
    """
    /* The clamps, as variables whose values the compiler cannot see (not static, so not
       folded): with constant bounds GCC computed each function at the bound as well and
       blended the two, compares and blends where a minimum and a maximum do (_activations.pxd
       has the same trap for exp). */
    float lstmx_rational_tanh_edge = 9.0f, lstmx_rational_sigmoid_edge = 18.0f;
    float lstmx_rational_one = 1.0f, lstmx_rational_half = 0.5f;
    """
    float TANH_EDGE "lstmx_rational_tanh_edge"
    float SIGMOID_EDGE "lstmx_rational_sigmoid_edge"
    float ONE "lstmx_rational_one"
    float HALF "lstmx_rational_half"


cdef inline float odd_rational(float v, float edge, float bound, float p0, float p1, float p2,
                               float p3, float p4, float q1, float q2, float q3,
                               float q4) noexcept nogil:
    """The form of both functions: x P(x**2) / Q(x**2) clamped to [-bound, bound], with
    x = v clamped to [-edge, edge], P = p0 + p1 u + ... + p4 u**4, Q = 1 + q1 u + ... + q4 u**4.
    A NaN passes the clamps and stays NaN."""
    cdef float one = 1, x, u, t
    x = edge if v > edge else v
    x = -edge if x < -edge else x
    u = x * x
    t = (x * ((((p4 * u + p3) * u + p2) * u + p1) * u + p0)
         / ((((q4 * u + q3) * u + q2) * u + q1) * u + one))
    t = bound if t > bound else t
    return -bound if t < -bound else t


cdef inline floating tanh_(floating v) noexcept nogil:
    """tanh(v) ~ x P(x**2) / Q(x**2), x = v clamped to [-9, 9], P and Q of degree 4 in x**2
    (a minimax fit of the absolute error: 1.9e-8 in exact arithmetic, 3.4e-7 evaluated in
    float32 with FMA, 3.8e-7 without), the result clamped to [-1, 1], which its rounding can
    pass by 2e-7. Float64 takes the exact function."""
    if floating is double:
        return tanh_exp(v)
    else:
        return odd_rational(v, TANH_EDGE, ONE, 0.9999999, 0.13373204, 0.0034865881,
                            2.0471916e-05, 1.3184311e-08, 0.467065, 0.025842005,
                            0.00032713948, 7.702706e-07)


cdef inline floating sigmoid(floating v) noexcept nogil:
    """sigmoid(v) = 1/2 + tanh(v/2)/2 with tanh_'s fit, its coefficients scaled (P's k-th by
    4**-(k+1), Q's by 4**-k; v clamped to [-18, 18]), tanh(v/2)/2 clamped to [-1/2, 1/2]:
    within 2e-7 in float32 (2.2e-7 without FMA), in [0, 1]. Float64 takes the exact
    function."""
    cdef float half = HALF
    if floating is double:
        return sigmoid_exp(v)
    else:
        return odd_rational(v, SIGMOID_EDGE, half, 0.24999997, 0.008358252, 5.447794e-05,
                            7.996842e-08, 1.2875304e-11, 0.11676625, 0.0016151253,
                            5.1115544e-06, 3.0088696e-09) + half
