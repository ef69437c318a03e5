# The contract of the kernels' arguments: every array checked, and the sizes read, before a kernel runs.
#
# Included by _kernels.pyx, after _arguments.pxi (the checks of one array). A TypeError or
# ValueError names the argument, what it must be and what it is, and where the sizes it was
# compared with came from.

cdef int expect_option(cnp.ndarray a, str name, int typenum, bint wanted, str why,
                       Py_ssize_t d0, Py_ssize_t d1=-1, Py_ssize_t d2=-1,
                       bint output=False) except -1:
    """Raise unless ``a`` is None exactly when not ``wanted`` (``why`` says when it is),
    and otherwise an array as ``expect`` (and ``expect_output`` when ``output``) demand."""
    if (a is None) == wanted:
        raise TypeError(f"kernel argument {name} must be {'given' if wanted else 'None'} "
                        f"{why}")
    if a is not None:
        if output:
            expect_output(a, name, typenum, d0, d1, d2)
        else:
            expect(a, name, typenum, d0, d1, d2)
    return 0


cdef int expect_probability(double p, str name) except -1:
    if not 0 <= p < 1:
        raise ValueError(f"kernel argument {name} must be in [0, 1); got {p}")
    return 0


cdef inline bint threaded_driver(Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, Py_ssize_t P):
    """Shapes.parallel from the sizes alone."""
    return TILED_GEMM and P == 0 and B * 4 * H * H > SMALL_PRODUCT and T > 1


cdef inline bint reg_packs(Py_ssize_t B, Py_ssize_t H, Py_ssize_t Hout):
    """Whether a regularised backward packs W and U (the threaded driver, or the serial one
    on the tile kernels with a recurrent product above gemm_small's)."""
    return TILED_GEMM and B * 4 * H * Hout > SMALL_PRODUCT


cdef int expect_weights(cnp.ndarray W, cnp.ndarray U, cnp.ndarray Wp,
                        cnp.ndarray Up) except -1:
    """Raise unless a backward pass gets W and U, or Wp and Up (them packed by
    pack_for_backward) instead."""
    if (Wp is not None or Up is not None) and (W is not None or U is not None
                                               or Wp is None or Up is None):
        raise TypeError("kernel arguments: give W and U, or Wp and Up (packed by "
                        "pack_for_backward), not both or a mix")
    return 0


cdef int expect_packed(Shapes n, cnp.ndarray Wp, cnp.ndarray Up, bint packs) except -1:
    """Raise unless Wp and Up, if given, are W and U as pack_for_backward packs them, for a
    backward that reads them packed (``packs``: see backward_packs)."""
    if Wp is None:
        return 0
    if not packs:
        raise ValueError("kernel arguments Wp and Up are read only where backward packs W "
                         "and U, and these sizes or this kernel variant do not "
                         "(backward_packs): give W and U")
    expect(Wp, "Wp", n.typenum, strips(n.n_in) * 4 * n.H * TILE_COLS)
    expect(Up, "Up", n.typenum, strips(n.Hout) * 4 * n.H * TILE_COLS)
    return 0


