# The element-wise steps of the regularised cell (zoneout, layer norm, cell clip), one row at a time.
#
# Included by _kernels.pyx (so compiled once per kernel variant). The maths is in
# docs/equations.md ("Regularisation and layer normalisation"); lstmx/reference_regularised.py
# has it line for line.

from libc.math cimport INFINITY, sqrt

cdef enum:
    # Statistics of a layer-norm row: rstd of x W^T, of h U^T and of c~_t.
    LN_STATS = 3

# As torch.nn.LayerNorm.
cdef double LN_EPS = 1e-5

cdef extern from *:
    """
    /* n, as a value the compiler cannot see through (an empty asm reads and writes it). */
    static inline Py_ssize_t lstmx_opaque_count(Py_ssize_t n)
    {
        __asm__("" : "+r"(n));
        return n;
    }
    """
    Py_ssize_t opaque_count "lstmx_opaque_count"(Py_ssize_t n) noexcept nogil


cdef extern from "_lane_sums.h":
    # Lanes of a row's sums: element j adds into lane j % SUM_LANES, and the lanes add up
    # pairwise at the end. A fixed order (the same bits on every run and team) in vector
    # registers; one running sum would chain every add on the last. On AVX-512 the groups of
    # 8 are summed in C (_lane_sums.h: LANE_SUMS_VECTOR), elsewhere by the loops below, which
    # GCC vectorises there; the rest of a row here.
    enum: SUM_LANES "LSTMX_LANES"
    enum: LANE_SUMS_VECTOR "LSTMX_LANE_SUMS_VECTOR"
    void shifted_sums_f "lstmx_shifted_sums_f"(Py_ssize_t n8, const float *v, double shift,
                                                double *s1, double *s2) noexcept nogil
    void shifted_sums_d "lstmx_shifted_sums_d"(Py_ssize_t n8, const double *v, double shift,
                                                double *s1, double *s2) noexcept nogil
    void product_sums_f "lstmx_product_sums_f"(Py_ssize_t n8, const float *a, const float *b,
                                                const float *c, double *s1,
                                                double *s2) noexcept nogil
    void product_sums_d "lstmx_product_sums_d"(Py_ssize_t n8, const double *a,
                                                const double *b, const double *c, double *s1,
                                                double *s2) noexcept nogil


cdef inline void shifted_sums(Py_ssize_t n8, const floating *v, double shift, double *s1,
                              double *s2) noexcept nogil:
    """Lane k of s1 and s2 := the sums of v[j] - shift and of its square over j < n8,
    j = k (mod SUM_LANES)."""
    cdef Py_ssize_t j, k
    cdef double d
    if LANE_SUMS_VECTOR:
        if floating is float:
            shifted_sums_f(n8, v, shift, s1, s2)
        else:
            shifted_sums_d(n8, v, shift, s1, s2)
        return
    for k in range(SUM_LANES):
        s1[k] = 0
        s2[k] = 0
    for j in range(0, n8, 8):  # SUM_LANES
        for k in range(SUM_LANES):
            d = <double> v[j + k] - shift
            s1[k] += d
            s2[k] += d * d


cdef inline void product_sums(Py_ssize_t n8, const floating *a, const floating *b,
                              const floating *c, double *s1, double *s2) noexcept nogil:
    """Lane k of s1 and s2 := the sums of p = double(a[j] * b[j]) and of p * c[j] over
    j < n8, j = k (mod SUM_LANES)."""
    cdef Py_ssize_t j, k
    cdef double p
    if LANE_SUMS_VECTOR:
        if floating is float:
            product_sums_f(n8, a, b, c, s1, s2)
        else:
            product_sums_d(n8, a, b, c, s1, s2)
        return
    for k in range(SUM_LANES):
        s1[k] = 0
        s2[k] = 0
    for j in range(0, n8, 8):  # SUM_LANES
        for k in range(SUM_LANES):
            p = <double> (a[j + k] * b[j + k])
            s1[k] += p
            s2[k] += p * c[j + k]


