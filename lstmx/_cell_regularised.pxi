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


cdef inline floating normalise(Py_ssize_t n, floating *v) noexcept nogil:
    """v := (v - mean(v)) / sqrt(var(v) + eps) in place (biased variance); returns the
    reciprocal standard deviation. Sums in double: a row of 4H floats is long."""
    cdef Py_ssize_t j
    cdef double mean = 0, var = 0, dv
    for j in range(n):
        mean += v[j]
    mean /= n
    for j in range(n):
        dv = v[j] - mean
        var += dv * dv
    cdef double rstd = 1.0 / sqrt(var / n + LN_EPS)
    for j in range(n):
        v[j] = <floating> ((v[j] - mean) * rstd)
    return <floating> rstd


cdef inline void normalise_backward(Py_ssize_t n, const floating *d_out, const floating *v_hat,
                                    floating rstd, const floating *gamma, floating *d_gamma,
                                    floating *d_beta, floating *dv) noexcept nogil:
    """Backward of LN(v) = gamma * v_hat + beta for one row: dv receives the gradient of v;
    d_gamma and d_beta accumulate (d_beta may be NULL)."""
    cdef Py_ssize_t j
    cdef double s1 = 0, s2 = 0
    cdef floating dh
    for j in range(n):
        dh = d_out[j] * gamma[j]
        s1 += dh
        s2 += dh * v_hat[j]
        d_gamma[j] += d_out[j] * v_hat[j]
        if d_beta != NULL:
            d_beta[j] += d_out[j]
    s1 /= n
    s2 /= n
    for j in range(n):
        dv[j] = <floating> (rstd * (d_out[j] * gamma[j] - s1 - v_hat[j] * s2))


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
    select), so that each loop vectorises; a unit's results do not depend on nu."""
    cdef Py_ssize_t j
    cdef floating i, f, g, o, cp, ct, n, a
    # No clip is a clip at infinity (a NaN stays NaN either way).
    cdef floating lim = clip if clip > 0 else <floating> INFINITY
    for j in range(nu):
        cp = c[j]
        i = sigmoid(gates[j] + peep[j] * cp)
        f = sigmoid(gates[H + j] + peep[H + j] * cp)
        g = tanh_(gates[2 * H + j])
        gates[j] = i
        gates[H + j] = f
        gates[2 * H + j] = g
        ct = f * cp + i * g
        ctil[j] = lim if ct > lim else (-lim if ct < -lim else ct)
    if ln_c != NULL:
        memcpy(chat, ctil, H * sizeof(floating))
        rstd_c[0] = normalise(H, chat)
        for j in range(H):
            ct = ctil[j]
            # The output gate's peephole reads the raw (clipped) cell, not its normalisation.
            o = sigmoid(gates[3 * H + j] + peep[2 * H + j] * ct)
            gates[3 * H + j] = o
            n = ln_c[j] * chat[j] + ln_c[H + j]
            a = n if identity else tanh_(n)
            m[j] = o * a
    else:
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
    else:
        for j in range(nu):
            c[j] = p_keep * c[j] + (1 - p_keep) * ctil[j]


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
