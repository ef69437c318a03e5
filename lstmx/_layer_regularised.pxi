# Layer driver of the regularised cell (recurrent dropout, zoneout, layer norm, cell clip).
#
# Included by _kernels.pyx. Serial over steps, as forward_layer and backward_layer, whose
# products it shares (BLAS, gemm_small or gemm_packed, as the entry point decides); the
# element-wise steps are in _cell_regularised.pxi. Plain layers never come here, nor, where
# the plain ones run forward_parallel and backward_parallel, layers without layer norm and
# projection: their options act unit by unit, and those drivers run them (UnitOptions).
#
# Forward on gemm_packed (AVX2, AVX-512 builds; ``rows``) runs on a team that splits the
# batch: a layer norm reads a row's whole 4H vector, so its rows, not its units, are what
# threads can own. Rows never meet within a step, so the team meets only after packing and
# around each chunk's input projection, which it splits by the chunk's rows
# (input_projection_share), as forward_parallel's team of rows does. Rows are split as
# row_share says: every row is then summed by a kernel that sums it as one product of all
# rows would, whatever the team, and the results do not depend on it.


cdef struct RegForwardPlan:
    # One layer and direction ready to run (untyped pointers: ``kind`` gives them their
    # type). The input projection runs a chunk of Tc steps at a time (chunk_steps);
    # training keeps every step's, inference the chunk's.
    Py_ssize_t T, B, n_in, H, P, ldy, Tc
    int threads  # of forward_parallel (par) or of the team of rows (rows)
    bint training, reverse, identity, double, small, packed_steps, par
    bint rows    # the batch's rows split between threads, on gemm_packed (W, U, R packed);
                 # with par, forward_parallel's by_rows
    double clip, p_c, p_h  # clip 0: none; p_c, p_h: zoneout at inference (no masks)
    const void *x
    const void *W
    const void *U
    const void *b_ih
    const void *b_hh
    const void *R
    const void *peep     # (3, H), zeros without peepholes
    const Py_ssize_t *lengths
    const void *rd       # recurrent dropout scale (B, Hout) or NULL
    const void *zc       # zoneout masks (T, B, H) and (T, B, Hout), or NULL
    const void *zh
    const void *ln_g     # [gamma_ih; beta_ih; gamma_hh; beta_hh] (4, 4H), or NULL
    const void *ln_c     # [gamma_c; beta_c] (2, H), or NULL
    void *h
    void *c
    void *y
    # Training: gates (T, B, 4H), cells (T, B, H) the state c_t; ctil (T, B, H) the cell's
    # own c~_t (with zoneout of c, else cells); with layer norm lnx, lnh (T, B, 4H) the
    # normalised x W^T and h U^T, lnc (T, B, H) the normalised c~_t, rstd (T, B, 3).
    # Inference: gates is the chunk of z, ctil and lnc (B, H) scratch, lnx the chunk of
    # x W^T (with layer norm), lnh (B, 4H) scratch, rstd (B, 3) scratch.
    void *gates
    void *cells
    void *ctil
    void *lnx
    void *lnh
    void *lnc
    void *rstd
    void *zrow   # inference with layer norm: z of one step (B, 4H)
    void *hd     # h_{t-1} after recurrent dropout (B, Hout)
    void *m      # (B, H)
    void *hp     # the projected h~_t (B, P)
    void *Ut
    void *Wp
    void *Up
    void *Rp
    void *bias   # b_ih + b_hh (4H,), zeros without bias; with layer norm + beta_ih + beta_hh
    void *peep_zero
    void *h_alt   # par: forward_parallel's second h buffer (B, H), and with rd h_d's
    void *hd_alt
    void *xg      # par, rows, inference: forward_parallel's gathered x (Tc B, I), or NULL


cdef void forward_layer_regularised(floating kind, const RegForwardPlan *f) noexcept nogil:
    """Forward over a whole sequence (see RegularisedForward), on the plan's team of rows."""
    if f.rows and f.threads > 1:
        with parallel(num_threads=f.threads):
            forward_rows_regularised(kind, f, threadid(), num_threads())
    else:
        forward_rows_regularised(kind, f, 0, 1)


