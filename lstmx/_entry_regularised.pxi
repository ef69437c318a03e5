# Entry points of the regularised layer driver and of dropout between layers: checks, plans, runs.
#
# Included by _kernels.pyx after _contract.pxi, whose checks (expect_option among them) it
# applies to every array of the options (masks, layer-norm parameters, their saved values).


cdef list plan_regularised_forward(
        RegForwardPlan *f, cnp.ndarray x, cnp.ndarray W, cnp.ndarray U, cnp.ndarray b_ih,
        cnp.ndarray b_hh, cnp.ndarray R, cnp.ndarray peep, cnp.ndarray lengths, cnp.ndarray h,
        cnp.ndarray c, cnp.ndarray y, Py_ssize_t y_col, bint reverse, bint identity,
        cnp.ndarray gates, cnp.ndarray cells, cnp.ndarray ctil, cnp.ndarray lnx,
        cnp.ndarray lnh, cnp.ndarray lnc, cnp.ndarray rstd, cnp.ndarray rd, cnp.ndarray zc,
        cnp.ndarray zh, cnp.ndarray ln_g, cnp.ndarray ln_c, double p_c, double p_h,
        double clip):
    """Check the arguments of a regularised forward pass (see ``RegularisedForward``),
    allocate its workspace and fill ``f``; returns the arrays the plan points into."""
    cdef Shapes n = Shapes(x, W, U, R, peep, lengths, h, c, y, y_col, True)
    cdef Py_ssize_t T = n.T, B = n.B, H = n.H, G = 4 * n.H, Hout = n.Hout
    cdef bint training = gates is not None, ln = ln_g is not None
    try:
        if b_ih is not None or b_hh is not None:
            expect(b_ih, "b_ih", n.typenum, G)
            expect(b_hh, "b_hh", n.typenum, G)
        expect_option(ln_c, "ln_c", n.typenum, ln, "with ln_g (layer norm)", 2, H)
        if ln:
            expect(ln_g, "ln_g", n.typenum, 4, G)
        expect_option(cells, "cells", n.typenum, training, "in training (with gates)",
                      T, B, H, True)
        if training:
            expect_output(gates, "gates", n.typenum, T, B, G)
        for a, name in ((rd, "rd"), (zc, "zc"), (zh, "zh")):
            if a is not None and not training:
                raise TypeError(f"kernel argument {name} (a mask) is for training only "
                                f"(with gates)")
        if rd is not None:
            expect(rd, "rd", n.typenum, B, Hout)
        if zc is not None:
            expect(zc, "zc", n.typenum, T, B, H)
        if zh is not None:
            expect(zh, "zh", n.typenum, T, B, Hout)
        expect_option(ctil, "ctil", n.typenum, zc is not None, "with zc (zoneout of c)",
                      T, B, H, True)
        for a, name, d2 in ((lnx, "lnx", G), (lnh, "lnh", G), (lnc, "lnc", H),
                            (rstd, "rstd", LN_STATS)):
            expect_option(a, name, n.typenum, training and ln,
                          "in training with layer norm", T, B, d2, True)
        expect_probability(p_c, "p_c")
        expect_probability(p_h, "p_h")
        if training and (p_c or p_h):
            raise ValueError("kernel arguments p_c, p_h are inference's zoneout; training "
                             "takes the masks zc, zh")
        if not (0 <= clip < float("inf")):
            raise ValueError(f"kernel argument clip must be finite and >= 0; got {clip}")
    except (TypeError, ValueError) as err:
        raise n.explain(err) from None
    cdef Py_ssize_t size = cnp.PyArray_ITEMSIZE(h)
    f.T, f.B, f.n_in, f.H, f.P, f.ldy = T, B, n.n_in, H, n.P, n.ldy
    # Where the plain layer runs forward_parallel, so does one without layer norm (whose
    # statistics read a whole row) and projection (which forward_parallel lacks), on the
    # plain layer's chunks.
    f.par = n.parallel() and not ln
    f.threads = n.threads() if f.par else 1
    f.training, f.reverse, f.identity = training, reverse, identity
    f.double = n.typenum == cnp.NPY_DOUBLE
    f.small = n.small()  # (never with f.par: its products are too big)
    f.packed_steps = n.packed_steps(f.par)
    # On gemm_packed, W is packed once a call, and chunks that leave their z in L2 pay, as
    # in forward_parallel; BLAS packs W at every product, and pays for long chunks.
    f.Tc = chunk_steps(T, B, G, n.n_in, size, training, f.par or f.packed_steps)
    # The team of rows: as many threads as there are tiles of rows to share, at most, in
    # calls of any size (unlike the threaded driver's teams, it pays in short calls too:
    # docs/performance.md); or forward_parallel's, where the plain layer's plan splits rows
    # (rows_team).
    cdef int rows_team = n.rows_team() if f.par else 0
    f.rows = f.packed_steps or rows_team > 0
    if rows_team:
        f.threads = rows_team
    elif f.rows:
        f.threads = min(max_threads(), row_tiles(B))
    f.clip, f.p_c, f.p_h = clip, p_c, p_h
    # Workspace: [inference: ctil (B, H) | the chunk of z, or with layer norm the chunk of
    #             x W^T, h U^T (B, 4H), z (B, 4H), lnc (B, H), rstd (B, 3)] [h_d (B, Hout)]
    #             [m (B, H) | h~ (B, P) | U.T | zero peepholes | b_ih + b_hh]
    #             [par: second h buffer (B, H) | second h_d buffer (B, H)]
    #             [par, rows, inference: gathered x (Tc B, I)]
    cdef Py_ssize_t chunk = f.Tc * B * G
    cdef Py_ssize_t n_inf = 0 if training else (
        B * H + chunk + ((2 * B * G + B * H + B * LN_STATS) if ln else 0))
    cdef Py_ssize_t n_hd = B * Hout if rd is not None else 0
    cdef Py_ssize_t n_ut = Hout * G if f.small else 0
    cdef Py_ssize_t n_par = B * H + n_hd if f.par else 0
    cdef Py_ssize_t n_xg = f.Tc * B * n.n_in if f.par and rows_team and not training else 0
    cdef Py_ssize_t n_own = n_inf + n_hd + B * H + B * n.P + n_ut + 3 * H + G
    cdef cnp.ndarray work = workspace(n_own + n_par + n_xg, h.dtype)
    cdef char *w = <char *> cnp.PyArray_DATA(work)
    cdef char *rest = w + (n_inf + n_hd) * size
    cdef cnp.ndarray Wp = (workspace(n.packed_size(False), h.dtype)
                           if f.par or f.rows or n.packed_input() else None)
    cdef cnp.ndarray Up = (workspace(n.packed_size(True), h.dtype) if f.par else
                           workspace(n.steps_packed_size(), h.dtype)
                           if f.packed_steps else None)
    cdef cnp.ndarray Rp = (workspace(H * strips(n.P) * TILE_COLS, h.dtype)
                           if f.packed_steps and n.P else None)
    f.x, f.W, f.U, f.b_ih, f.b_hh, f.R = data(x), data(W), data(U), data(b_ih), data(b_hh), data(R)
    f.lengths = <Py_ssize_t *> data(lengths)
    f.rd, f.zc, f.zh, f.ln_g, f.ln_c = data(rd), data(zc), data(zh), data(ln_g), data(ln_c)
    f.h, f.c, f.y = data(h), data(c), <char *> data(y) + y_col * size
    f.hd = w + n_inf * size if rd is not None else NULL
    f.m = rest
    f.hp = rest + B * H * size
    f.Ut = rest + (B * H + B * n.P) * size if f.small else NULL
    f.peep_zero = rest + (B * H + B * n.P + n_ut) * size
    memset(f.peep_zero, 0, 3 * H * size)
    f.peep = data(peep) if peep is not None else f.peep_zero
    f.bias = rest + (B * H + B * n.P + n_ut + 3 * H) * size
    bias_view = work[n_inf + n_hd + B * H + B * n.P + n_ut + 3 * H:n_own]
    f.h_alt = w + n_own * size if f.par else NULL
    f.hd_alt = w + (n_own + B * H) * size if f.par and rd is not None else NULL
    f.xg = w + (n_own + n_par) * size if n_xg else NULL
    if b_ih is not None:
        np.add(b_ih, b_hh, out=bias_view)
    else:
        bias_view.fill(0)
    if ln:  # the driver adds the biases after the layer norms, with their betas
        bias_view += ln_g[1]
        bias_view += ln_g[3]
    f.Wp, f.Up, f.Rp = data(Wp), data(Up), data(Rp)
    if training:
        f.gates, f.cells = data(gates), data(cells)
        f.ctil = data(ctil if ctil is not None else cells)
        f.lnx, f.lnh, f.lnc, f.rstd = data(lnx), data(lnh), data(lnc), data(rstd)
        f.zrow = NULL
    else:
        f.cells = NULL
        f.ctil = w
        if ln:  # (the driver reads x W^T from lnx and makes z in zrow: no z chunk)
            f.gates = NULL
            f.lnx = w + B * H * size
            f.lnh = w + (B * H + chunk) * size
            f.zrow = w + (B * H + chunk + B * G) * size
            f.lnc = w + (B * H + chunk + 2 * B * G) * size
            f.rstd = w + (2 * B * H + chunk + 2 * B * G) * size
        else:
            f.gates = w + B * H * size
            f.lnx = f.lnh = f.zrow = f.lnc = f.rstd = NULL
    return [work, Wp, Up, Rp]


