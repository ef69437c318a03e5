# Layer drivers, one thread: a layer and direction over a sequence, forward and backward (BPTT).
#
# Included by _kernels.pyx. The products run on BLAS, on gemm_small, or on the in-house
# gemm_packed (AVX2 and AVX-512 builds), as the entry points decide (see Shapes).


cdef void input_projection(
        Py_ssize_t rows, Py_ssize_t I, Py_ssize_t H, const floating *x, const floating *W,
        const floating *Wp, const floating *b_ih, const floating *b_hh, floating *bias,
        floating *z, bint one_thread) noexcept nogil:
    """z = x @ W.T + b_ih + b_hh for a block of ``rows`` rows (no bias when NULL); ``bias``
    is scratch for the (4H,) sum of the two. With ``Wp`` = W.T packed as one group of 4H
    columns (AVX2 and AVX-512 builds), by gemm_packed (which starts from the bias) rather
    than BLAS, on the OpenMP threads unless ``one_thread``.

    forward_layer's training pass asks for one thread: backward_layer, which follows it,
    calls OpenBLAS, and on few cores an OpenMP team and OpenBLAS's threads, each spinning
    after its work, slow each other down, many times over on 2 threads
    (docs/performance.md)."""
    cdef Py_ssize_t r, j, G = 4 * H
    if b_ih != NULL:
        for j in range(G):
            bias[j] = b_ih[j] + b_hh[j]
    # z += x @ W.T   (rows, 4H) += (rows, I)(I, 4H)
    if Wp != NULL:
        gemm_packed_parallel(rows, I, x, I, Wp, 1, G, False, z, G,
                             bias if b_ih != NULL else NULL, 1 if one_thread else max_threads())
        return
    if b_ih != NULL:
        for r in range(rows):
            memcpy(z + r * G, bias, G * sizeof(floating))
    gemm(NoTrans, Trans, rows, G, I, 1, x, I, W, I, 1 if b_ih != NULL else 0, z, G)