cdef void forward_rows_regularised(floating kind, const RegForwardPlan *f, int part,
                                   int parts) noexcept nogil:
    """Part ``part`` of ``parts`` of forward_layer_regularised: the rows of row_share, and
    with ``f.rows`` its share of the packing."""
    cdef Py_ssize_t T = f.T, B = f.B, I = f.n_in, H = f.H, P = f.P, G = 4 * H
    cdef Py_ssize_t Hout = P if P > 0 else H
    cdef Py_ssize_t s0, n, t_lo, s, t, bi, j, Tc = f.Tc
    cdef Py_ssize_t b_lo = row_share(B, part, parts), b_hi = row_share(B, part + 1, parts)
    cdef Py_ssize_t nb = b_hi - b_lo
    # W.T and U.T packed as one group of 4H columns, as forward_layer packs them.
    cdef Py_ssize_t s_lo = share(strips(4 * H), part, parts)
    cdef Py_ssize_t s_hi = share(strips(4 * H), part + 1, parts)
    cdef bint ln = f.ln_g != NULL
    cdef const floating *x = <const floating *> f.x
    cdef const floating *U = <const floating *> f.U
    cdef const floating *R = <const floating *> f.R
    cdef const floating *rd = <const floating *> f.rd
    cdef const floating *zc = <const floating *> f.zc
    cdef const floating *zh = <const floating *> f.zh
    cdef const floating *ln_g = <const floating *> f.ln_g
    cdef const floating *ln_c = <const floating *> f.ln_c
    cdef const floating *bias = <const floating *> f.bias
    cdef const floating *peep = <const floating *> f.peep
    cdef floating *h = <floating *> f.h
    cdef floating *c = <floating *> f.c
    cdef floating *y = <floating *> f.y
    cdef floating *gates = <floating *> f.gates
    cdef floating *proj = <floating *> (f.lnx if ln else f.gates)  # where x W^T goes
    cdef floating *zx  # the chunk's x W^T: its steps' rows of proj in training
    cdef floating *hd = <floating *> f.hd if rd != NULL else h
    cdef floating *m = <floating *> f.m
    cdef floating *hp = <floating *> f.hp
    cdef floating *Ut = <floating *> f.Ut
    cdef floating *Up = <floating *> f.Up
    cdef floating *Rp = <floating *> f.Rp
    cdef floating *zt
    cdef floating *zxt
    cdef floating *zht
    cdef floating *row
    cdef floating *ct_row
    cdef floating *chat_row
    cdef floating *stats
    cdef Py_ssize_t st  # the step's offset in the training arrays (0 at inference)
    cdef floating k, clip = <floating> f.clip
    # The biases start z, unless layer norm comes first (then they are added after it).
    cdef const floating *b_ih = NULL
    cdef const floating *b_hh = NULL
    if not ln:
        b_ih, b_hh = <const floating *> f.b_ih, <const floating *> f.b_hh
    if Ut != NULL:
        transpose(G, Hout, U, Ut)
    # Each thread packs its share of the strips (all of them alone).
    if f.Wp != NULL:
        pack_strips(I, 1, G, <const floating *> f.W, 1, I, s_lo, s_hi, <floating *> f.Wp)
    if Up != NULL:
        pack_strips(Hout, 1, G, U, 1, Hout, s_lo, s_hi, Up)
    if Rp != NULL:
        pack_strips(H, 1, P, R, 1, H, share(strips(P), part, parts),
                    share(strips(P), part + 1, parts), Rp)
    if parts > 1:
        # Every strip is read by every thread. (A team of one meets no one: it may run
        # inside another team's thread, two directions side by side, whose barrier this is.)
        barrier()
    s0 = 0
    while s0 < T:
        n = Tc if T - s0 > Tc else T - s0
        t_lo = T - s0 - n if f.reverse else s0
        zx = proj + t_lo * B * G if f.training else proj
        # z = x @ W.T (+ b_ih + b_hh unless layer norm comes first)   (n*B, 4H)
        if f.rows:
            # The team meets after the product (a step reads rows another thread projected)
            # and, at inference, before the next chunk's, which overwrites rows a step
            # still reads (training keeps every step's).
            if s0 > 0 and parts > 1 and not f.training:
                barrier()
            input_projection_share(n * B, part, parts, I, H, 1, x + t_lo * B * I,
                                   <const floating *> f.Wp,
                                   <const floating *> f.bias if b_ih != NULL else NULL, zx)
            if parts > 1:
                barrier()
        else:
            input_projection(n * B, I, H, x + t_lo * B * I, <const floating *> f.W,
                             <const floating *> f.Wp, b_ih, b_hh, <floating *> f.bias, zx,
                             f.training)
        for s in range(s0, s0 + n):
            t = T - 1 - s if f.reverse else s
            st = t if f.training else 0
            zxt = zx + (t - t_lo) * B * G
            if not ln:
                zt = zxt
                zht = zxt
            elif f.training:
                zt = gates + t * B * G
                zht = <floating *> f.lnh + t * B * G
            else:
                zt = <floating *> f.zrow
                zht = <floating *> f.lnh
            if rd != NULL:
                # h_d = h * mask   (recurrent dropout, the same mask at every step)
                for j in range(b_lo * Hout, b_hi * Hout):
                    hd[j] = h[j] * rd[j]
            # z += h_d @ U.T, or with layer norm z_h = h_d @ U.T   (B, 4H) (B, Hout)(Hout, 4H)
            if nb == 0:
                pass
            elif Ut != NULL:
                gemm_small(nb, G, Hout, hd + b_lo * Hout, Hout, Ut, G, 0 if ln else 1,
                           zht + b_lo * G, G)
            elif Up != NULL:
                gemm_packed(nb, Hout, hd + b_lo * Hout, Hout, Up, 1, G, 0, strips(G), not ln,
                            zht + b_lo * G, G, NULL)
            else:
                gemm(NoTrans, Trans, nb, G, Hout, 1, hd + b_lo * Hout, Hout, U, Hout,
                     0 if ln else 1, zht + b_lo * G, G)
            for bi in range(b_lo, b_hi):
                stats = <floating *> f.rstd + (st * B + bi) * LN_STATS if ln else NULL
                if t >= length(f.lengths, bi, T):
                    memset(y + (t * B + bi) * f.ldy, 0, Hout * sizeof(floating))
                    if f.training:
                        memset(gates + (t * B + bi) * G, 0, G * sizeof(floating))
                        memset(<floating *> f.cells + (t * B + bi) * H, 0,
                               H * sizeof(floating))
                        if f.ctil != f.cells:
                            memset(<floating *> f.ctil + (t * B + bi) * H, 0,
                                   H * sizeof(floating))
                        if ln:
                            memset(zxt + bi * G, 0, G * sizeof(floating))
                            memset(zht + bi * G, 0, G * sizeof(floating))
                            memset(<floating *> f.lnc + (t * B + bi) * H, 0,
                                   H * sizeof(floating))
                            memset(stats, 0, LN_STATS * sizeof(floating))
                    continue
                row = zt + bi * G
                if ln:
                    # z = LN(x W^T) + LN(h U^T) + b_ih + b_hh, each LN over the row's 4H
                    # (bias holds both LNs' betas too)
                    layer_norm_gates(G, zxt + bi * G, zht + bi * G, ln_g, ln_g + 2 * G, bias,
                                     row, stats)
                ct_row = <floating *> f.ctil + (st * B + bi) * H
                chat_row = <floating *> f.lnc + (st * B + bi) * H if ln else NULL
                cell_forward_regularised(
                    H, H, row, c + bi * H, ct_row, m + bi * H, chat_row,
                    stats + 2 if ln else NULL, peep,
                    ln_c, zc + (t * B + bi) * H if zc != NULL else NULL, <floating> f.p_c,
                    clip, f.identity)
                if f.training and f.cells != f.ctil:
                    memcpy(<floating *> f.cells + (t * B + bi) * H, c + bi * H,
                           H * sizeof(floating))
            if P > 0 and nb > 0:
                # h~ = m @ R.T   (B, P) = (B, H)(H, P)
                if Rp != NULL:
                    gemm_packed(nb, H, m + b_lo * H, H, Rp, 1, P, 0, strips(P), False,
                                hp + b_lo * P, P, NULL)
                else:
                    gemm(NoTrans, Trans, nb, P, H, 1, m + b_lo * H, H, R, H, 0,
                         hp + b_lo * P, P)
            for bi in range(b_lo, b_hi):
                if t >= length(f.lengths, bi, T):
                    continue
                row = (hp + bi * P) if P > 0 else (m + bi * H)
                # h_t = keep * h_{t-1} + (1 - keep) * h~_t   (zoneout)
                if zh != NULL:
                    for j in range(Hout):
                        k = zh[(t * B + bi) * Hout + j]
                        h[bi * Hout + j] = k * h[bi * Hout + j] + (1 - k) * row[j]
                elif f.p_h == 0:
                    memcpy(h + bi * Hout, row, Hout * sizeof(floating))
                else:
                    k = <floating> f.p_h
                    for j in range(Hout):
                        h[bi * Hout + j] = k * h[bi * Hout + j] + (1 - k) * row[j]
                memcpy(y + (t * B + bi) * f.ldy, h + bi * Hout, Hout * sizeof(floating))
        s0 += n


