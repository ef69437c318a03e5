"""Entry points of the LSTM kernels (one layer, one direction) and the contract of their arguments.

The maths, line for line, is in ``lstmx/reference.py`` and ``docs/equations.md``. Layout:
every array is time-major and C-contiguous; a time step is a (B, .) block of rows, and the
gate pre-activations of a row are the four blocks ``[z_i | z_f | z_g | z_o]`` of width H.

A call is built by name, checked and planned once (``LayerForward``, ``LayerBackward``) and
then run (``forward``, ``forward_pair``, ``backward``, ``backward_pair``). Building it checks
every array against the contract the unchecked loops rely on (dtype, native byte order, C
layout, alignment, writability of outputs, sizes against each other: a ``TypeError`` or
``ValueError`` naming the argument), allocates one scratch workspace with NumPy while the GIL
is held, and records where each part of it lies; running it is one ``with nogil:`` block.
``lstmx._engine`` has checked the user's input before; these checks are the kernels' own.

The code is split by job, and included here so that every kernel variant (``_kernels``,
``_kernels_avx2``, ``_kernels_avx512``) compiles all of it for its own instruction set:
``_activations.pxd`` (exp, sigmoid, tanh), ``_cell.pxi`` (the cell's element-wise steps),
``_layer_serial.pxi`` and ``_layer_parallel.pxi`` (the layer drivers), ``_gemm.pxd`` (the
in-house GEMM), ``_blas`` (the BLAS shim) and ``_openmp.pxd``.

A batch row b is *active* at time t when ``t < lengths[b]``, in both directions: the forward
direction runs t = 0 .. T-1, the reverse one t = T-1 .. 0, and either way an inactive row keeps
its state and outputs zeros (PyTorch's packed-sequence semantics).
"""
import numpy as np

cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport uint64_t
from libc.string cimport memcpy, memset

from cython.parallel cimport parallel, prange, threadid

from lstmx._activations cimport sigmoid, tanh_
from lstmx._blas cimport NoTrans, Trans, gemm
from lstmx._gemm cimport (
    PARALLEL_WORK, TILED_GEMM, TILE_COLS, gemm_packed, gemm_packed_parallel,
    gemm_packed_strided, gemm_small, pack_strips, share, strips)
from lstmx._openmp cimport barrier, max_threads, num_threads

from lstmx._workspace import MIN_BYTES as POOL_MIN_BYTES, empty as pooled_empty

cnp.import_array()

# Inference keeps the input projection, and backward dz, of a chunk of time steps at a time,
# so that memory stays bounded on long sequences while each chunk is still a large GEMM.
cdef enum:
    CHUNK_ELEMENTS = 1 << 20           # elements of an inference chunk's z
    BACKWARD_CHUNK_ELEMENTS = 1 << 19  # of a backward chunk's dz
    # Rows (steps x batch) of a backward chunk at most: the depth of its dW and dU products.
    # Deep enough for the tile kernel, and small enough that at M a thread's dz, packed x and
    # h and U stay in a 2 MiB L2 (docs/performance.md has the measurement).
    BACKWARD_CHUNK_ROWS = 256
    # Padding of backward_parallel's rows of dz (4H + DZ_PAD apart): at 4H = 1024 or 2048
    # floats, rows a multiple of 4 KiB apart share L1 cache sets, and the dW and dU products
    # read dz.T down those rows.
    DZ_PAD = 16
    # Recurrent products of at most this many multiply-adds skip BLAS (its per-call cost
    # dominates a batch of one); see gemm_small.
    SMALL_PRODUCT = 1 << 15
    # BLAS takes C ints: no dimension or product of two may reach 2**31.
    BLAS_LIMIT = 2147483647

include "_cell.pxi"
include "_layer_serial.pxi"
include "_layer_parallel.pxi"


# ---------------------------------------------------------------------------------------------
# The contract: every array checked before a kernel runs.

cdef cnp.ndarray workspace(Py_ssize_t n, cnp.dtype dtype):
    """Scratch of n elements: from lstmx._workspace when large (fresh pages cost a page
    fault each), else from NumPy without the Python call."""
    if n * dtype.itemsize < POOL_MIN_BYTES:
        return np.empty(n, dtype)
    return pooled_empty(n, dtype)


cdef inline void *data(cnp.ndarray a) noexcept:
    return NULL if a is None else cnp.PyArray_DATA(a)