cdef inline double lane_total(const double *acc) noexcept nogil:
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))


cdef inline double row_moments(Py_ssize_t n, const floating *v, double *rstd) noexcept nogil:
    """The mean of a row of n elements, and in ``rstd`` 1 / sqrt(var + eps) (biased variance).
    One pass in double over the row shifted by its first element, so that the sums cancel
    no more than the row's own spread around that element does."""
    cdef double acc1[SUM_LANES]
    cdef double acc2[SUM_LANES]
    cdef double d, s1, s2, shift = v[0]
    cdef Py_ssize_t j, n8 = n - n % SUM_LANES
    shifted_sums(n8, v, shift, acc1, acc2)
    for j in range(n8, n):
        d = <double> v[j] - shift
        acc1[j - n8] += d
        acc2[j - n8] += d * d
    s1 = lane_total(acc1) / n
    s2 = lane_total(acc2) / n - s1 * s1
    rstd[0] = 1.0 / sqrt((s2 if s2 > 0 else 0) + LN_EPS)
    return shift + s1


cdef inline void layer_norm_gates(
        Py_ssize_t G, floating *zx, floating *zh, const floating *gamma_x,
        const floating *gamma_h, const floating *beta, floating *z,
        floating *stats) noexcept nogil:
    """z = LN(zx; gamma_x) + LN(zh; gamma_h) + beta for one row of G = 4H, ``beta`` the sum
    of both LNs' betas and the biases; zx and zh receive their normalised values, stats[0]
    and stats[1] their 1 / std. One pass over the row for the statistics, one for the rest."""
    cdef double rx, rh
    cdef double mx = row_moments(G, zx, &rx)
    cdef double mh = row_moments(G, zh, &rh)
    cdef floating xhat, hhat
    cdef Py_ssize_t j
    for j in range(G):
        xhat = <floating> ((zx[j] - mx) * rx)
        hhat = <floating> ((zh[j] - mh) * rh)
        zx[j] = xhat
        zh[j] = hhat
        z[j] = gamma_x[j] * xhat + gamma_h[j] * hhat + beta[j]
    stats[0] = <floating> rx
    stats[1] = <floating> rh


cdef inline void normalise_backward(Py_ssize_t n, const floating *d_out, const floating *v_hat,
                                    floating rstd, const floating *gamma, floating *d_gamma,
                                    floating *d_beta, floating *dv) noexcept nogil:
    """Backward of LN(v) = gamma * v_hat + beta for one row: dv receives the gradient of v;
    d_gamma and d_beta accumulate (d_beta may be NULL). d_out and dv may be one array."""
    cdef Py_ssize_t j, n8 = n - n % SUM_LANES
    cdef double acc1[SUM_LANES]
    cdef double acc2[SUM_LANES]
    cdef double dh, s1, s2
    if d_beta != NULL:
        for j in range(n):
            d_beta[j] += d_out[j]
    for j in range(n):
        d_gamma[j] += d_out[j] * v_hat[j]
    # s1 = mean(d_out * gamma), s2 = mean(d_out * gamma * v_hat)
    product_sums(n8, d_out, gamma, v_hat, acc1, acc2)
    for j in range(n8, n):
        dh = <double> (d_out[j] * gamma[j])
        acc1[j - n8] += dh
        acc2[j - n8] += dh * v_hat[j]
    s1 = lane_total(acc1) / n
    s2 = lane_total(acc2) / n
    for j in range(n):
        dv[j] = <floating> (rstd * (d_out[j] * gamma[j] - s1 - v_hat[j] * s2))


