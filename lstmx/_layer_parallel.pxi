# Layer drivers, OpenMP: each thread owns a range of hidden units for a whole sequence.
#
# Included by _kernels.pyx; AVX2 and AVX-512 builds, models without projection (and
# without layer norm: the options of the cell that act unit by unit run here too).


cdef struct UnitOptions:
    # The options of the regularised cell that act unit by unit (recurrent dropout, zoneout,
    # cell clip), for the threaded drivers; untyped pointers, as the plans'. Masks as
    # RegularisedForward takes them; Hout = H (no projection).
    const void *rd   # recurrent dropout scale (B, H), or NULL
    const void *zc   # zoneout masks of c (T, B, H) and of h (T, B, H), or NULL
    const void *zh
    void *ctil       # the cell's own c~_t: training (T, B, H) (cells without zc); else (B, H)
    void *hd         # forward with rd: h_{t-1} * rd, two buffers (B, H) as h and h_alt
    void *hd_alt
    void *dhtil      # backward: scratch (H,), dh~_t of a row (each thread its units)
    void *dn         # backward: scratch (H,), the cell's dn (each thread its units)
    double p_c, p_h  # inference's zoneout (expectation): the weights of c_{t-1}, h_{t-1}
    double clip      # 0: none


cdef void forward_parallel(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const floating *x, const floating *W, const floating *U, const floating *b_ih,
        const floating *b_hh, const floating *peep, const Py_ssize_t *lengths,
        floating *h, floating *c, floating *y, Py_ssize_t ldy, floating *gates, Py_ssize_t Tc,
        floating *cells, floating *Wp, floating *Up, floating *h_alt, floating *bias,
        floating *xg, int threads, bint lean, bint reverse, bint identity, bint by_rows,
        const UnitOptions *opt, double *waited) noexcept nogil:
    """forward_layer without projection on AVX2 and AVX-512 builds, every thread throughout.

    Each OpenMP thread owns a range of hidden units (whole strips of TILE_COLS): it packs its
    columns of W.T and U.T (the four gates of its units), computes those columns of the input
    projection and of each step's recurrent product with gemm_packed, and runs the cell
    update of its units, which needs nothing from other threads. The only exchange is h: a
    step reads all of h_{t-1} and writes its units of h_t into the other of two buffers (h,
    ``h_alt``), so one barrier per step suffices. No BLAS runs here, so no second thread pool
    competes with this one.

    ``by_rows``: each thread owns a share of the batch's rows instead (row_share), all
    units of them, through every step: no barrier at a step, but each thread reads all of
    U at every step. At inference with ``xg`` (scratch of Tc * B * I elements), each thread
    projects its own rows of the chunk's steps, gathered from x into its part of ``xg``, into
    its part of the chunk's z (Tc * nb rows, step-major): no thread reads rows another wrote,
    so the team never meets after the packing. Otherwise (training, whose z is kept as
    (T, B, 4H), or no ``xg``) the team splits each chunk's input projection by the chunk's
    rows (input_projection_share) and meets around it, once or twice a chunk. W.T and U.T are
    then packed as one group of 4H columns (as forward_layer packs them: no part-empty
    strip at the end of each gate), the team sharing the packing. A row's sums (every row
    on tiles) and its units' cell are the same either way, so the bits are too.

    ``opt`` (or NULL): the regularised cell's unit-wise options, the maths and the training
    arrays of forward_layer_regularised. With recurrent dropout the product reads h_{t-1} *
    rd, which each thread writes for its units into the other of two buffers beside h_t.

    ``waited`` (or NULL) receives the seconds the team's threads waited in all, at barriers
    and for the last of them at the end (team_waits): the plan's watch on contention.
    """
    cdef Py_ssize_t G = 4 * H, per = strips(H)
    # W.T and U.T packed by gate (a thread packs its units' strips), or by_rows whole.
    cdef Py_ssize_t groups = 1 if by_rows else 4
    cdef Py_ssize_t width = G if by_rows else H
    cdef Py_ssize_t packs = strips(width)
    # Initialised because OpenMP copies them into each thread (firstprivate).
    cdef Py_ssize_t part = 0, parts = 0, s_lo = 0, s_hi = 0, u_lo = 0, u_hi = 0, nu = 0
    cdef Py_ssize_t s0 = 0, n = 0, t_lo = 0, s = 0, t = 0, bi = 0, g = 0, j = 0, st = 0
    # The rows, product strips and cell units of each step: all rows, the thread's units;
    # or by_rows, the thread's rows, all units.
    cdef Py_ssize_t b_lo = 0, b_hi = 0, r_lo = 0, r_hi = 0, c_lo = 0, c_hi = 0, cn = 0
    cdef floating *h_old = NULL
    cdef floating *h_new = NULL
    cdef floating *hd_new = NULL
    cdef const floating *h_read = NULL
    cdef floating *zc = NULL
    cdef floating *zb = NULL  # row b_lo of the step's z
    cdef bint own = False  # this thread projects its own rows into its own part of z
    cdef Py_ssize_t nb = 0
    cdef double tick = 0, wait = 0
    cdef double waits[PLAN_TEAMS]
    cdef double ends[PLAN_TEAMS]
    cdef floating k = 0
    cdef const floating *rd = NULL
    cdef const floating *keep_c = NULL  # the zoneout masks
    cdef const floating *keep_h = NULL
    cdef floating *ctil = NULL
    cdef floating *hd = NULL
    cdef floating *hd_alt = NULL
    cdef floating p_c = 0, p_h = 0, clip = 0
    if opt != NULL:
        rd, keep_c = <const floating *> opt.rd, <const floating *> opt.zc
        keep_h = <const floating *> opt.zh
        ctil, hd, hd_alt = <floating *> opt.ctil, <floating *> opt.hd, <floating *> opt.hd_alt
        p_c, p_h, clip = <floating> opt.p_c, <floating> opt.p_h, <floating> opt.clip
    team_waits_clear(waits, ends)
    with parallel(num_threads=threads):
        tick = lap_start()
        wait = 0
        part = threadid()
        parts = num_threads()
        s_lo = share(per, part, parts)
        s_hi = share(per, part + 1, parts)
        u_lo = min(H, s_lo * TILE_COLS)
        u_hi = min(H, s_hi * TILE_COLS)
        nu = u_hi - u_lo
        pack_strips(H, groups, width, U, 1, H, share(packs, part, parts),
                    share(packs, part + 1, parts), Up)
        tick = lap(tick, PHASE_RECURRENT)
        pack_strips(I, groups, width, W, 1, I, share(packs, part, parts),
                    share(packs, part + 1, parts), Wp)
        if b_ih != NULL:
            for g in range(4):
                for j in range(g * H + u_lo, g * H + u_hi):
                    bias[j] = b_ih[j] + b_hh[j]
        if by_rows:
            b_lo, b_hi = row_share(B, part, parts), row_share(B, part + 1, parts)
            r_lo, r_hi, c_lo, c_hi, cn = 0, packs, 0, H, H
            own = cells == NULL and xg != NULL
            barrier()  # every strip of U is read by every thread
        else:
            b_lo, b_hi, r_lo, r_hi, c_lo, c_hi, cn = 0, B, s_lo, s_hi, u_lo, u_hi, nu
        tick = lap(tick, PHASE_INPUT)
        if rd != NULL:
            # h_d = h0 * mask, this thread's units; the first product reads all of them.
            for bi in range(b_lo, b_hi):
                for j in range(c_lo, c_hi):
                    hd[bi * H + j] = h[bi * H + j] * rd[bi * H + j]
            tick = lap(tick, PHASE_CELL)
            barrier()
            tick = lap(tick, PHASE_SYNC)
        s0 = 0
        while s0 < T:
            n = Tc if T - s0 > Tc else T - s0
            t_lo = T - s0 - n if reverse else s0
            # This thread's columns of z = x @ W.T + b_ih + b_hh for the chunk.
            zc = gates + t_lo * B * G if cells != NULL else gates  # as in forward_layer
            nb = b_hi - b_lo
            # Every row on tiles (edge_rows 1), so that a row has the same sums in a
            # product of the chunk's rows as in one of its step's rows.
            if own:
                # The thread's rows of each step of the chunk, one product: x's rows
                # gathered into xg, z's rows step-major in the thread's part of the chunk.
                zc = gates + Tc * b_lo * G
                for j in range(n):
                    memcpy(xg + (Tc * b_lo + j * nb) * I, x + ((t_lo + j) * B + b_lo) * I,
                           nb * I * sizeof(floating))
                if nb > 0:
                    gemm_packed_strided(n * nb, I, xg + Tc * b_lo * I, I, 1, Wp, 1, G, 0,
                                        packs, False, zc, G,
                                        bias if b_ih != NULL else NULL, 1)
            elif by_rows:
                # The team meets after the product (a step reads rows another thread
                # projected) and, at inference, which reuses the chunk's z, before it.
                if s0 > 0 and cells == NULL:
                    wait = wait + waited_barrier()
                    tick = lap(tick, PHASE_SYNC)
                input_projection_share(n * B, part, parts, I, H, 1, x + t_lo * B * I, Wp,
                                       bias if b_ih != NULL else NULL, zc)
                tick = lap(tick, PHASE_INPUT)
                wait = wait + waited_barrier()
                tick = lap(tick, PHASE_SYNC)
            else:
                gemm_packed_strided(n * B, I, x + t_lo * B * I, I, 1, Wp, 4, H, s_lo, s_hi,
                                    False, zc, G, bias if b_ih != NULL else NULL, 1)
            tick = lap(tick, PHASE_INPUT)
            for s in range(s0, s0 + n):
                t = T - 1 - s if reverse else s
                # (own: the thread's nb rows a step; else all B rows a step)
                zb = zc + ((t - t_lo) * nb if own else (t - t_lo) * B + b_lo) * G
                h_old = h if s % 2 == 0 else h_alt
                h_new = h_alt if s % 2 == 0 else h
                # z += h_{t-1} @ U.T (h_d = h_{t-1} * mask with recurrent dropout)
                h_read = h_old if rd == NULL else (hd if s % 2 == 0 else hd_alt)
                if b_hi > b_lo:
                    gemm_packed(b_hi - b_lo, H, h_read + b_lo * H, H, Up, groups, width, r_lo,
                                r_hi, True, zb, G, NULL)
                tick = lap(tick, PHASE_RECURRENT)
                st = t if cells != NULL else 0  # the step's row of ctil
                for bi in range(b_lo, b_hi):
                    if t >= length(lengths, bi, T):
                        memset(y + (t * B + bi) * ldy + c_lo, 0, cn * sizeof(floating))
                        memcpy(h_new + bi * H + c_lo, h_old + bi * H + c_lo,
                               cn * sizeof(floating))
                        if cells != NULL:
                            for g in range(4):
                                memset(zb + (bi - b_lo) * G + g * H + c_lo, 0,
                                       cn * sizeof(floating))
                            memset(cells + (t * B + bi) * H + c_lo, 0, cn * sizeof(floating))
                            if opt != NULL and ctil != cells:
                                memset(ctil + (t * B + bi) * H + c_lo, 0, cn * sizeof(floating))
                        continue
                    if opt == NULL:
                        cell_forward_rows(cn, H, zb + (bi - b_lo) * G + c_lo, c + bi * H + c_lo,
                                          h_new + bi * H + c_lo, peep + c_lo, lean, identity)
                        if cells != NULL:
                            memcpy(cells + (t * B + bi) * H + c_lo, c + bi * H + c_lo,
                                   cn * sizeof(floating))
                    else:
                        # h_new receives h~_t, before zoneout
                        cell_forward_regularised(
                            cn, H, zb + (bi - b_lo) * G + c_lo, c + bi * H + c_lo,
                            ctil + (st * B + bi) * H + c_lo, h_new + bi * H + c_lo, NULL, NULL,
                            peep + c_lo, NULL,
                            keep_c + (t * B + bi) * H + c_lo if keep_c != NULL else NULL, p_c,
                            clip, identity)
                        if cells != NULL and ctil != cells:
                            memcpy(cells + (t * B + bi) * H + c_lo, c + bi * H + c_lo,
                                   cn * sizeof(floating))
                        # h_t = keep * h_{t-1} + (1 - keep) * h~_t   (zoneout)
                        for j in range(c_lo, c_hi):
                            k = keep_h[(t * B + bi) * H + j] if keep_h != NULL else p_h
                            h_new[bi * H + j] = k * h_old[bi * H + j] + (1 - k) * h_new[bi * H + j]
                    memcpy(y + (t * B + bi) * ldy + c_lo, h_new + bi * H + c_lo,
                           cn * sizeof(floating))
                if rd != NULL:
                    # h_d of the next step, this thread's units
                    hd_new = hd_alt if s % 2 == 0 else hd
                    for bi in range(b_lo, b_hi):
                        for j in range(c_lo, c_hi):
                            hd_new[bi * H + j] = h_new[bi * H + j] * rd[bi * H + j]
                tick = lap(tick, PHASE_CELL)
                if not by_rows:
                    wait = wait + waited_barrier()
                    tick = lap(tick, PHASE_SYNC)
            s0 = s0 + n  # (+= would be an OpenMP reduction)
        if T % 2 == 1:
            # The last step wrote h_alt.
            for bi in range(b_lo, b_hi):
                memcpy(h + bi * H + c_lo, h_alt + bi * H + c_lo, cn * sizeof(floating))
        team_waits_mark(waits, ends, part, wait)
    if waited != NULL:
        waited[0] = team_waits_total(waits, ends, threads)



