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
``_layer_serial.pxi`` and ``_layer_parallel.pxi`` (the layer drivers), ``_contract.pxi``
(the checks of every argument), ``_cell_regularised.pxi``, ``_layer_regularised.pxi`` and
``_entry_regularised.pxi`` (the cell with recurrent dropout, zoneout, layer norm or cell
clip, its driver and entry points, and dropout between layers), ``_gemm.pxd`` (the in-house
GEMM), ``_blas`` (the BLAS shim), ``_openmp.pxd``, ``_phases.pxi`` (timers for the bench's
``--profile``), ``_plan.pxi`` (when a second thread pays, from costs measured once) and
``_test_hooks.pxi``.

A batch row b is *active* at time t when ``t < lengths[b]``, in both directions: the forward
direction runs t = 0 .. T-1, the reverse one t = T-1 .. 0, and either way an inactive row keeps
its state and outputs zeros (PyTorch's packed-sequence semantics).
"""
import numpy as np

cimport numpy as cnp
from cython cimport floating
from libc.string cimport memcmp, memcpy, memset

from cython.parallel cimport parallel, prange, threadid

from lstmx._activations cimport sigmoid, tanh_
from lstmx._blas cimport NoTrans, Trans, gemm
from lstmx._gemm cimport (
    DEPTH_BLOCK, EDGE_ROWS, PARALLEL_WORK, TILED_GEMM, TILE_COLS, TILE_KERNEL, TILE_ROWS,
    depth_floats, gemm_packed, gemm_packed_parallel, gemm_packed_strided, gemm_packed_tiles,
    gemm_small, pack_strips, row_share, row_tiles, set_depth_floats, share, strips)
from lstmx._openmp cimport barrier, max_threads, num_threads, thread_slot

from lstmx._cpu import l1d_cache_bytes, l2_cache_bytes
from lstmx._workspace import MIN_BYTES as POOL_MIN_BYTES, empty as pooled_empty

cnp.import_array()

# Inference keeps the input projection, and backward dz, of a chunk of time steps at a time,
# so that memory stays bounded on long sequences while each chunk is still a large GEMM.
cdef enum:
    CHUNK_ELEMENTS = 1 << 20           # elements of an inference chunk's z at most (chunk_steps)
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

include "_phases.pxi"
include "_plan.pxi"
include "_cell.pxi"
include "_cell_regularised.pxi"
include "_layer_serial.pxi"
include "_layer_parallel.pxi"
include "_layer_regularised.pxi"
include "_arguments.pxi"
include "_contract.pxi"
include "_entry_regularised.pxi"
include "_test_hooks.pxi"


# ---------------------------------------------------------------------------------------------
# Forward

cdef struct ForwardPlan:
    # One layer and direction ready to run: sizes, and pointers into the arrays and the
    # workspace (untyped: run_forward's ``kind`` gives them their type).
    Py_ssize_t T, B, n_in, H, P, ldy, Tc  # n_in: I is a macro of complex.h
    int threads
    bint par, lean, reverse, identity, double
    bint by_rows  # forward_parallel's team splits the batch's rows, not the hidden units
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
    void *xg  # a team of rows at inference: x's rows gathered, each thread its own


# One core's L2, which inference chunks are sized to (chunk_steps).
cdef Py_ssize_t L2_BYTES = l2_cache_bytes()


def depth_for_l1(Py_ssize_t l1d_bytes):
    """The depth of k a tile of floats sums before going to C (in products of at least twice
    that depth: depth_block) on a CPU whose L1 data cache holds ``l1d_bytes``:
    DEPTH_BLOCK // 2 where the AVX-512 tile runs (TILE_KERNEL) and a strip's block of that
    depth (TILE_COLS floats a row) fills at most two thirds of L1, so that it stays there,
    beside the row tiles of A, while the tiles pass over it; else DEPTH_BLOCK, whose block
    streams from L2. Intel's 48 KiB L1: 256 (L's and H1024's forward 5-8% faster,
    docs/performance.md); 32 KiB (Zen 3 and 4, where 256 measured no faster): 512; the AVX2
    tile's passes of 16 floats gained nothing from 256 either."""
    cdef Py_ssize_t half = DEPTH_BLOCK // 2
    if TILE_KERNEL and 3 * half * TILE_COLS * <Py_ssize_t> sizeof(float) <= 2 * l1d_bytes:
        return half
    return DEPTH_BLOCK