cdef inline void layer_norm_gates_backward(
        Py_ssize_t G, const floating *dz, const floating *xhat, const floating *hhat,
        floating rx, floating rh, const floating *gamma_x, const floating *gamma_h,
        floating *d_gamma_x, floating *d_gamma_h, floating *d_beta, floating *dzx,
        floating *dzh) noexcept nogil:
    """Backward of layer_norm_gates for one row: dzx and dzh receive the gradients of its
    zx and zh from dz, the gradient of z; d_gamma_x, d_gamma_h and d_beta accumulate (both
    betas and the biases have the gradient d_beta). As normalise_backward for two rows
    that share d_out, in two or three passes over them rather than six; dz, dzx and dzh
    are distinct rows."""
    cdef Py_ssize_t j, k, n8 = G - G % SUM_LANES
    cdef double ax1[SUM_LANES]
    cdef double ax2[SUM_LANES]
    cdef double ah1[SUM_LANES]
    cdef double ah2[SUM_LANES]
    cdef double dx, dh, sx1, sx2, sh1, sh2
    if LANE_SUMS_VECTOR:
        product_sums(n8, dz, gamma_x, xhat, ax1, ax2)
        product_sums(n8, dz, gamma_h, hhat, ah1, ah2)
    else:
        # Both rows' sums in one pass over dz (the lanes as in product_sums).
        for k in range(SUM_LANES):
            ax1[k] = 0
            ax2[k] = 0
            ah1[k] = 0
            ah2[k] = 0
        for j in range(0, n8, 8):  # SUM_LANES
            for k in range(SUM_LANES):
                dx = <double> (dz[j + k] * gamma_x[j + k])
                dh = <double> (dz[j + k] * gamma_h[j + k])
                ax1[k] += dx
                ax2[k] += dx * xhat[j + k]
                ah1[k] += dh
                ah2[k] += dh * hhat[j + k]
    for j in range(n8, G):
        dx = <double> (dz[j] * gamma_x[j])
        dh = <double> (dz[j] * gamma_h[j])
        ax1[j - n8] += dx
        ax2[j - n8] += dx * xhat[j]
        ah1[j - n8] += dh
        ah2[j - n8] += dh * hhat[j]
    sx1 = lane_total(ax1) / G
    sx2 = lane_total(ax2) / G
    sh1 = lane_total(ah1) / G
    sh2 = lane_total(ah2) / G
    # The parameters' gradients accumulate here, not in the loop of the sums, whose lanes
    # stores would keep in memory.
    for j in range(G):
        d_beta[j] += dz[j]
        d_gamma_x[j] += dz[j] * xhat[j]
        d_gamma_h[j] += dz[j] * hhat[j]
        dzx[j] = <floating> (rx * (dz[j] * gamma_x[j] - sx1 - xhat[j] * sx2))
        dzh[j] = <floating> (rh * (dz[j] * gamma_h[j] - sh1 - hhat[j] * sh2))


cdef inline void candidate_cell(Py_ssize_t n, Py_ssize_t H, floating *gates, const floating *c,
                                floating *ctil, const floating *peep,
                                floating lim) noexcept nogil:
    """Units [0, n) of a row: pre-activations i, f, g in ``gates`` (H apart) become the gates,
    and ``ctil`` receives c~_t = f * c_{t-1} + i * g clipped to [-lim, lim]."""
    cdef Py_ssize_t j
    cdef floating i, f, g, cp, ct
    for j in range(n):
        cp = c[j]
        i = sigmoid(gates[j] + peep[j] * cp)
        f = sigmoid(gates[H + j] + peep[H + j] * cp)
        g = tanh_(gates[2 * H + j])
        gates[j] = i
        gates[H + j] = f
        gates[2 * H + j] = g
        ct = f * cp + i * g
        ctil[j] = lim if ct > lim else (-lim if ct < -lim else ct)