cdef class Shapes:
    """The sizes of one layer and direction, read from the arrays and checked against each
    other (the kernels' loops trust them)."""
    cdef Py_ssize_t T, B, n_in, H, P, Hout, ldy  # n_in: I is a macro of complex.h
    cdef int typenum
    cdef str h_name, c_name  # "h", "c" in a forward pass; "h0", "c0" in backward
    cdef bint packed  # W and U come packed, apart (plan_backward): I is x's width

    def __cinit__(self, cnp.ndarray x, cnp.ndarray W, cnp.ndarray U, cnp.ndarray R,
                  cnp.ndarray peep, cnp.ndarray lengths, cnp.ndarray h, cnp.ndarray c,
                  cnp.ndarray y, Py_ssize_t y_col, bint outputs, bint packed=False):
        self.packed = packed
        self.h_name, self.c_name = ("h", "c") if outputs else ("h0", "c0")
        expect_ndim(h, self.h_name, 2)
        expect_ndim(c, self.c_name, 2)
        expect_ndim(y, "y", 3)
        expect_ndim(x if packed else W, "x" if packed else "W", 2)
        if R is not None:
            expect_ndim(R, "R", 2)
        self.typenum = cnp.PyArray_TYPE(h)
        if self.typenum != cnp.NPY_FLOAT and self.typenum != cnp.NPY_DOUBLE:
            raise TypeError(f"kernel arguments must be float32 or float64; "
                            f"got {self.h_name} of {(<object> h).dtype}")
        self.B, self.Hout, self.H = h.shape[0], h.shape[1], c.shape[1]
        self.T, self.ldy, self.n_in = y.shape[0], y.shape[2], (x if packed else W).shape[1]
        self.P = 0 if R is None else R.shape[0]
        try:
            if self.T < 1 or self.B < 1 or self.H < 1 or self.n_in < 1:
                raise ValueError(f"kernel arguments: seq_len, batch, hidden size and input "
                                 f"size must be at least 1")
            if self.Hout != (self.P if self.P else self.H):
                raise ValueError(f"kernel arguments: {self.h_name} has {self.Hout} features, "
                                 f"expected {self.P if self.P else self.H}")
            if y_col < 0 or y_col + self.Hout > self.ldy:
                raise ValueError(f"kernel arguments: columns [{y_col}, {y_col + self.Hout}) "
                                 f"of y {(<object> y).shape} do not fit")
            if (self.T * self.B > BLAS_LIMIT
                    or 4 * self.H > BLAS_LIMIT // max(self.n_in, self.H)
                    or self.T * self.B > BLAS_LIMIT // max(self.n_in, 4 * self.H)):
                raise ValueError(f"kernel arguments: the sizes exceed BLAS's 32-bit indices")
            self.check(x, W, U, R, peep, lengths, h, c, y, outputs)
        except (TypeError, ValueError) as err:
            raise self.explain(err) from None

    cdef int check(self, cnp.ndarray x, cnp.ndarray W, cnp.ndarray U, cnp.ndarray R,
                   cnp.ndarray peep, cnp.ndarray lengths, cnp.ndarray h, cnp.ndarray c,
                   cnp.ndarray y, bint outputs) except -1:
        G = 4 * self.H
        expect(x, "x", self.typenum, self.T * self.B, self.n_in)
        if not self.packed:
            expect(W, "W", self.typenum, G, self.n_in)
            expect(U, "U", self.typenum, G, self.Hout)
        if outputs:  # a forward pass writes the state and y
            expect_output(h, self.h_name, self.typenum, self.B, self.Hout)
            expect_output(c, self.c_name, self.typenum, self.B, self.H)
            expect_output(y, "y", self.typenum, self.T, self.B, self.ldy)
        else:
            expect(h, self.h_name, self.typenum, self.B, self.Hout)
            expect(c, self.c_name, self.typenum, self.B, self.H)
            expect(y, "y", self.typenum, self.T, self.B, self.ldy)
        if R is not None:
            expect(R, "R", self.typenum, self.P, self.H)
        if peep is not None:
            expect(peep, "peep", self.typenum, 3, self.H)
        expect_lengths(lengths, self.B, self.T)
        return 0

    cdef object explain(self, err):
        """``err`` with where the dtype and sizes it compares came from: a wrong array that
        sets one is reported as the others disagreeing with it."""
        return type(err)(f"{err} (from the arguments: dtype "
                         f"{np.dtype(cnp.PyArray_DescrFromType(self.typenum))} from "
                         f"{self.h_name}, T={self.T} from y, B={self.B} from {self.h_name}, "
                         f"I={self.n_in} from {'x' if self.packed else 'W'}, H={self.H} from "
                         f"{self.c_name}, P={self.P} "
                         f"from R)")

    cdef bint parallel(self):
        """Whether forward and backward run as forward_parallel and backward_parallel:
        AVX2 and AVX-512 builds, no projection, recurrent products too big for gemm_small,
        and more than one step. A one-step call packs W and U for one use, which BLAS's
        own packing does faster: it runs on forward_layer and backward_layer's BLAS
        products (docs/performance.md)."""
        return threaded_driver(self.T, self.B, self.H, self.P)

    cdef bint alone(self):
        """Whether a call is too small for a team: under plan_call_work multiply-adds in all
        its steps (T = 7 B = 8 I = 32 H = 100: 2,956,800). plan_threads weighs a step's work
        against a barrier; a team also costs once a call, waking it (milliseconds when
        another pool, torch's or BLAS's, has just had the cores) and each thread packing
        its strips of W and U, which a short call does not earn back (docs/performance.md).
        A team's size changes no bit."""
        return self.T * self.B * 4 * self.H * (self.n_in + self.H) < plan_call_work

    cdef int threads(self) except -1:
        """OpenMP threads for the parallel kernels: one for a call that is ``alone``, else
        the team plan_threads (_plan.pxi) finds fastest for a step of B * 4H * (I + H)
        multiply-adds, at most one thread per strip of hidden units."""
        if self.alone():
            return 1
        return plan_threads(self.B * 4 * self.H * (self.n_in + self.H),
                            min(max_threads(), strips(self.H)),
                            self.typenum == cnp.NPY_DOUBLE)

    cdef int rows_team(self) except -1:
        """forward_parallel's team of rows (plan_rows), or 0 to split units. Where neither
        splits (a call that is ``alone``, or no team of rows and no team of units that
        pays), one thread is a team of rows of one: it packs W.T and U.T as one group of 4H
        columns, without a part-empty strip at the end of each gate, as forward_layer does;
        a team of units packs by gate."""
        if self.alone():
            return 1
        cdef int team = plan_rows(
            self.B, 4 * self.H * (self.n_in + self.H),
            self.packed_size(True) * (8 if self.typenum == cnp.NPY_DOUBLE else 4), L2_BYTES,
            max_threads())
        return 1 if team == 0 and self.threads() == 1 else team

    cdef Py_ssize_t packed_size(self, bint recurrent):
        """Elements of W (or U when ``recurrent``) packed, either way round: forward packs
        W.T as (I, 4H) and backward W as (4H, I). Both are rounded up to whole strips in
        both dimensions, so that backward reuses forward's buffers (lstmx._workspace)."""
        cdef Py_ssize_t cols = strips(self.H if recurrent else self.n_in) * TILE_COLS
        return cols * 4 * strips(self.H) * TILE_COLS

    cdef Py_ssize_t steps_packed_size(self):
        """Elements of U.T packed as forward_layer packs it for gemm_packed (one group of
        4H columns, Hout deep)."""
        return self.Hout * strips(4 * self.H) * TILE_COLS

    cdef bint small(self):
        """Whether forward runs its recurrent products on gemm_small with U.T, which costs a
        transposition per call: worth it over a few steps."""
        return self.B * 4 * self.H * self.Hout <= SMALL_PRODUCT and self.T >= 4

    cdef bint packed_steps(self, bint threaded):
        """Whether the serial drivers' recurrent products (and projections) run on
        gemm_packed with U.T and R.T packed once per call (AVX2, AVX-512 builds) rather than
        BLAS, for a call that does not run on the threaded driver (``threaded``: whether it
        does; the plain layer's is ``parallel()``, the regularised one's also excludes layer
        norm): no per-call cost, and no OpenBLAS threads beside the OpenMP team of the input
        projection (on 2 cores the two pools' spinning threads slow each other down).
        Packing costs about one step's product, so a few steps are needed."""
        return TILED_GEMM and not threaded and not self.small() and self.T >= 4

    cdef bint packed_input(self):
        """Whether forward_layer's input projection runs on gemm_packed (AVX2 and
        AVX-512 builds) with W.T packed, which is worth it for enough rows."""
        return TILED_GEMM and self.T * self.B >= 64