cdef void backward_parallel(
        Py_ssize_t T, Py_ssize_t B, Py_ssize_t I, Py_ssize_t H,
        const floating *x, const floating *W, const floating *U, const floating *peep,
        const Py_ssize_t *lengths, const floating *h0, const floating *c0, const floating *y,
        Py_ssize_t ldy, const floating *gates, const floating *cells, const floating *dy,
        Py_ssize_t lddy, floating *dh, floating *dc, floating *dx, floating *dW, floating *dU,
        floating *db, floating *dpeep, floating *dz, Py_ssize_t Tc, floating *dht,
        floating *dhp, floating *m, floating *Up, floating *Wp, floating *scratch,
        int threads, bint lean, bint reverse, bint identity, bint prepacked,
        const UnitOptions *opt, double *waited) noexcept nogil:
    """backward_layer without projection on AVX2 and AVX-512 builds, every thread throughout.

    Each OpenMP thread owns the hidden units it owns in forward_parallel. A step: the thread
    computes dz of its units (all four gates) from its units of dh_t and dc_t; a barrier; then
    its units of dh_{t-1} = dz_t @ U, which is exactly what it reads at the next step (so one
    barrier per step). After each chunk of steps: dx[chunk] (its strips of I columns), then,
    once x and h_{t-1} of the chunk are packed (each thread some strips), its rows of dW and
    dU (the gates of its units): products with dz.T, read from dz in place. ``dz`` holds Tc
    steps of rows 4H + DZ_PAD apart. ``Up`` and ``Wp`` receive U and W packed, or hold them
    already when ``prepacked`` (as ``pack_for_backward`` packs them; U and W are then not
    read); ``scratch`` holds x and h_{t-1} of the chunk, packed, and h_{t-1} gathered.

    ``opt`` (or NULL): as forward_parallel's, and the maths of backward_layer_regularised:
    the cell's backward reads dh~_t = (1 - zh) dh_t, and a thread's units of dh_{t-1} are
    (dz_t @ U) * rd + zh * dh_t; the rows of h_{t-1} that meet dz in dU are times rd.
    ``waited``: as forward_parallel's.
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
    cdef floating *dm = NULL
    cdef double tick = 0, wait = 0
    cdef double waits[PLAN_TEAMS]
    cdef double ends[PLAN_TEAMS]
    cdef floating k = 0
    cdef const floating *rd = NULL
    cdef const floating *keep_c = NULL  # the zoneout masks
    cdef const floating *keep_h = NULL
    cdef const floating *ctil = cells
    cdef floating *dhtil = NULL
    cdef floating *dn = NULL
    cdef floating clip = 0
    # Whether dh_{t-1} is more than dz_t @ U (recurrent dropout, zoneout of h)
    cdef bint carry = False
    if opt != NULL:
        rd, keep_c = <const floating *> opt.rd, <const floating *> opt.zc
        keep_h = <const floating *> opt.zh
        ctil, clip = <const floating *> opt.ctil, <floating> opt.clip
        dhtil, dn = <floating *> opt.dhtil, <floating *> opt.dn
        carry = rd != NULL or keep_h != NULL
    memset(dpeep, 0, 3 * H * sizeof(floating))
    memset(dW, 0, G * I * sizeof(floating))
    memset(dU, 0, G * H * sizeof(floating))
    if db != NULL:
        memset(db, 0, G * sizeof(floating))
    team_waits_clear(waits, ends)
    with parallel(num_threads=threads):
        tick = lap_start()
        wait = 0
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
        if not prepacked:
            pack_strips(G, 1, H, U, H, 1, s_lo, s_hi, Up)
            tick = lap(tick, PHASE_RECURRENT)
            pack_strips(G, 1, I, W, I, 1, i_lo, i_hi, Wp)
            tick = lap(tick, PHASE_INPUT)
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
                    if opt == NULL:
                        cell_backward_rows(nu, H, gates + (t * B + bi) * G + u_lo,
                                           cells + (t * B + bi) * H + u_lo, prev + u_lo,
                                           dht + bi * H + u_lo, dc + bi * H + u_lo,
                                           dzt + bi * ldz + u_lo, m + bi * H + u_lo,
                                           peep + u_lo, dpeep + u_lo, lean, identity)
                        continue
                    dm = dht + bi * H
                    if keep_h != NULL:
                        # dh~_t = (1 - keep) dh_t   (zoneout), into the thread's scratch
                        dm = dhtil
                        for j in range(u_lo, u_hi):
                            dhtil[j] = (1 - keep_h[(t * B + bi) * H + j]) * dht[bi * H + j]
                    cell_backward_regularised(
                        nu, H, gates + (t * B + bi) * G + u_lo, ctil + (t * B + bi) * H + u_lo,
                        prev + u_lo, NULL, 0, dm + u_lo, dc + bi * H + u_lo,
                        keep_c + (t * B + bi) * H + u_lo if keep_c != NULL else NULL,
                        dzt + bi * ldz + u_lo, m + bi * H + u_lo, peep + u_lo, dpeep + u_lo,
                        NULL, NULL, dn + u_lo, clip, identity)
                tick = lap(tick, PHASE_CELL)
                wait = wait + waited_barrier()
                tick = lap(tick, PHASE_SYNC)
                # dh_{t-1} = dz_t @ U on this thread's units; inactive rows keep their carry.
                if carry:
                    # dh_{t-1} = (dz_t @ U) * mask + keep * dh_t
                    gemm_packed(B, G, dzt, ldz, Up, 1, H, s_lo, s_hi, False, dhp, H, NULL)
                    for bi in range(B):
                        if t < length(lengths, bi, T):
                            for j in range(u_lo, u_hi):
                                k = keep_h[(t * B + bi) * H + j] if keep_h != NULL else 0
                                dh[bi * H + j] = (
                                    dhp[bi * H + j] * (rd[bi * H + j] if rd != NULL else 1)
                                    + k * dht[bi * H + j])
                elif all_active:
                    gemm_packed(B, G, dzt, ldz, Up, 1, H, s_lo, s_hi, False, dh, H, NULL)
                else:
                    gemm_packed(B, G, dzt, ldz, Up, 1, H, s_lo, s_hi, False, dhp, H, NULL)
                    for bi in range(B):
                        if t < length(lengths, bi, T):
                            memcpy(dh + bi * H + u_lo, dhp + bi * H + u_lo,
                                   nu * sizeof(floating))
                tick = lap(tick, PHASE_RECURRENT)
            # dz of the chunk is complete (barrier of its last step); read only from here on.
            # dx[chunk] += dz @ W   (n*B, I) += (n*B, 4H)(4H, I), this thread's strips of I
            gemm_packed(rows, G, dz, ldz, Wp, 1, I, i_lo, i_hi, True, dx + t_lo * B * I, I,
                        NULL)
            tick = lap(tick, PHASE_INPUT)
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
                    if rd == NULL:
                        memcpy(hprev + ((t - t_lo) * B + bi) * H + u_lo, prev + u_lo,
                               nu * sizeof(floating))
                    else:
                        # h_d = h_{t-1} * mask, what the product of step t read
                        for j in range(u_lo, u_hi):
                            hprev[((t - t_lo) * B + bi) * H + j] = prev[j] * rd[bi * H + j]
            pack_strips(rows, 1, H, hprev, H, 1, s_lo, s_hi, hp)
            pack_strips(rows, 1, I, x + t_lo * B * I, I, 1, i_lo, i_hi, xp)
            if db != NULL:
                # db += dz.sum(axis=0), this thread's units of each gate
                for g in range(4):
                    sum_rows(rows, dz, ldz, g * H + u_lo, g * H + u_hi, True, db)
            tick = lap(tick, PHASE_WEIGHTS)
            wait = wait + waited_barrier()
            tick = lap(tick, PHASE_SYNC)
            # dW += dz.T @ x[chunk]   (4H, I) += (4H, n*B)(n*B, I), and dU likewise; this
            # thread's rows (the gates of its units); every row on tiles (see
            # gemm_packed_strided), so that no bit depends on how units are split.
            for g in range(4):
                gemm_packed_strided(nu, rows, dz + g * H + u_lo, 1, ldz, xp, 1, I, 0, per_in,
                                    True, dW + (g * H + u_lo) * I, I, NULL, 1)
                gemm_packed_strided(nu, rows, dz + g * H + u_lo, 1, ldz, hp, 1, H, 0, per,
                                    True, dU + (g * H + u_lo) * H, H, NULL, 1)
            tick = lap(tick, PHASE_WEIGHTS)
            # The next chunk overwrites dz and the packed x and h_{t-1}.
            wait = wait + waited_barrier()
            tick = lap(tick, PHASE_SYNC)
            s0 = s0 + n  # (+= would be an OpenMP reduction)
        team_waits_mark(waits, ends, part, wait)
    if waited != NULL:
        waited[0] = team_waits_total(waits, ends, threads)