cdef struct RegBackwardPlan:
    # As RegForwardPlan, for backward (training arrays as forward filled them).
    Py_ssize_t T, B, n_in, H, P, ldy, lddy, Tc
    Py_ssize_t K  # columns of a row's parameter gradients in acc (REG_ACC_COLUMNS)
    int threads   # of backward_parallel (par), or of the team of rows (tiles)
    bint reverse, identity, double, par
    bint tiles    # on gemm_packed and a team of rows: every product, dx, dW, dU and dR too
    bint prepacked  # Wb and Ub given packed (pack_for_backward); W and U not read
    double clip
    const void *x
    const void *W
    const void *U
    const void *R
    const void *peep
    const Py_ssize_t *lengths
    const void *rd
    const void *zc
    const void *zh
    const void *ln_g
    const void *ln_c
    const void *h0
    const void *c0
    const void *y
    const void *gates
    const void *cells
    const void *ctil
    const void *lnx
    const void *lnh
    const void *lnc
    const void *rstd
    const void *dy
    void *dh
    void *dc
    void *dx
    void *dW
    void *dU
    void *db      # (4H,) or NULL
    void *dR
    void *dpeep   # (3, H), scratch without peepholes
    void *dln_g   # (4, 4H) or NULL
    void *dln_c   # (2, H) or NULL
    void *acc     # (B, K): each row's own sums of dpeep, dln_c, dln_g (REG_ACC_COLUMNS)
    void *dz      # Tc steps of dz (of x W^T's row with layer norm; par: rows 4H + DZ_PAD apart)
    void *dzh     # Tc steps of the gradient of h U^T (layer norm; else dz)
    void *dg      # dz of one step before the layer norms (B, 4H)
    void *dht     # dh_t (B, Hout)
    void *dhtil   # dh~_t (B, Hout); tiles with projection: of Tc steps (for dR)
    void *dhp     # dh_d of the step (B, Hout)
    void *dm      # (B, H)
    void *m       # (B, H); tiles with projection: of Tc steps (for dR)
    void *dn      # (B, H)
    void *hprev   # h_d of a chunk (Tc*B, Hout); par: backward_parallel's scratch
    void *Ub      # U packed for dz @ U, or NULL (then BLAS or gemm_small)
    void *Rb      # R packed for dh @ R, or NULL
    void *Wb      # par, tiles: W packed for dz @ W
    void *xp      # tiles: x of a chunk packed (Tc*B, strips(I) * TILE_COLS)
    void *hpk     # tiles: h_d of a chunk packed (Tc*B, strips(Hout) * TILE_COLS)
    void *mp      # tiles with projection: m of a chunk packed (Tc*B, strips(H) * TILE_COLS)