cdef inline void normalised_output(Py_ssize_t n, Py_ssize_t H, floating *gates,
                                   const floating *ctil, floating *chat, floating *m,
                                   const floating *peep, const floating *ln_c, double mean,
                                   double rstd, bint identity) noexcept nogil:
    """Units [0, n) of a row: chat = (c~_t - mean) * rstd, the output gate o in gates' fourth
    block (its peephole reads the raw, clipped cell, not its normalisation), and
    m = o * act(gamma * chat + beta), ``ln_c`` = [gamma; beta] (H apart, as the gates)."""
    cdef Py_ssize_t j
    cdef floating ct, o, v, a
    for j in range(n):
        ct = ctil[j]
        chat[j] = <floating> ((ct - mean) * rstd)
        o = sigmoid(gates[3 * H + j] + peep[2 * H + j] * ct)
        gates[3 * H + j] = o
        v = ln_c[j] * chat[j] + ln_c[H + j]
        a = v if identity else tanh_(v)
        m[j] = o * a


cdef void candidate_cell_apart(Py_ssize_t n, Py_ssize_t H, floating *gates, const floating *c,
                               floating *ctil, const floating *peep,
                               floating lim) noexcept nogil:
    """candidate_cell in a function of its own (layer_norm_window)."""
    candidate_cell(n, H, gates, c, ctil, peep, lim)


cdef void normalised_output_apart(Py_ssize_t n, Py_ssize_t H, floating *gates,
                                  const floating *ctil, floating *chat, floating *m,
                                  const floating *peep, const floating *ln_c, double mean,
                                  double rstd, bint identity) noexcept nogil:
    """normalised_output in a function of its own (layer_norm_window)."""
    normalised_output(n, H, gates, ctil, chat, m, peep, ln_c, mean, rstd, identity)


cdef void layer_norm_row(
        Py_ssize_t H, floating *gates, floating *c, floating *ctil, floating *m, floating *chat,
        floating *rstd_c, const floating *peep, const floating *ln_c, floating lim,
        bint identity) noexcept nogil:
    """The layer-norm cell (cell_forward_regularised) on a row of H units without a window;
    zoneout is the caller's. A function of its own: with its loops inlined in
    cell_forward_regularised beside layer_norm_window's call, GCC stopped inlining their
    activations, and layer-norm forward at M ran 1.4 times as long."""
    cdef double mean, rstd
    candidate_cell(H, H, gates, c, ctil, peep, lim)
    mean = row_moments(H, ctil, &rstd)
    rstd_c[0] = <floating> rstd
    normalised_output(H, H, gates, ctil, chat, m, peep, ln_c, mean, rstd, identity)


