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

    One activation a loop, each over the row's units: the loop of a sigmoid or a tanh keeps
    its constants in registers, where one loop of all five spilled them and ran at half the
    speed of its parts (docs/performance.md). The row (4n floats) stays in L1 between loops.

    ``peep`` = [p_i | p_f | p_o] is zeros without peepholes: adding p * c costs one
    multiply-add a gate. ``lean`` (no peepholes) skips it, with the same bits: z + 0 * c is z.
    """
    cdef Py_ssize_t j
    cdef floating *zi = gates
    cdef floating *zf = gates + H
    cdef floating *zg = gates + 2 * H
    cdef floating *zo = gates + 3 * H
    if lean:
        for j in range(n):
            zi[j] = sigmoid(zi[j])
        for j in range(n):
            zf[j] = sigmoid(zf[j])
    else:
        for j in range(n):
            zi[j] = sigmoid(zi[j] + peep[j] * c[j])
        for j in range(n):
            zf[j] = sigmoid(zf[j] + peep[H + j] * c[j])
    for j in range(n):
        zg[j] = tanh_(zg[j])
    for j in range(n):
        c[j] = zf[j] * c[j] + zi[j] * zg[j]
    if lean:
        for j in range(n):
            zo[j] = sigmoid(zo[j])
    else:
        for j in range(n):
            zo[j] = sigmoid(zo[j] + peep[2 * H + j] * c[j])
    if identity:
        for j in range(n):
            m[j] = zo[j] * c[j]
    else:
        for j in range(n):
            m[j] = zo[j] * tanh_(c[j])


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

    act(c_t) is computed first, in a loop of its own (into dz_o's place, which the main loop
    reads and then overwrites): as in forward, a tanh in the long loop spilled its constants.
    """
    cdef Py_ssize_t j
    cdef floating i, f, g, o, ct, cp, a, dact, dzi, dzf, dzg, dzo, dcj
    if not identity:
        for j in range(n):
            dz[3 * H + j] = tanh_(ct_[j])
    if lean:
        for j in range(n):
            i = gates[j]
            f = gates[H + j]
            g = gates[2 * H + j]
            o = gates[3 * H + j]
            ct = ct_[j]
            cp = cp_[j]
            a = ct if identity else dz[3 * H + j]
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
        a = ct if identity else dz[3 * H + j]
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

