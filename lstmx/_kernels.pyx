"""LSTM kernels for one layer and one direction, float32 and float64.

The maths, line for line, is in ``lstmx/reference.py`` (and ``docs/equations.md``). Layout:
every array is time-major and C-contiguous; a time step is a (B, .) block of rows, and the
gate pre-activations of a row are the four blocks ``[z_i | z_f | z_g | z_o]`` of width H.

Two tiers. ``cdef ... noexcept nogil`` kernels work on pointers and sizes and never raise.
The ``def`` entry points take NumPy arrays (``lstmx._engine`` has checked the user's input),
verify that every array has the dtype, C layout and size the kernel will assume (a few
nanoseconds each, so that no mistake reaches the unchecked loops), allocate one scratch
workspace with NumPy while the GIL is held, and run the kernel in one ``with nogil:`` block.
They take ndarrays rather than typed memoryviews because a step of a small model costs less
than acquiring a dozen memoryviews; absent arrays (no bias, projection, peepholes, lengths)
are None.

A batch row b is *active* at time t when ``t < lengths[b]``, in both directions: the forward
direction runs t = 0 .. T-1, the reverse one t = T-1 .. 0, and either way an inactive row keeps
its state and outputs zeros (PyTorch's packed-sequence semantics).
"""
import numpy as np

cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int32_t, uint64_t
from libc.string cimport memcpy, memset

from cython.parallel cimport parallel, prange, threadid

from lstmx._blas cimport (
    NoTrans, PARALLEL_WORK, TILED_GEMM, TILE_COLS, Trans, barrier, gemm, gemm_packed,
    gemm_packed_parallel, gemm_packed_strided, gemm_small, max_threads, num_threads,
    pack_strips, share, strips)

from lstmx._workspace import MIN_BYTES as POOL_MIN_BYTES, empty as pooled_empty

cnp.import_array()