cdef class RegularisedForward:
    """One layer and direction's forward pass with any of recurrent dropout, zoneout, layer
    norm and cell clip, checked and planned; run it with ``forward_regularised`` or
    ``forward_regularised_pair``. Keyword arguments only.

    As ``LayerForward`` (x, W, U, b_ih, b_hh, R, peep, lengths, h, c, y, y_col, reverse,
    identity, gates, cells), and: ln_g (4, 4H) = [gamma_ih; beta_ih; gamma_hh; beta_hh] and
    ln_c (2, H) = [gamma_c; beta_c] with layer norm, else None; clip >= 0 (0: none).
    Training (gates given): the masks rd (B, Hout) (recurrent dropout scale), zc (T, B, H)
    and zh (T, B, Hout) (zoneout, 1 = keep the previous value) or None; ctil (T, B, H)
    receives the cell's own c~_t when zc is given (cells receives the state c_t); with layer
    norm lnx, lnh (T, B, 4H), lnc (T, B, H) receive the normalised x W^T, h U^T and c~_t and
    rstd (T, B, 3) their reciprocal standard deviations. Inference: p_c, p_h, zoneout's
    probabilities (its expectation), and no masks.

    Without layer norm and projection it runs where ``LayerForward`` would, on its threads:
    forward_parallel on AVX2 and AVX-512 builds when the products are too big for
    gemm_small (``describe`` says which driver runs).
    """
    cdef RegForwardPlan plan
    cdef list arrays

    def __init__(self, *, cnp.ndarray x, cnp.ndarray W, cnp.ndarray U, cnp.ndarray h,
                 cnp.ndarray c, cnp.ndarray y, cnp.ndarray b_ih=None, cnp.ndarray b_hh=None,
                 cnp.ndarray R=None, cnp.ndarray peep=None, cnp.ndarray lengths=None,
                 Py_ssize_t y_col=0, bint reverse=False, bint identity=False,
                 cnp.ndarray gates=None, cnp.ndarray cells=None, cnp.ndarray ctil=None,
                 cnp.ndarray lnx=None, cnp.ndarray lnh=None, cnp.ndarray lnc=None,
                 cnp.ndarray rstd=None, cnp.ndarray rd=None, cnp.ndarray zc=None,
                 cnp.ndarray zh=None, cnp.ndarray ln_g=None, cnp.ndarray ln_c=None,
                 double p_c=0, double p_h=0, double clip=0):
        work = plan_regularised_forward(
            &self.plan, x, W, U, b_ih, b_hh, R, peep, lengths, h, c, y, y_col, reverse,
            identity, gates, cells, ctil, lnx, lnh, lnc, rstd, rd, zc, zh, ln_g, ln_c, p_c,
            p_h, clip)
        # The plan points into these: they live as long as it does.
        self.arrays = [x, W, U, b_ih, b_hh, R, peep, lengths, h, c, y, gates, cells, ctil,
                       lnx, lnh, lnc, rstd, rd, zc, zh, ln_g, ln_c] + work

    def describe(self):
        """The driver and its threads: "threaded" (forward_parallel, with the options that
        act unit by unit; "split" says whether its team splits "rows" or "units"), "rows"
        (forward_layer_regularised on a team that splits the batch) or "serial"
        (forward_layer_regularised)."""
        if self.plan.par:
            return {"driver": "threaded", "threads": self.plan.threads,
                    "split": "rows" if self.plan.rows else "units"}
        return {"driver": "rows" if self.plan.rows else "serial",
                "threads": self.plan.threads}