def set_depth_block(Py_ssize_t depth):
    """Set the depth of k the float tiles sum before going to C (DEPTH_BLOCK or half of it);
    for tests, which run both on any CPU. Changes the bits of products of twice its depth."""
    if depth != DEPTH_BLOCK and depth != DEPTH_BLOCK // 2:
        raise ValueError(f"depth must be {DEPTH_BLOCK} or {DEPTH_BLOCK // 2}; got {depth}")
    set_depth_floats(depth)


def get_depth_block(bint double=False):
    """The depth of k the tiles of floats (of doubles) of this kernel module sum before
    going to C in products deep enough for it (depth_block)."""
    return depth_floats if not double else DEPTH_BLOCK


set_depth_floats(depth_for_l1(l1d_cache_bytes()))


cdef Py_ssize_t chunk_steps(Py_ssize_t T, Py_ssize_t B, Py_ssize_t G, Py_ssize_t n_in,
                            Py_ssize_t itemsize, bint training, bint l2_chunks) noexcept:
    """Steps of a forward chunk whose input projection z holds B rows of G elements a step,
    from ``n_in`` inputs.

    With ``l2_chunks`` (W packed once a call, so a short chunk costs no repacking): as many
    steps as fill half of L2 when a step's z fits there, so that each step's recurrent product
    and cell find its rows in L2, not in L3 where the projection of a larger chunk left them.
    Else (a product that packs W each call, as BLAS does, or a step too large for L2) long
    chunks pay, as W is read once a chunk: at inference as many steps as CHUNK_ELEMENTS allow
    (memory stays bounded), in training all T (z of every step is kept anyway). Where only
    one step fits, its chunk reads all of W (n_in rows) from L3 for one step's B rows, and a
    long chunk instead writes z to L3 and reads it back: the one-step chunk is kept only while
    W is the smaller of the two (n_in <= 2 B). docs/performance.md has the measurements."""
    cdef Py_ssize_t budget = L2_BYTES // 2, step_bytes = B * G * itemsize
    cdef bint fits = step_bytes <= budget and (2 * step_bytes <= budget or n_in <= 2 * B)
    cdef Py_ssize_t steps = (budget // step_bytes if l2_chunks and fits
                             else T if training else CHUNK_ELEMENTS // (B * G))
    return max(1, min(T, steps))


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
    # L2 chunks in every variant: measured on the tile kernels; on BLAS (the baseline
    # variant) long chunks are untried here, where the regularised driver found them faster.
    f.Tc = chunk_steps(n.T, n.B, G, n.n_in, size, gates is not None, True)
    f.par = n.parallel()
    f.threads = n.threads() if f.par else 1
    cdef int rows_team = n.rows_team() if f.par else 0
    f.by_rows = rows_team > 0
    if f.by_rows:
        f.threads = rows_team
    f.reverse, f.identity, f.double = reverse, identity, n.typenum == cnp.NPY_DOUBLE
    f.lean = gates is None and peep is None
    # Workspace: [inference gate chunk | m (B, H) | h (B, P) | U.T | zero peepholes |
    #             second h buffer | b_ih + b_hh | a team of rows' gathered x (Tc B, I)],
    #             and W.T, U.T and R.T packed apart (see Shapes.packed_size and packed_steps)
    cdef Py_ssize_t n_gates = 0 if gates is not None else f.Tc * n.B * G
    cdef Py_ssize_t n_m = n.B * n.H if n.P else 0, n_hp = n.B * n.P
    cdef Py_ssize_t n_ut = n.Hout * G if n.small() else 0
    cdef Py_ssize_t n_peep = 3 * n.H if peep is None else 0
    cdef Py_ssize_t n_halt = n.B * n.H if f.par else 0
    cdef Py_ssize_t n_xg = f.Tc * n.B * n.n_in if f.by_rows and gates is None else 0
    cdef cnp.ndarray work = workspace(n_gates + n_m + n_hp + n_ut + n_peep + n_halt + G + n_xg,
                                      h.dtype)
    cdef cnp.ndarray Wp = (workspace(n.packed_size(False), h.dtype)
                           if f.par or n.packed_input() else None)
    cdef bint packed_steps = n.packed_steps(f.par)
    cdef cnp.ndarray Up = (workspace(n.packed_size(True), h.dtype) if f.par else
                           workspace(n.steps_packed_size(), h.dtype)
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
    f.xg = f.bias + G * size if n_xg else NULL
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

    def describe(self):
        """The plan, for people: the driver and its threads, the steps of each chunk of the
        input projection, and what runs each product ("tiles": the in-house gemm_packed)."""
        cdef ForwardPlan *f = &self.plan
        rows = f.Tc * f.B
        return {
            "driver": "threaded" if f.par else "serial", "threads": f.threads,
            # forward_parallel's team: the hidden units split, or the batch's rows
            "split": None if not f.par else "rows" if f.by_rows else "units",
            "chunk_steps": f.Tc,
            "input_projection": "tiles" if f.Wp != NULL else "BLAS",
            # forward_layer's projection runs on the OpenMP threads at inference
            # (input_projection), on one thread when training.
            "input_projection_threads": f.threads if f.par else (
                1 if f.cells != NULL or f.Wp == NULL
                or rows * 4 * f.H * f.n_in < PARALLEL_WORK
                else min(max_threads(), strips(f.H))),
            "recurrent": ("tiles" if f.par or f.Up != NULL
                          else "gemm_small" if f.Ut != NULL else "BLAS"),
            "projection": (None if f.P == 0 else "tiles" if f.Rp != NULL else "BLAS")}


cdef void run_forward(floating kind, const ForwardPlan *f, int threads,
                      double *waited) noexcept nogil:
    """``forward_parallel`` on ``threads`` threads (``waited``, or NULL, receives how long its
    threads waited), or ``forward_layer`` (``kind`` only selects the type)."""
    if f.par:
        forward_parallel(f.T, f.B, f.n_in, f.H, <floating *> f.x, <floating *> f.W,
                         <floating *> f.U, <floating *> f.b_ih, <floating *> f.b_hh,
                         <floating *> f.peep, f.lengths, <floating *> f.h, <floating *> f.c,
                         <floating *> f.y, f.ldy, <floating *> f.gates, f.Tc,
                         <floating *> f.cells, <floating *> f.Wp, <floating *> f.Up,
                         <floating *> f.h_alt, <floating *> f.bias, <floating *> f.xg,
                         threads, f.lean,
                         f.reverse, f.identity, f.by_rows, NULL, waited)
    else:
        forward_layer(f.T, f.B, f.n_in, f.H, f.P, <floating *> f.x, <floating *> f.W,
                      <floating *> f.U, <floating *> f.b_ih, <floating *> f.b_hh,
                      <floating *> f.R, <floating *> f.peep, f.lengths, <floating *> f.h,
                      <floating *> f.c, <floating *> f.y, f.ldy, <floating *> f.gates, f.Tc,
                      <floating *> f.cells, <floating *> f.m, <floating *> f.hp,
                      <floating *> f.Ut, <floating *> f.Wp, <floating *> f.Up,
                      <floating *> f.Rp, <floating *> f.bias, f.lean, f.reverse, f.identity)


cdef inline void run_forward_any(const ForwardPlan *f, int threads,
                                 double *waited) noexcept nogil:
    if f.double:
        run_forward(<double> 0, f, threads, waited)
    else:
        run_forward(<float> 0, f, threads, waited)


cdef void run_forward_watched(const ForwardPlan *f, int threads) noexcept nogil:
    """run_forward_any, and a team's call reported to the plan's watch on contention
    (plan_watch_team)."""
    cdef double waited = 0, start = clock_now()
    run_forward_any(f, threads, &waited)
    if f.par:
        plan_watch_layer(threads, start, waited, f.T, f.B, f.n_in, f.H, 1, f.double)


cdef bint side_by_side(bint par0, bint par1, int threads0, int threads1) noexcept:
    """Whether the two directions of a layer run at once, one thread each, rather than one
    after the other on every thread: when both would run the threaded kernels on 2 or 3
    threads. A team per direction has no barrier between the directions' steps; with more
    threads the per-direction teams scale on (docs/performance.md)."""
    return par0 and par1 and threads0 >= 2 and threads1 >= 2 and max_threads() < 4


def forward(LayerForward call not None):
    """Run one layer and direction's forward pass."""
    with nogil:
        run_forward_watched(&call.plan, call.plan.threads)


def forward_pair(LayerForward fwd not None, LayerForward rev not None):
    """Both directions of a layer, at once when ``side_by_side`` says so. The two must
    write different columns of y."""
    cdef ForwardPlan f[2]
    f[0], f[1] = fwd.plan, rev.plan
    cdef int d
    if side_by_side(f[0].par, f[1].par, f[0].threads, f[1].threads):
        # The kernels' own parallel regions nest inside this one as teams of one.
        for d in prange(2, nogil=True, num_threads=2, schedule="static"):
            run_forward_any(&f[d], 1, NULL)
    else:
        with nogil:
            run_forward_watched(&f[0], f[0].threads)
            run_forward_watched(&f[1], f[1].threads)


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
        run_forward_any(&f, f.threads, NULL)
    return h, c


# ---------------------------------------------------------------------------------------------
# Backward

cdef struct BackwardPlan:
    # As ForwardPlan, for backward; the workspace's parts are laid out once, by plan_backward.
    Py_ssize_t T, B, n_in, H, P, ldy, lddy, Tc
    int threads
    bint par, lean, reverse, identity, double
    bint prepacked  # Wp and Up given packed (pack_for_backward); W and U not read
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
                        bint identity, cnp.ndarray Wp, cnp.ndarray Up):
    """Check the arguments of a backward pass (see ``LayerBackward``), allocate its
    workspace and fill ``f``; returns the workspace arrays, which must outlive the run."""
    expect_weights(W, U, Wp, Up)
    cdef Shapes n = Shapes(x, W, U, R, peep, lengths, h0, c0, y, y_col, False, Wp is not None)
    cdef Py_ssize_t G = 4 * n.H, B = n.B, size = cnp.PyArray_ITEMSIZE(h0)
    try:
        expect_packed(n, Wp, Up, n.parallel())
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
    f.prepacked = Wp is not None
    if f.par and not f.prepacked:
        Up = workspace(n.packed_size(True), h0.dtype)
        Wp = workspace(n.packed_size(False), h0.dtype)
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
    None, dR (P, H) or None and dpeep (3, H) or None are overwritten. Where ``backward_packs``
    says so, Wp and Up, W and U as ``pack_for_backward`` packs them, may stand for W and U:
    a training cache keeps its weights that way (one copy instead of two).
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
                 bint reverse=False, bint identity=False, cnp.ndarray Wp=None,
                 cnp.ndarray Up=None):
        work = plan_backward(&self.plan, x=x, W=W, U=U, R=R, peep=peep, lengths=lengths,
                             h0=h0, c0=c0, y=y, y_col=y_col, gates=gates, cells=cells, dy=dy,
                             dy_col=dy_col, dh=dh, dc=dc, dx=dx, dW=dW, dU=dU, db=db, dR=dR,
                             dpeep=dpeep, reverse=reverse, identity=identity, Wp=Wp, Up=Up)
        self.dx = dx
        # The plan points into these: they live as long as it does.
        self.arrays = [x, W, U, R, peep, lengths, h0, c0, y, gates, cells, dy, dh, dc, dx, dW,
                       dU, db, dR, dpeep] + work

    def describe(self):
        """The plan, for people: the driver and its threads, the steps of each chunk (whose
        dx, dW and dU are one product each), and what runs the products."""
        cdef BackwardPlan *f = &self.plan
        cdef Py_ssize_t Hout = f.P if f.P > 0 else f.H
        return {
            "driver": "threaded" if f.par else "serial", "threads": f.threads,
            "chunk_steps": f.Tc,
            "recurrent": ("tiles" if f.par else "gemm_small"
                          if f.B * 4 * f.H * Hout <= SMALL_PRODUCT else "BLAS"),
            "chunk_products": "tiles" if f.par else "BLAS"}


