"""LSTM kernels for one layer and one direction, float32 and float64.

The maths, line for line, is in ``lstmx/reference.py`` (and ``docs/equations.md``). Layout:
every array is time-major and C-contiguous; a time step is a (B, .) block of rows, and the
gate pre-activations of a row are the four blocks ``[z_i | z_f | z_g | z_o]`` of width H.

Callers (``lstmx/_engine.py``) check every shape, dtype and range before calling; nothing here
raises. Scratch is allocated with NumPy while the GIL is held, then each kernel runs in one
``with nogil:`` block.

A batch row b is *active* at time t when ``t < lengths[b]``, in both directions: the forward
direction runs t = 0 .. T-1, the reverse one t = T-1 .. 0, and either way an inactive row keeps
its state and outputs zeros (PyTorch's packed-sequence semantics).
"""
import numpy as np

from cython cimport floating
from libc.math cimport exp, expf, tanh, tanhf
from libc.stdint cimport int32_t
from libc.string cimport memcpy, memset

from lstmx._blas cimport gemm, gemm_small, NoTrans, Trans

# Inference keeps the input projection of at most this many elements at a time, so that memory
# stays bounded on long sequences while each chunk is still one large GEMM.
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


cdef enum:
    INFERENCE_CHUNK_ELEMENTS = 1 << 20
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


cdef inline floating sigmoid(floating v) noexcept nogil:
    cdef float one = 1  # typed constants keep float arithmetic in single precision
    if floating is float:
        return one / (one + expf_(-v))
    else:
        # exp(-v) overflows to inf for v << 0, giving exactly 0: finite, no NaN.
        return 1 / (1 + exp(-v))


cdef inline floating tanh_(floating v) noexcept nogil:
    # Cephes' tanhf: an odd polynomial below 0.625 (keeps relative precision near 0), else
    # 1 - 2 / (e**2|v| + 1). Both are computed so that the loop stays branch-free.
    cdef float q0 = -5.70498872745e-3, q1 = 2.06390887954e-2, q2 = -5.37397155531e-2
    cdef float q3 = 1.33314422036e-1, q4 = -3.33332819422e-1, edge = 0.625
    cdef float zero = 0, one = 1, two = 2, a, z, small, large
    if floating is float:
        a = v if v >= zero else -v
        z = v * v
        small = ((((q0 * z + q1) * z + q2) * z + q3) * z + q4) * z * v + v
        large = one - two / (expf_(two * a) + one)
        large = large if v >= zero else -large
        return small if a < edge else large
    else:
        return tanh(v)


cdef inline const floating *ptr1(const floating[::1] a) noexcept nogil:
    """Data pointer of a possibly empty array (NULL when empty: 'feature absent')."""
    return &a[0] if a.shape[0] > 0 else NULL


cdef inline const floating *ptr2(const floating[:, ::1] a) noexcept nogil:
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL


cdef void cell_forward_rows(
        Py_ssize_t H, floating *gates, floating *c, floating *m, const floating *peep,
        bint identity) noexcept nogil:
    """One row of one step: pre-activations in ``gates`` become the gates i, f, g, o;
    ``c`` holds c_{t-1} and receives c_t; ``m`` receives o * act(c_t).

    ``peep`` = [p_i | p_f | p_o] is zeros without peepholes: a branch-free loop vectorises, and
    three multiply-adds cost less than a second code path.
    """
    cdef Py_ssize_t j
    cdef floating i, f, g, o, cp, ct, a
    for j in range(H):
        cp = c[j]
        i = sigmoid(gates[j] + peep[j] * cp)
        f = sigmoid(gates[H + j] + peep[H + j] * cp)
        g = tanh_(gates[2 * H + j])
        ct = f * cp + i * g
        o = sigmoid(gates[3 * H + j] + peep[2 * H + j] * ct)
        gates[j] = i
        gates[H + j] = f
        gates[2 * H + j] = g
        gates[3 * H + j] = o
        c[j] = ct
        a = tanh_(ct)
        m[j] = o * (ct if identity else a)