cdef int expect(cnp.ndarray a, str name, int typenum, Py_ssize_t d0, Py_ssize_t d1=-1,
                Py_ssize_t d2=-1) except -1:
    """Raise unless ``a`` is an aligned, C-contiguous, native-order array of ``typenum`` and
    shape (d0[, d1[, d2]])."""
    cdef int ndim = 1 if d1 < 0 else (2 if d2 < 0 else 3)
    cdef Py_ssize_t want[3]
    want[0], want[1], want[2] = d0, d1, d2
    if a is None:
        raise TypeError(f"kernel argument {name} is None; expected an array")
    if (cnp.PyArray_TYPE(a) != typenum or not cnp.PyArray_IS_C_CONTIGUOUS(a)
            or not cnp.PyArray_ISALIGNED(a) or not cnp.PyArray_ISNOTSWAPPED(a)):
        raise TypeError(f"kernel argument {name} must be an aligned C-contiguous "
                        f"native-order {np.dtype(cnp.PyArray_DescrFromType(typenum))} array; "
                        f"got {(<object> a).dtype} with flags {(<object> a).flags}")
    cdef int k
    cdef bint same = cnp.PyArray_NDIM(a) == ndim
    for k in range(ndim if same else 0):
        same = same and a.shape[k] == want[k]
    if not same:
        raise ValueError(f"kernel argument {name} must have shape "
                         f"{tuple(want[k] for k in range(ndim))}; got {(<object> a).shape}")
    return 0


cdef int expect_output(cnp.ndarray a, str name, int typenum, Py_ssize_t d0,
                       Py_ssize_t d1=-1, Py_ssize_t d2=-1) except -1:
    """``expect``, and writeable: ``a`` receives results."""
    expect(a, name, typenum, d0, d1, d2)
    if not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"kernel argument {name} receives results and must be writeable")
    return 0


cdef int expect_ndim(cnp.ndarray a, str name, int ndim) except -1:
    """Raise unless ``a`` is an array of ``ndim`` dimensions (its sizes are read next)."""
    if a is None:
        raise TypeError(f"kernel argument {name} is None; expected a {ndim}-D array")
    if cnp.PyArray_NDIM(a) != ndim:
        raise ValueError(f"kernel argument {name} must be {ndim}-D; got shape "
                         f"{(<object> a).shape}")
    return 0


cdef int expect_lengths(cnp.ndarray lengths, Py_ssize_t B, Py_ssize_t T) except -1:
    cdef Py_ssize_t bi
    cdef const Py_ssize_t *ln
    if lengths is None:
        return 0
    expect(lengths, "lengths", cnp.NPY_INTP, B)
    ln = <const Py_ssize_t *> cnp.PyArray_DATA(lengths)
    for bi in range(B):
        if ln[bi] < 1 or ln[bi] > T:
            raise ValueError(f"kernel argument lengths[{bi}] = {ln[bi]} is outside [1, {T}]")
    return 0


cdef class Shapes:
    """The sizes of one layer and direction, read from the arrays and checked against each
    other (the kernels' loops trust them)."""
    cdef Py_ssize_t T, B, n_in, H, P, Hout, ldy  # n_in: I is a macro of complex.h
    cdef int typenum
    cdef str h_name, c_name  # "h", "c" in a forward pass; "h0", "c0" in backward

    def __cinit__(self, cnp.ndarray x, cnp.ndarray W, cnp.ndarray U, cnp.ndarray R,
                  cnp.ndarray peep, cnp.ndarray lengths, cnp.ndarray h, cnp.ndarray c,
                  cnp.ndarray y, Py_ssize_t y_col, bint outputs):
        self.h_name, self.c_name = ("h", "c") if outputs else ("h0", "c0")
        expect_ndim(h, self.h_name, 2)
        expect_ndim(c, self.c_name, 2)
        expect_ndim(y, "y", 3)
        expect_ndim(W, "W", 2)
        if R is not None:
            expect_ndim(R, "R", 2)
        self.typenum = cnp.PyArray_TYPE(h)
        if self.typenum != cnp.NPY_FLOAT and self.typenum != cnp.NPY_DOUBLE:
            raise TypeError(f"kernel arguments must be float32 or float64; "
                            f"got {self.h_name} of {(<object> h).dtype}")
        self.B, self.Hout, self.H = h.shape[0], h.shape[1], c.shape[1]
        self.T, self.ldy, self.n_in = y.shape[0], y.shape[2], W.shape[1]
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
                         f"I={self.n_in} from W, H={self.H} from {self.c_name}, P={self.P} "
                         f"from R)")

    cdef bint parallel(self):
        """Whether forward and backward run as forward_parallel and backward_parallel:
        AVX2 and AVX-512 builds, no projection, recurrent products too big for gemm_small."""
        return TILED_GEMM and self.P == 0 and self.B * 4 * self.H * self.H > SMALL_PRODUCT

    cdef int threads(self):
        """OpenMP threads for the parallel kernels: one below PARALLEL_WORK multiply-adds a
        step (waking a team costs more), at most one per strip of hidden units."""
        if self.B * 4 * self.H * (self.n_in + self.H) < PARALLEL_WORK:
            return 1
        return max(1, min(max_threads(), strips(self.H)))

    cdef Py_ssize_t packed_size(self, bint recurrent):
        """Elements of W (or U when ``recurrent``) packed, either way round: forward packs
        W.T as (I, 4H) and backward W as (4H, I). Both are rounded up to whole strips in
        both dimensions, so that backward reuses forward's buffers (lstmx._workspace)."""
        cdef Py_ssize_t cols = strips(self.H if recurrent else self.n_in) * TILE_COLS
        return cols * 4 * strips(self.H) * TILE_COLS

    cdef bint small(self):
        """Whether forward runs its recurrent products on gemm_small with U.T, which costs a
        transposition per call: worth it over a few steps."""
        return self.B * 4 * self.H * self.Hout <= SMALL_PRODUCT and self.T >= 4

    cdef bint packed_steps(self):
        """Whether forward_layer's recurrent products (and projections) run on gemm_packed
        with U.T and R.T packed once per call (AVX2, AVX-512 builds) rather than BLAS: no
        per-call cost, and no OpenBLAS threads beside the OpenMP team of the input
        projection (on 2 cores the two pools' spinning threads slow each other down).
        Packing costs about one step's product, so a few steps are needed."""
        return TILED_GEMM and not self.parallel() and not self.small() and self.T >= 4

    cdef bint packed_input(self):
        """Whether forward_layer's input projection runs on gemm_packed (AVX2 and
        AVX-512 builds) with W.T packed, which is worth it for enough rows."""
        return TILED_GEMM and self.T * self.B >= 64