cdef void run_backward(floating kind, const BackwardPlan *f, int threads,
                       double *waited) noexcept nogil:
    """``backward_parallel`` on ``threads`` threads (``waited``: as run_forward's), or
    ``backward_layer`` (``kind`` only selects the type)."""
    if f.par:
        backward_parallel(
            f.T, f.B, f.n_in, f.H, <floating *> f.x, <floating *> f.W, <floating *> f.U,
            <floating *> f.peep, f.lengths, <floating *> f.h0, <floating *> f.c0,
            <floating *> f.y, f.ldy, <floating *> f.gates, <floating *> f.cells,
            <floating *> f.dy, f.lddy, <floating *> f.dh, <floating *> f.dc,
            <floating *> f.dx, <floating *> f.dW, <floating *> f.dU, <floating *> f.db,
            <floating *> f.dpeep, <floating *> f.dz, f.Tc, <floating *> f.dht,
            <floating *> f.dhp, <floating *> f.m, <floating *> f.Up, <floating *> f.Wp,
            <floating *> f.scratch, threads, f.lean, f.reverse, f.identity, f.prepacked,
            NULL, waited)
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


cdef inline void run_backward_any(const BackwardPlan *f, int threads,
                                  double *waited) noexcept nogil:
    if f.double:
        run_backward(<double> 0, f, threads, waited)
    else:
        run_backward(<float> 0, f, threads, waited)