cdef void layer_norm_window(
        Py_ssize_t H, floating *gates, floating *c, floating *ctil, floating *m, floating *chat,
        floating *rstd_c, const floating *peep, const floating *ln_c, floating lim,
        bint identity) noexcept nogil:
    """The layer-norm cell (cell_forward_regularised) on a row whose last units its two
    loops over units (before and after the row's statistics) would leave to scalar code
    (window_tail): they run as the row's last whole vector, in a buffer of V units copied in
    before the row's whole vectors run and back after, as cell_forward_window does (the same
    operations on the same values). Zoneout is the caller's.

    The loops run out of line, and the window's on a count the compiler does not see as V:
    with all four inlined, GCC stopped inlining the activations into them, and with V known
    it unrolled the window's into scalar code."""
    cdef Py_ssize_t V = VECTOR_BYTES // sizeof(floating)
    cdef Py_ssize_t head = H - H % V, w = H - V, k
    cdef double mean, rstd
    # candidate_cell: gates i, f, g at 0, V, 2 V, c_{t-1} at 4 V, c~_t at 5 V, the
    # peepholes i, f at 6 V, 7 V. normalised_output: gate o at 3 V, c~_t at 4 V, chat at 5 V,
    # m at 7 V, the peepholes at 6 V (p_o at 8 V), gamma and beta at 0 and V. V is at most 16.
    cdef floating buf[9 * 16]
    for k in range(3):
        memcpy(buf + k * V, gates + k * H + w, V * sizeof(floating))
    memcpy(buf + 4 * V, c + w, V * sizeof(floating))
    memcpy(buf + 6 * V, peep + w, V * sizeof(floating))
    memcpy(buf + 7 * V, peep + H + w, V * sizeof(floating))
    candidate_cell_apart(head, H, gates, c, ctil, peep, lim)
    candidate_cell_apart(opaque_count(V), V, buf, buf + 4 * V, buf + 5 * V, buf + 6 * V, lim)
    for k in range(3):
        memcpy(gates + k * H + w, buf + k * V, V * sizeof(floating))
    memcpy(ctil + w, buf + 5 * V, V * sizeof(floating))
    mean = row_moments(H, ctil, &rstd)
    rstd_c[0] = <floating> rstd
    memcpy(buf + 3 * V, gates + 3 * H + w, V * sizeof(floating))
    memcpy(buf + 4 * V, ctil + w, V * sizeof(floating))
    memcpy(buf + 8 * V, peep + 2 * H + w, V * sizeof(floating))
    memcpy(buf, ln_c + w, V * sizeof(floating))
    memcpy(buf + V, ln_c + H + w, V * sizeof(floating))
    normalised_output_apart(head, H, gates, ctil, chat, m, peep, ln_c, mean, rstd, identity)
    normalised_output_apart(opaque_count(V), V, buf, buf + 4 * V, buf + 5 * V, buf + 7 * V,
                            buf + 6 * V, buf, mean, rstd, identity)
    memcpy(gates + 3 * H + w, buf + 3 * V, V * sizeof(floating))
    memcpy(chat + w, buf + 5 * V, V * sizeof(floating))
    memcpy(m + w, buf + 7 * V, V * sizeof(floating))


cdef void cell_forward_regularised(
        Py_ssize_t nu, Py_ssize_t H, floating *gates, floating *c, floating *ctil, floating *m,
        floating *chat, floating *rstd_c, const floating *peep, const floating *ln_c,
        const floating *keep, floating p_keep, floating clip, bint identity) noexcept nogil:
    """Units [0, nu) of one row of one step (the gates of a unit are H apart, as in
    cell_forward_rows; with layer norm, which reads the whole row, nu = H): pre-activations
    in ``gates`` become the gates i, f, g, o; ``c`` holds c_{t-1} and receives c_t after
    zoneout; ``ctil`` receives the cell's own c~_t (clipped to [-clip, clip] when clip > 0);
    ``m`` receives o * act(n), n = LN(c~_t) with ``ln_c`` = [gamma; beta] (2, H) or c~_t
    when NULL, in which case ``chat`` (receiving the normalised c~_t) and ``rstd_c`` are
    unused. Zoneout keeps c_{t-1} with weight ``keep[j]`` (a 0/1 mask), or ``p_keep`` when
    ``keep`` is NULL (inference's expectation). ``peep`` is zeros without peepholes, as in
    cell_forward_rows. The options' conditions are outside the loops (or, the clip, a
    select), so that each loop vectorises; a unit's results do not depend on nu. A row whose
    last units would be left to scalar code runs them as a vector, as cell_forward_rows
    does (regularised_window; with layer norm, layer_norm_window)."""
    cdef Py_ssize_t j
    cdef floating o, ct, a
    # No clip is a clip at infinity (a NaN stays NaN either way).
    cdef floating lim = clip if clip > 0 else <floating> INFINITY
    if ln_c == NULL and window_tail(nu, sizeof(floating), 3):
        regularised_window(nu, H, gates, c, ctil, m, peep, keep, p_keep, clip, identity)
        return
    if ln_c != NULL and window_tail(H, sizeof(floating), 5):
        layer_norm_window(H, gates, c, ctil, m, chat, rstd_c, peep, ln_c, lim, identity)
    elif ln_c != NULL:
        layer_norm_row(H, gates, c, ctil, m, chat, rstd_c, peep, ln_c, lim, identity)
    else:
        candidate_cell(nu, H, gates, c, ctil, peep, lim)
        for j in range(nu):
            ct = ctil[j]
            o = sigmoid(gates[3 * H + j] + peep[2 * H + j] * ct)
            gates[3 * H + j] = o
            a = ct if identity else tanh_(ct)
            m[j] = o * a
    # c_t = keep * c_{t-1} + (1 - keep) * c~_t   (zoneout)
    if keep != NULL:
        for j in range(nu):
            c[j] = keep[j] * c[j] + (1 - keep[j]) * ctil[j]
    elif p_keep == 0:
        memcpy(c, ctil, nu * sizeof(floating))
    else:
        for j in range(nu):
            c[j] = p_keep * c[j] + (1 - p_keep) * ctil[j]