cdef extern from *:
    """
    /* What this CPU (and its OS) can run, for choosing a kernel variant at run time. */
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
    """Whether this CPU can run the kernel variant "avx2" or "avx512"."""
    return {"avx2": lstmx_cpu_supports_avx2, "avx512": lstmx_cpu_supports_avx512}[variant]()


# Inference keeps the input projection, and backward dz, of a chunk of time steps at a time,
# so that memory stays bounded on long sequences while each chunk is still a large GEMM.
cdef enum:
    CHUNK_ELEMENTS = 1 << 20           # elements of an inference chunk's z
    BACKWARD_CHUNK_ELEMENTS = 1 << 19  # of a backward chunk's dz
    # Rows (steps x batch) of a backward chunk at most: the depth of its dW and dU products.
    # 256 is deep enough for the tile kernel, and at M (B=32, H=256) keeps a thread's dz,
    # packed x and h and U within a 2 MiB L2: 3-8% faster than 512 rows, L unchanged.
    BACKWARD_CHUNK_ROWS = 256
    # Padding of backward_parallel's rows of dz (4H + DZ_PAD apart): at 4H = 1024 or 2048
    # floats, rows a multiple of 4 KiB apart share L1 cache sets, and the dW and dU products
    # read dz.T down those rows. 4% faster backward at M and L, 13% with AVX2 (measured
    # side by side in one process); packing dz.T by tiles instead gained less.
    DZ_PAD = 16
    # Recurrent products of at most this many multiply-adds skip BLAS (its per-call cost
    # dominates a batch of one); see gemm_small.
    SMALL_PRODUCT = 1 << 15


cdef inline float expf_(float x) noexcept nogil:
    """e**x in float32 within ~2 ulp (Cephes' expf), as arithmetic the compiler vectorises.

    x is clamped to [-87.3, 87], where the result and its reciprocal are normal floats: a
    saturated gate is 1 or ~1e-38, never inf, NaN or a (slow) denormal. Constants are typed
    float so that every operation stays in single precision.
    """
    cdef float lo = -87.3, hi = 87.0, log2e = 1.44269504088896341
    cdef float round_ = 12582912.0  # 1.5 * 2**23: adding and subtracting it rounds to nearest
    cdef float ln2_hi = 0.693359375, ln2_lo = -2.12194440e-4  # ln 2 in two parts
    cdef float p0 = 1.9875691500e-4, p1 = 1.3981999507e-3, p2 = 8.3334519073e-3
    cdef float p3 = 4.1665795894e-2, p4 = 1.6666665459e-1, p5 = 5.0000001201e-1
    cdef float one = 1, n, y, scale
    cdef int32_t bits
    x = hi if x > hi else x
    x = lo if x < lo else x
    n = (x * log2e + round_) - round_          # n = round(x / ln 2)
    x = x - n * ln2_hi - n * ln2_lo            # x - n ln 2, in [-ln2/2, ln2/2]
    y = (((((p0 * x + p1) * x + p2) * x + p3) * x + p4) * x + p5) * x * x + x + one
    bits = (<int32_t> n + 127) << 23           # 2**n: the exponent field of a float
    memcpy(&scale, &bits, sizeof(float))
    return y * scale


cdef inline double exp_(double x) noexcept nogil:
    """e**x in float64 within ~1 ulp, as arithmetic the compiler vectorises (libm's exp is a
    scalar call: with tanh, 40% of a float64 forward pass at M).

    The float32 scheme in double precision: x is clamped to [-708, 708], where the result and
    its reciprocal are normal doubles; n = round(x / ln 2); e**r on |r| <= ln2/2 is its
    Taylor series to r**13 (the first term left out is below 5e-18). 2**n is built in the
    exponent field from the bits of the rounding sum itself (x / ln 2 + 1.5 * 2**52 holds n
    in its low bits), which needs no float-to-int64 conversion, absent before AVX-512.
    """
    cdef double lo = -708.0, hi = 708.0, log2e = 1.4426950408889634074
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


cdef inline Py_ssize_t length(const Py_ssize_t *lengths, Py_ssize_t b, Py_ssize_t T) noexcept nogil:
    """The valid steps of batch row b (all T when ``lengths`` is NULL)."""
    return T if lengths == NULL else lengths[b]


cdef void cell_forward_rows(
        Py_ssize_t n, Py_ssize_t H, floating *gates, floating *c, floating *m,
        const floating *peep, bint lean, bint identity) noexcept nogil:
    """Units [0, n) of one row of one step (the gates of a unit are H apart): pre-activations
    in ``gates`` become the gates i, f, g, o; ``c`` holds c_{t-1} and receives c_t; ``m``
    receives o * act(c_t).

    Two loops, c_t first and then what depends on it: one loop per unit chained
    exp -> divide -> c_t -> exp -> divide, longer than the core's out-of-order window, and
    split in two the same work takes 25-35% less time.

    ``peep`` = [p_i | p_f | p_o] is zeros without peepholes: a branch-free loop vectorises, and
    three multiply-adds cost less than a second code path. The exception is ``lean``:
    inference without peepholes, which keeps no gates; its loops skip the 4 stores, 3 loads
    and 3 multiply-adds a unit (conditions inside one loop kept GCC from vectorising it).
    """
    cdef Py_ssize_t j
    cdef floating i, f, g, o, cp, ct, a
    if lean:
        for j in range(n):
            # As the loop below, statement for statement: GCC then contracts f * cp + i * g
            # into the same fused multiply-add, and inference and training agree bit for bit.
            cp = c[j]
            i = sigmoid(gates[j])
            f = sigmoid(gates[H + j])
            g = tanh_(gates[2 * H + j])
            c[j] = f * cp + i * g
        for j in range(n):
            ct = c[j]
            a = tanh_(ct)
            m[j] = sigmoid(gates[3 * H + j]) * (ct if identity else a)
        return
    for j in range(n):
        cp = c[j]
        i = sigmoid(gates[j] + peep[j] * cp)
        f = sigmoid(gates[H + j] + peep[H + j] * cp)
        g = tanh_(gates[2 * H + j])
        gates[j] = i
        gates[H + j] = f
        gates[2 * H + j] = g
        c[j] = f * cp + i * g
    for j in range(n):
        ct = c[j]
        o = sigmoid(gates[3 * H + j] + peep[2 * H + j] * ct)
        gates[3 * H + j] = o
        a = tanh_(ct)
        m[j] = o * (ct if identity else a)


cdef void cell_backward_rows(
        Py_ssize_t n, Py_ssize_t H, const floating *gates, const floating *ct_, const floating *cp_,
        const floating *dm, floating *dc, floating *dz, floating *m,
        const floating *peep, floating *dpeep, bint lean, bint identity) noexcept nogil:
    """Backward of units [0, n) of one row of one step (LSTM.md, "Backward, one time step");
    the gates of a unit are H apart, as in forward.

    ``dc`` holds the gradient reaching c_t from step t+1 and receives the one reaching c_{t-1};
    ``dz`` receives [dz_i | dz_f | dz_g | dz_o]; ``m`` receives m_t (for dR); ``dpeep``
    accumulates the peephole gradients (``peep`` is zeros without peepholes, as forward).
    ``lean``: no peepholes and no projection, so neither ``m`` nor ``dpeep`` is wanted; its
    loop skips their 4 stores and 6 loads a unit, and gives the same bits as the full loop
    with zero peepholes.
    """
    cdef Py_ssize_t j
    cdef floating i, f, g, o, ct, cp, a, dact, dzi, dzf, dzg, dzo, dcj
    if lean:
        for j in range(n):
            i = gates[j]
            f = gates[H + j]
            g = gates[2 * H + j]
            o = gates[3 * H + j]
            ct = ct_[j]
            cp = cp_[j]
            a = ct if identity else tanh_(ct)
            dact = 1 if identity else 1 - a * a
            dzo = dm[j] * a * o * (1 - o)
            dcj = dc[j] + dm[j] * o * dact
            dzi = dcj * g * i * (1 - i)
            dzf = dcj * cp * f * (1 - f)
            dzg = dcj * i * (1 - g * g)
            dc[j] = dcj * f
            dz[j] = dzi
            dz[H + j] = dzf
            dz[2 * H + j] = dzg
            dz[3 * H + j] = dzo
        return
    for j in range(n):
        i = gates[j]
        f = gates[H + j]
        g = gates[2 * H + j]
        o = gates[3 * H + j]
        ct = ct_[j]
        cp = cp_[j]
        a = ct if identity else tanh_(ct)
        dact = 1 if identity else 1 - a * a
        dzo = dm[j] * a * o * (1 - o)
        dcj = dc[j] + dm[j] * o * dact + dzo * peep[2 * H + j]
        dzi = dcj * g * i * (1 - i)
        dzf = dcj * cp * f * (1 - f)
        dzg = dcj * i * (1 - g * g)
        dc[j] = dcj * f + dzi * peep[j] + dzf * peep[H + j]
        dpeep[j] += dzi * cp
        dpeep[H + j] += dzf * cp
        dpeep[2 * H + j] += dzo * ct
        dz[j] = dzi
        dz[H + j] = dzf
        dz[2 * H + j] = dzg
        dz[3 * H + j] = dzo
        m[j] = o * a


cdef void input_projection(
        Py_ssize_t rows, Py_ssize_t I, Py_ssize_t H, const floating *x, const floating *W,
        const floating *Wp, const floating *b_ih, const floating *b_hh, floating *bias,
        floating *z, bint one_thread) noexcept nogil:
    """z = x @ W.T + b_ih + b_hh for a block of ``rows`` rows (no bias when NULL); ``bias``
    is scratch for the (4H,) sum of the two. With ``Wp`` = W.T packed by gate (AVX2 and
    AVX-512 builds), by gemm_packed (which starts from the bias) rather than BLAS, on the
    OpenMP threads unless ``one_thread``.

    forward_layer's training pass asks for one thread: backward_layer, which follows it,
    calls OpenBLAS, and on few cores an OpenMP team and OpenBLAS's threads, each spinning
    after its work, slow each other down (lstmx check's projection case trained in 10.5 ms
    on 2 threads, 1.2 ms this way; M with proj_size=64 in 27 ms, 17 ms this way)."""
    cdef Py_ssize_t r, j, G = 4 * H
    if b_ih != NULL:
        for j in range(G):
            bias[j] = b_ih[j] + b_hh[j]
    # z += x @ W.T   (rows, 4H) += (rows, I)(I, 4H)
    if Wp != NULL:
        gemm_packed_parallel(rows, I, x, I, Wp, 4, H, False, z, G,
                             bias if b_ih != NULL else NULL, 1 if one_thread else max_threads())
        return
    if b_ih != NULL:
        for r in range(rows):
            memcpy(z + r * G, bias, G * sizeof(floating))
    gemm(NoTrans, Trans, rows, G, I, 1, x, I, W, I, 1 if b_ih != NULL else 0, z, G)


cdef void transpose(Py_ssize_t rows, Py_ssize_t cols, const floating *A,
                    floating *At) noexcept nogil:
    """At = A.T for a row-major (rows, cols) A, in 8 x 16 blocks written row by row of At:
    4-KiB-strided writes would alias in L1 (measured 15x slower at (1024, 256))."""
    cdef Py_ssize_t r0, c0, r, c, r1, c1
    for r0 in range(0, rows, 8):
        r1 = rows if r0 + 8 > rows else r0 + 8
        for c0 in range(0, cols, 16):
            c1 = cols if c0 + 16 > cols else c0 + 16
            for c in range(c0, c1):
                for r in range(r0, r1):
                    At[c * rows + r] = A[r * cols + c]


cdef void forward_layer(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
        const floating *x, const floating *W, const floating *U, const floating *b_ih,
        const floating *b_hh, const floating *R, const floating *peep,
        const Py_ssize_t *lengths, floating *h, floating *c, floating *y, Py_ssize_t ldy,
        floating *gates, Py_ssize_t Tc, floating *cells,
        floating *m, floating *hp, floating *Ut, floating *Wp, floating *Up, floating *Rp,
        floating *bias, bint lean, bint reverse, bint identity) noexcept nogil:
    """Forward over a whole sequence; ``gates`` holds Tc steps (Tc = T and ``cells`` set when
    training, in which case both keep every step for the backward pass). ``Ut`` is scratch
    for U.T (Hout, 4H) when the recurrent products are small enough for gemm_small (see
    Shapes.small); else ``Up`` and ``Rp`` are scratch for U.T (by gate) and R.T packed when
    the products run on gemm_packed (see Shapes.packed_steps), or NULL and they go to BLAS.
    ``Wp`` is scratch for W.T packed by gate when the input projection runs on gemm_packed
    (see Shapes.packed_input); ``bias`` is scratch for b_ih + b_hh (4H,). ``lean``:
    inference without peepholes (see cell_forward_rows)."""
    cdef Py_ssize_t G = 4 * H
    cdef Py_ssize_t Hout = P if P > 0 else H
    cdef Py_ssize_t s0, n, t_lo, s, t, bi
    cdef floating *zt
    cdef floating *mrow
    if Ut != NULL:
        transpose(G, Hout, U, Ut)
    if Wp != NULL:
        pack_strips(I, 4, H, W, 1, I, 0, strips(H), Wp)
    if Up != NULL:
        pack_strips(Hout, 4, H, U, 1, Hout, 0, strips(H), Up)
    if Rp != NULL:
        pack_strips(H, 1, P, R, 1, H, 0, strips(P), Rp)
    s0 = 0
    while s0 < T:
        # Steps s0 .. s0+n-1 in processing order are times t_lo .. t_lo+n-1.
        n = Tc if T - s0 > Tc else T - s0
        t_lo = T - s0 - n if reverse else s0
        input_projection(n * B, I, H, x + t_lo * B * I, W, Wp, b_ih, b_hh, bias, gates,
                         cells != NULL)
        for s in range(s0, s0 + n):
            t = T - 1 - s if reverse else s
            zt = gates + (t - t_lo) * B * G
            # z += h @ U.T   (B, 4H) += (B, Hout)(Hout, 4H)
            if Ut != NULL:
                gemm_small(B, G, Hout, h, Hout, Ut, G, 1, zt, G)
            elif Up != NULL:
                gemm_packed(B, Hout, h, Hout, Up, 4, H, 0, strips(H), True, zt, G, NULL)
            else:
                gemm(NoTrans, Trans, B, G, Hout, 1, h, Hout, U, Hout, 1, zt, G)
            for bi in range(B):
                if t >= length(lengths, bi, T):
                    memset(y + (t * B + bi) * ldy, 0, Hout * sizeof(floating))
                    if cells != NULL:
                        memset(zt + bi * G, 0, G * sizeof(floating))
                        memset(cells + (t * B + bi) * H, 0, H * sizeof(floating))
                    continue
                # Without projection m_t is h_t: written straight into the state.
                mrow = m + bi * H if P > 0 else h + bi * H
                cell_forward_rows(H, H, zt + bi * G, c + bi * H, mrow, peep, lean, identity)
                if cells != NULL:
                    memcpy(cells + (t * B + bi) * H, c + bi * H, H * sizeof(floating))
                if P == 0:
                    memcpy(y + (t * B + bi) * ldy, mrow, H * sizeof(floating))
            if P > 0:
                # h = m @ R.T   (B, P) = (B, H)(H, P); only active rows take it.
                if Rp != NULL:
                    gemm_packed(B, H, m, H, Rp, 1, P, 0, strips(P), False, hp, P, NULL)
                else:
                    gemm(NoTrans, Trans, B, P, H, 1, m, H, R, H, 0, hp, P)
                for bi in range(B):
                    if t < length(lengths, bi, T):
                        memcpy(h + bi * P, hp + bi * P, P * sizeof(floating))
                        memcpy(y + (t * B + bi) * ldy, hp + bi * P, P * sizeof(floating))
        s0 += n


cdef void forward_parallel(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const floating *x, const floating *W, const floating *U, const floating *b_ih,
        const floating *b_hh, const floating *peep, const Py_ssize_t *lengths,
        floating *h, floating *c, floating *y, Py_ssize_t ldy, floating *gates, Py_ssize_t Tc,
        floating *cells, floating *Wp, floating *Up, floating *h_alt, floating *bias,
        int threads, bint lean, bint reverse, bint identity) noexcept nogil:
    """forward_layer without projection on AVX2 and AVX-512 builds, every thread throughout.

    Each OpenMP thread owns a range of hidden units (whole strips of TILE_COLS): it packs its
    columns of W.T and U.T (the four gates of its units), computes those columns of the input
    projection and of each step's recurrent product with gemm_packed, and runs the cell
    update of its units, which needs nothing from other threads. The only exchange is h: a
    step reads all of h_{t-1} and writes its units of h_t into the other of two buffers (h,
    ``h_alt``), so one barrier per step suffices. No BLAS runs here, so no second thread pool
    competes with this one.
    """
    cdef Py_ssize_t G = 4 * H, per = strips(H)
    # Initialised because OpenMP copies them into each thread (firstprivate).
    cdef Py_ssize_t part = 0, parts = 0, s_lo = 0, s_hi = 0, u_lo = 0, u_hi = 0, nu = 0
    cdef Py_ssize_t s0 = 0, n = 0, t_lo = 0, s = 0, t = 0, bi = 0, g = 0, j = 0
    cdef floating *h_old = NULL
    cdef floating *h_new = NULL
    cdef floating *zt = NULL
    with parallel(num_threads=threads):
        part = threadid()
        parts = num_threads()
        s_lo = share(per, part, parts)
        s_hi = share(per, part + 1, parts)
        u_lo = min(H, s_lo * TILE_COLS)
        u_hi = min(H, s_hi * TILE_COLS)
        nu = u_hi - u_lo
        pack_strips(H, 4, H, U, 1, H, s_lo, s_hi, Up)
        pack_strips(I, 4, H, W, 1, I, s_lo, s_hi, Wp)
        if b_ih != NULL:
            for g in range(4):
                for j in range(g * H + u_lo, g * H + u_hi):
                    bias[j] = b_ih[j] + b_hh[j]
        s0 = 0
        while s0 < T:
            n = Tc if T - s0 > Tc else T - s0
            t_lo = T - s0 - n if reverse else s0
            # This thread's columns of z = x @ W.T + b_ih + b_hh for the chunk.
            gemm_packed(n * B, I, x + t_lo * B * I, I, Wp, 4, H, s_lo, s_hi, False, gates, G,
                        bias if b_ih != NULL else NULL)
            for s in range(s0, s0 + n):
                t = T - 1 - s if reverse else s
                zt = gates + (t - t_lo) * B * G
                h_old = h if s % 2 == 0 else h_alt
                h_new = h_alt if s % 2 == 0 else h
                gemm_packed(B, H, h_old, H, Up, 4, H, s_lo, s_hi, True, zt, G, NULL)
                for bi in range(B):
                    if t >= length(lengths, bi, T):
                        memset(y + (t * B + bi) * ldy + u_lo, 0, nu * sizeof(floating))
                        memcpy(h_new + bi * H + u_lo, h_old + bi * H + u_lo,
                               nu * sizeof(floating))
                        if cells != NULL:
                            for g in range(4):
                                memset(zt + bi * G + g * H + u_lo, 0, nu * sizeof(floating))
                            memset(cells + (t * B + bi) * H + u_lo, 0, nu * sizeof(floating))
                        continue
                    cell_forward_rows(nu, H, zt + bi * G + u_lo, c + bi * H + u_lo,
                                      h_new + bi * H + u_lo, peep + u_lo, lean, identity)
                    if cells != NULL:
                        memcpy(cells + (t * B + bi) * H + u_lo, c + bi * H + u_lo,
                               nu * sizeof(floating))
                    memcpy(y + (t * B + bi) * ldy + u_lo, h_new + bi * H + u_lo,
                           nu * sizeof(floating))
                barrier()
            s0 = s0 + n  # (+= would be an OpenMP reduction)
        if T % 2 == 1:
            # The last step wrote h_alt.
            for bi in range(B):
                memcpy(h + bi * H + u_lo, h_alt + bi * H + u_lo, nu * sizeof(floating))


cdef cnp.ndarray workspace(Py_ssize_t n, cnp.dtype dtype):
    """Scratch of n elements: from lstmx._workspace when large (fresh pages cost a page
    fault each), else from NumPy without the Python call."""
    if n * dtype.itemsize < POOL_MIN_BYTES:
        return np.empty(n, dtype)
    return pooled_empty(n, dtype)


cdef inline void *data(cnp.ndarray a) noexcept:
    return NULL if a is None else cnp.PyArray_DATA(a)


cdef int expect(cnp.ndarray a, str name, int typenum, Py_ssize_t d0, Py_ssize_t d1=-1,
                Py_ssize_t d2=-1) except -1:
    """Raise unless ``a`` is an aligned C-contiguous array of ``typenum`` and shape (d0[, d1[, d2]])."""
    cdef int ndim = 1 if d1 < 0 else (2 if d2 < 0 else 3)
    cdef Py_ssize_t want[3]
    want[0], want[1], want[2] = d0, d1, d2
    if a is None:
        raise TypeError(f"kernel argument {name} is None")
    if (cnp.PyArray_TYPE(a) != typenum or not cnp.PyArray_IS_C_CONTIGUOUS(a)
            or not cnp.PyArray_ISALIGNED(a)):
        raise TypeError(f"kernel argument {name} must be an aligned C-contiguous "
                        f"{np.dtype(cnp.PyArray_DescrFromType(typenum))} array; "
                        f"got {(<object> a).dtype} with flags {(<object> a).flags}")
    cdef int k
    cdef bint same = cnp.PyArray_NDIM(a) == ndim
    for k in range(ndim if same else 0):
        same = same and a.shape[k] == want[k]
    if not same:
        raise ValueError(f"kernel argument {name} must have shape "
                         f"{tuple(want[k] for k in range(ndim))}; got {(<object> a).shape}")
    return 0


cdef int expect_lengths(cnp.ndarray lengths, Py_ssize_t B, Py_ssize_t T) except -1:
    cdef Py_ssize_t bi
    cdef const Py_ssize_t *ln
    if lengths is None:
        return 0
    expect(lengths, "lengths", cnp.NPY_INTP, B)
    ln = <const Py_ssize_t *> cnp.PyArray_DATA(lengths)
    for bi in range(B):
        if ln[bi] < 1 or ln[bi] > T:
            raise ValueError(f"kernel argument lengths[{bi}] = {ln[bi]} is outside [1, {T}]")
    return 0


cdef class Shapes:
    """The sizes of one layer and direction, read from the arrays and checked against each
    other (the kernels' loops trust them)."""
    cdef Py_ssize_t T, B, n_in, H, P, Hout, ldy  # n_in: I is a macro of complex.h
    cdef int typenum

    def __cinit__(self, cnp.ndarray x, cnp.ndarray W, cnp.ndarray U, cnp.ndarray R,
                  cnp.ndarray peep, cnp.ndarray lengths, cnp.ndarray h, cnp.ndarray c,
                  cnp.ndarray y, Py_ssize_t y_col):
        self.typenum = cnp.PyArray_TYPE(h)
        if self.typenum != cnp.NPY_FLOAT and self.typenum != cnp.NPY_DOUBLE:
            raise TypeError(f"kernel arguments must be float32 or float64; "
                            f"got {(<object> h).dtype}")
        if h.ndim != 2 or c.ndim != 2 or y.ndim != 3 or W.ndim != 2:
            raise ValueError("kernel arguments h, c, W must be 2-D and y 3-D")
        self.B, self.Hout, self.H = h.shape[0], h.shape[1], c.shape[1]
        self.T, self.ldy, self.n_in = y.shape[0], y.shape[2], W.shape[1]
        self.P = 0 if R is None else R.shape[0]
        if self.Hout != (self.P if self.P else self.H):
            raise ValueError(f"kernel arguments: h has {self.Hout} features, expected "
                             f"{self.P if self.P else self.H}")
        if y_col < 0 or y_col + self.Hout > self.ldy or self.T < 1 or self.B < 1:
            raise ValueError(f"kernel arguments: columns [{y_col}, {y_col + self.Hout}) "
                             f"of y {(<object> y).shape} do not fit")
        G = 4 * self.H
        expect(x, "x", self.typenum, self.T * self.B, self.n_in)
        expect(W, "W", self.typenum, G, self.n_in)
        expect(U, "U", self.typenum, G, self.Hout)
        expect(h, "h", self.typenum, self.B, self.Hout)
        expect(c, "c", self.typenum, self.B, self.H)
        expect(y, "y", self.typenum, self.T, self.B, self.ldy)
        if R is not None:
            expect(R, "R", self.typenum, self.P, self.H)
        if peep is not None:
            expect(peep, "peep", self.typenum, 3, self.H)
        expect_lengths(lengths, self.B, self.T)

    cdef bint parallel(self):
        """Whether forward and backward run as forward_parallel and backward_parallel:
        AVX2 and AVX-512 builds, no projection, recurrent products too big for gemm_small."""
        return TILED_GEMM and self.P == 0 and self.B * 4 * self.H * self.H > SMALL_PRODUCT

    cdef int threads(self):
        """OpenMP threads for the parallel kernels: one below PARALLEL_WORK multiply-adds a
        step (waking a team costs more), at most one per strip of hidden units."""
        if self.B * 4 * self.H * (self.n_in + self.H) < PARALLEL_WORK:
            return 1
        return max(1, min(max_threads(), strips(self.H)))

    cdef Py_ssize_t packed_size(self, bint recurrent):
        """Elements of W (or U when ``recurrent``) packed, either way round: forward packs
        W.T as (I, 4H) and backward W as (4H, I). Both are rounded up to whole strips in
        both dimensions, so that backward reuses forward's buffers (lstmx._workspace)."""
        cdef Py_ssize_t cols = strips(self.H if recurrent else self.n_in) * TILE_COLS
        return cols * 4 * strips(self.H) * TILE_COLS

    cdef bint small(self):
        """Whether forward runs its recurrent products on gemm_small with U.T, which costs a
        transposition per call: worth it over a few steps."""
        return self.B * 4 * self.H * self.Hout <= SMALL_PRODUCT and self.T >= 4

    cdef bint packed_steps(self):
        """Whether forward_layer's recurrent products (and projections) run on gemm_packed
        with U.T and R.T packed once per call (AVX2, AVX-512 builds) rather than BLAS: no
        per-call cost, and no OpenBLAS threads beside the OpenMP team of the input
        projection (on 2 cores the two pools' spinning threads made a projection model's
        inference 3 times slower on 2 threads than on one). Packing costs about one step's
        product, so a few steps are needed (an LSTMCell step calls BLAS)."""
        return TILED_GEMM and not self.parallel() and not self.small() and self.T >= 4

    cdef bint packed_input(self):
        """Whether forward_layer's input projection runs on gemm_packed (AVX2 and
        AVX-512 builds) with W.T packed, which is worth it for enough rows."""
        return TILED_GEMM and self.T * self.B >= 64


cdef struct ForwardCall:
    # One layer and direction ready to run: sizes, and pointers into the arrays and the
    # workspace (untyped: run_forward's ``kind`` gives them their type).
    Py_ssize_t T, B, n_in, H, P, ldy, Tc  # n_in: I is a macro of complex.h
    int threads
    bint par, lean, reverse, identity, double
    const void *x
    const void *W
    const void *U
    const void *b_ih
    const void *b_hh
    const void *R
    const void *peep
    const Py_ssize_t *lengths
    void *h
    void *c
    void *y
    void *gates
    void *cells
    void *m
    void *hp
    void *Ut
    void *Wp
    void *Up
    void *Rp
    void *h_alt
    void *bias


cdef list prepare_forward(ForwardCall *f, tuple args):
    """Check the arguments of ``forward`` (all sixteen, as a tuple), allocate its workspace
    and fill ``f``; returns the workspace arrays, which must outlive the call."""
    cdef cnp.ndarray x, W, U, b_ih, b_hh, R, peep, lengths, h, c, y, gates, cells
    cdef Py_ssize_t y_col
    cdef bint reverse, identity
    x, W, U, b_ih, b_hh, R, peep, lengths, h, c, y, y_col, reverse, identity, gates, cells = args
    cdef Shapes n = Shapes(x, W, U, R, peep, lengths, h, c, y, y_col)
    if b_ih is not None or b_hh is not None:
        expect(b_ih, "b_ih", n.typenum, 4 * n.H)
        expect(b_hh, "b_hh", n.typenum, 4 * n.H)
    if (gates is None) != (cells is None):
        raise TypeError("kernel arguments gates and cells go together")
    if gates is not None:
        expect(gates, "gates", n.typenum, n.T, n.B, 4 * n.H)
        expect(cells, "cells", n.typenum, n.T, n.B, n.H)
    cdef Py_ssize_t G = 4 * n.H, size = cnp.PyArray_ITEMSIZE(h)
    f.T, f.B, f.n_in, f.H, f.P, f.ldy = n.T, n.B, n.n_in, n.H, n.P, n.ldy
    f.Tc = n.T if gates is not None else max(1, min(n.T, CHUNK_ELEMENTS // (n.B * G)))
    f.par = n.parallel()
    f.threads = n.threads() if f.par else 1
    f.reverse, f.identity, f.double = reverse, identity, n.typenum == cnp.NPY_DOUBLE
    f.lean = gates is None and peep is None
    # Workspace: [inference gate chunk | m (B, H) | h (B, P) | U.T | zero peepholes |
    #             second h buffer | b_ih + b_hh], and W.T, U.T and R.T packed apart (see
    #             Shapes.packed_size and packed_steps)
    cdef Py_ssize_t n_gates = 0 if gates is not None else f.Tc * n.B * G
    cdef Py_ssize_t n_m = n.B * n.H if n.P else 0, n_hp = n.B * n.P
    cdef Py_ssize_t n_ut = n.Hout * G if n.small() else 0
    cdef Py_ssize_t n_peep = 3 * n.H if peep is None else 0
    cdef Py_ssize_t n_halt = n.B * n.H if f.par else 0
    cdef cnp.ndarray work = workspace(n_gates + n_m + n_hp + n_ut + n_peep + n_halt + G,
                                      h.dtype)
    cdef cnp.ndarray Wp = (workspace(n.packed_size(False), h.dtype)
                           if f.par or n.packed_input() else None)
    cdef bint packed_steps = n.packed_steps()
    cdef cnp.ndarray Up = (workspace(n.packed_size(True), h.dtype) if f.par else
                           workspace(n.Hout * 4 * strips(n.H) * TILE_COLS, h.dtype)
                           if packed_steps else None)
    cdef cnp.ndarray Rp = (workspace(n.H * strips(n.P) * TILE_COLS, h.dtype)
                           if packed_steps and n.P else None)
    cdef char *w = <char *> cnp.PyArray_DATA(work)
    cdef char *zero_peep = w + (n_gates + n_m + n_hp + n_ut) * size
    memset(zero_peep, 0, n_peep * size)
    f.x, f.W, f.U, f.b_ih, f.b_hh, f.R = data(x), data(W), data(U), data(b_ih), data(b_hh), data(R)
    f.peep = data(peep) if peep is not None else zero_peep
    f.lengths = <Py_ssize_t *> data(lengths)
    f.h, f.c, f.y = data(h), data(c), <char *> data(y) + y_col * size
    f.gates = data(gates) if gates is not None else w
    f.cells = data(cells)
    f.m = w + n_gates * size
    f.hp = w + (n_gates + n_m) * size
    f.Ut = w + (n_gates + n_m + n_hp) * size if n_ut else NULL
    f.h_alt = zero_peep + n_peep * size
    f.bias = zero_peep + (n_peep + n_halt) * size
    f.Wp, f.Up, f.Rp = data(Wp), data(Up), data(Rp)
    return [work, Wp, Up, Rp]


cdef void run_forward(floating kind, const ForwardCall *f, int threads) noexcept nogil:
    """``forward_parallel`` on ``threads`` threads, or ``forward_layer`` (``kind`` only
    selects the type)."""
    if f.par:
        forward_parallel(f.T, f.B, f.n_in, f.H, <floating *> f.x, <floating *> f.W,
                         <floating *> f.U, <floating *> f.b_ih, <floating *> f.b_hh,
                         <floating *> f.peep, f.lengths, <floating *> f.h, <floating *> f.c,
                         <floating *> f.y, f.ldy, <floating *> f.gates, f.Tc,
                         <floating *> f.cells, <floating *> f.Wp, <floating *> f.Up,
                         <floating *> f.h_alt, <floating *> f.bias, threads, f.lean,
                         f.reverse, f.identity)
    else:
        forward_layer(f.T, f.B, f.n_in, f.H, f.P, <floating *> f.x, <floating *> f.W,
                      <floating *> f.U, <floating *> f.b_ih, <floating *> f.b_hh,
                      <floating *> f.R, <floating *> f.peep, f.lengths, <floating *> f.h,
                      <floating *> f.c, <floating *> f.y, f.ldy, <floating *> f.gates, f.Tc,
                      <floating *> f.cells, <floating *> f.m, <floating *> f.hp,
                      <floating *> f.Ut, <floating *> f.Wp, <floating *> f.Up,
                      <floating *> f.Rp, <floating *> f.bias, f.lean, f.reverse, f.identity)


cdef inline void run_forward_any(const ForwardCall *f, int threads) noexcept nogil:
    if f.double:
        run_forward(<double> 0, f, threads)
    else:
        run_forward(<float> 0, f, threads)


cdef bint side_by_side(bint par0, bint par1, int threads0, int threads1) noexcept:
    """Whether the two directions of a layer run at once, one thread each, rather than one
    after the other on every thread: when both would run the threaded kernels on 2 or 3
    threads. A team per direction has no barrier between the directions' steps (M-bi2
    training went from 0.89x to 1.14-1.18x torch on 2 cores); with more threads the
    per-direction teams scale on."""
    return par0 and par1 and threads0 >= 2 and threads1 >= 2 and max_threads() < 4


def forward(cnp.ndarray x, cnp.ndarray W, cnp.ndarray U, cnp.ndarray b_ih, cnp.ndarray b_hh,
            cnp.ndarray R, cnp.ndarray peep, cnp.ndarray lengths, cnp.ndarray h,
            cnp.ndarray c, cnp.ndarray y, Py_ssize_t y_col, bint reverse, bint identity,
            cnp.ndarray gates=None, cnp.ndarray cells=None):
    """One layer and direction over a sequence; inference, or training when ``gates`` and
    ``cells`` are given.

    x (T*B, I); W (4H, I); U (4H, Hout); b_ih, b_hh (4H,) or None; R (P, H) or None;
    peep (3, H) = [p_i; p_f; p_o] or None; lengths (B,) intp in [1, T], or None for T;
    h (B, Hout) and c (B, H) hold the initial state and receive the final one; y (T, B, ldy)
    receives h_t in columns [y_col, y_col + Hout) (zeros at inactive steps). Training: gates
    (T, B, 4H) receives the activated gates i, f, g, o and cells (T, B, H) receives c_t, both
    zero at inactive steps; inference keeps nothing but the running state.
    """
    cdef ForwardCall f
    keep = prepare_forward(&f, (x, W, U, b_ih, b_hh, R, peep, lengths, h, c, y, y_col,
                                reverse, identity, gates, cells))
    with nogil:
        run_forward_any(&f, f.threads)


cdef inline bint is_ready(object a, int typenum, Py_ssize_t d0, Py_ssize_t d1) noexcept:
    """Whether ``a`` is an aligned, C-contiguous, native-order 2-D ndarray of ``typenum`` and
    shape (d0, d1), where d0 < 0 stands for any size >= 1."""
    if type(a) is not cnp.ndarray:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray> a
    return (cnp.PyArray_TYPE(arr) == typenum and cnp.PyArray_NDIM(arr) == 2
            and cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)
            and cnp.PyArray_ISNOTSWAPPED(arr)
            and (arr.shape[0] == d0 or (d0 < 0 and arr.shape[0] >= 1)) and arr.shape[1] == d1)


def cell_step(x, state, Py_ssize_t I, Py_ssize_t H, cnp.ndarray W, cnp.ndarray U,
              cnp.ndarray b_ih, cnp.ndarray b_hh, cnp.ndarray peep, bint identity):
    """One LSTMCell step when x (B, I) and state = (h, c), each (B, H), are already what the
    kernels take: aligned, C-contiguous, native-order 2-D arrays of W's dtype. Returns the
    new (h, c) as new arrays, or None for anything else, which the caller then validates in
    full (lstmx._validation) and runs through ``forward``.

    A step at B = 1 costs a few microseconds, and checking the user's arrays in C costs
    ~50 ns against ~1 us on NumPy attributes from Python; a whole step in C, ~0.5 us less
    than the same steps in LSTMCell.__call__."""
    cdef int typenum = cnp.PyArray_TYPE(W)
    if not (is_ready(x, typenum, -1, I) and type(state) is tuple and len(<tuple> state) == 2):
        return None
    cdef Py_ssize_t B = (<cnp.ndarray> x).shape[0]
    h0, c0 = <tuple> state
    if not (is_ready(h0, typenum, B, H) and is_ready(c0, typenum, B, H)):
        return None
    # The kernel updates h and c in place to the final state; y receives the same h.
    cdef cnp.ndarray h = cnp.PyArray_NewCopy(<cnp.ndarray> h0, cnp.NPY_CORDER)
    cdef cnp.ndarray c = cnp.PyArray_NewCopy(<cnp.ndarray> c0, cnp.NPY_CORDER)
    cdef cnp.npy_intp dims[3]
    dims[0], dims[1], dims[2] = 1, B, H
    cdef cnp.ndarray y = cnp.PyArray_EMPTY(3, dims, typenum, 0)
    cdef ForwardCall f
    keep = prepare_forward(&f, (x, W, U, b_ih, b_hh, None, peep, None, h, c, y, 0, False,
                                identity, None, None))
    with nogil:
        run_forward_any(&f, f.threads)
    return h, c


def forward_directions(tuple forward_args, tuple reverse_args):
    """Both directions of a layer: ``forward(*forward_args)`` and ``forward(*reverse_args)``
    (all sixteen arguments each), at once when ``side_by_side`` says so. The two must write
    different columns of y."""
    cdef ForwardCall f[2]
    keep = [prepare_forward(&f[0], forward_args), prepare_forward(&f[1], reverse_args)]
    cdef int d
    if side_by_side(f[0].par, f[1].par, f[0].threads, f[1].threads):
        # The kernels' own parallel regions nest inside this one as teams of one.
        for d in prange(2, nogil=True, num_threads=2, schedule="static"):
            run_forward_any(&f[d], 1)
    else:
        with nogil:
            run_forward_any(&f[0], f[0].threads)
            run_forward_any(&f[1], f[1].threads)


cdef void backward_layer(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
        const floating *x, const floating *W, const floating *U, const floating *R,
        const floating *peep, const Py_ssize_t *lengths,
        const floating *h0, const floating *c0, const floating *y, Py_ssize_t ldy,
        const floating *gates, const floating *cells, const floating *dy, Py_ssize_t lddy,
        floating *dh, floating *dc, floating *dx, floating *dW, floating *dU, floating *db,
        floating *dR, floating *dpeep, floating *dz, Py_ssize_t Tc, floating *dht,
        floating *dm, floating *m, floating *dhp, floating *scratch,
        bint reverse, bint identity) noexcept nogil:
    """Backpropagation through time over one layer and direction (see ``backward``).

    The steps are visited in chunks of ``Tc`` (the workspace ``dz`` holds one chunk's dz):
    after each chunk, its dx, dW, dU and db contributions are large GEMMs (or a sum), so the
    memory of backward does not grow with T. ``scratch`` holds the chunk's h_{t-1} rows
    (Tc*B, Hout).
    """
    cdef Py_ssize_t G = 4 * H
    cdef Py_ssize_t Hout = P if P > 0 else H
    cdef Py_ssize_t s0, n, t_lo, s, t, bi, j, tp
    cdef bint all_active
    cdef const floating *cprev
    cdef floating *dst
    cdef floating *dzt
    cdef floating *dmt = dm if P > 0 else dht
    cdef floating *hprev = scratch
    memset(dpeep, 0, 3 * H * sizeof(floating))
    memset(dW, 0, G * I * sizeof(floating))
    memset(dU, 0, G * Hout * sizeof(floating))
    if dR != NULL:
        memset(dR, 0, P * H * sizeof(floating))
    if db != NULL:
        memset(db, 0, G * sizeof(floating))
    s0 = 0
    while s0 < T:
        # Backward visits the steps in the opposite order of the forward pass; this chunk
        # is times t_lo .. t_lo+n-1, and dz of time t is at chunk slot t - t_lo.
        n = Tc if T - s0 > Tc else T - s0
        t_lo = s0 if reverse else T - s0 - n
        for s in range(s0, s0 + n):
            t = s if reverse else T - 1 - s
            dzt = dz + (t - t_lo) * B * G
            all_active = True
            # dh_t = dy_t + (gradient from step t+1), on active rows
            for bi in range(B):
                if t < length(lengths, bi, T):
                    for j in range(Hout):
                        dht[bi * Hout + j] = dy[(t * B + bi) * lddy + j] + dh[bi * Hout + j]
                else:
                    all_active = False
                    memset(dht + bi * Hout, 0, Hout * sizeof(floating))
            if P > 0:
                # dm = dh @ R   (B, H) = (B, P)(P, H)
                gemm(NoTrans, NoTrans, B, H, P, 1, dht, P, R, H, 0, dm, H)
            for bi in range(B):
                if t >= length(lengths, bi, T):
                    memset(dzt + bi * G, 0, G * sizeof(floating))
                    memset(m + bi * H, 0, H * sizeof(floating))
                    continue
                # c_{t-1}: the previous step in processing order, or c0 on a row's first step.
                tp = t + 1 if reverse else t - 1
                if (reverse and tp >= length(lengths, bi, T)) or (not reverse and tp < 0):
                    cprev = c0 + bi * H
                else:
                    cprev = cells + (tp * B + bi) * H
                cell_backward_rows(H, H, gates + (t * B + bi) * G, cells + (t * B + bi) * H,
                                   cprev, dmt + bi * H, dc + bi * H, dzt + bi * G, m + bi * H,
                                   peep, dpeep, False, identity)
            if P > 0:
                # dR += dh.T @ m   (P, H) += (P, B)(B, H)
                gemm(Trans, NoTrans, P, H, B, 1, dht, P, m, H, 1, dR, H)
            # dh_{t-1} = dz_t @ U   (B, Hout) = (B, 4H)(4H, Hout); inactive rows keep their carry.
            dst = dh if all_active else dhp
            if B * G * Hout <= SMALL_PRODUCT:
                gemm_small(B, Hout, G, dzt, G, U, Hout, 0, dst, Hout)
            else:
                gemm(NoTrans, NoTrans, B, Hout, G, 1, dzt, G, U, Hout, 0, dst, Hout)
            if not all_active:
                for bi in range(B):
                    if t < length(lengths, bi, T):
                        memcpy(dh + bi * Hout, dhp + bi * Hout, Hout * sizeof(floating))

        # dx[chunk] += dz @ W   (n*B, I) += (n*B, 4H)(4H, I)
        gemm(NoTrans, NoTrans, n * B, I, G, 1, dz, G, W, I, 1, dx + t_lo * B * I, I)
        # h_{t-1} of every row of the chunk: h0 on the row's first step, else the neighbouring
        # output row of y (zero past a row's end, where dz is zero too).
        for t in range(t_lo, t_lo + n):
            for bi in range(B):
                tp = t + 1 if reverse else t - 1
                if (reverse and tp >= length(lengths, bi, T)) or (not reverse and tp < 0):
                    cprev = h0 + bi * Hout
                else:
                    cprev = y + (tp * B + bi) * ldy
                memcpy(hprev + ((t - t_lo) * B + bi) * Hout, cprev, Hout * sizeof(floating))
        # dW += dz.T @ x[chunk]   (4H, I) += (4H, n*B)(n*B, I)
        gemm(Trans, NoTrans, G, I, n * B, 1, dz, G, x + t_lo * B * I, I, 1, dW, I)
        # dU += dz.T @ h_prev   (4H, Hout) += (4H, n*B)(n*B, Hout)
        gemm(Trans, NoTrans, G, Hout, n * B, 1, dz, G, hprev, Hout, 1, dU, Hout)
        if db != NULL:
            # db += dz.sum(axis=0)
            for s in range(n * B):
                for j in range(G):
                    db[j] += dz[s * G + j]
        s0 += n


cdef void backward_parallel(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const floating *x, const floating *W, const floating *U, const floating *peep,
        const Py_ssize_t *lengths, const floating *h0, const floating *c0, const floating *y,
        Py_ssize_t ldy, const floating *gates, const floating *cells, const floating *dy,
        Py_ssize_t lddy, floating *dh, floating *dc, floating *dx, floating *dW, floating *dU,
        floating *db, floating *dpeep, floating *dz, Py_ssize_t Tc, floating *dht,
        floating *dhp, floating *m, floating *Up, floating *Wp, floating *scratch,
        int threads, bint lean, bint reverse, bint identity) noexcept nogil:
    """backward_layer without projection on AVX2 and AVX-512 builds, every thread throughout.

    Each OpenMP thread owns the hidden units it owns in forward_parallel. A step: the thread
    computes dz of its units (all four gates) from its units of dh_t and dc_t; a barrier; then
    its units of dh_{t-1} = dz_t @ U, which is exactly what it reads at the next step (so one
    barrier per step). After each chunk of steps: dx[chunk] (its strips of I columns), then,
    once x and h_{t-1} of the chunk are packed (each thread some strips), its rows of dW and
    dU (the gates of its units): products with dz.T, read from dz in place. ``dz`` holds Tc
    steps of rows 4H + DZ_PAD apart. ``Up`` and ``Wp`` receive U and W packed; ``scratch``
    holds x and h_{t-1} of the chunk, packed, and h_{t-1} gathered.
    """
    cdef Py_ssize_t G = 4 * H, ldz = G + DZ_PAD, per = strips(H), per_in = strips(I)
    cdef Py_ssize_t rows_max = Tc * B
    cdef floating *xp = scratch
    cdef floating *hp = xp + rows_max * per_in * TILE_COLS
    cdef floating *hprev = hp + rows_max * per * TILE_COLS
    # Initialised because OpenMP copies them into each thread (firstprivate).
    cdef Py_ssize_t part = 0, parts = 0, s_lo = 0, s_hi = 0, u_lo = 0, u_hi = 0, nu = 0
    cdef Py_ssize_t i_lo = 0, i_hi = 0, s0 = 0, n = 0, t_lo = 0, s = 0, t = 0, bi = 0, j = 0
    cdef Py_ssize_t g = 0, tp = 0, r = 0, rows = 0
    cdef bint all_active = True
    cdef const floating *prev = NULL
    cdef floating *dzt = NULL
    memset(dpeep, 0, 3 * H * sizeof(floating))
    memset(dW, 0, G * I * sizeof(floating))
    memset(dU, 0, G * H * sizeof(floating))
    if db != NULL:
        memset(db, 0, G * sizeof(floating))
    with parallel(num_threads=threads):
        part = threadid()
        parts = num_threads()
        s_lo = share(per, part, parts)
        s_hi = share(per, part + 1, parts)
        u_lo = min(H, s_lo * TILE_COLS)
        u_hi = min(H, s_hi * TILE_COLS)
        nu = u_hi - u_lo
        i_lo = share(per_in, part, parts)
        i_hi = share(per_in, part + 1, parts)
        # U as the (4H, H) right operand of dh = dz @ U, and W as the (4H, I) one of dx.
        pack_strips(G, 1, H, U, H, 1, s_lo, s_hi, Up)
        pack_strips(G, 1, I, W, I, 1, i_lo, i_hi, Wp)
        s0 = 0
        while s0 < T:
            n = Tc if T - s0 > Tc else T - s0
            t_lo = s0 if reverse else T - s0 - n
            rows = n * B
            for s in range(s0, s0 + n):
                t = s if reverse else T - 1 - s
                dzt = dz + (t - t_lo) * B * ldz
                all_active = True
                for bi in range(B):
                    if t >= length(lengths, bi, T):
                        all_active = False
                        for g in range(4):
                            memset(dzt + bi * ldz + g * H + u_lo, 0, nu * sizeof(floating))
                        continue
                    # dh_t = dy_t + (gradient from step t+1)
                    for j in range(u_lo, u_hi):
                        dht[bi * H + j] = dy[(t * B + bi) * lddy + j] + dh[bi * H + j]
                    tp = t + 1 if reverse else t - 1
                    if (reverse and tp >= length(lengths, bi, T)) or (not reverse and tp < 0):
                        prev = c0 + bi * H
                    else:
                        prev = cells + (tp * B + bi) * H
                    cell_backward_rows(nu, H, gates + (t * B + bi) * G + u_lo,
                                       cells + (t * B + bi) * H + u_lo, prev + u_lo,
                                       dht + bi * H + u_lo, dc + bi * H + u_lo,
                                       dzt + bi * ldz + u_lo, m + bi * H + u_lo, peep + u_lo,
                                       dpeep + u_lo, lean, identity)
                barrier()
                # dh_{t-1} = dz_t @ U on this thread's units; inactive rows keep their carry.
                if all_active:
                    gemm_packed(B, G, dzt, ldz, Up, 1, H, s_lo, s_hi, False, dh, H, NULL)
                else:
                    gemm_packed(B, G, dzt, ldz, Up, 1, H, s_lo, s_hi, False, dhp, H, NULL)
                    for bi in range(B):
                        if t < length(lengths, bi, T):
                            memcpy(dh + bi * H + u_lo, dhp + bi * H + u_lo,
                                   nu * sizeof(floating))
            # dz of the chunk is complete (barrier of its last step); read only from here on.
            # dx[chunk] += dz @ W   (n*B, I) += (n*B, 4H)(4H, I), this thread's strips of I
            gemm_packed(rows, G, dz, ldz, Wp, 1, I, i_lo, i_hi, True, dx + t_lo * B * I, I,
                        NULL)
            # h_{t-1} of every row of the chunk (h0 on a row's first step, else the
            # neighbouring row of y), this thread's units, packed; x[chunk] packed, this
            # thread's strips of I.
            for t in range(t_lo, t_lo + n):
                for bi in range(B):
                    tp = t + 1 if reverse else t - 1
                    if (reverse and tp >= length(lengths, bi, T)) or (not reverse and tp < 0):
                        prev = h0 + bi * H
                    else:
                        prev = y + (tp * B + bi) * ldy
                    memcpy(hprev + ((t - t_lo) * B + bi) * H + u_lo, prev + u_lo,
                           nu * sizeof(floating))
            pack_strips(rows, 1, H, hprev, H, 1, s_lo, s_hi, hp)
            pack_strips(rows, 1, I, x + t_lo * B * I, I, 1, i_lo, i_hi, xp)
            if db != NULL:
                # db += dz.sum(axis=0)
                for r in range(rows):
                    for g in range(4):
                        for j in range(g * H + u_lo, g * H + u_hi):
                            db[j] += dz[r * ldz + j]
            barrier()
            # dW += dz.T @ x[chunk]   (4H, I) += (4H, n*B)(n*B, I), and dU likewise; this
            # thread's rows (the gates of its units).
            for g in range(4):
                gemm_packed_strided(nu, rows, dz + g * H + u_lo, 1, ldz, xp, 1, I, 0, per_in,
                                    True, dW + (g * H + u_lo) * I, I, NULL)
                gemm_packed_strided(nu, rows, dz + g * H + u_lo, 1, ldz, hp, 1, H, 0, per,
                                    True, dU + (g * H + u_lo) * H, H, NULL)
            # The next chunk overwrites dz and the packed x and h_{t-1}.
            barrier()
            s0 = s0 + n  # (+= would be an OpenMP reduction)


cdef struct BackwardCall:
    # As ForwardCall, for backward.
    Py_ssize_t T, B, n_in, H, P, ldy, lddy, Tc, n_dz, n_dh, n_m
    int threads
    bint par, lean, reverse, identity, double
    const void *x
    const void *W
    const void *U
    const void *R
    const void *peep
    const Py_ssize_t *lengths
    const void *h0
    const void *c0
    const void *y
    const void *gates
    const void *cells
    const void *dy
    void *dh
    void *dc
    void *dx
    void *dW
    void *dU
    void *db
    void *dR
    void *dpeep
    void *work
    void *Up
    void *Wp


cdef list prepare_backward(BackwardCall *f, tuple args):
    """Check the arguments of ``backward`` (all twenty-four, as a tuple), allocate its
    workspace and fill ``f``; returns the workspace arrays, which must outlive the call."""
    cdef cnp.ndarray x, W, U, R, peep, lengths, h0, c0, y, gates, cells, dy, dh, dc, dx
    cdef cnp.ndarray dW, dU, db, dR, dpeep
    cdef Py_ssize_t y_col, dy_col
    cdef bint reverse, identity
    (x, W, U, R, peep, lengths, h0, c0, y, y_col, gates, cells, dy, dy_col, dh, dc, dx, dW,
     dU, db, dR, dpeep, reverse, identity) = args
    cdef Shapes n = Shapes(x, W, U, R, peep, lengths, h0, c0, y, y_col)
    cdef Py_ssize_t G = 4 * n.H, B = n.B, size = cnp.PyArray_ITEMSIZE(h0)
    expect(gates, "gates", n.typenum, n.T, n.B, G)
    expect(cells, "cells", n.typenum, n.T, n.B, n.H)
    if dy is None or dy.ndim != 3 or dy_col < 0 or dy_col + n.Hout > dy.shape[2]:
        raise ValueError("kernel argument dy must be 3-D with room for the columns "
                         f"[{dy_col}, {dy_col + n.Hout})")
    expect(dy, "dy", n.typenum, n.T, n.B, dy.shape[2])
    expect(dh, "dh", n.typenum, n.B, n.Hout)
    expect(dc, "dc", n.typenum, n.B, n.H)
    expect(dx, "dx", n.typenum, n.T * n.B, n.n_in)
    expect(dW, "dW", n.typenum, G, n.n_in)
    expect(dU, "dU", n.typenum, G, n.Hout)
    if db is not None:
        expect(db, "db", n.typenum, G)
    if (dR is None) != (R is None):
        raise TypeError("kernel arguments R and dR go together")
    if dR is not None:
        expect(dR, "dR", n.typenum, n.P, n.H)
    if dpeep is not None:
        expect(dpeep, "dpeep", n.typenum, 3, n.H)
    f.T, f.B, f.n_in, f.H, f.P, f.ldy, f.lddy = n.T, B, n.n_in, n.H, n.P, n.ldy, dy.shape[2]
    f.Tc = max(1, min(n.T, BACKWARD_CHUNK_ELEMENTS // (B * G), BACKWARD_CHUNK_ROWS // B))
    f.par = n.parallel()
    f.threads = n.threads() if f.par else 1
    f.lean = peep is None
    f.reverse, f.identity, f.double = reverse, identity, n.typenum == cnp.NPY_DOUBLE
    # Workspace: [dz of Tc steps | dh_t | dh_{t-1} | dm (B, H) | m | scratch | zero
    #             peepholes | unwanted dpeep]; scratch is h_{t-1} of a chunk, or for
    #             backward_parallel: x and h_{t-1} packed, h_{t-1}; and U and W packed
    #             apart (see Shapes.packed_size)
    f.n_dz, f.n_dh, f.n_m = f.Tc * B * (G + DZ_PAD if f.par else G), B * n.Hout, B * n.H
    cdef Py_ssize_t n_scratch = (
        f.Tc * B * ((strips(n.H) + strips(n.n_in)) * TILE_COLS + n.H)
    ) if f.par else f.Tc * B * n.Hout
    cdef cnp.ndarray Up = workspace(n.packed_size(True), h0.dtype) if f.par else None
    cdef cnp.ndarray Wp = workspace(n.packed_size(False), h0.dtype) if f.par else None
    cdef Py_ssize_t n_peep = 3 * n.H if peep is None else 0
    cdef Py_ssize_t n_dpeep = 3 * n.H if dpeep is None else 0
    cdef Py_ssize_t n_before = f.n_dz + 2 * f.n_dh + 2 * f.n_m + n_scratch
    cdef cnp.ndarray work = workspace(n_before + n_peep + n_dpeep, h0.dtype)
    cdef char *zero_peep = <char *> cnp.PyArray_DATA(work) + n_before * size
    memset(zero_peep, 0, n_peep * size)
    f.x, f.W, f.U, f.R = data(x), data(W), data(U), data(R)
    f.peep = data(peep) if peep is not None else zero_peep
    f.lengths = <Py_ssize_t *> data(lengths)
    f.h0, f.c0, f.y = data(h0), data(c0), <char *> data(y) + y_col * size
    f.gates, f.cells, f.dy = data(gates), data(cells), <char *> data(dy) + dy_col * size
    f.dh, f.dc, f.dx, f.dW, f.dU = data(dh), data(dc), data(dx), data(dW), data(dU)
    f.db, f.dR = data(db), data(dR)
    f.dpeep = data(dpeep) if dpeep is not None else zero_peep + n_peep * size
    f.work, f.Up, f.Wp = cnp.PyArray_DATA(work), data(Up), data(Wp)
    return [work, Up, Wp]


cdef void run_backward(floating kind, const BackwardCall *f, int threads) noexcept nogil:
    """``backward_parallel`` on ``threads`` threads, or ``backward_layer`` (``kind`` only
    selects the type)."""
    cdef floating *w = <floating *> f.work
    cdef Py_ssize_t n_dz = f.n_dz, n_dh = f.n_dh, n_m = f.n_m
    if f.par:
        backward_parallel(
            f.T, f.B, f.n_in, f.H, <floating *> f.x, <floating *> f.W, <floating *> f.U,
            <floating *> f.peep, f.lengths, <floating *> f.h0, <floating *> f.c0,
            <floating *> f.y, f.ldy, <floating *> f.gates, <floating *> f.cells,
            <floating *> f.dy, f.lddy, <floating *> f.dh, <floating *> f.dc,
            <floating *> f.dx, <floating *> f.dW, <floating *> f.dU, <floating *> f.db,
            <floating *> f.dpeep, w, f.Tc, w + n_dz, w + n_dz + n_dh,
            w + n_dz + 2 * n_dh + n_m, <floating *> f.Up, <floating *> f.Wp,
            w + n_dz + 2 * n_dh + 2 * n_m, threads, f.lean, f.reverse, f.identity)
    else:
        backward_layer(
            f.T, f.B, f.n_in, f.H, f.P, <floating *> f.x, <floating *> f.W, <floating *> f.U,
            <floating *> f.R, <floating *> f.peep, f.lengths, <floating *> f.h0,
            <floating *> f.c0, <floating *> f.y, f.ldy, <floating *> f.gates,
            <floating *> f.cells, <floating *> f.dy, f.lddy, <floating *> f.dh,
            <floating *> f.dc, <floating *> f.dx, <floating *> f.dW, <floating *> f.dU,
            <floating *> f.db, <floating *> f.dR, <floating *> f.dpeep, w, f.Tc, w + n_dz,
            w + n_dz + 2 * n_dh, w + n_dz + 2 * n_dh + n_m, w + n_dz + n_dh,
            w + n_dz + 2 * n_dh + 2 * n_m, f.reverse, f.identity)


cdef inline void run_backward_any(const BackwardCall *f, int threads) noexcept nogil:
    if f.double:
        run_backward(<double> 0, f, threads)
    else:
        run_backward(<float> 0, f, threads)


def backward(cnp.ndarray x, cnp.ndarray W, cnp.ndarray U, cnp.ndarray R, cnp.ndarray peep,
             cnp.ndarray lengths, cnp.ndarray h0, cnp.ndarray c0, cnp.ndarray y,
             Py_ssize_t y_col, cnp.ndarray gates, cnp.ndarray cells, cnp.ndarray dy,
             Py_ssize_t dy_col, cnp.ndarray dh, cnp.ndarray dc, cnp.ndarray dx,
             cnp.ndarray dW, cnp.ndarray dU, cnp.ndarray db, cnp.ndarray dR,
             cnp.ndarray dpeep, bint reverse, bint identity):
    """Backpropagation through time over one layer and direction.

    Inputs as for ``forward`` in training plus its outputs: y (T, B, ldy) with h_t in columns
    [y_col, y_col + Hout), gates (T, B, 4H), cells (T, B, H); dy (T, B, lddy) with the
    gradient of h_t in columns [dy_col, dy_col + Hout). dh (B, Hout) and dc (B, H) hold the
    gradient reaching the final state and receive the one reaching h0, c0. dx (T*B, I) is
    accumulated into (two directions share one input); dW, dU, db (4H,) or None, dR (P, H) or
    None and dpeep (3, H) or None are overwritten.
    """
    cdef BackwardCall f
    keep = prepare_backward(&f, (x, W, U, R, peep, lengths, h0, c0, y, y_col, gates, cells,
                                 dy, dy_col, dh, dc, dx, dW, dU, db, dR, dpeep, reverse,
                                 identity))
    with nogil:
        run_backward_any(&f, f.threads)


def backward_directions(tuple forward_args, tuple reverse_args):
    """Both directions of a layer: ``backward(*forward_args)`` and
    ``backward(*reverse_args)`` (all twenty-four arguments each), at once when
    ``side_by_side`` says so, in which case the reverse direction's dx goes to a scratch
    array added to dx afterwards. The two must share x and dx."""
    cdef BackwardCall f[2]
    keep = [prepare_backward(&f[0], forward_args), prepare_backward(&f[1], reverse_args)]
    if f[0].dx != f[1].dx:
        raise ValueError("backward_directions: the two directions must share dx")
    cdef int d
    cdef cnp.ndarray dx = forward_args[16], dx1  # backward's 17th argument
    if side_by_side(f[0].par, f[1].par, f[0].threads, f[1].threads):
        dx1 = workspace(dx.size, dx.dtype)
        memset(cnp.PyArray_DATA(dx1), 0, cnp.PyArray_NBYTES(dx1))
        f[1].dx = cnp.PyArray_DATA(dx1)
        for d in prange(2, nogil=True, num_threads=2, schedule="static"):
            run_backward_any(&f[d], 1)
        np.add(dx.reshape(-1), dx1, out=dx.reshape(-1))
    else:
        with nogil:
            run_backward_any(&f[0], f[0].threads)
            run_backward_any(&f[1], f[1].threads)


def activations(const floating[::1] x, floating[::1] sig, floating[::1] th):
    """sig = sigmoid(x), th = tanh(x) with the kernels' own functions (for accuracy tests)."""
    cdef Py_ssize_t k
    with nogil:
        for k in range(x.shape[0]):
            sig[k] = sigmoid(x[k])
            th[k] = tanh_(x[k])



def small_product(const floating[:, ::1] A, const floating[:, ::1] B, floating beta,
                  floating[:, ::1] C):
    """C := A @ B + beta * C with the kernels' own gemm_small (for tests); A (m, k),
    B (k, n), C (m, n)."""
    if A.shape[1] != B.shape[0] or C.shape[0] != A.shape[0] or C.shape[1] != B.shape[1]:
        raise ValueError(f"small_product: shapes {(A.shape[0], A.shape[1])} @ "
                         f"{(B.shape[0], B.shape[1])} do not give C's "
                         f"{(C.shape[0], C.shape[1])}")
    if C.shape[0] and C.shape[1]:
        with nogil:
            gemm_small(A.shape[0], B.shape[1], A.shape[1], &A[0, 0] if A.shape[1] else NULL,
                       A.shape[1], &B[0, 0] if B.shape[0] else NULL, B.shape[1], beta,
                       &C[0, 0], C.shape[1])


cdef enum:
    FINGERPRINT_LANES = 32  # independent multiply chains: 4 AVX-512 vectors of 64-bit lanes


def fingerprint(cnp.ndarray a):
    """A 64-bit fingerprint of the bytes of C-contiguous array ``a``, for noticing that an
    array was changed in place (not a cryptographic hash).

    Each of 32 lanes runs acc = (acc ^ word) * M over every 32nd 64-bit word: a bijection of
    acc for each word, so changing any word changes its lane; the lanes and the length are
    then mixed into one value. About memory speed (vectorised 64-bit multiplies)."""
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError("fingerprint needs a C-contiguous array")
    cdef const unsigned char *p = <const unsigned char *> cnp.PyArray_DATA(a)
    cdef Py_ssize_t nbytes = cnp.PyArray_NBYTES(a)
    cdef Py_ssize_t words = nbytes // 8, full = words - words % FINGERPRINT_LANES, i, l
    cdef uint64_t M = 0x9E3779B97F4A7C15ULL  # odd: multiplying by it is invertible
    cdef uint64_t acc[FINGERPRINT_LANES]
    cdef uint64_t w, h
    with nogil:
        for l in range(FINGERPRINT_LANES):
            acc[l] = l + 1
        i = 0
        while i < full:
            for l in range(FINGERPRINT_LANES):
                memcpy(&w, p + (i + l) * 8, 8)
                acc[l] = (acc[l] ^ w) * M
            i += FINGERPRINT_LANES
        for i in range(full, words):
            memcpy(&w, p + i * 8, 8)
            acc[0] = (acc[0] ^ w) * M
        for i in range(words * 8, nbytes):
            acc[1] = (acc[1] ^ p[i]) * M
        h = <uint64_t> nbytes
        for l in range(FINGERPRINT_LANES):
            h = (h ^ acc[l]) * M
            h ^= h >> 29
    return h