cdef inline Py_ssize_t reg_acc_columns(Py_ssize_t H, bint ln) noexcept nogil:
    """Columns of a row's parameter gradients in RegBackwardPlan.acc:
    [dpeep (3H) | with layer norm: dln_c (2H) | d gamma_ih | d beta | d gamma_hh (4H each)]."""
    return 3 * H + (2 * H + 12 * H if ln else 0)


cdef void backward_layer_regularised(floating kind, const RegBackwardPlan *f) noexcept nogil:
    """Backpropagation through time over one layer and direction (see
    RegularisedBackward), in chunks of Tc steps as backward_layer, on the plan's team."""
    if f.tiles and f.threads > 1:
        with parallel(num_threads=f.threads):
            backward_rows_regularised(kind, f, threadid(), num_threads())
    else:
        backward_rows_regularised(kind, f, 0, 1)


cdef void backward_rows_regularised(floating kind, const RegBackwardPlan *f, int part,
                                    int parts) noexcept nogil:
    """Part ``part`` of ``parts`` of backward_layer_regularised.

    The steps run the rows of row_share: no row reads another's, so the team meets twice a
    chunk (its products need every row), never at a step. The parameters' gradients that
    sum over rows and steps cannot be summed as the steps go without depending on the team:
    dW, dU, dR and db are summed by the chunk's products (a row of them each, a column of db
    each), and dpeep, dln_c and dln_g by each batch row on its own (acc), in step order,
    then over rows in row order at the end. Every row runs on the same kernels whatever the
    team (row_share, as forward's rows), so no bit depends on it."""
    cdef Py_ssize_t T = f.T, B = f.B, I = f.n_in, H = f.H, P = f.P, G = 4 * H, K = f.K
    cdef Py_ssize_t Hout = P if P > 0 else H
    cdef Py_ssize_t s0, n, t_lo, s, t, bi, j, tp, Tc = f.Tc
    cdef Py_ssize_t b_lo = row_share(B, part, parts), b_hi = row_share(B, part + 1, parts)
    cdef Py_ssize_t nb = b_hi - b_lo
    cdef bint ln = f.ln_g != NULL
    cdef bint chunk_dR = f.tiles and P > 0  # m and dh~ kept for the chunk's dR
    cdef const floating *W = <const floating *> f.W
    cdef const floating *U = <const floating *> f.U
    cdef const floating *R = <const floating *> f.R
    cdef const floating *rd = <const floating *> f.rd
    cdef const floating *zc = <const floating *> f.zc
    cdef const floating *zh = <const floating *> f.zh
    cdef const floating *ln_g = <const floating *> f.ln_g
    cdef const floating *y = <const floating *> f.y
    cdef const floating *dy = <const floating *> f.dy
    cdef const floating *gates = <const floating *> f.gates
    cdef const floating *cells = <const floating *> f.cells
    cdef const floating *ctil = <const floating *> f.ctil
    cdef const floating *rstd = <const floating *> f.rstd
    cdef const floating *cprev
    cdef floating *dh = <floating *> f.dh
    cdef floating *dc = <floating *> f.dc
    cdef floating *dz = <floating *> f.dz
    cdef floating *dzh_all = <floating *> f.dzh
    cdef floating *dg = <floating *> f.dg
    cdef floating *acc = <floating *> f.acc
    cdef floating *dhp = <floating *> f.dhp
    cdef floating *hprev = <floating *> f.hprev
    cdef floating *dW = <floating *> f.dW
    cdef floating *dU = <floating *> f.dU
    cdef floating *db = <floating *> f.db
    cdef floating *dR = <floating *> f.dR
    cdef floating *dzt
    cdef floating *dzht
    cdef floating *drow
    cdef floating *dht
    cdef floating *dhtil
    cdef floating *dm
    cdef floating *m
    cdef floating *arow
    cdef floating k, clip = <floating> f.clip
    cdef floating *Ub = <floating *> f.Ub
    cdef floating *Rb = <floating *> f.Rb
    # The per-step products on gemm_packed (AVX2, AVX-512 builds): a BLAS call per step
    # wakes OpenBLAS's threads at every step, which on a busy machine cost many times the
    # arithmetic. Each thread packs its share of the strips.
    if Ub != NULL and not f.prepacked:
        pack_strips(G, 1, Hout, U, Hout, 1, share(strips(Hout), part, parts),
                    share(strips(Hout), part + 1, parts), Ub)
    if Rb != NULL:
        pack_strips(P, 1, H, R, H, 1, share(strips(H), part, parts),
                    share(strips(H), part + 1, parts), Rb)
    if f.tiles and not f.prepacked:
        pack_strips(G, 1, I, W, I, 1, share(strips(I), part, parts),
                    share(strips(I), part + 1, parts), <floating *> f.Wb)
    # Each thread clears what it sums into: its rows of dW, dU and dR, its columns of db
    # (chunk_products_regularised), its rows of acc.
    memset(dW + share(G, part, parts) * I, 0,
           (share(G, part + 1, parts) - share(G, part, parts)) * I * sizeof(floating))
    memset(dU + share(G, part, parts) * Hout, 0,
           (share(G, part + 1, parts) - share(G, part, parts)) * Hout * sizeof(floating))
    if dR != NULL:
        memset(dR + share(P, part, parts) * H, 0,
               (share(P, part + 1, parts) - share(P, part, parts)) * H * sizeof(floating))
    if db != NULL and not ln:
        memset(db + share(G, part, parts), 0,
               (share(G, part + 1, parts) - share(G, part, parts)) * sizeof(floating))
    memset(acc + b_lo * K, 0, nb * K * sizeof(floating))
    if parts > 1:
        barrier()  # every strip is read by every thread
    s0 = 0
    while s0 < T:
        n = Tc if T - s0 > Tc else T - s0
        t_lo = s0 if f.reverse else T - s0 - n
        for s in range(s0, s0 + n):
            t = s if f.reverse else T - 1 - s
            dzt = dz + (t - t_lo) * B * G
            dzht = dzh_all + (t - t_lo) * B * G
            m = <floating *> f.m + ((t - t_lo) * B * H if chunk_dR else 0)
            dhtil = <floating *> f.dhtil + ((t - t_lo) * B * Hout if chunk_dR else 0)
            dht = <floating *> f.dht if zh != NULL else dhtil
            dm = <floating *> f.dm if P > 0 else dhtil
            # dh_t = dy_t + (gradient from step t+1); dh~_t = (1 - keep) dh_t (zoneout)
            for bi in range(b_lo, b_hi):
                if t < length(f.lengths, bi, T):
                    for j in range(Hout):
                        dht[bi * Hout + j] = dy[(t * B + bi) * f.lddy + j] + dh[bi * Hout + j]
                        if zh != NULL:
                            dhtil[bi * Hout + j] = ((1 - zh[(t * B + bi) * Hout + j])
                                                    * dht[bi * Hout + j])
                else:
                    memset(dht + bi * Hout, 0, Hout * sizeof(floating))
                    memset(dhtil + bi * Hout, 0, Hout * sizeof(floating))
            if P > 0 and nb > 0:
                # dm = dh~ @ R   (B, H) = (B, P)(P, H)
                if Rb != NULL:
                    gemm_packed(nb, P, dhtil + b_lo * P, P, Rb, 1, H, 0, strips(H), False,
                                dm + b_lo * H, H, NULL)
                elif f.tiles:
                    gemm_small(nb, H, P, dhtil + b_lo * P, P, R, H, 0, dm + b_lo * H, H)
                else:
                    gemm(NoTrans, NoTrans, B, H, P, 1, dhtil, P, R, H, 0, dm, H)
            for bi in range(b_lo, b_hi):
                if t >= length(f.lengths, bi, T):
                    memset(dzt + bi * G, 0, G * sizeof(floating))
                    if ln:
                        memset(dzht + bi * G, 0, G * sizeof(floating))
                    memset(m + bi * H, 0, H * sizeof(floating))
                    continue
                tp = t + 1 if f.reverse else t - 1
                if (f.reverse and tp >= length(f.lengths, bi, T)) or (not f.reverse and tp < 0):
                    cprev = <const floating *> f.c0 + bi * H
                else:
                    cprev = cells + (tp * B + bi) * H
                drow = dg + bi * G if ln else dzt + bi * G
                arow = acc + bi * K
                cell_backward_regularised(
                    H, H, gates + (t * B + bi) * G, ctil + (t * B + bi) * H, cprev,
                    <const floating *> f.lnc + (t * B + bi) * H if ln else NULL,
                    rstd[(t * B + bi) * LN_STATS + 2] if ln else 0, dm + bi * H, dc + bi * H,
                    zc + (t * B + bi) * H if zc != NULL else NULL, drow, m + bi * H,
                    <const floating *> f.peep, arow, <const floating *> f.ln_c,
                    arow + 3 * H if ln else NULL, <floating *> f.dn + bi * H, clip, f.identity)
                if ln:
                    # Through z = LN(x W^T) + LN(h U^T) + b: the betas and biases take dz as
                    # it is (d beta, copied to the others at the end).
                    layer_norm_gates_backward(
                        G, drow, <const floating *> f.lnx + (t * B + bi) * G,
                        <const floating *> f.lnh + (t * B + bi) * G,
                        rstd[(t * B + bi) * LN_STATS], rstd[(t * B + bi) * LN_STATS + 1],
                        ln_g, ln_g + 2 * G, arow + 5 * H, arow + 5 * H + 2 * G,
                        arow + 5 * H + G, dzt + bi * G, dzht + bi * G)
            if P > 0 and not f.tiles:
                # dR += dh~.T @ m   (P, H) += (P, B)(B, H)
                gemm(Trans, NoTrans, P, H, B, 1, dhtil, P, m, H, 1, dR, H)
            # dh_d = dz_h @ U   (B, Hout) = (B, 4H)(4H, Hout)
            if nb == 0:
                pass
            elif Ub != NULL:
                gemm_packed(nb, G, dzht + b_lo * G, G, Ub, 1, Hout, 0, strips(Hout), False,
                            dhp + b_lo * Hout, Hout, NULL)
            elif f.tiles or B * G * Hout <= SMALL_PRODUCT:
                gemm_small(nb, Hout, G, dzht + b_lo * G, G, U, Hout, 0, dhp + b_lo * Hout,
                           Hout)
            else:
                gemm(NoTrans, NoTrans, B, Hout, G, 1, dzht, G, U, Hout, 0, dhp, Hout)
            # dh_{t-1} = dh_d * mask + keep * dh_t on active rows; inactive ones keep theirs
            for bi in range(b_lo, b_hi):
                if t < length(f.lengths, bi, T):
                    for j in range(Hout):
                        k = zh[(t * B + bi) * Hout + j] if zh != NULL else 0
                        dh[bi * Hout + j] = (
                            dhp[bi * Hout + j] * (rd[bi * Hout + j] if rd != NULL else 1)
                            + k * dht[bi * Hout + j])
        # h_d of the chunk's rows: h0 on the row's first step, else the neighbouring output
        # row of y (zero past a row's end, where dz is zero too), times the mask.
        for t in range(t_lo, t_lo + n):
            for bi in range(b_lo, b_hi):
                tp = t + 1 if f.reverse else t - 1
                if (f.reverse and tp >= length(f.lengths, bi, T)) or (not f.reverse and tp < 0):
                    cprev = <const floating *> f.h0 + bi * Hout
                else:
                    cprev = y + (tp * B + bi) * f.ldy
                for j in range(Hout):
                    hprev[((t - t_lo) * B + bi) * Hout + j] = (
                        cprev[j] * (rd[bi * Hout + j] if rd != NULL else 1))
        if f.tiles:
            if parts > 1:
                barrier()  # the chunk's products read every row
            chunk_products_regularised(kind, f, n * B, t_lo, part, parts)
            if parts > 1:
                barrier()  # before the next chunk's steps overwrite what they read
        else:
            # dx[chunk] += dz @ W   (n*B, I) += (n*B, 4H)(4H, I)
            gemm(NoTrans, NoTrans, n * B, I, G, 1, dz, G, W, I, 1,
                 <floating *> f.dx + t_lo * B * I, I)
            # dW += dz.T @ x[chunk]   (4H, I) += (4H, n*B)(n*B, I)
            gemm(Trans, NoTrans, G, I, n * B, 1, dz, G,
                 <const floating *> f.x + t_lo * B * I, I, 1, dW, I)
            # dU += dz_h.T @ h_d   (4H, Hout) += (4H, n*B)(n*B, Hout)
            gemm(Trans, NoTrans, G, Hout, n * B, 1, dzh_all, G, hprev, Hout, 1, dU, Hout)
            if db != NULL and not ln:
                sum_rows(n * B, dz, G, 0, G, True, db)
        s0 += n
    # The rows' own sums, over rows in row order: this part's columns.
    sum_rows(B, acc, K, share(3 * H, part, parts), share(3 * H, part + 1, parts), False,
             <floating *> f.dpeep)
    if ln:
        sum_rows(B, acc + 3 * H, K, share(2 * H, part, parts),
                 share(2 * H, part + 1, parts), False, <floating *> f.dln_c)
        sum_rows(B, acc + 5 * H, K, share(3 * G, part, parts),
                 share(3 * G, part + 1, parts), False, <floating *> f.dln_g)
        if parts > 1:
            barrier()
        # Both betas and the biases have beta_ih's gradient.
        j = share(G, part, parts)
        memcpy(<floating *> f.dln_g + 3 * G + j, <floating *> f.dln_g + G + j,
               (share(G, part + 1, parts) - j) * sizeof(floating))
        if db != NULL:
            memcpy(db + j, <floating *> f.dln_g + G + j,
                   (share(G, part + 1, parts) - j) * sizeof(floating))