cdef void run_forward_regularised(floating kind, const RegForwardPlan *f) noexcept nogil:
    """``forward_parallel`` with the plan's unit-wise options (a team's call watched as
    run_forward_watched), or ``forward_layer_regularised`` (``kind`` only selects the
    type)."""
    cdef UnitOptions opt
    cdef double waited = 0, start = 0
    if not f.par:
        forward_layer_regularised(kind, f)
        return
    memset(&opt, 0, sizeof(opt))
    opt.rd, opt.zc, opt.zh, opt.ctil = f.rd, f.zc, f.zh, f.ctil
    opt.hd, opt.hd_alt = f.hd, f.hd_alt
    opt.p_c, opt.p_h, opt.clip = f.p_c, f.p_h, f.clip
    start = clock_now()
    forward_parallel(f.T, f.B, f.n_in, f.H, <const floating *> f.x, <const floating *> f.W,
                     <const floating *> f.U, <const floating *> f.b_ih,
                     <const floating *> f.b_hh, <const floating *> f.peep, f.lengths,
                     <floating *> f.h, <floating *> f.c, <floating *> f.y, f.ldy,
                     <floating *> f.gates, f.Tc, <floating *> f.cells, <floating *> f.Wp,
                     <floating *> f.Up, <floating *> f.h_alt, <floating *> f.bias,
                     <floating *> f.xg, f.threads,
                     False, f.reverse, f.identity, f.rows, &opt, &waited)
    plan_watch_layer(f.threads, start, waited, f.T, f.B, f.n_in, f.H, 1, f.double)