cdef void run_backward_watched(const BackwardPlan *f, int threads) noexcept nogil:
    """run_backward_any, watched as run_forward_watched."""
    cdef double waited = 0, start = clock_now()
    run_backward_any(f, threads, &waited)
    if f.par:
        plan_watch_layer(threads, start, waited, f.T, f.B, f.n_in, f.H, 2, f.double)


def backward(LayerBackward call not None):
    """Run one layer and direction's backward pass."""
    with nogil:
        run_backward_watched(&call.plan, call.plan.threads)


def backward_pair(LayerBackward fwd not None, LayerBackward rev not None):
    """Both directions of a layer, at once when ``side_by_side`` says so. The two must
    share x and dx. The reverse direction's dx goes to a scratch array added to dx
    afterwards, whether or not the directions run at once, so that the sum rounds the same
    way on any number of threads."""
    if fwd.plan.dx != rev.plan.dx or fwd.plan.x != rev.plan.x:
        raise ValueError("kernel arguments: the two directions must share x and dx")
    cdef BackwardPlan f[2]
    f[0], f[1] = fwd.plan, rev.plan
    cdef int d
    cdef cnp.ndarray dx = fwd.dx
    cdef cnp.ndarray dx1 = workspace(dx.size, dx.dtype)
    memset(cnp.PyArray_DATA(dx1), 0, cnp.PyArray_NBYTES(dx1))
    f[1].dx = cnp.PyArray_DATA(dx1)
    if side_by_side(f[0].par, f[1].par, f[0].threads, f[1].threads):
        for d in prange(2, nogil=True, num_threads=2, schedule="static"):
            run_backward_any(&f[d], 1, NULL)
    else:
        with nogil:
            run_backward_watched(&f[0], f[0].threads)
            run_backward_watched(&f[1], f[1].threads)
    np.add(dx.reshape(-1), dx1, out=dx.reshape(-1))