# ---------------------------------------------------------------------------------------------
# Forward

cdef struct ForwardPlan:
    # One layer and direction ready to run: sizes, and pointers into the arrays and the
    # workspace (untyped: run_forward's ``kind`` gives them their type).
    Py_ssize_t T, B, n_in, H, P, ldy, Tc  # n_in: I is a macro of complex.h
    int threads
    bint par, lean, reverse, identity, double
    const void *x
    const void *W
    const void *U
    const void *b_ih
    const void *b_hh
    const void *R
    const void *peep
    const Py_ssize_t *lengths
    void *h
    void *c
    void *y
    void *gates
    void *cells
    void *m
    void *hp
    void *Ut
    void *Wp
    void *Up
    void *Rp
    void *h_alt
    void *bias


cdef list plan_forward(ForwardPlan *f, cnp.ndarray x, cnp.ndarray W, cnp.ndarray U,
                       cnp.ndarray b_ih, cnp.ndarray b_hh, cnp.ndarray R, cnp.ndarray peep,
                       cnp.ndarray lengths, cnp.ndarray h, cnp.ndarray c, cnp.ndarray y,
                       Py_ssize_t y_col, bint reverse, bint identity, cnp.ndarray gates,
                       cnp.ndarray cells):
    """Check the arguments of a forward pass (see ``LayerForward``), allocate its workspace
    and fill ``f``; returns the workspace arrays, which must outlive the run."""
    cdef Shapes n = Shapes(x, W, U, R, peep, lengths, h, c, y, y_col, True)
    try:
        if b_ih is not None or b_hh is not None:
            expect(b_ih, "b_ih", n.typenum, 4 * n.H)
            expect(b_hh, "b_hh", n.typenum, 4 * n.H)
        if (gates is None) != (cells is None):
            raise TypeError("kernel arguments gates and cells go together")
        if gates is not None:
            expect_output(gates, "gates", n.typenum, n.T, n.B, 4 * n.H)
            expect_output(cells, "cells", n.typenum, n.T, n.B, n.H)
    except (TypeError, ValueError) as err:
        raise n.explain(err) from None
    cdef Py_ssize_t G = 4 * n.H, size = cnp.PyArray_ITEMSIZE(h)
    f.T, f.B, f.n_in, f.H, f.P, f.ldy = n.T, n.B, n.n_in, n.H, n.P, n.ldy
    f.Tc = n.T if gates is not None else max(1, min(n.T, CHUNK_ELEMENTS // (n.B * G)))
    f.par = n.parallel()
    f.threads = n.threads() if f.par else 1
    f.reverse, f.identity, f.double = reverse, identity, n.typenum == cnp.NPY_DOUBLE
    f.lean = gates is None and peep is None
    # Workspace: [inference gate chunk | m (B, H) | h (B, P) | U.T | zero peepholes |
    #             second h buffer | b_ih + b_hh], and W.T, U.T and R.T packed apart (see
    #             Shapes.packed_size and packed_steps)
    cdef Py_ssize_t n_gates = 0 if gates is not None else f.Tc * n.B * G
    cdef Py_ssize_t n_m = n.B * n.H if n.P else 0, n_hp = n.B * n.P
    cdef Py_ssize_t n_ut = n.Hout * G if n.small() else 0
    cdef Py_ssize_t n_peep = 3 * n.H if peep is None else 0
    cdef Py_ssize_t n_halt = n.B * n.H if f.par else 0
    cdef cnp.ndarray work = workspace(n_gates + n_m + n_hp + n_ut + n_peep + n_halt + G,
                                      h.dtype)
    cdef cnp.ndarray Wp = (workspace(n.packed_size(False), h.dtype)
                           if f.par or n.packed_input() else None)
    cdef bint packed_steps = n.packed_steps()
    cdef cnp.ndarray Up = (workspace(n.packed_size(True), h.dtype) if f.par else
                           workspace(n.Hout * 4 * strips(n.H) * TILE_COLS, h.dtype)
                           if packed_steps else None)
    cdef cnp.ndarray Rp = (workspace(n.H * strips(n.P) * TILE_COLS, h.dtype)
                           if packed_steps and n.P else None)
    cdef char *w = <char *> cnp.PyArray_DATA(work)
    cdef char *zero_peep = w + (n_gates + n_m + n_hp + n_ut) * size
    memset(zero_peep, 0, n_peep * size)
    f.x, f.W, f.U, f.b_ih, f.b_hh, f.R = data(x), data(W), data(U), data(b_ih), data(b_hh), data(R)
    f.peep = data(peep) if peep is not None else zero_peep
    f.lengths = <Py_ssize_t *> data(lengths)
    f.h, f.c, f.y = data(h), data(c), <char *> data(y) + y_col * size
    f.gates = data(gates) if gates is not None else w
    f.cells = data(cells)
    f.m = w + n_gates * size
    f.hp = w + (n_gates + n_m) * size
    f.Ut = w + (n_gates + n_m + n_hp) * size if n_ut else NULL
    f.h_alt = zero_peep + n_peep * size
    f.bias = zero_peep + (n_peep + n_halt) * size
    f.Wp, f.Up, f.Rp = data(Wp), data(Up), data(Rp)
    return [work, Wp, Up, Rp]


cdef class LayerForward:
    """One layer and direction's forward pass, checked and planned; run it with ``forward``
    or ``forward_pair``. Keyword arguments only.

    x (T*B, I); W (4H, I); U (4H, Hout); b_ih, b_hh (4H,) or None; R (P, H) or None;
    peep (3, H) = [p_i; p_f; p_o] or None; lengths (B,) intp in [1, T], or None for T;
    h (B, Hout) and c (B, H) hold the initial state and receive the final one; y (T, B, ldy)
    receives h_t in columns [y_col, y_col + Hout) (zeros at inactive steps). Training: gates
    (T, B, 4H) receives the activated gates i, f, g, o and cells (T, B, H) receives c_t, both
    zero at inactive steps; inference keeps nothing but the running state.
    """
    cdef ForwardPlan plan
    cdef list arrays

    def __init__(self, *, cnp.ndarray x, cnp.ndarray W, cnp.ndarray U, cnp.ndarray h,
                 cnp.ndarray c, cnp.ndarray y, cnp.ndarray b_ih=None, cnp.ndarray b_hh=None,
                 cnp.ndarray R=None, cnp.ndarray peep=None, cnp.ndarray lengths=None,
                 Py_ssize_t y_col=0, bint reverse=False, bint identity=False,
                 cnp.ndarray gates=None, cnp.ndarray cells=None):
        work = plan_forward(&self.plan, x=x, W=W, U=U, b_ih=b_ih, b_hh=b_hh, R=R, peep=peep,
                            lengths=lengths, h=h, c=c, y=y, y_col=y_col, reverse=reverse,
                            identity=identity, gates=gates, cells=cells)
        # The plan points into these: they live as long as it does.
        self.arrays = [x, W, U, b_ih, b_hh, R, peep, lengths, h, c, y, gates, cells] + work


cdef void run_forward(floating kind, const ForwardPlan *f, int threads) noexcept nogil:
    """``forward_parallel`` on ``threads`` threads, or ``forward_layer`` (``kind`` only
    selects the type)."""
    if f.par:
        forward_parallel(f.T, f.B, f.n_in, f.H, <floating *> f.x, <floating *> f.W,
                         <floating *> f.U, <floating *> f.b_ih, <floating *> f.b_hh,
                         <floating *> f.peep, f.lengths, <floating *> f.h, <floating *> f.c,
                         <floating *> f.y, f.ldy, <floating *> f.gates, f.Tc,
                         <floating *> f.cells, <floating *> f.Wp, <floating *> f.Up,
                         <floating *> f.h_alt, <floating *> f.bias, threads, f.lean,
                         f.reverse, f.identity)
    else:
        forward_layer(f.T, f.B, f.n_in, f.H, f.P, <floating *> f.x, <floating *> f.W,
                      <floating *> f.U, <floating *> f.b_ih, <floating *> f.b_hh,
                      <floating *> f.R, <floating *> f.peep, f.lengths, <floating *> f.h,
                      <floating *> f.c, <floating *> f.y, f.ldy, <floating *> f.gates, f.Tc,
                      <floating *> f.cells, <floating *> f.m, <floating *> f.hp,
                      <floating *> f.Ut, <floating *> f.Wp, <floating *> f.Up,
                      <floating *> f.Rp, <floating *> f.bias, f.lean, f.reverse, f.identity)


cdef inline void run_forward_any(const ForwardPlan *f, int threads) noexcept nogil:
    if f.double:
        run_forward(<double> 0, f, threads)
    else:
        run_forward(<float> 0, f, threads)


cdef bint side_by_side(bint par0, bint par1, int threads0, int threads1) noexcept:
    """Whether the two directions of a layer run at once, one thread each, rather than one
    after the other on every thread: when both would run the threaded kernels on 2 or 3
    threads. A team per direction has no barrier between the directions' steps; with more
    threads the per-direction teams scale on (docs/performance.md)."""
    return par0 and par1 and threads0 >= 2 and threads1 >= 2 and max_threads() < 4


def forward(LayerForward call not None):
    """Run one layer and direction's forward pass."""
    with nogil:
        run_forward_any(&call.plan, call.plan.threads)


def forward_pair(LayerForward fwd not None, LayerForward rev not None):
    """Both directions of a layer, at once when ``side_by_side`` says so. The two must
    write different columns of y."""
    cdef ForwardPlan f[2]
    f[0], f[1] = fwd.plan, rev.plan
    cdef int d
    if side_by_side(f[0].par, f[1].par, f[0].threads, f[1].threads):
        # The kernels' own parallel regions nest inside this one as teams of one.
        for d in prange(2, nogil=True, num_threads=2, schedule="static"):
            run_forward_any(&f[d], 1)
    else:
        with nogil:
            run_forward_any(&f[0], f[0].threads)
            run_forward_any(&f[1], f[1].threads)


cdef inline bint is_ready(object a, int typenum, Py_ssize_t d0, Py_ssize_t d1) noexcept:
    """Whether ``a`` is an aligned, C-contiguous, native-order 2-D ndarray of ``typenum`` and
    shape (d0, d1), where d0 < 0 stands for any size >= 1."""
    if type(a) is not cnp.ndarray:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray> a
    return (cnp.PyArray_TYPE(arr) == typenum and cnp.PyArray_NDIM(arr) == 2
            and cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)
            and cnp.PyArray_ISNOTSWAPPED(arr)
            and (arr.shape[0] == d0 or (d0 < 0 and arr.shape[0] >= 1)) and arr.shape[1] == d1)


def cell_step(x, state, Py_ssize_t I, Py_ssize_t H, cnp.ndarray W, cnp.ndarray U,
              cnp.ndarray b_ih, cnp.ndarray b_hh, cnp.ndarray peep, bint identity):
    """One LSTMCell step when x (B, I) and state = (h, c), each (B, H), are already what the
    kernels take: aligned, C-contiguous, native-order 2-D arrays of W's dtype. Returns the
    new (h, c) as new arrays, or None for anything else, which the caller then validates in
    full (lstmx._validation) and runs through ``forward``.

    The same contract and plan as ``LayerForward`` (W, U, the biases and peepholes are
    checked by it too), without building the Python object: a step at B = 1 costs a few
    microseconds, and these checks in C cost a fraction of the same in Python."""
    cdef int typenum = cnp.PyArray_TYPE(W) if W is not None else -1
    if not (is_ready(x, typenum, -1, I) and type(state) is tuple and len(<tuple> state) == 2):
        return None
    cdef Py_ssize_t B = (<cnp.ndarray> x).shape[0]
    h0, c0 = <tuple> state
    if not (is_ready(h0, typenum, B, H) and is_ready(c0, typenum, B, H)):
        return None
    # The kernel updates h and c in place to the final state; y receives the same h.
    cdef cnp.ndarray h = cnp.PyArray_NewCopy(<cnp.ndarray> h0, cnp.NPY_CORDER)
    cdef cnp.ndarray c = cnp.PyArray_NewCopy(<cnp.ndarray> c0, cnp.NPY_CORDER)
    cdef cnp.npy_intp dims[3]
    dims[0], dims[1], dims[2] = 1, B, H
    cdef cnp.ndarray y = cnp.PyArray_EMPTY(3, dims, typenum, 0)
    cdef ForwardPlan f
    keep = plan_forward(&f, x=x, W=W, U=U, b_ih=b_ih, b_hh=b_hh, R=None, peep=peep,
                        lengths=None, h=h, c=c, y=y, y_col=0, reverse=False,
                        identity=identity, gates=None, cells=None)
    with nogil:
        run_forward_any(&f, f.threads)
    return h, c


# ---------------------------------------------------------------------------------------------
# Backward

cdef struct BackwardPlan:
    # As ForwardPlan, for backward; the workspace's parts are laid out once, by plan_backward.
    Py_ssize_t T, B, n_in, H, P, ldy, lddy, Tc
    int threads
    bint par, lean, reverse, identity, double
    const void *x
    const void *W
    const void *U
    const void *R
    const void *peep
    const Py_ssize_t *lengths
    const void *h0
    const void *c0
    const void *y
    const void *gates
    const void *cells
    const void *dy
    void *dh
    void *dc
    void *dx
    void *dW
    void *dU
    void *db
    void *dR
    void *dpeep
    void *dz       # Tc steps of dz
    void *dht      # dh_t (B, Hout)
    void *dhp      # dh_{t-1} of the rows still active (B, Hout)
    void *dm       # dm (B, H), with a projection
    void *m        # m_t (B, H)
    void *scratch  # h_{t-1} of a chunk; backward_parallel: x and h_{t-1} packed, h_{t-1}
    void *Up
    void *Wp


cdef list plan_backward(BackwardPlan *f, cnp.ndarray x, cnp.ndarray W, cnp.ndarray U,
                        cnp.ndarray R, cnp.ndarray peep, cnp.ndarray lengths, cnp.ndarray h0,
                        cnp.ndarray c0, cnp.ndarray y, Py_ssize_t y_col, cnp.ndarray gates,
                        cnp.ndarray cells, cnp.ndarray dy, Py_ssize_t dy_col, cnp.ndarray dh,
                        cnp.ndarray dc, cnp.ndarray dx, cnp.ndarray dW, cnp.ndarray dU,
                        cnp.ndarray db, cnp.ndarray dR, cnp.ndarray dpeep, bint reverse,
                        bint identity):
    """Check the arguments of a backward pass (see ``LayerBackward``), allocate its
    workspace and fill ``f``; returns the workspace arrays, which must outlive the run."""
    cdef Shapes n = Shapes(x, W, U, R, peep, lengths, h0, c0, y, y_col, False)
    cdef Py_ssize_t G = 4 * n.H, B = n.B, size = cnp.PyArray_ITEMSIZE(h0)
    try:
        expect(gates, "gates", n.typenum, n.T, n.B, G)
        expect(cells, "cells", n.typenum, n.T, n.B, n.H)
        expect_ndim(dy, "dy", 3)
        if dy_col < 0 or dy_col + n.Hout > dy.shape[2]:
            raise ValueError(f"kernel argument dy {(<object> dy).shape} has no room for the "
                             f"columns [{dy_col}, {dy_col + n.Hout})")
        expect(dy, "dy", n.typenum, n.T, n.B, dy.shape[2])
        expect_output(dh, "dh", n.typenum, n.B, n.Hout)
        expect_output(dc, "dc", n.typenum, n.B, n.H)
        expect_output(dx, "dx", n.typenum, n.T * n.B, n.n_in)
        expect_output(dW, "dW", n.typenum, G, n.n_in)
        expect_output(dU, "dU", n.typenum, G, n.Hout)
        if db is not None:
            expect_output(db, "db", n.typenum, G)
        if (dR is None) != (R is None):
            raise TypeError("kernel arguments R and dR go together")
        if dR is not None:
            expect_output(dR, "dR", n.typenum, n.P, n.H)
        if dpeep is not None:
            expect_output(dpeep, "dpeep", n.typenum, 3, n.H)
    except (TypeError, ValueError) as err:
        raise n.explain(err) from None
    f.T, f.B, f.n_in, f.H, f.P, f.ldy, f.lddy = n.T, B, n.n_in, n.H, n.P, n.ldy, dy.shape[2]
    f.Tc = max(1, min(n.T, BACKWARD_CHUNK_ELEMENTS // (B * G), BACKWARD_CHUNK_ROWS // B))
    f.par = n.parallel()
    f.threads = n.threads() if f.par else 1
    f.lean = peep is None
    f.reverse, f.identity, f.double = reverse, identity, n.typenum == cnp.NPY_DOUBLE
    # Workspace: [dz of Tc steps | dh_t | dh_{t-1} | dm | m | scratch | zero peepholes |
    #             unwanted dpeep], and U and W packed apart (see Shapes.packed_size)
    cdef Py_ssize_t n_dz = f.Tc * B * (G + DZ_PAD if f.par else G)
    cdef Py_ssize_t n_dh = B * n.Hout, n_m = B * n.H
    cdef Py_ssize_t n_scratch = (
        f.Tc * B * ((strips(n.H) + strips(n.n_in)) * TILE_COLS + n.H)
    ) if f.par else f.Tc * B * n.Hout
    cdef Py_ssize_t n_peep = 3 * n.H if peep is None else 0
    cdef Py_ssize_t n_dpeep = 3 * n.H if dpeep is None else 0
    cdef cnp.ndarray work = workspace(n_dz + 2 * n_dh + 2 * n_m + n_scratch + n_peep + n_dpeep,
                                      h0.dtype)
    cdef cnp.ndarray Up = workspace(n.packed_size(True), h0.dtype) if f.par else None
    cdef cnp.ndarray Wp = workspace(n.packed_size(False), h0.dtype) if f.par else None
    cdef char *w = <char *> cnp.PyArray_DATA(work)
    f.dz = w
    f.dht = w + n_dz * size
    f.dhp = w + (n_dz + n_dh) * size
    f.dm = w + (n_dz + 2 * n_dh) * size
    f.m = w + (n_dz + 2 * n_dh + n_m) * size
    f.scratch = w + (n_dz + 2 * n_dh + 2 * n_m) * size
    cdef char *zero_peep = w + (n_dz + 2 * n_dh + 2 * n_m + n_scratch) * size
    memset(zero_peep, 0, n_peep * size)
    f.x, f.W, f.U, f.R = data(x), data(W), data(U), data(R)
    f.peep = data(peep) if peep is not None else zero_peep
    f.lengths = <Py_ssize_t *> data(lengths)
    f.h0, f.c0, f.y = data(h0), data(c0), <char *> data(y) + y_col * size
    f.gates, f.cells, f.dy = data(gates), data(cells), <char *> data(dy) + dy_col * size
    f.dh, f.dc, f.dx, f.dW, f.dU = data(dh), data(dc), data(dx), data(dW), data(dU)
    f.db, f.dR = data(db), data(dR)
    f.dpeep = data(dpeep) if dpeep is not None else zero_peep + n_peep * size
    f.Up, f.Wp = data(Up), data(Wp)
    return [work, Up, Wp]


cdef class LayerBackward:
    """Backpropagation through time over one layer and direction, checked and planned; run
    it with ``backward`` or ``backward_pair``. Keyword arguments only.

    The forward pass's inputs (as ``LayerForward``, h0 and c0 for h and c) and outputs: y
    (T, B, ldy) with h_t in columns [y_col, y_col + Hout), gates (T, B, 4H), cells (T, B, H);
    dy (T, B, lddy) with the gradient of h_t in columns [dy_col, dy_col + Hout). dh (B, Hout)
    and dc (B, H) hold the gradient reaching the final state and receive the one reaching h0,
    c0. dx (T*B, I) is accumulated into (two directions share one input); dW, dU, db (4H,) or
    None, dR (P, H) or None and dpeep (3, H) or None are overwritten.
    """
    cdef BackwardPlan plan
    cdef list arrays
    cdef cnp.ndarray dx

    def __init__(self, *, cnp.ndarray x, cnp.ndarray W, cnp.ndarray U, cnp.ndarray h0,
                 cnp.ndarray c0, cnp.ndarray y, cnp.ndarray gates, cnp.ndarray cells,
                 cnp.ndarray dy, cnp.ndarray dh, cnp.ndarray dc, cnp.ndarray dx,
                 cnp.ndarray dW, cnp.ndarray dU, cnp.ndarray R=None, cnp.ndarray peep=None,
                 cnp.ndarray lengths=None, Py_ssize_t y_col=0, Py_ssize_t dy_col=0,
                 cnp.ndarray db=None, cnp.ndarray dR=None, cnp.ndarray dpeep=None,
                 bint reverse=False, bint identity=False):
        work = plan_backward(&self.plan, x=x, W=W, U=U, R=R, peep=peep, lengths=lengths,
                             h0=h0, c0=c0, y=y, y_col=y_col, gates=gates, cells=cells, dy=dy,
                             dy_col=dy_col, dh=dh, dc=dc, dx=dx, dW=dW, dU=dU, db=db, dR=dR,
                             dpeep=dpeep, reverse=reverse, identity=identity)
        self.dx = dx
        # The plan points into these: they live as long as it does.
        self.arrays = [x, W, U, R, peep, lengths, h0, c0, y, gates, cells, dy, dh, dc, dx, dW,
                       dU, db, dR, dpeep] + work


cdef void run_backward(floating kind, const BackwardPlan *f, int threads) noexcept nogil:
    """``backward_parallel`` on ``threads`` threads, or ``backward_layer`` (``kind`` only
    selects the type)."""
    if f.par:
        backward_parallel(
            f.T, f.B, f.n_in, f.H, <floating *> f.x, <floating *> f.W, <floating *> f.U,
            <floating *> f.peep, f.lengths, <floating *> f.h0, <floating *> f.c0,
            <floating *> f.y, f.ldy, <floating *> f.gates, <floating *> f.cells,
            <floating *> f.dy, f.lddy, <floating *> f.dh, <floating *> f.dc,
            <floating *> f.dx, <floating *> f.dW, <floating *> f.dU, <floating *> f.db,
            <floating *> f.dpeep, <floating *> f.dz, f.Tc, <floating *> f.dht,
            <floating *> f.dhp, <floating *> f.m, <floating *> f.Up, <floating *> f.Wp,
            <floating *> f.scratch, threads, f.lean, f.reverse, f.identity)
    else:
        backward_layer(
            f.T, f.B, f.n_in, f.H, f.P, <floating *> f.x, <floating *> f.W, <floating *> f.U,
            <floating *> f.R, <floating *> f.peep, f.lengths, <floating *> f.h0,
            <floating *> f.c0, <floating *> f.y, f.ldy, <floating *> f.gates,
            <floating *> f.cells, <floating *> f.dy, f.lddy, <floating *> f.dh,
            <floating *> f.dc, <floating *> f.dx, <floating *> f.dW, <floating *> f.dU,
            <floating *> f.db, <floating *> f.dR, <floating *> f.dpeep, <floating *> f.dz,
            f.Tc, <floating *> f.dht, <floating *> f.dm, <floating *> f.m,
            <floating *> f.dhp, <floating *> f.scratch, f.reverse, f.identity)


cdef inline void run_backward_any(const BackwardPlan *f, int threads) noexcept nogil:
    if f.double:
        run_backward(<double> 0, f, threads)
    else:
        run_backward(<float> 0, f, threads)


def backward(LayerBackward call not None):
    """Run one layer and direction's backward pass."""
    with nogil:
        run_backward_any(&call.plan, call.plan.threads)


def backward_pair(LayerBackward fwd not None, LayerBackward rev not None):
    """Both directions of a layer, at once when ``side_by_side`` says so, in which case the
    reverse direction's dx goes to a scratch array added to dx afterwards. The two must
    share x and dx."""
    if fwd.plan.dx != rev.plan.dx or fwd.plan.x != rev.plan.x:
        raise ValueError("kernel arguments: the two directions must share x and dx")
    cdef BackwardPlan f[2]
    f[0], f[1] = fwd.plan, rev.plan
    cdef int d
    cdef cnp.ndarray dx = fwd.dx, dx1
    if side_by_side(f[0].par, f[1].par, f[0].threads, f[1].threads):
        dx1 = workspace(dx.size, dx.dtype)
        memset(cnp.PyArray_DATA(dx1), 0, cnp.PyArray_NBYTES(dx1))
        f[1].dx = cnp.PyArray_DATA(dx1)
        for d in prange(2, nogil=True, num_threads=2, schedule="static"):
            run_backward_any(&f[d], 1)
        np.add(dx.reshape(-1), dx1, out=dx.reshape(-1))
    else:
        with nogil:
            run_backward_any(&f[0], f[0].threads)
            run_backward_any(&f[1], f[1].threads)


# ---------------------------------------------------------------------------------------------
# Test hooks: the kernels' own functions, for tests of accuracy.

def activations(const floating[::1] x, floating[::1] sig, floating[::1] th):
    """sig = sigmoid(x), th = tanh(x) with the kernels' own functions."""
    if sig.shape[0] != x.shape[0] or th.shape[0] != x.shape[0]:
        raise ValueError(f"activations: x, sig and th must have one length; got "
                         f"{x.shape[0]}, {sig.shape[0]}, {th.shape[0]}")
    cdef Py_ssize_t k
    with nogil:
        for k in range(x.shape[0]):
            sig[k] = sigmoid(x[k])
            th[k] = tanh_(x[k])


def small_product(const floating[:, ::1] A, const floating[:, ::1] B, floating beta,
                  floating[:, ::1] C):
    """C := A @ B + beta * C with the kernels' own gemm_small; A (m, k), B (k, n), C (m, n)."""
    if A.shape[1] != B.shape[0] or C.shape[0] != A.shape[0] or C.shape[1] != B.shape[1]:
        raise ValueError(f"small_product: shapes {(A.shape[0], A.shape[1])} @ "
                         f"{(B.shape[0], B.shape[1])} do not give C's "
                         f"{(C.shape[0], C.shape[1])}")
    if C.shape[0] and C.shape[1]:
        with nogil:
            gemm_small(A.shape[0], B.shape[1], A.shape[1], &A[0, 0] if A.shape[1] else NULL,
                       A.shape[1], &B[0, 0] if B.shape[0] else NULL, B.shape[1], beta,
                       &C[0, 0], C.shape[1])


def packed_product(const floating[:, ::1] A, const floating[:, ::1] B, floating[:, ::1] C,
                   bias, bint add, bint transpose_a, Py_ssize_t groups, Py_ssize_t parts):
    """C := op(A) @ B (+ C when ``add``) (+ bias on every row) with the kernels' own
    gemm_packed: B (k, n) packed in strips, its n columns in ``groups`` groups of equal
    width; op(A) is A (m, k), or A.T for ``transpose_a`` (A is then (k, m)); bias (n,) of
    C's dtype or None. The strips are computed in ``parts`` calls, as threads split them."""
    cdef Py_ssize_t m = C.shape[0], n = C.shape[1], k = B.shape[0], part
    if (B.shape[1] != n or groups < 1 or n % groups or parts < 1
            or (A.shape[1] if transpose_a else A.shape[0]) != m
            or (A.shape[0] if transpose_a else A.shape[1]) != k or m < 1 or n < 1 or k < 1):
        raise ValueError(f"packed_product: shapes A {(A.shape[0], A.shape[1])}, B "
                         f"{(B.shape[0], B.shape[1])}, C {(m, n)}, groups {groups} and "
                         f"parts {parts} do not fit")
    cdef Py_ssize_t width = n // groups, per = strips(width)
    cdef const floating[::1] b = bias if bias is not None else None
    if b is not None and b.shape[0] != n:
        raise ValueError(f"packed_product: bias must have {n} elements; got {b.shape[0]}")
    Bp_array = np.zeros(groups * per * k * TILE_COLS,
                        np.float32 if floating is float else np.float64)
    cdef floating[::1] Bp = Bp_array
    with nogil:
        pack_strips(k, groups, width, &B[0, 0], n, 1, 0, per, &Bp[0])
        for part in range(parts):
            gemm_packed_strided(m, k, &A[0, 0], 1 if transpose_a else k,
                                m if transpose_a else 1, &Bp[0], groups, width,
                                share(per, part, parts), share(per, part + 1, parts), add,
                                &C[0, 0], n, &b[0] if b is not None else NULL)