cdef void run_forward_regularised_any(const RegForwardPlan *f) noexcept nogil:
    """run_forward_regularised in the plan's dtype."""
    if f.double:
        run_forward_regularised(<double> 0, f)
    else:
        run_forward_regularised(<float> 0, f)


def forward_regularised(RegularisedForward call not None):
    """Run one layer and direction's regularised forward pass."""
    with nogil:
        run_forward_regularised_any(&call.plan)


def forward_regularised_pair(RegularisedForward fwd not None, RegularisedForward rev not None):
    """Both directions of a regularised layer, at once when ``side_by_side`` says so (as
    ``forward_pair``), each on a team of one. The two must write different columns of y.
    The bits are a team's, whatever its size."""
    cdef RegForwardPlan f[2]
    f[0], f[1] = fwd.plan, rev.plan
    cdef int d
    if side_by_side(f[0].par or f[0].rows, f[1].par or f[1].rows, f[0].threads, f[1].threads):
        f[0].threads = f[1].threads = 1
        for d in prange(2, nogil=True, num_threads=2, schedule="static"):
            run_forward_regularised_any(&f[d])
    else:
        with nogil:
            run_forward_regularised_any(&f[0])
            run_forward_regularised_any(&f[1])


cdef list plan_regularised_backward(
        RegBackwardPlan *f, cnp.ndarray x, cnp.ndarray W, cnp.ndarray U, cnp.ndarray R,
        cnp.ndarray peep, cnp.ndarray lengths, cnp.ndarray h0, cnp.ndarray c0, cnp.ndarray y,
        Py_ssize_t y_col, cnp.ndarray gates, cnp.ndarray cells, cnp.ndarray ctil,
        cnp.ndarray lnx, cnp.ndarray lnh, cnp.ndarray lnc, cnp.ndarray rstd, cnp.ndarray rd,
        cnp.ndarray zc, cnp.ndarray zh, cnp.ndarray ln_g, cnp.ndarray ln_c, double clip,
        cnp.ndarray dy, Py_ssize_t dy_col, cnp.ndarray dh, cnp.ndarray dc, cnp.ndarray dx,
        cnp.ndarray dW, cnp.ndarray dU, cnp.ndarray db, cnp.ndarray dR, cnp.ndarray dpeep,
        cnp.ndarray dln_g, cnp.ndarray dln_c, bint reverse, bint identity, cnp.ndarray Wp,
        cnp.ndarray Up):
    """Check the arguments of a regularised backward pass (see ``RegularisedBackward``),
    allocate its workspace and fill ``f``; returns the arrays the plan points into."""
    expect_weights(W, U, Wp, Up)
    cdef Shapes n = Shapes(x, W, U, R, peep, lengths, h0, c0, y, y_col, False, Wp is not None)
    cdef Py_ssize_t T = n.T, B = n.B, H = n.H, G = 4 * n.H, Hout = n.Hout
    cdef bint ln = ln_g is not None
    try:
        expect_packed(n, Wp, Up, reg_packs(B, H, Hout))
        expect(gates, "gates", n.typenum, T, B, G)
        expect(cells, "cells", n.typenum, T, B, H)
        if rd is not None:
            expect(rd, "rd", n.typenum, B, Hout)
        if zc is not None:
            expect(zc, "zc", n.typenum, T, B, H)
        if zh is not None:
            expect(zh, "zh", n.typenum, T, B, Hout)
        expect_option(ctil, "ctil", n.typenum, zc is not None, "with zc (zoneout of c)",
                      T, B, H)
        expect_option(ln_c, "ln_c", n.typenum, ln, "with ln_g (layer norm)", 2, H)
        if ln:
            expect(ln_g, "ln_g", n.typenum, 4, G)
        for a, name, d2 in ((lnx, "lnx", G), (lnh, "lnh", G), (lnc, "lnc", H),
                            (rstd, "rstd", LN_STATS)):
            expect_option(a, name, n.typenum, ln, "with layer norm", T, B, d2)
        expect_option(dln_g, "dln_g", n.typenum, ln, "with layer norm", 4, G, -1, True)
        expect_option(dln_c, "dln_c", n.typenum, ln, "with layer norm", 2, H, -1, True)
        if not (0 <= clip < float("inf")):
            raise ValueError(f"kernel argument clip must be finite and >= 0; got {clip}")
        expect_ndim(dy, "dy", 3)
        if dy_col < 0 or dy_col + Hout > dy.shape[2]:
            raise ValueError(f"kernel argument dy {(<object> dy).shape} has no room for the "
                             f"columns [{dy_col}, {dy_col + Hout})")
        expect(dy, "dy", n.typenum, T, B, dy.shape[2])
        expect_output(dh, "dh", n.typenum, B, Hout)
        expect_output(dc, "dc", n.typenum, B, H)
        expect_output(dx, "dx", n.typenum, T * B, n.n_in)
        expect_output(dW, "dW", n.typenum, G, n.n_in)
        expect_output(dU, "dU", n.typenum, G, Hout)
        if db is not None:
            expect_output(db, "db", n.typenum, G)
        expect_option(dR, "dR", n.typenum, R is not None, "with R (a projection)", n.P, H,
                      -1, True)
        if dpeep is not None:
            expect_output(dpeep, "dpeep", n.typenum, 3, H)
    except (TypeError, ValueError) as err:
        raise n.explain(err) from None
    cdef Py_ssize_t size = cnp.PyArray_ITEMSIZE(h0)
    f.T, f.B, f.n_in, f.H, f.P, f.ldy, f.lddy = T, B, n.n_in, H, n.P, n.ldy, dy.shape[2]
    f.Tc = max(1, min(T, BACKWARD_CHUNK_ELEMENTS // (B * G), BACKWARD_CHUNK_ROWS // B))
    f.reverse, f.identity, f.double = reverse, identity, n.typenum == cnp.NPY_DOUBLE
    f.clip = clip
    # backward_parallel where forward ran forward_parallel (plan_regularised_forward)
    f.par = n.parallel() and not ln
    f.threads = n.threads() if f.par else 1
    # The serial driver runs on the tile kernels (AVX2, AVX-512 builds), whose bits do not
    # depend on the team (BLAS's depend on its threads): a team of rows at every step when
    # every thread has a tile of rows and a step has the work to pay for it, or a team for
    # the chunks' products alone when they are big enough, in calls of any size (as
    # forward's team of rows).
    f.tiles = TILED_GEMM and not f.par
    if f.tiles and row_tiles(B) >= 2 and B * (G * Hout + n.P * H) >= PLAN_MIN_WORK:
        f.threads = min(max_threads(), row_tiles(B))
    if f.tiles and f.Tc * B * G * (n.n_in + Hout) >= PARALLEL_WORK:
        f.threads = max_threads()
    f.K = reg_acc_columns(H, ln)
    # Workspace: [dz of Tc steps | with layer norm: dz_h of Tc steps, dz of a step (B, 4H)]
    #            [dh_t | dh_d (B, Hout) | dm | dn (B, H) | acc (B, K) |
    #             dh~_t (B, Hout), m (B, H), or of Tc steps (tiles with projection) |
    #             h_d of a chunk (Tc*B, Hout), or backward_parallel's scratch |
    #             zero peepholes | unwanted dpeep]
    cdef Py_ssize_t chunk = f.Tc * B * (G + DZ_PAD if f.par else G)
    cdef Py_ssize_t n_ln = chunk + B * G if ln else 0
    cdef Py_ssize_t steps = f.Tc if f.tiles and n.P else 1
    cdef Py_ssize_t n_hprev = (
        f.Tc * B * ((strips(H) + strips(n.n_in)) * TILE_COLS + H) if f.par
        else f.Tc * B * Hout)
    cdef Py_ssize_t n_rest = (2 * B * Hout + 2 * B * H + B * f.K + steps * B * (Hout + H)
                              + n_hprev + 6 * H)
    cdef cnp.ndarray work = workspace(chunk + n_ln + n_rest, h0.dtype)
    cdef bint packed = reg_packs(B, H, Hout)
    f.prepacked = Wp is not None
    cdef cnp.ndarray Ub = (Up if f.prepacked else
                           workspace(n.packed_size(True), h0.dtype) if f.par else
                           workspace(G * strips(Hout) * TILE_COLS, h0.dtype)
                           if packed else None)
    cdef cnp.ndarray Rb = (workspace(n.P * strips(H) * TILE_COLS, h0.dtype)
                           if packed and n.P else None)
    cdef cnp.ndarray Wb = (Wp if f.prepacked else
                           workspace(n.packed_size(False), h0.dtype) if f.par or f.tiles
                           else None)
    cdef cnp.ndarray xp = (workspace(f.Tc * B * strips(n.n_in) * TILE_COLS, h0.dtype)
                           if f.tiles else None)
    cdef cnp.ndarray hpk = (workspace(f.Tc * B * strips(Hout) * TILE_COLS, h0.dtype)
                            if f.tiles else None)
    cdef cnp.ndarray mp = (workspace(f.Tc * B * strips(H) * TILE_COLS, h0.dtype)
                           if f.tiles and n.P else None)
    cdef char *w = <char *> cnp.PyArray_DATA(work)
    cdef char *r = w + (chunk + n_ln) * size
    f.dz = w
    f.dzh = w + chunk * size if ln else w
    f.dg = w + 2 * chunk * size if ln else NULL
    f.dht = r
    f.dhp = r + B * Hout * size
    f.dm = r + 2 * B * Hout * size
    f.dn = r + (2 * B * Hout + B * H) * size
    f.acc = r + (2 * B * Hout + 2 * B * H) * size
    r += (2 * B * Hout + 2 * B * H + B * f.K) * size
    f.dhtil = r
    f.m = r + steps * B * Hout * size
    f.hprev = r + steps * B * (Hout + H) * size
    cdef char *zero_peep = r + (steps * B * (Hout + H) + n_hprev) * size
    memset(zero_peep, 0, 3 * H * size)
    f.x, f.W, f.U, f.R = data(x), data(W), data(U), data(R)
    f.peep = data(peep) if peep is not None else zero_peep
    f.dpeep = data(dpeep) if dpeep is not None else zero_peep + 3 * H * size
    f.lengths = <Py_ssize_t *> data(lengths)
    f.rd, f.zc, f.zh, f.ln_g, f.ln_c = data(rd), data(zc), data(zh), data(ln_g), data(ln_c)
    f.h0, f.c0, f.y = data(h0), data(c0), <char *> data(y) + y_col * size
    f.gates, f.cells = data(gates), data(cells)
    f.ctil = data(ctil if ctil is not None else cells)
    f.lnx, f.lnh, f.lnc, f.rstd = data(lnx), data(lnh), data(lnc), data(rstd)
    f.dy = <char *> data(dy) + dy_col * size
    f.dh, f.dc, f.dx, f.dW, f.dU = data(dh), data(dc), data(dx), data(dW), data(dU)
    f.db, f.dR, f.dln_g, f.dln_c = data(db), data(dR), data(dln_g), data(dln_c)
    f.Ub, f.Rb, f.Wb = data(Ub), data(Rb), data(Wb)
    f.xp, f.hpk, f.mp = data(xp), data(hpk), data(mp)
    return [work, Ub, Rb, Wb, xp, hpk, mp]


cdef class RegularisedBackward:
    """Backpropagation through time over one layer and direction of the regularised cell,
    checked and planned; run it with ``backward_regularised`` or
    ``backward_regularised_pair``. Keyword arguments only.

    The forward pass's arguments and outputs (as ``RegularisedForward`` in training, h0 and
    c0 for h and c), dy, dh, dc, dx, dW, dU, db, dR, dpeep as ``LayerBackward`` (dx is
    accumulated into), and with layer norm dln_g (4, 4H) and dln_c (2, H), overwritten with
    the gradients of ln_g and ln_c. Runs backward_parallel where ``RegularisedForward`` runs
    forward_parallel. Wp and Up may stand for W and U as in ``LayerBackward``.
    """
    cdef RegBackwardPlan plan
    cdef list arrays
    cdef cnp.ndarray dx

    def __init__(self, *, cnp.ndarray x, cnp.ndarray W, cnp.ndarray U, cnp.ndarray h0,
                 cnp.ndarray c0, cnp.ndarray y, cnp.ndarray gates, cnp.ndarray cells,
                 cnp.ndarray dy, cnp.ndarray dh, cnp.ndarray dc, cnp.ndarray dx,
                 cnp.ndarray dW, cnp.ndarray dU, cnp.ndarray R=None, cnp.ndarray peep=None,
                 cnp.ndarray lengths=None, Py_ssize_t y_col=0, Py_ssize_t dy_col=0,
                 cnp.ndarray ctil=None, cnp.ndarray lnx=None, cnp.ndarray lnh=None,
                 cnp.ndarray lnc=None, cnp.ndarray rstd=None, cnp.ndarray rd=None,
                 cnp.ndarray zc=None, cnp.ndarray zh=None, cnp.ndarray ln_g=None,
                 cnp.ndarray ln_c=None, double clip=0, cnp.ndarray db=None,
                 cnp.ndarray dR=None, cnp.ndarray dpeep=None, cnp.ndarray dln_g=None,
                 cnp.ndarray dln_c=None, bint reverse=False, bint identity=False,
                 cnp.ndarray Wp=None, cnp.ndarray Up=None):
        work = plan_regularised_backward(
            &self.plan, x, W, U, R, peep, lengths, h0, c0, y, y_col, gates, cells, ctil, lnx,
            lnh, lnc, rstd, rd, zc, zh, ln_g, ln_c, clip, dy, dy_col, dh, dc, dx, dW, dU, db,
            dR, dpeep, dln_g, dln_c, reverse, identity, Wp, Up)
        self.dx = dx
        self.arrays = [x, W, U, R, peep, lengths, h0, c0, y, gates, cells, ctil, lnx, lnh,
                       lnc, rstd, rd, zc, zh, ln_g, ln_c, dy, dh, dc, dx, dW, dU, db, dR,
                       dpeep, dln_g, dln_c] + work

    def describe(self):
        """The driver and its threads: "threaded" (backward_parallel, with the options that
        act unit by unit), "rows" (backward_layer_regularised on the tile kernels, its steps
        on a team that splits the batch when ``threads`` > 1) or "serial"
        (backward_layer_regularised on BLAS)."""
        return {"driver": ("threaded" if self.plan.par else "rows" if self.plan.tiles
                           else "serial"),
                "threads": self.plan.threads}


cdef void run_backward_regularised(floating kind, const RegBackwardPlan *f) noexcept nogil:
    """``backward_parallel`` with the plan's unit-wise options (watched as forward), or
    ``backward_layer_regularised`` (``kind`` only selects the type)."""
    cdef UnitOptions opt
    cdef double waited = 0, start = 0
    if not f.par:
        backward_layer_regularised(kind, f)
        return
    memset(&opt, 0, sizeof(opt))
    opt.rd, opt.zc, opt.zh, opt.ctil = f.rd, f.zc, f.zh, <void *> f.ctil
    opt.dhtil, opt.dn = f.dhtil, f.dn
    opt.clip = f.clip
    start = clock_now()
    backward_parallel(
        f.T, f.B, f.n_in, f.H, <const floating *> f.x, <const floating *> f.W,
        <const floating *> f.U, <const floating *> f.peep, f.lengths, <const floating *> f.h0,
        <const floating *> f.c0, <const floating *> f.y, f.ldy, <const floating *> f.gates,
        <const floating *> f.cells, <const floating *> f.dy, f.lddy, <floating *> f.dh,
        <floating *> f.dc, <floating *> f.dx, <floating *> f.dW, <floating *> f.dU,
        <floating *> f.db, <floating *> f.dpeep, <floating *> f.dz, f.Tc, <floating *> f.dht,
        <floating *> f.dhp, <floating *> f.m, <floating *> f.Ub, <floating *> f.Wb,
        <floating *> f.hprev, f.threads, False, f.reverse, f.identity, f.prepacked, &opt,
        &waited)
    plan_watch_layer(f.threads, start, waited, f.T, f.B, f.n_in, f.H, 2, f.double)


cdef void run_backward_regularised_any(const RegBackwardPlan *f) noexcept nogil:
    """run_backward_regularised in the plan's dtype."""
    if f.double:
        run_backward_regularised(<double> 0, f)
    else:
        run_backward_regularised(<float> 0, f)


def backward_regularised(RegularisedBackward call not None):
    """Run one layer and direction's regularised backward pass."""
    with nogil:
        run_backward_regularised_any(&call.plan)


def backward_regularised_pair(RegularisedBackward fwd not None,
                              RegularisedBackward rev not None):
    """Both directions of a regularised layer, at once when ``side_by_side`` says so (as
    ``backward_pair``), each on a team of one. The two must share x and dx; the reverse
    direction's dx goes to a scratch array added to dx afterwards, whether or not the
    directions run at once, so that the sum rounds the same way on any number of threads."""
    if fwd.plan.dx != rev.plan.dx or fwd.plan.x != rev.plan.x:
        raise ValueError("kernel arguments: the two directions must share x and dx")
    cdef RegBackwardPlan f[2]
    f[0], f[1] = fwd.plan, rev.plan
    cdef int d
    cdef cnp.ndarray dx = fwd.dx
    cdef cnp.ndarray dx1 = workspace(dx.size, dx.dtype)
    memset(cnp.PyArray_DATA(dx1), 0, cnp.PyArray_NBYTES(dx1))
    f[1].dx = cnp.PyArray_DATA(dx1)
    if side_by_side(f[0].par or f[0].tiles, f[1].par or f[1].tiles, f[0].threads,
                    f[1].threads):
        f[0].threads = f[1].threads = 1
        for d in prange(2, nogil=True, num_threads=2, schedule="static"):
            run_backward_regularised_any(&f[d])
    else:
        with nogil:
            run_backward_regularised_any(&f[0])
            run_backward_regularised_any(&f[1])
    np.add(dx.reshape(-1), dx1, out=dx.reshape(-1))


def scale(cnp.ndarray a not None, cnp.ndarray mask not None, cnp.ndarray out not None):
    """out := a * mask, element-wise, for C-contiguous arrays of one shape and dtype (out
    may be a): dropout between layers, and its gradient."""
    cdef int typenum = cnp.PyArray_TYPE(a)
    if typenum != cnp.NPY_FLOAT and typenum != cnp.NPY_DOUBLE:
        raise TypeError(f"kernel argument a must be float32 or float64; got "
                        f"{(<object> a).dtype}")
    for arr, name in ((a, "a"), (mask, "mask"), (out, "out")):
        if (<object> arr).shape != (<object> a).shape:
            raise ValueError(f"kernel argument {name} must have the shape of a, "
                             f"{(<object> a).shape}; got {(<object> arr).shape}")
        if (cnp.PyArray_TYPE(arr) != typenum or not cnp.PyArray_IS_C_CONTIGUOUS(arr)
                or not cnp.PyArray_ISALIGNED(arr) or not cnp.PyArray_ISNOTSWAPPED(arr)):
            raise TypeError(f"kernel argument {name} must be an aligned C-contiguous "
                            f"native-order array of a's dtype, {(<object> a).dtype}")
    if not cnp.PyArray_ISWRITEABLE(out):
        raise ValueError("kernel argument out receives results and must be writeable")
    cdef Py_ssize_t count = cnp.PyArray_SIZE(a)
    cdef void *pa = cnp.PyArray_DATA(a)
    cdef void *pm = cnp.PyArray_DATA(mask)
    cdef void *po = cnp.PyArray_DATA(out)
    with nogil:
        if typenum == cnp.NPY_DOUBLE:
            scale_elements(count, <double *> pa, <double *> pm, <double *> po)
        else:
            scale_elements(count, <float *> pa, <float *> pm, <float *> po)