cdef void regularised_window(
        Py_ssize_t nu, Py_ssize_t H, floating *gates, floating *c, floating *ctil, floating *m,
        const floating *peep, const floating *keep, floating p_keep, floating clip,
        bint identity) noexcept nogil:
    """cell_forward_regularised without layer norm on a row whose last units window_tail
    would leave to scalar code: its last V units (V a vector) run as one vector in a buffer,
    copied before the row's whole vectors run, as cell_forward_window does for the plain
    cell (the same operations on the same values, so the same bits)."""
    cdef Py_ssize_t V = VECTOR_BYTES // sizeof(floating)
    cdef Py_ssize_t tail = nu % V, w = nu - V, g
    # gates (4 V), c (V), ctil (V), m (V), peep (3 V), keep (V); V is at most 16
    cdef floating buf[11 * 16]
    for g in range(4):
        memcpy(buf + g * V, gates + g * H + w, V * sizeof(floating))
    memcpy(buf + 4 * V, c + w, V * sizeof(floating))
    for g in range(3):
        memcpy(buf + (7 + g) * V, peep + g * H + w, V * sizeof(floating))
    if keep != NULL:
        memcpy(buf + 10 * V, keep + w, V * sizeof(floating))
    cell_forward_regularised(nu - tail, H, gates, c, ctil, m, NULL, NULL, peep, NULL, keep,
                             p_keep, clip, identity)
    cell_forward_regularised(V, V, buf, buf + 4 * V, buf + 5 * V, buf + 6 * V, NULL, NULL,
                             buf + 7 * V, NULL, buf + 10 * V if keep != NULL else NULL, p_keep,
                             clip, identity)
    for g in range(4):
        memcpy(gates + g * H + w, buf + g * V, V * sizeof(floating))
    memcpy(c + w, buf + 4 * V, V * sizeof(floating))
    memcpy(ctil + w, buf + 5 * V, V * sizeof(floating))
    memcpy(m + w, buf + 6 * V, V * sizeof(floating))