def backward_packs(Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, Py_ssize_t P,
                   bint regularised=False):
    """Whether backward over these sizes reads W and U packed (``LayerBackward``'s and
    ``RegularisedBackward``'s Wp and Up, ``pack_for_backward``) in this kernel variant: the
    plain layer's threaded driver, or a ``regularised`` one that packs them."""
    if regularised:
        return reg_packs(B, H, P if P else H)
    return threaded_driver(T, B, H, P)


def packed_for_backward_size(Py_ssize_t rows, Py_ssize_t cols):
    """Elements of a (rows, cols) W or U packed by ``pack_for_backward``."""
    return strips(cols) * rows * TILE_COLS


cdef void pack_all(const floating *W, Py_ssize_t rows, Py_ssize_t cols, floating *out,
                   int threads) noexcept nogil:
    cdef Py_ssize_t s
    if threads == 1:  # (a team of one still costs a parallel region: a small W packs in ~1 us)
        pack_strips(rows, 1, cols, W, cols, 1, 0, strips(cols), out)
        return
    for s in prange(strips(cols), num_threads=threads, schedule="static"):
        pack_strips(rows, 1, cols, W, cols, 1, s, s + 1, out)


cdef int check_packing(cnp.ndarray W, cnp.ndarray out, bint output) except -1:
    """The contract of pack_for_backward and packed_equal; returns W's typenum."""
    expect_ndim(W, "W", 2)
    cdef int typenum = cnp.PyArray_TYPE(W)
    if typenum != cnp.NPY_FLOAT and typenum != cnp.NPY_DOUBLE:
        raise TypeError(f"kernel argument W must be float32 or float64; got {W.dtype}")
    expect(W, "W", typenum, W.shape[0], W.shape[1])
    cdef Py_ssize_t n = strips(W.shape[1]) * W.shape[0] * TILE_COLS
    if output:
        expect_output(out, "out", typenum, n)
    else:
        expect(out, "packed", typenum, n)
    return typenum