cdef inline void input_projection_share(
        Py_ssize_t rows, Py_ssize_t part, Py_ssize_t parts, Py_ssize_t I, Py_ssize_t H,
        Py_ssize_t groups, const floating *x, const floating *Wp, const floating *bias,
        floating *z) noexcept nogil:
    """z = x @ W.T (+ bias unless NULL) for part ``part`` of ``parts`` of a chunk's ``rows``
    rows (x (rows, I), z (rows, 4H), W.T packed in ``groups`` groups of 4H / groups
    columns: 4 by gate, 1 whole), as row_share splits them.

    A team of rows splits the chunk's product, all its steps, not each step's rows: a share
    of a step's rows is a tile or two, a share of the chunk's is many, and the product is
    as fast as its tiles are many. Every row on tiles (edge_rows 1), so the split changes
    no bit. A step then reads rows that another thread projected: the caller's team meets
    between the product and the steps."""
    cdef Py_ssize_t lo = row_share(rows, part, parts), hi = row_share(rows, part + 1, parts)
    if hi > lo:
        gemm_packed_strided(hi - lo, I, x + lo * I, I, 1, Wp, groups, 4 * H // groups, 0,
                            strips(4 * H // groups), False, z + lo * 4 * H, 4 * H, bias, 1)


cdef void sum_rows(Py_ssize_t rows, const floating *a, Py_ssize_t lda, Py_ssize_t lo,
                   Py_ssize_t hi, bint add, floating *out) noexcept nogil:
    """out[lo:hi] := (out[lo:hi] +) the sum of a[:rows, lo:hi] over rows, in row order (so
    that a split of the columns changes no bit); a's rows are lda apart."""
    cdef Py_ssize_t r, j
    if not add:
        if rows == 0:
            memset(out + lo, 0, (hi - lo) * sizeof(floating))
            return
        memcpy(out + lo, a + lo, (hi - lo) * sizeof(floating))
    for r in range(0 if add else 1, rows):
        for j in range(lo, hi):
            out[j] += a[r * lda + j]


cdef void transpose(Py_ssize_t rows, Py_ssize_t cols, const floating *A,
                    floating *At) noexcept nogil:
    """At = A.T for a row-major (rows, cols) A, in 8 x 16 blocks written row by row of At:
    4-KiB-strided writes would alias in L1."""
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
    """Forward over a whole sequence, the input projection a chunk of Tc steps at a time;
    ``gates`` holds Tc steps, or every step when training (``cells`` set), in which case both
    keep every step for the backward pass. ``Ut`` is scratch
    for U.T (Hout, 4H) when the recurrent products are small enough for gemm_small (see
    Shapes.small); else ``Up`` and ``Rp`` are scratch for U.T and R.T packed when
    the products run on gemm_packed (see Shapes.packed_steps), or NULL and they go to BLAS.
    ``Wp`` is scratch for W.T packed when the input projection runs on gemm_packed (see
    Shapes.packed_input); ``bias`` is scratch for b_ih + b_hh (4H,). ``lean``: inference
    without peepholes (see cell_forward_rows).

    W.T and U.T are packed as one group of 4H columns, not a group per gate as the threaded
    driver packs them to split units: a gate's last strip is then shared with the next
    gate's first, where by gate each gate ends in its own part-empty strip (H = 1: one
    strip of 32 columns, not four; H = 100: 13, not 16). The tiles sum a column alike
    either way; a lone row past the last tile (gemm_small) sums a whole strip in two
    chains and a part-empty one in one, so its last bits depend on the packing."""
    cdef Py_ssize_t G = 4 * H
    cdef Py_ssize_t Hout = P if P > 0 else H
    cdef Py_ssize_t s0, n, t_lo, s, t, bi
    cdef floating *zc
    cdef floating *zt
    cdef floating *mrow
    cdef double tick = lap_start()
    if Wp != NULL:
        pack_strips(I, 1, G, W, 1, I, 0, strips(G), Wp)
    tick = lap(tick, PHASE_INPUT)
    if Ut != NULL:
        transpose(G, Hout, U, Ut)
    if Up != NULL:
        pack_strips(Hout, 1, G, U, 1, Hout, 0, strips(G), Up)
    if Rp != NULL:
        pack_strips(H, 1, P, R, 1, H, 0, strips(P), Rp)
    tick = lap(tick, PHASE_RECURRENT)
    s0 = 0
    while s0 < T:
        # Steps s0 .. s0+n-1 in processing order are times t_lo .. t_lo+n-1.
        n = Tc if T - s0 > Tc else T - s0
        t_lo = T - s0 - n if reverse else s0
        # Training keeps every step's z (at its step); inference a chunk's, from the start.
        zc = gates + t_lo * B * G if cells != NULL else gates
        input_projection(n * B, I, H, x + t_lo * B * I, W, Wp, b_ih, b_hh, bias, zc,
                         cells != NULL)
        tick = lap(tick, PHASE_INPUT)
        for s in range(s0, s0 + n):
            t = T - 1 - s if reverse else s
            zt = zc + (t - t_lo) * B * G
            # z += h @ U.T   (B, 4H) += (B, Hout)(Hout, 4H)
            if Ut != NULL:
                gemm_small(B, G, Hout, h, Hout, Ut, G, 1, zt, G)
            elif Up != NULL:
                gemm_packed(B, Hout, h, Hout, Up, 1, G, 0, strips(G), True, zt, G, NULL)
            else:
                gemm(NoTrans, Trans, B, G, Hout, 1, h, Hout, U, Hout, 1, zt, G)
            tick = lap(tick, PHASE_RECURRENT)
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
            tick = lap(tick, PHASE_CELL)
            if P > 0:
                # h = m @ R.T   (B, P) = (B, H)(H, P); only active rows take it.
                if Rp != NULL:
                    gemm_packed(B, H, m, H, Rp, 1, P, 0, strips(P), False, hp, P, NULL)
                else:
                    gemm(NoTrans, Trans, B, P, H, 1, m, H, R, H, 0, hp, P)
                tick = lap(tick, PHASE_RECURRENT)
                for bi in range(B):
                    if t < length(lengths, bi, T):
                        memcpy(h + bi * P, hp + bi * P, P * sizeof(floating))
                        memcpy(y + (t * B + bi) * ldy, hp + bi * P, P * sizeof(floating))
                tick = lap(tick, PHASE_CELL)
        s0 += n



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
    cdef double tick = lap_start()
    memset(dpeep, 0, 3 * H * sizeof(floating))
    memset(dW, 0, G * I * sizeof(floating))
    memset(dU, 0, G * Hout * sizeof(floating))
    if dR != NULL:
        memset(dR, 0, P * H * sizeof(floating))
    if db != NULL:
        memset(db, 0, G * sizeof(floating))
    tick = lap(tick, PHASE_WEIGHTS)
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
            tick = lap(tick, PHASE_CELL)
            if P > 0:
                # dm = dh @ R   (B, H) = (B, P)(P, H)
                gemm(NoTrans, NoTrans, B, H, P, 1, dht, P, R, H, 0, dm, H)
                tick = lap(tick, PHASE_RECURRENT)
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
            tick = lap(tick, PHASE_CELL)
            if P > 0:
                # dR += dh.T @ m   (P, H) += (P, B)(B, H)
                gemm(Trans, NoTrans, P, H, B, 1, dht, P, m, H, 1, dR, H)
                tick = lap(tick, PHASE_WEIGHTS)
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
            tick = lap(tick, PHASE_RECURRENT)

        # dx[chunk] += dz @ W   (n*B, I) += (n*B, 4H)(4H, I)
        gemm(NoTrans, NoTrans, n * B, I, G, 1, dz, G, W, I, 1, dx + t_lo * B * I, I)
        tick = lap(tick, PHASE_INPUT)
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
        tick = lap(tick, PHASE_WEIGHTS)
        s0 += n