cdef void chunk_products_regularised(floating kind, const RegBackwardPlan *f, Py_ssize_t rows,
                                     Py_ssize_t t_lo, int part, int parts) noexcept nogil:
    """Part ``part`` of ``parts`` of a backward chunk's products on gemm_packed, once its dz
    (and dz_h, h_d, with projection m and dh~) are complete: dx[chunk] += dz @ W (this part's
    strips of I), then dW += dz.T @ x[chunk], dU += dz_h.T @ h_d and dR += dh~.T @ m (this
    part's rows of each) and db += dz summed over rows (its columns), every row on tiles, so
    that no bit depends on the split (see gemm_packed_strided)."""
    cdef Py_ssize_t I = f.n_in, H = f.H, G = 4 * H, P = f.P, Hout = f.P if f.P > 0 else H
    cdef Py_ssize_t i_lo = share(strips(I), part, parts), i_hi = share(strips(I), part + 1, parts)
    cdef Py_ssize_t o_lo = share(strips(Hout), part, parts)
    cdef Py_ssize_t o_hi = share(strips(Hout), part + 1, parts)
    cdef Py_ssize_t r_lo = share(G, part, parts), r_hi = share(G, part + 1, parts)
    cdef Py_ssize_t p_lo = share(P, part, parts), p_hi = share(P, part + 1, parts)
    cdef const floating *x = <const floating *> f.x + t_lo * f.B * I
    cdef const floating *dz = <const floating *> f.dz
    cdef const floating *dzh = <const floating *> f.dzh
    cdef floating *xp = <floating *> f.xp
    cdef floating *hpk = <floating *> f.hpk
    gemm_packed(rows, G, dz, G, <const floating *> f.Wb, 1, I, i_lo, i_hi, True,
                <floating *> f.dx + t_lo * f.B * I, I, NULL)
    pack_strips(rows, 1, I, x, I, 1, i_lo, i_hi, xp)
    pack_strips(rows, 1, Hout, <const floating *> f.hprev, Hout, 1, o_lo, o_hi, hpk)
    if P > 0:
        pack_strips(rows, 1, H, <const floating *> f.m, H, 1, share(strips(H), part, parts),
                    share(strips(H), part + 1, parts), <floating *> f.mp)
    if parts > 1:
        barrier()
    if r_hi > r_lo:
        gemm_packed_strided(r_hi - r_lo, rows, dz + r_lo, 1, G, xp, 1, I, 0, strips(I), True,
                            <floating *> f.dW + r_lo * I, I, NULL, 1)
        gemm_packed_strided(r_hi - r_lo, rows, dzh + r_lo, 1, G, hpk, 1, Hout, 0,
                            strips(Hout), True, <floating *> f.dU + r_lo * Hout, Hout, NULL, 1)
    if p_hi > p_lo:
        gemm_packed_strided(p_hi - p_lo, rows, <const floating *> f.dhtil + p_lo, 1, P,
                            <const floating *> f.mp, 1, H, 0, strips(H), True,
                            <floating *> f.dR + p_lo * H, H, NULL, 1)
    if f.db != NULL and f.ln_g == NULL:
        sum_rows(rows, dz, G, r_lo, r_hi, True, <floating *> f.db)