def pack_for_backward(cnp.ndarray W, cnp.ndarray out):
    """Pack W (4H, n), W or U, into ``out`` (``packed_for_backward_size``) as the threaded
    backward driver reads it: strips of TILE_COLS of its n columns, each (4H, TILE_COLS)
    and contiguous, the last one zero-padded (``pack_strips``)."""
    cdef int typenum = check_packing(W, out, True)
    cdef Py_ssize_t rows = W.shape[0], cols = W.shape[1]
    # A team pays from about a MiB: it packs at memory speed, where a wake costs microseconds.
    cdef int threads = 1 if rows * cols < (1 << 18) else min(max_threads(), strips(cols))
    with nogil:
        if typenum == cnp.NPY_DOUBLE:
            pack_all(<const double *> cnp.PyArray_DATA(W), rows, cols,
                     <double *> cnp.PyArray_DATA(out), threads)
        else:
            pack_all(<const float *> cnp.PyArray_DATA(W), rows, cols,
                     <float *> cnp.PyArray_DATA(out), threads)


def packed_equal(cnp.ndarray W, cnp.ndarray packed):
    """Whether ``packed`` holds W's bytes as ``pack_for_backward`` packs them (0.0 and -0.0
    differ, a NaN equals itself); the first rows of the first strip first, where an
    optimiser step shows at once."""
    check_packing(W, packed, False)
    cdef Py_ssize_t rows = W.shape[0], cols = W.shape[1], s, p, w
    cdef size_t size = cnp.PyArray_ITEMSIZE(W)
    cdef const char *src = <const char *> cnp.PyArray_DATA(W)
    cdef const char *dst = <const char *> cnp.PyArray_DATA(packed)
    cdef bint same = True
    with nogil:
        for s in range(strips(cols)):
            w = min(TILE_COLS, cols - s * TILE_COLS)
            for p in range(rows):
                if memcmp(src + (p * cols + s * TILE_COLS) * size,
                          dst + (s * rows + p) * TILE_COLS * size, w * size) != 0:
                    same = False
                    break
            if not same:
                break
    return same

BACKWARD_PACK_COLS = TILE_COLS  # the strip width of pack_for_backward's layout