cdef void cell_backward_rows(
        Py_ssize_t H, const floating *gates, const floating *ct_, const floating *cp_,
        const floating *dm, floating *dc, floating *dz, floating *m,
        const floating *peep, floating *dpeep, bint identity) noexcept nogil:
    """Backward of one row of one step (LSTM.md, "Backward, one time step").

    ``dc`` holds the gradient reaching c_t from step t+1 and receives the one reaching c_{t-1};
    ``dz`` receives [dz_i | dz_f | dz_g | dz_o]; ``m`` receives m_t (for dR); ``dpeep``
    accumulates the peephole gradients (``peep`` is zeros without peepholes, as forward).
    """
    cdef Py_ssize_t j
    cdef floating i, f, g, o, ct, cp, a, dact, dzi, dzf, dzg, dzo, dcj
    for j in range(H):
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
        Py_ssize_t rows, Py_ssize_t I, Py_ssize_t G, const floating *x, const floating *W,
        const floating *b, floating *z) noexcept nogil:
    """z = x @ W.T + b for a block of ``rows`` rows; G = 4H."""
    cdef Py_ssize_t r
    if b != NULL:
        for r in range(rows):
            memcpy(z + r * G, b, G * sizeof(floating))
    # z += x @ W.T   (rows, 4H) += (rows, I)(I, 4H)
    gemm(NoTrans, Trans, rows, G, I, 1, x, I, W, I, 1 if b != NULL else 0, z, G)


cdef void forward_layer(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
        const floating *x, const floating *W, const floating *U, const floating *b,
        const floating *R, const floating *peep, const Py_ssize_t *lengths,
        floating *h, floating *c, floating *y, Py_ssize_t ldy,
        floating *gates, Py_ssize_t Tc, floating *cells,
        floating *m, floating *hp, const floating *Ut, bint reverse, bint identity) noexcept nogil:
    """Forward over a whole sequence; ``gates`` holds Tc steps (Tc = T and ``cells`` set when
    training, in which case both keep every step for the backward pass). ``Ut`` = U.T
    (Hout, 4H) for small products, else NULL."""
    cdef Py_ssize_t G = 4 * H
    cdef Py_ssize_t Hout = P if P > 0 else H
    cdef Py_ssize_t s0, n, t_lo, s, t, bi
    cdef floating *zt
    cdef floating *mrow
    s0 = 0
    while s0 < T:
        # Steps s0 .. s0+n-1 in processing order are times t_lo .. t_lo+n-1.
        n = Tc if T - s0 > Tc else T - s0
        t_lo = T - s0 - n if reverse else s0
        input_projection(n * B, I, G, x + t_lo * B * I, W, b, gates)
        for s in range(s0, s0 + n):
            t = T - 1 - s if reverse else s
            zt = gates + (t - t_lo) * B * G
            # z += h @ U.T   (B, 4H) += (B, Hout)(Hout, 4H)
            if Ut != NULL:
                gemm_small(B, G, Hout, h, Hout, Ut, G, 1, zt, G)
            else:
                gemm(NoTrans, Trans, B, G, Hout, 1, h, Hout, U, Hout, 1, zt, G)
            for bi in range(B):
                if t >= lengths[bi]:
                    memset(y + (t * B + bi) * ldy, 0, Hout * sizeof(floating))
                    if cells != NULL:
                        memset(zt + bi * G, 0, G * sizeof(floating))
                        memset(cells + (t * B + bi) * H, 0, H * sizeof(floating))
                    continue
                # Without projection m_t is h_t: written straight into the state.
                mrow = m + bi * H if P > 0 else h + bi * H
                cell_forward_rows(H, zt + bi * G, c + bi * H, mrow, peep, identity)
                if cells != NULL:
                    memcpy(cells + (t * B + bi) * H, c + bi * H, H * sizeof(floating))
                if P == 0:
                    memcpy(y + (t * B + bi) * ldy, mrow, H * sizeof(floating))
            if P > 0:
                # h = m @ R.T   (B, P) = (B, H)(H, P); only active rows take it.
                gemm(NoTrans, Trans, B, P, H, 1, m, H, R, H, 0, hp, P)
                for bi in range(B):
                    if t < lengths[bi]:
                        memcpy(h + bi * P, hp + bi * P, P * sizeof(floating))
                        memcpy(y + (t * B + bi) * ldy, hp + bi * P, P * sizeof(floating))
        s0 += n


