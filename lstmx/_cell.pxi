# The cell's element-wise steps, forward and backward, for a range of hidden units of one row.
#
# Included by _kernels.pyx (so compiled once per kernel variant). The maths is in
# docs/equations.md ("One time step", "Backward, one time step").


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
    split in two the same work takes less time (docs/performance.md).

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
    """Backward of units [0, n) of one row of one step (docs/equations.md, "Backward, one time step");
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

