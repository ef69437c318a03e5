# The cell's element-wise steps, forward and backward, for a range of hidden units of one row.
#
# Included by _kernels.pyx (so compiled once per kernel variant). The maths is in
# docs/equations.md ("One time step", "Backward, one time step").


cdef inline Py_ssize_t length(const Py_ssize_t *lengths, Py_ssize_t b, Py_ssize_t T) noexcept nogil:
    """The valid steps of batch row b (all T when ``lengths`` is NULL)."""
    return T if lengths == NULL else lengths[b]


cdef extern from "_vector_width.h":
    enum: VECTOR_BYTES "LSTMX_VECTOR_BYTES"


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

    A row whose last units would be left to scalar code runs them as a vector
    (cell_forward_window).
    """
    cdef Py_ssize_t j
    cdef floating *zi = gates
    cdef floating *zf = gates + H
    cdef floating *zg = gates + 2 * H
    cdef floating *zo = gates + 3 * H
    if window_tail(n, sizeof(floating), 3):
        cell_forward_window(n, H, gates, c, m, peep, lean, identity)
        return
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


cdef inline bint window_tail(Py_ssize_t n, Py_ssize_t size, Py_ssize_t least) noexcept nogil:
    """Whether a row of n units of ``size`` bytes should run its last units in a window (a
    buffer of one vector, V units): when the row has a whole vector and its loops would
    leave ``least`` units or more to scalar code. GCC runs a loop's whole vectors, then one
    vector of half the width, then single units: n % V % (V / 2) of them. Below ``least``,
    the window's copies and its second pass over the loops cost about what it saves: 3 units
    for the plain and regularised cells, 5 for the layer-norm cell, whose two loops a window
    splits in four (docs/performance.md)."""
    cdef Py_ssize_t V = VECTOR_BYTES // size
    return n >= V and n % V % (V // 2) >= least


cdef void cell_forward_window(
        Py_ssize_t n, Py_ssize_t H, floating *gates, floating *c, floating *m,
        const floating *peep, bint lean, bint identity) noexcept nogil:
    """cell_forward_rows on a row whose last units (n % V, V a vector) the loops would leave
    to half a vector and scalar code (window_tail): runs them as the last whole vector of
    the row instead.

    Scalar activations cost several times a vector's (docs/performance.md, "the shape
    sweep on the AVX-512 build"). Here the row's last V units are copied into a buffer
    before the row's whole vectors run, and run there as one vector. The units they share
    with the whole vectors get the same operations on the same values, so writing them back
    twice changes nothing. Copies of a fixed size compile to vector moves.
    """
    cdef Py_ssize_t V = VECTOR_BYTES // sizeof(floating)
    cdef Py_ssize_t tail = n % V, w = n - V, g
    # gates (4 V), c (V), m (V), peep (3 V); V is at most 16 (float, 64-byte vectors)
    cdef floating buf[10 * 16]
    for g in range(4):
        memcpy(buf + g * V, gates + g * H + w, V * sizeof(floating))
    memcpy(buf + 4 * V, c + w, V * sizeof(floating))
    if not lean:
        for g in range(3):
            memcpy(buf + (6 + g) * V, peep + g * H + w, V * sizeof(floating))
    cell_forward_rows(n - tail, H, gates, c, m, peep, lean, identity)
    cell_forward_rows(V, V, buf, buf + 4 * V, buf + 5 * V, buf + 6 * V, lean, identity)
    for g in range(4):
        memcpy(gates + g * H + w, buf + g * V, V * sizeof(floating))
    memcpy(c + w, buf + 4 * V, V * sizeof(floating))
    memcpy(m + w, buf + 5 * V, V * sizeof(floating))


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