cdef void cell_backward_regularised(
        Py_ssize_t nu, Py_ssize_t H, const floating *gates, const floating *ctil,
        const floating *cp_, const floating *chat, floating rstd_c, const floating *dm,
        floating *dc, const floating *keep, floating *dz, floating *m, const floating *peep,
        floating *dpeep, const floating *ln_c, floating *dln_c, floating *dn,
        floating clip, bint identity) noexcept nogil:
    """Backward of cell_forward_regularised for units [0, nu) of one row of one step (nu = H
    with layer norm).

    ``dc`` holds the gradient reaching c_t (after zoneout) and receives the one reaching
    c_{t-1}; ``dz`` receives [dz_i | dz_f | dz_g | dz_o] (before the layer norms of the
    products); ``m`` receives m_t (for dR); ``dpeep`` and ``dln_c`` (2, H) accumulate;
    ``dn`` is scratch (nu,). ``keep`` is the zoneout mask of c or NULL (no zoneout)."""
    cdef Py_ssize_t j
    cdef floating i, f, g, o, ct, cp, n, a, dact, dzi, dzf, dzg, dzo, dcj, kd
    cdef bint clipping = clip > 0
    if ln_c == NULL:
        # Without layer norm no unit reads another: one loop. (The three below store and
        # reload dn, dc and dz_o once more a unit, which costs the regularised cell about
        # as much as its arithmetic.) No zoneout keeps zeros of c_{t-1}: dn, free here.
        if keep == NULL:
            memset(dn, 0, nu * sizeof(floating))
            keep = dn
        for j in range(nu):
            i = gates[j]
            f = gates[H + j]
            g = gates[2 * H + j]
            o = gates[3 * H + j]
            ct = ctil[j]
            cp = cp_[j]
            a = ct if identity else tanh_(ct)
            dact = 1 if identity else 1 - a * a
            dzo = dm[j] * a * o * (1 - o)
            # (1 - keep) dc reaches c~_t; keep * dc reaches c_{t-1}   (zoneout)
            kd = keep[j] * dc[j]
            dcj = dm[j] * o * dact + (dc[j] - kd) + dzo * peep[2 * H + j]
            # No gradient through an active clip (nor through a NaN cell).
            dcj = dcj if (not clipping or (ct < clip and ct > -clip)) else 0
            dzi = dcj * g * i * (1 - i)
            dzf = dcj * cp * f * (1 - f)
            dzg = dcj * i * (1 - g * g)
            dc[j] = kd + (dcj * f + dzi * peep[j] + dzf * peep[H + j])
            dpeep[j] += dzi * cp
            dpeep[H + j] += dzf * cp
            dpeep[2 * H + j] += dzo * ct
            dz[j] = dzi
            dz[H + j] = dzf
            dz[2 * H + j] = dzg
            dz[3 * H + j] = dzo
            m[j] = o * a
        return
    for j in range(nu):
        o = gates[3 * H + j]
        n = ln_c[j] * chat[j] + ln_c[H + j]
        a = n if identity else tanh_(n)
        dact = 1 if identity else 1 - a * a
        dz[3 * H + j] = dm[j] * a * o * (1 - o)
        dn[j] = dm[j] * o * dact
        m[j] = o * a
    # dn := the gradient reaching c~_t through LN(c~_t)
    normalise_backward(H, dn, chat, rstd_c, ln_c, dln_c, dln_c + H, dn)
    # Zoneout: (1 - keep) dc reaches c~_t (into dn); keep * dc reaches c_{t-1} (left in dc).
    if keep != NULL:
        for j in range(nu):
            kd = keep[j] * dc[j]
            dn[j] += dc[j] - kd
            dc[j] = kd
    else:
        for j in range(nu):
            dn[j] += dc[j]
            dc[j] = 0
    for j in range(nu):
        i = gates[j]
        f = gates[H + j]
        g = gates[2 * H + j]
        ct = ctil[j]
        cp = cp_[j]
        dzo = dz[3 * H + j]
        dcj = dn[j] + dzo * peep[2 * H + j]
        # No gradient through an active clip (nor through a NaN cell).
        dcj = dcj if (not clipping or (ct < clip and ct > -clip)) else 0
        dzi = dcj * g * i * (1 - i)
        dzf = dcj * cp * f * (1 - f)
        dzg = dcj * i * (1 - g * g)
        dc[j] += dcj * f + dzi * peep[j] + dzf * peep[H + j]
        dpeep[j] += dzi * cp
        dpeep[H + j] += dzf * cp
        dpeep[2 * H + j] += dzo * ct
        dz[j] = dzi
        dz[H + j] = dzf
        dz[2 * H + j] = dzg


cdef void scale_elements(Py_ssize_t n, const floating *a, const floating *mask,
                         floating *out) noexcept nogil:
    """out := a * mask (n elements): dropout between layers, forward and backward."""
    cdef Py_ssize_t j
    for j in range(n):
        out[j] = a[j] * mask[j]