cdef small_product_operand(U, Py_ssize_t B):
    """U.T, C-contiguous, when a step's product h @ U.T is small enough for gemm_small;
    otherwise an empty array (BLAS)."""
    if B * U.shape[0] * U.shape[1] <= SMALL_PRODUCT:
        return np.ascontiguousarray(np.asarray(U).T)
    return np.empty((0, 0), dtype=np.asarray(U).dtype)


def forward(const floating[:, ::1] x, const floating[:, ::1] W, const floating[:, ::1] U,
            const floating[::1] b, const floating[:, ::1] R, const floating[:, ::1] peep,
            const Py_ssize_t[::1] lengths, floating[:, ::1] h, floating[:, ::1] c,
            floating[:, :, ::1] y, Py_ssize_t y_col, bint reverse, bint identity):
    """Inference over one layer and direction; keeps nothing but the running state.

    x (T*B, I); W (4H, I); U (4H, Hout); b (4H,) = b_ih + b_hh or empty; R (P, H) or empty;
    peep (3, H) = [p_i; p_f; p_o] (zeros without peepholes); lengths (B,); h (B, Hout) and c (B, H) hold the
    initial state and receive the final one; y (T, B, ldy) receives h_t in columns
    [y_col, y_col + Hout).
    """
    cdef Py_ssize_t B = h.shape[0], H = c.shape[1], P = R.shape[0], I = x.shape[1]
    cdef Py_ssize_t T = y.shape[0]
    cdef Py_ssize_t Tc = max(1, min(T, INFERENCE_CHUNK_ELEMENTS // (B * 4 * H)))
    cdef floating[:, :, ::1] gates = np.empty((Tc, B, 4 * H), dtype=np.asarray(h).dtype)
    cdef floating[:, ::1] m = np.empty((B, H if P > 0 else 0), dtype=np.asarray(h).dtype)
    cdef floating[:, ::1] hp = np.empty((B, P), dtype=np.asarray(h).dtype)
    cdef const floating[:, ::1] Ut = small_product_operand(U, B)
    with nogil:
        forward_layer(T, B, I, H, P, &x[0, 0], &W[0, 0], &U[0, 0], ptr1(b), ptr2(R), &peep[0, 0],
                      &lengths[0], &h[0, 0], &c[0, 0], &y[0, 0, y_col], y.shape[2],
                      &gates[0, 0, 0], Tc, NULL,
                      <floating *> ptr2(m), <floating *> ptr2(hp), ptr2(Ut), reverse, identity)


def forward_train(const floating[:, ::1] x, const floating[:, ::1] W,
                  const floating[:, ::1] U, const floating[::1] b, const floating[:, ::1] R,
                  const floating[:, ::1] peep, const Py_ssize_t[::1] lengths,
                  floating[:, ::1] h, floating[:, ::1] c, floating[:, :, ::1] y,
                  Py_ssize_t y_col, floating[:, :, ::1] gates, floating[:, :, ::1] cells,
                  bint reverse, bint identity):
    """Training forward: as ``forward``, and keeps what ``backward`` needs.

    gates (T, B, 4H) receives the activated gates i, f, g, o; cells (T, B, H) receives c_t.
    Both are zero at inactive steps.
    """
    cdef Py_ssize_t B = h.shape[0], H = c.shape[1], P = R.shape[0], I = x.shape[1]
    cdef Py_ssize_t T = y.shape[0]
    cdef floating[:, ::1] m = np.empty((B, H if P > 0 else 0), dtype=np.asarray(h).dtype)
    cdef floating[:, ::1] hp = np.empty((B, P), dtype=np.asarray(h).dtype)
    cdef const floating[:, ::1] Ut = small_product_operand(U, B)
    with nogil:
        forward_layer(T, B, I, H, P, &x[0, 0], &W[0, 0], &U[0, 0], ptr1(b), ptr2(R), &peep[0, 0],
                      &lengths[0], &h[0, 0], &c[0, 0], &y[0, 0, y_col], y.shape[2],
                      &gates[0, 0, 0], T, &cells[0, 0, 0],
                      <floating *> ptr2(m), <floating *> ptr2(hp), ptr2(Ut), reverse, identity)


cdef void backward_layer(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, Py_ssize_t P,
        const floating *x, const floating *W, const floating *U, const floating *R,
        const floating *peep, const Py_ssize_t *lengths,
        const floating *h0, const floating *c0, const floating *y, Py_ssize_t ldy,
        const floating *gates, const floating *cells, const floating *dy, Py_ssize_t lddy,
        floating *dh, floating *dc, floating *dx, floating *dW, floating *dU, floating *db,
        floating *dR, floating *dpeep, floating *dz, floating *dht, floating *dm,
        floating *m, floating *dhp, bint reverse, bint identity) noexcept nogil:
    """Backpropagation through time over one layer and direction (see ``backward``)."""
    cdef Py_ssize_t G = 4 * H
    cdef Py_ssize_t Hout = P if P > 0 else H
    cdef Py_ssize_t s, t, bi, j, tp
    cdef bint all_active
    cdef const floating *cprev
    cdef floating *dst
    cdef floating *dmt = dm if P > 0 else dht
    memset(dpeep, 0, 3 * H * sizeof(floating))
    if dR != NULL:
        memset(dR, 0, P * H * sizeof(floating))
    for s in range(T):
        # Backward visits the steps in the opposite order of the forward pass.
        t = s if reverse else T - 1 - s
        all_active = True
        # dh_t = dy_t + (gradient from step t+1), on active rows
        for bi in range(B):
            if t < lengths[bi]:
                for j in range(Hout):
                    dht[bi * Hout + j] = dy[(t * B + bi) * lddy + j] + dh[bi * Hout + j]
            else:
                all_active = False
                memset(dht + bi * Hout, 0, Hout * sizeof(floating))
        if P > 0:
            # dm = dh @ R   (B, H) = (B, P)(P, H)
            gemm(NoTrans, NoTrans, B, H, P, 1, dht, P, R, H, 0, dm, H)
        for bi in range(B):
            if t >= lengths[bi]:
                memset(dz + (t * B + bi) * G, 0, G * sizeof(floating))
                if P > 0:
                    memset(m + bi * H, 0, H * sizeof(floating))
                continue
            # c_{t-1}: the previous step in processing order, or c0 on a row's first step.
            tp = t + 1 if reverse else t - 1
            if (reverse and tp >= lengths[bi]) or (not reverse and tp < 0):
                cprev = c0 + bi * H
            else:
                cprev = cells + (tp * B + bi) * H
            cell_backward_rows(H, gates + (t * B + bi) * G, cells + (t * B + bi) * H, cprev,
                               dmt + bi * H, dc + bi * H, dz + (t * B + bi) * G, m + bi * H,
                               peep, dpeep, identity)
        if P > 0:
            # dR += dh.T @ m   (P, H) += (P, B)(B, H)
            gemm(Trans, NoTrans, P, H, B, 1, dht, P, m, H, 1, dR, H)
        # dh_{t-1} = dz_t @ U   (B, Hout) = (B, 4H)(4H, Hout); inactive rows keep their carry.
        dst = dh if all_active else dhp
        if B * G * Hout <= SMALL_PRODUCT:
            gemm_small(B, Hout, G, dz + t * B * G, G, U, Hout, 0, dst, Hout)
        else:
            gemm(NoTrans, NoTrans, B, Hout, G, 1, dz + t * B * G, G, U, Hout, 0, dst, Hout)
        if not all_active:
            for bi in range(B):
                if t < lengths[bi]:
                    memcpy(dh + bi * Hout, dhp + bi * Hout, Hout * sizeof(floating))

    # dx += dz @ W   (T*B, I) += (T*B, 4H)(4H, I)
    gemm(NoTrans, NoTrans, T * B, I, G, 1, dz, G, W, I, 1, dx, I)
    # dW = dz.T @ x   (4H, I) = (4H, T*B)(T*B, I)
    gemm(Trans, NoTrans, G, I, T * B, 1, dz, G, x, I, 0, dW, I)
    # dU = sum_t dz_t.T @ h_{t-1}, where h_{t-1} is h0 on a row's first step and otherwise the
    # neighbouring output row of y (zero past a row's end, where dz is zero too).
    if not reverse:
        # dU = dz[0].T @ h0 + dz[1:].T @ y[:-1]
        gemm(Trans, NoTrans, G, Hout, B, 1, dz, G, h0, Hout, 0, dU, Hout)
        gemm(Trans, NoTrans, G, Hout, (T - 1) * B, 1, dz + B * G, G, y, ldy, 1, dU, Hout)
    else:
        # dU = sum_b dz[len_b - 1, b].T @ h0[b] + dz[:-1].T @ y[1:]   (gathered into dhp's twin)
        for bi in range(B):
            memcpy(dm + bi * G, dz + ((lengths[bi] - 1) * B + bi) * G, G * sizeof(floating))
        gemm(Trans, NoTrans, G, Hout, B, 1, dm, G, h0, Hout, 0, dU, Hout)
        gemm(Trans, NoTrans, G, Hout, (T - 1) * B, 1, dz, G, y + B * ldy, ldy, 1, dU, Hout)
    if db != NULL:
        # db = dz.sum(axis=0)
        memset(db, 0, G * sizeof(floating))
        for s in range(T * B):
            for j in range(G):
                db[j] += dz[s * G + j]


def backward(const floating[:, ::1] x, const floating[:, ::1] W, const floating[:, ::1] U,
             const floating[:, ::1] R, const floating[:, ::1] peep,
             const Py_ssize_t[::1] lengths, const floating[:, ::1] h0,
             const floating[:, ::1] c0, const floating[:, :, ::1] y, Py_ssize_t y_col,
             const floating[:, :, ::1] gates, const floating[:, :, ::1] cells,
             const floating[:, :, ::1] dy, Py_ssize_t dy_col,
             floating[:, ::1] dh, floating[:, ::1] dc, floating[:, ::1] dx,
             floating[:, ::1] dW, floating[:, ::1] dU, floating[::1] db,
             floating[:, ::1] dR, floating[:, ::1] dpeep, bint reverse, bint identity):
    """Backpropagation through time over one layer and direction.

    Inputs as for ``forward_train`` plus its outputs: y (T, B, ldy) with h_t in columns
    [y_col, y_col + Hout), gates (T, B, 4H), cells (T, B, H); dy (T, B, lddy) with the gradient
    of h_t in columns [dy_col, dy_col + Hout). dh (B, Hout) and dc (B, H) hold the gradient
    reaching the final state and receive the one reaching h0, c0. dx (T*B, I) is accumulated
    into (two directions share one input); dW, dU, db (4H,) or empty, dR (P, H) or empty and
    dpeep (3, H) are overwritten.
    """
    cdef Py_ssize_t B = dh.shape[0], H = dc.shape[1], P = R.shape[0], I = x.shape[1]
    cdef Py_ssize_t T = y.shape[0], Hout = dh.shape[1]
    dtype = np.asarray(dh).dtype
    cdef floating[:, :, ::1] dz = np.empty((T, B, 4 * H), dtype=dtype)
    cdef floating[:, ::1] dht = np.empty((B, Hout), dtype=dtype)
    cdef floating[:, ::1] dhp = np.empty((B, Hout), dtype=dtype)
    # dm doubles as the (B, 4H) gather buffer of the reverse direction's dU.
    cdef floating[:, ::1] dm = np.empty((B, 4 * H), dtype=dtype)
    cdef floating[:, ::1] m = np.empty((B, H), dtype=dtype)
    with nogil:
        backward_layer(T, B, I, H, P, &x[0, 0], &W[0, 0], &U[0, 0], ptr2(R), &peep[0, 0],
                       &lengths[0], &h0[0, 0], &c0[0, 0], &y[0, 0, y_col], y.shape[2],
                       &gates[0, 0, 0], &cells[0, 0, 0], &dy[0, 0, dy_col], dy.shape[2],
                       &dh[0, 0], &dc[0, 0], &dx[0, 0], &dW[0, 0], &dU[0, 0],
                       <floating *> ptr1(db), <floating *> ptr2(dR), &dpeep[0, 0],
                       &dz[0, 0, 0], &dht[0, 0], &dm[0, 0], &m[0, 0], &dhp[0, 0],
                       reverse, identity)


def activations(const floating[::1] x, floating[::1] sig, floating[::1] th):
    """sig = sigmoid(x), th = tanh(x) with the kernels' own functions (for accuracy tests)."""
    cdef Py_ssize_t k
    with nogil:
        for k in range(x.shape[0]):
            sig[k] = sigmoid(x[k])
            th[k] = tanh_(x[k])
