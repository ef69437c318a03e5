# The int8 and bfloat16 inference kernels of lstmx.QuantizedLSTM: one layer and direction.
"""Quantised inference kernels: one layer and direction over a sequence, in int8 or bfloat16.

What is rounded, and how, is ``docs/quantization.md``; ``lstmx/reference_quantized.py`` is the
same computation in NumPy. Compiled once per instruction set, as ``_kernels.pyx`` is
(``_quantized_avx2.pyx`` and ``_quantized_avx512.pyx`` include this file), and the cell's
element-wise step is the float kernels' own (``_cell.pxi``), with rational activations
(``_activations_rational.pxd``).

int8: a row of activations (x for the input projection, h for the recurrent product, m for
the projection) is quantised at each step to integers q in [-127, 127] with its own scale;
weights arrive quantised per output channel to int8 in [-127, 127]. The products are exact
integer dot products, so they are sum q * w exactly and bit-identical on every instruction
set and any number of threads: AMX's ``tdpbusd`` where the CPU and Linux allow it
(``_dot_amx.h``; batches of 8 rows or more), else ``vpdpbusd`` where the CPU has AVX512_VNNI
(``_dot_avx512.h``; or AVX-VNNI in the AVX2 build, ``_dot_avx2.h``), on the unsigned bytes
q + 128, less 128 times each weight row's sum; else (``_int8_dot.h``) ``vpmaddubsw`` on AVX2
on |q| and w * sign(q), whose int16 pair sums cannot saturate, or a scalar loop. Each sum is
then scaled back to float32 and everything else is float32.

bfloat16: activations are rounded to bfloat16 before the products; weights arrive as
bfloat16. The products run on AMX's ``tdpbf16ps`` where the CPU and Linux allow it
(``_dot_amx.h``; layers with a step of AMX_BF16_STEP_WORK multiply-adds or more), else on
``vdpbf16ps`` where the CPU has AVX512_BF16 (``_dot_avx512.h``), summing in float32;
elsewhere on BLAS, the bfloat16 values held in float32.

The environment variable ``LSTMX_DOT_PRODUCTS``, read at import, keeps the vector
instructions only (``vector``) or turns them all off (``generic``); the tests run every
way.
"""
import os

import numpy as np

from cython cimport floating
from cython.parallel cimport parallel, threadid
from libc.math cimport NAN
from libc.stdint cimport int8_t, int32_t, uint8_t, uint16_t, uint32_t
from libc.string cimport memcpy, memset

cimport numpy as cnp

from lstmx._activations_rational cimport sigmoid, tanh_
from lstmx._blas cimport NoTrans, Trans, gemm
from lstmx._cpu import l2_cache_bytes
from lstmx._openmp cimport max_threads, num_threads
from lstmx._workspace import MIN_BYTES as POOL_MIN_BYTES, empty as pooled_empty, line_aligned

cnp.import_array()

include "_cell.pxi"
include "_arguments.pxi"

cdef extern from *:
    # GCC's prefetch hint: a plain load hint on every instruction set (nothing where none).
    void prefetch "__builtin_prefetch"(const void *address) noexcept nogil

cdef extern from "_quantize_row.h":
    # Whether quantize_rows runs rows of QUANTIZE_VECTOR values or more on these functions.
    enum: QUANTIZE_ROW_VECTOR "LSTMX_QUANTIZE_ROW_VECTOR"
    enum: QUANTIZE_VECTOR "LSTMX_QV"
    # For K >= QUANTIZE_VECTOR: max over k < K of the bits of |v[k]| (in the order of |v[k]|, NaN
    # and inf above all), and q[k] = rint(clip(v[k] / s, -levels, levels)) + zero.
    uint32_t abs_bits_max "lstmx_abs_bits_max"(Py_ssize_t K, const float *v) noexcept nogil
    void round_bytes "lstmx_round_bytes"(Py_ssize_t K, const float *v, float s, float levels,
                                         int32_t zero, uint8_t *q) noexcept nogil

cdef extern from "_int8_dot.h":
    # Depth of an integer product is padded (with zeros) to a multiple of this.
    enum: DEPTH_STEP "LSTMX_INT8_DEPTH_STEP"
    # Weight rows of a tile, held interleaved (``pack_weights``).
    enum: COLS "LSTMX_INT8_TILE_COLS"
    # acc[i * COLS + j] = sum_k a_i[k] w_j[k], i < 2, j < COLS, for the weight rows w_j of a
    # packed tile: exact.
    void int_dot_tile "lstmx_int8_dot_tile"(Py_ssize_t kp, const uint8_t *a0,
                                            const uint8_t *a1, const int8_t *tile,
                                            int32_t *acc) noexcept nogil
    # z[j] = float(acc[j]) * (s * sw[j]) + z0[j], j < COLS.
    void tile_add "lstmx_int8_tile_add"(const int32_t *acc, float s, const float *sw,
                                        const float *z0, float *z) noexcept nogil

# The dot-product kernels' signatures, on vectors or AMX's tiles alike. kp is the depth held
# (A's rows, each packed vector's), kd <= kp the depth summed (past it all is zero padding).
# int8: z[r, n] = float(sum_k q[r, k] W[n, k]) * (sa[r] * sw[n]) + (bias[n] or z[r, n]) (or
# raw[r, n] = the sum) for rows [r_lo, r_hi) and the channels of vectors [v_lo, v_hi): as
# int_product, exact.
ctypedef void (*int8_dot_fn)(
    Py_ssize_t r_lo, Py_ssize_t r_hi, Py_ssize_t v_lo, Py_ssize_t v_hi, Py_ssize_t N,
    Py_ssize_t kp, Py_ssize_t kd, const uint8_t *A, const float *sa, const int8_t *W,
    const float *sw, const int32_t *wsum, const float *bias, float *z, Py_ssize_t ldz,
    int32_t *raw) noexcept nogil
# bfloat16: z[r, n] = sum_k a[r, k] w[n, k] + (bias[n] or z[r, n]) over bfloat16 a and w,
# float32 sums.
ctypedef void (*bf16_dot_fn)(
    Py_ssize_t r_lo, Py_ssize_t r_hi, Py_ssize_t v_lo, Py_ssize_t v_hi, Py_ssize_t N,
    Py_ssize_t kp, Py_ssize_t kd, const uint16_t *A, const uint16_t *W, const float *bias, float *z,
    Py_ssize_t ldz) noexcept nogil

cdef extern from "_dot_avx512.h":
    # Channels of a packed vector of the dot-product kernels (their weights' layout).
    enum: DOT_VEC "LSTMX_DOT_VEC"
    # Whether the module was built with the dot-product kernels, and the CPU runs them.
    enum: DOT_BUILT "LSTMX_DOT_BUILT"
    bint dot_has_vnni "lstmx_dot_has_vnni"() noexcept nogil
    bint dot_has_bf16 "lstmx_dot_has_bf16"() noexcept nogil
    # On 512-bit vectors: vpdpbusd and vdpbf16ps.
    int8_dot_fn int8_vnni "lstmx_int8_vnni"
    bf16_dot_fn bf16_dot "lstmx_bf16_dot"

cdef extern from "_dot_avx2.h":
    # Whether the module was built with the 256-bit vpdpbusd products (the AVX2 build), and
    # which the CPU runs: 1 AVX-VNNI, 2 AVX512_VNNI with AVX512VL (the EVEX encoding), 0 neither.
    enum: YMM_BUILT "LSTMX_YMM_BUILT"
    int ymm_vnni_kind "lstmx_ymm_vnni_kind"() noexcept nogil
    # As int8_vnni on 256-bit vectors, the copy the CPU runs (or NULL): the same arguments,
    # the same results.
    int8_dot_fn ymm_int8_dot "lstmx_ymm_int8_dot"() noexcept nogil

cdef extern from "_dot_amx.h":
    # Whether the module was built with the AMX products; which of them the CPU has and Linux
    # lets the process use (1 int8, 2 bfloat16), asking Linux for the tile registers once.
    enum: AMX_BUILT "LSTMX_AMX_BUILT"
    int amx_ready "lstmx_amx_ready"() noexcept nogil
    # Bytes of a tile row: the depth of one tile product.
    enum: AMX_ROW_BYTES "LSTMX_AMX_ROW_BYTES"
    # On AMX's tiles, for depths of whole tile rows: tdpbusd (the same results as
    # int8_vnni) and tdpbf16ps.
    int8_dot_fn int8_amx "lstmx_int8_amx"
    bf16_dot_fn bf16_amx "lstmx_bf16_amx"

# Which products run: AMX's tiles, else the dot-product vector instructions, where the module
# has them, the CPU runs them and the environment allows them: "auto" all, "vector" all but
# AMX, "generic" none (vpdpbusd on 512-bit vectors in the AVX-512 build, on 256-bit ones in
# the AVX2 build). Fixed at import, so that weights packed for one layout never meet the other.
_DOT_SETTING = os.environ.get("LSTMX_DOT_PRODUCTS", "auto")
if _DOT_SETTING not in ("auto", "vector", "generic"):
    raise ValueError(f"LSTMX_DOT_PRODUCTS must be 'auto', 'vector' or 'generic'; got "
                     f"{_DOT_SETTING!r}")
cdef bint _VECTORS = _DOT_SETTING != "generic"
cdef int YMM_KIND = ymm_vnni_kind() if YMM_BUILT and _VECTORS else 0
# VNNI: the int8 products run on vpdpbusd (int8_dot), of either width, or on AMX's tdpbusd: the
# same packed weights, the same sums.
cdef bint VNNI = (DOT_BUILT and _VECTORS and dot_has_vnni()) or YMM_KIND != 0
cdef bint DPBF16 = DOT_BUILT and _VECTORS and dot_has_bf16()
# AMX where the vector instructions of the same kind run (every CPU with AMX has them), and
# only then: its weights are theirs.
cdef int _AMX = amx_ready() if AMX_BUILT and _DOT_SETTING == "auto" and (VNNI or DPBF16) else 0
cdef bint AMX_INT8 = VNNI and YMM_KIND == 0 and (_AMX & 1) != 0
cdef bint AMX_BF16 = DPBF16 and (_AMX & 2) != 0
cdef int8_dot_fn int8_dot = ymm_int8_dot() if YMM_KIND != 0 else int8_vnni
# What runs, by name: "tdpbusd" (AMX; products of fewer than AMX_INT8_ROWS rows on vpdpbusd,
# the same sums), "vpdpbusd" (512-bit), "vpdpbusd-avxvnni" or
# "vpdpbusd-avx512vl" (256-bit, VEX or EVEX) or "generic" (int8); "tdpbf16ps" (AMX),
# "vdpbf16ps" or "blas" (bfloat16).
INT8_PRODUCTS = ("tdpbusd" if AMX_INT8 else "vpdpbusd-avxvnni" if YMM_KIND == 1
                 else "vpdpbusd-avx512vl" if YMM_KIND == 2 else "vpdpbusd" if VNNI
                 else "generic")
BF16_PRODUCTS = "tdpbf16ps" if AMX_BF16 else "vdpbf16ps" if DPBF16 else "blas"

cdef enum:
    # An integer tile is ROWS x COLS sums (_int8_dot.h): 8 vector accumulators, 2 activation
    # vectors, a weight vector and the constant within the 16 vector registers of AVX2.
    ROWS = 2
    # Activations are integers q with |q| <= LEVELS (8 bits, symmetric), held as bytes.
    LEVELS = 127
    # Columns of weights a pair of activation rows meets in turn: 16 rows of depth 512 of
    # int8 (8 KiB) stay in L1 with the activations.
    BLOCK_COLS = 16
    # Rows of activations per pass over the weights: 128 rows of depth 512 (64 KiB of bytes)
    # stay in L2 while every weight tile streams past them.
    ROW_BLOCK = 128
    # BLAS, which does the bfloat16 products, gains from long chunks: as the float kernels.
    # (int8 chunks: int8_chunk_steps.)
    BLAS_CHUNK_ELEMENTS = 1 << 20
    # With bytes at most 255 (vpdpbusd's q + 128) and |w| <= 127, a sum of at most this many
    # products stays below 2**31 (and so do 128 times a weight row's sum and sum q * w).
    MAX_DEPTH = 66304
    # Integer products below this many multiply-adds (some 50 us) stay on one thread: a
    # team's start and end would cost a good part of that.
    PARALLEL_WORK = 1 << 20
    # int8 products of fewer rows run on vpdpbusd, not AMX's tiles, whose product costs the
    # same for 1 row as for 16, and so do all of a layer's when its batch is smaller: a
    # core slows its vector instructions for a while after tile products (batches of 1 and
    # 2 ran 0.7-0.8x as fast with an input projection on the tiles; docs/quantization.md).
    # The sums are the same either way.
    AMX_INT8_ROWS = 8
    # A bfloat16 layer whose step has fewer multiply-adds (B 4H (I + Hout)) runs on
    # vdpbf16ps: at a batch of 1 and H = 100 (53 K a step) the tiles ran 0.64-0.78x as fast,
    # at 1 and H = 256 (393 K) 2x. A function of the shape, so the bits are one too.
    AMX_BF16_STEP_WORK = 1 << 17

# Weight rows are padded to a multiple of this: a tile's on the generic products, a
# vector's on vpdpbusd.
cdef Py_ssize_t INT8_COLS = DOT_VEC if VNNI else COLS
# The activation bytes are q + ZERO: unsigned bytes for vpdpbusd, q itself (two's complement)
# for the generic products.
cdef int ZERO = 128 if VNNI else 0
# Depths are padded to whole tile rows on AMX, else to the vector loops' steps (bytes of
# int8, values of bfloat16).
cdef Py_ssize_t INT8_DEPTH = AMX_ROW_BYTES if AMX_INT8 else DEPTH_STEP
cdef Py_ssize_t BF16_DEPTH = AMX_ROW_BYTES // 2 if AMX_BF16 else 2
DEPTH_MULTIPLE = DEPTH_STEP
COLUMN_MULTIPLE = INT8_COLS
MAX_INT_DEPTH = MAX_DEPTH
ACTIVATION_LEVELS = LEVELS


# ------------------------------------------------------------------------ rounding of activations

cdef void quantize_rows(Py_ssize_t rows, Py_ssize_t K, const float *v, Py_ssize_t ldv,
                        uint8_t *q, Py_ssize_t ldq, float *scale) noexcept nogil:
    """Row r of v (K values, rows ldv apart) becomes the bytes rint(clip(v[r] / s_r, -127, 127))
    + ZERO with s_r = max|v[r]| / 127 in scale[r]. A row of zeros (or so tiny that s_r
    underflows to 0) gets s_r = 0 and q = 0; a row with a NaN or an infinity gets s_r = NaN and
    q = 0, so that its products are NaN (docs/quantization.md). Columns [K, ldq) of q are not
    written. On AVX-512, rows of a vector or more run on ``_quantize_row.h``'s vectors, with
    the same results.
    """
    cdef Py_ssize_t r, k
    cdef uint32_t bits, top
    cdef float top_f, s, u
    cdef float levels = LEVELS, neg_levels = -LEVELS
    cdef float rounder = 12582912.0  # 1.5 * 2**23: adding and subtracting it rounds to even
    cdef const float *vr
    cdef uint8_t *qr
    cdef bint vectors = QUANTIZE_ROW_VECTOR and K >= QUANTIZE_VECTOR
    for r in range(rows):
        vr = v + r * ldv
        qr = q + r * ldq
        if vectors:
            top = abs_bits_max(K, vr)
        else:
            # max |v| from the bits: for non-negative floats (and inf and NaN above every
            # finite float) the order of the bits is the order of the values, and integer
            # max vectorises.
            top = 0
            for k in range(K):
                memcpy(&bits, vr + k, sizeof(float))
                bits = bits & 0x7fffffff
                top = bits if bits > top else top
        memcpy(&top_f, &top, sizeof(float))
        s = top_f / levels
        if top >= 0x7f800000 or s == 0:
            memset(qr, ZERO, K * sizeof(uint8_t))
            scale[r] = NAN if top >= 0x7f800000 else 0
            continue
        scale[r] = s
        if vectors:
            round_bytes(K, vr, s, levels, ZERO, qr)
            continue
        for k in range(K):
            u = vr[k] / s
            u = levels if u > levels else u
            u = neg_levels if u < neg_levels else u
            qr[k] = <uint8_t> (<int32_t> ((u + rounder) - rounder) + ZERO)


cdef inline uint32_t bf16_round(uint32_t bits) noexcept nogil:
    """The float32 ``bits`` rounded to bfloat16 (to nearest, ties to even; a NaN stays a NaN),
    in the top 16 bits."""
    if (bits & 0x7fffffff) > 0x7f800000:
        return (bits | 0x00400000) & 0xffff0000U
    return (bits + 0x7fff + ((bits >> 16) & 1)) & 0xffff0000U


cdef void round_rows_bf16(Py_ssize_t rows, Py_ssize_t K, const float *v, Py_ssize_t ldv,
                          float *out, Py_ssize_t ldo) noexcept nogil:
    """out = v rounded to bfloat16, as float32 (the BLAS products)."""
    cdef Py_ssize_t r, k
    cdef uint32_t bits
    for r in range(rows):
        for k in range(K):
            memcpy(&bits, v + r * ldv + k, sizeof(float))
            bits = bf16_round(bits)
            memcpy(out + r * ldo + k, &bits, sizeof(float))


cdef void bits_rows_bf16(Py_ssize_t rows, Py_ssize_t K, const float *v, Py_ssize_t ldv,
                         uint16_t *out, Py_ssize_t ldo) noexcept nogil:
    """out = v rounded to bfloat16, as its 16 bits (the vdpbf16ps products). Columns [K, ldo)
    of out are not written."""
    cdef Py_ssize_t r, k
    cdef uint32_t bits
    for r in range(rows):
        for k in range(K):
            memcpy(&bits, v + r * ldv + k, sizeof(float))
            out[r * ldo + k] = <uint16_t> (bf16_round(bits) >> 16)


# ------------------------------------------------------------------------ integer products

cdef void int_product_columns(
        Py_ssize_t block, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t rows, Py_ssize_t N,
        Py_ssize_t Kp, const uint8_t *A, const float *sa, const int8_t *W, const float *sw,
        const float *bias, float *z, Py_ssize_t ldz, int32_t *raw) noexcept nogil:
    """Columns [block * BLOCK_COLS, block * BLOCK_COLS + BLOCK_COLS) of rows [r0, r1) of the
    product of ``int_product``: into z (scaled and added) or, when ``raw`` is not NULL, into
    raw. A pair of rows meets every tile of the block before the next pair: its activations
    are read once from L1 for all of them, and each row of z is written a cache line at a
    time."""
    cdef int32_t acc[ROWS * COLS]
    cdef Py_ssize_t r, i, j, n0, n_cols
    cdef Py_ssize_t n_lo = block * BLOCK_COLS
    cdef Py_ssize_t n_hi = N if n_lo + BLOCK_COLS > N else n_lo + BLOCK_COLS
    cdef const uint8_t *a1
    cdef const int32_t *acc_i
    cdef float *zr
    cdef const float *z0
    cdef float s
    r = r0
    while r < r1:
        # An odd last row is paired with itself; the duplicate sums are not stored.
        a1 = A + (r + 1) * Kp if r + 1 < rows else A + r * Kp
        if raw == NULL and bias == NULL and r + ROWS < r1:
            # The next pair's rows of z, 4H floats apart, are where this pass otherwise
            # waits: no hardware prefetcher follows that stride.
            for i in range(ROWS if r + 2 * ROWS <= r1 else r1 - r - ROWS):
                prefetch(z + (r + ROWS + i) * ldz + n_lo)
                prefetch(z + (r + ROWS + i) * ldz + n_hi - 1)
        n0 = n_lo
        while n0 < n_hi:
            n_cols = n_hi - n0 if n_hi - n0 < COLS else COLS
            # The bytes are q itself here (no zero point without vpdpbusd): the sums are
            # sum q * w as they come.
            int_dot_tile(Kp, A + r * Kp, a1, W + n0 * Kp, acc)
            for i in range(ROWS):
                if r + i >= rows:
                    break
                acc_i = acc + i * COLS
                if raw != NULL:
                    for j in range(n_cols):
                        raw[(r + i) * N + n0 + j] = acc_i[j]
                else:
                    zr = z + (r + i) * ldz + n0
                    z0 = bias + n0 if bias != NULL else zr
                    s = sa[r + i]
                    if n_cols == COLS:
                        tile_add(acc_i, s, sw + n0, z0, zr)
                    else:
                        for j in range(n_cols):
                            zr[j] = z0[j] + <float> acc_i[j] * (s * sw[n0 + j])
            n0 += COLS
        r += ROWS


cdef void int_product(Py_ssize_t rows, Py_ssize_t N, Py_ssize_t Kp, Py_ssize_t K,
                      const uint8_t *A, const float *sa, const int8_t *W, const float *sw,
                      const int32_t *wsum, const float *bias, float *z, Py_ssize_t ldz,
                      int32_t *raw, int threads, bint tiles) noexcept nogil:
    """z[r, n] = float(sum_k q[r, k] W[n, k]) * (sa[r] * sw[n]) + (bias[n], or z[r, n] where
    bias is NULL) for r < rows, n < N, with A = q + ZERO the activation bytes and wsum[n] =
    sum_k W[n, k] (which corrects vpdpbusd's sums for the zero point; the generic products
    have none); or, where raw is not NULL, raw[r, n] = the integer sum.

    A (rows, Kp) uint8; W (N rounded up to INT8_COLS, Kp) int8, zero-padded to Kp and laid out
    by ``pack_weights`` (A's padding is then any byte); K <= Kp the depth before padding,
    which the dot-product vectors stop at (AMX's tiles at whole tile rows). Threads split
    the columns, so each sum is computed by one thread in one order whatever the number of
    threads: the result does not depend on it. ``tiles``: AMX's where this process has them
    and the product has AMX_INT8_ROWS rows or more (the same sums; the layer's rule, from
    its batch, is ``Plan.tiles``).
    """
    cdef Py_ssize_t blocks = (N + BLOCK_COLS - 1) // BLOCK_COLS
    cdef Py_ssize_t vecs = (N + DOT_VEC - 1) // DOT_VEC
    cdef int tid
    cdef int8_dot_fn dot = (int8_amx if tiles and AMX_INT8 and rows >= AMX_INT8_ROWS
                            else int8_dot)
    cdef Py_ssize_t kd = (K + 3) // 4 * 4
    if rows * N * Kp < PARALLEL_WORK or blocks < 2:
        threads = 1
    if VNNI:
        # W in vectors of DOT_VEC channels (pack_weights); threads split the vectors.
        if threads == 1:
            dot(0, rows, 0, vecs, N, Kp, kd, A, sa, W, sw, wsum, bias, z, ldz, raw)
            return
        with parallel(num_threads=threads):
            tid = threadid()
            threads = num_threads()
            dot(0, rows, vecs * tid // threads, vecs * (tid + 1) // threads, N, Kp, kd, A, sa,
                W, sw, wsum, bias, z, ldz, raw)
        return
    if threads == 1:
        int_product_blocks(0, blocks, rows, N, Kp, A, sa, W, sw, bias, z, ldz, raw)
        return
    # One team for the whole product, each thread on its own contiguous run of column blocks
    # through every row block: no barrier between row blocks, which depend on nothing.
    with parallel(num_threads=threads):
        tid = threadid()
        threads = num_threads()
        int_product_blocks(blocks * tid // threads, blocks * (tid + 1) // threads, rows, N, Kp,
                           A, sa, W, sw, bias, z, ldz, raw)


cdef void int_product_blocks(Py_ssize_t b_lo, Py_ssize_t b_hi, Py_ssize_t rows, Py_ssize_t N,
                             Py_ssize_t Kp, const uint8_t *A, const float *sa, const int8_t *W,
                             const float *sw, const float *bias, float *z, Py_ssize_t ldz,
                             int32_t *raw) noexcept nogil:
    """Column blocks [b_lo, b_hi) of ``int_product``, a block of ROW_BLOCK rows at a time
    (which stay in L2 while every weight tile of the blocks passes)."""
    cdef Py_ssize_t r0 = 0, r1, block
    while r0 < rows:
        r1 = rows if r0 + ROW_BLOCK > rows else r0 + ROW_BLOCK
        for block in range(b_lo, b_hi):
            int_product_columns(block, r0, r1, rows, N, Kp, A, sa, W, sw, bias, z, ldz, raw)
        r0 = r1


cdef void bf16_product(Py_ssize_t rows, Py_ssize_t N, Py_ssize_t Kp, Py_ssize_t K,
                       const uint16_t *A, const uint16_t *W, const float *bias, float *z,
                       Py_ssize_t ldz, int threads, bint tiles) noexcept nogil:
    """z[r, n] = sum_k a[r, k] W[n, k] + (bias[n], or z[r, n] where bias is NULL) for r < rows,
    n < N, on AMX's tdpbf16ps where ``tiles`` and the process has them, else on vdpbf16ps:
    A (rows, Kp) bfloat16 bits, zero-padded, K <= Kp the depth before padding; W as
    ``pack_bfloat16`` lays it out. Threads split the columns, each sum computed by one thread
    in one order: the result does not depend on them."""
    cdef Py_ssize_t vecs = (N + DOT_VEC - 1) // DOT_VEC
    cdef int tid
    cdef bf16_dot_fn dot = bf16_amx if tiles and AMX_BF16 else bf16_dot
    cdef Py_ssize_t kd = (K + 1) // 2 * 2
    if rows * N * Kp < PARALLEL_WORK or vecs < 2:
        threads = 1
    if threads == 1:
        dot(0, rows, 0, vecs, N, Kp, kd, A, W, bias, z, ldz)
        return
    with parallel(num_threads=threads):
        tid = threadid()
        threads = num_threads()
        dot(0, rows, vecs * tid // threads, vecs * (tid + 1) // threads, N, Kp, kd, A, W, bias,
            z, ldz)


# ------------------------------------------------------------------------ one layer and direction

cdef struct Operand:
    # One weight matrix (N, K) of a layer and direction, and the scratch its activations are
    # rounded into: the fields of the products that run (int8; bfloat16 on the kernels' own
    # products or BLAS).
    Py_ssize_t N, K, Kp            # Kp: padded depth (int8 and bfloat16's own products)
    const int8_t *q                # int8 (N padded, Kp), pack_weights's layout
    const float *scale             # its per-row scales, padded
    const int32_t *sums            # its row sums, padded
    const uint16_t *bits           # bfloat16 (N padded, Kp), pack_bfloat16's layout
    const float *values            # bfloat16 values in float32 (N, K), for BLAS
    uint8_t *aq                    # int8 activation bytes (rows, Kp) and scales (rows,)
    float *ascale
    uint16_t *ab                   # bfloat16 activation bits (rows, Kp)
    float *af                      # bfloat16 activations in float32 (rows, K)


cdef struct Plan:
    bint int8, reverse, identity, lean
    bint rows                      # a team that splits the batch (forward_layer)
    bint tiles                     # AMX's tiles for the products, where the process has them
    int threads
    Py_ssize_t T, B, n_in, H, P, Hout, Tc, ldy  # n_in: I is a macro of complex.h
    const float *x                 # (T*B, I)
    const float *bias              # (4H,): b_ih + b_hh, zeros without bias
    const float *peep              # (3, H) or NULL
    const Py_ssize_t *lengths      # (B,) or NULL
    float *h                       # (B, Hout): initial state in, final state out
    float *c                       # (B, H)
    float *y                       # (T, B, ldy), from column y_col
    float *gates                   # scratch (Tc*B, 4H)
    float *m                       # scratch (B, H)
    float *hp                      # scratch (B, P)
    const float *zeros             # (P,): the projection's bias
    Operand W                      # input weights, activations x (Tc*B rows of scratch)
    Operand U                      # recurrent weights, activations h (B rows)
    Operand R                      # projection weights, activations m (B rows)


cdef void product(const Plan *p, const Operand *o, Py_ssize_t rows, const float *v,
                  Py_ssize_t ldv, Py_ssize_t at, const float *bias, float *z, Py_ssize_t ldz,
                  int threads) noexcept nogil:
    """z[:rows] = v[:rows] @ W.T + (bias, each row, or z[:rows] where bias is NULL) with the
    rows of v (K values, ldv apart) quantised or rounded into rows [at, at + rows) of the
    operand's scratch, on ``threads`` threads. The kernels' own products read the bias where
    they would read z (the same sums); BLAS adds to a copy of it."""
    cdef Py_ssize_t r
    if p.int8:
        quantize_rows(rows, o.K, v, ldv, o.aq + at * o.Kp, o.Kp, o.ascale + at)
        int_product(rows, o.N, o.Kp, o.K, o.aq + at * o.Kp, o.ascale + at, o.q, o.scale, o.sums,
                    bias, z, ldz, NULL, threads, p.tiles)
    elif DPBF16:
        bits_rows_bf16(rows, o.K, v, ldv, o.ab + at * o.Kp, o.Kp)
        bf16_product(rows, o.N, o.Kp, o.K, o.ab + at * o.Kp, o.bits, bias, z, ldz, threads,
                     p.tiles)
    else:
        if bias != NULL:
            for r in range(rows):
                memcpy(z + r * ldz, bias, o.N * sizeof(float))
        round_rows_bf16(rows, o.K, v, ldv, o.af + at * o.K, o.K)
        gemm(NoTrans, Trans, rows, o.N, o.K, 1, o.af + at * o.K, o.K, o.values, o.K, 1, z,
             ldz)


cdef void forward_layer(Plan *p) noexcept nogil:
    """The forward pass of one layer and direction over the whole sequence: lstmx's float
    forward (``_layer_serial.pxi``) with quantised products.

    On a team (``p.rows``: int8, or bfloat16 on the kernels' own products) each thread takes
    its own rows of the batch, whole pairs of them, through every step, input projection
    included. Rows never meet, so the team never waits for itself; and each sum is computed
    the same way whichever rows share its tile, so the results do not depend on the team.
    Otherwise (bfloat16 on BLAS, or a batch too small to share) the steps run on the calling
    thread and the products split their columns between ``p.threads``."""
    cdef int part, parts
    cdef Py_ssize_t pairs = (p.B + ROWS - 1) // ROWS
    if p.rows:
        with parallel(num_threads=p.threads):
            part, parts = threadid(), num_threads()
            forward_rows(p, min(p.B, ROWS * (pairs * part // parts)),
                         min(p.B, ROWS * (pairs * (part + 1) // parts)), 1)
    else:
        forward_rows(p, 0, p.B, p.threads)


cdef void forward_rows(Plan *p, Py_ssize_t b_lo, Py_ssize_t b_hi, int threads) noexcept nogil:
    """Rows [b_lo, b_hi) of the batch through forward_layer, the products on ``threads``
    threads."""
    cdef Py_ssize_t T = p.T, B = p.B, H = p.H, P = p.P, Hout = p.Hout, G = 4 * p.H
    cdef Py_ssize_t nb = b_hi - b_lo
    cdef Py_ssize_t s0, n, t_lo, s, t, bi, r0
    cdef float *zt
    cdef float *mrow
    if nb <= 0:
        return
    s0 = 0
    while s0 < T:
        # Steps s0 .. s0+n-1 in processing order are times t_lo .. t_lo+n-1.
        n = p.Tc if T - s0 > p.Tc else T - s0
        t_lo = T - s0 - n if p.reverse else s0
        # z = b + x @ W.T   (n*B, 4H) = (n*B, I)(I, 4H): all n steps at once, or this
        # part's rows of each step
        if nb == B:
            product(p, &p.W, n * B, p.x + t_lo * B * p.n_in, p.n_in, 0, p.bias, p.gates, G,
                    threads)
        else:
            for t in range(n):
                r0 = t * B + b_lo
                product(p, &p.W, nb, p.x + (t_lo * B + r0) * p.n_in, p.n_in, r0, p.bias,
                        p.gates + r0 * G, G, threads)
        for s in range(s0, s0 + n):
            t = T - 1 - s if p.reverse else s
            zt = p.gates + (t - t_lo) * B * G
            # z += h @ U.T   (B, 4H) += (B, Hout)(Hout, 4H)
            product(p, &p.U, nb, p.h + b_lo * Hout, Hout, b_lo, NULL, zt + b_lo * G, G,
                    threads)
            for bi in range(b_lo, b_hi):
                if t >= length(p.lengths, bi, T):
                    memset(p.y + (t * B + bi) * p.ldy, 0, Hout * sizeof(float))
                    continue
                # Without projection m_t is h_t: written straight into the state.
                mrow = p.m + bi * H if P > 0 else p.h + bi * H
                cell_forward_rows(H, H, zt + bi * G, p.c + bi * H, mrow, p.peep, p.lean,
                                  p.identity)
                if P == 0:
                    memcpy(p.y + (t * B + bi) * p.ldy, mrow, H * sizeof(float))
            if P > 0:
                # h = m @ R.T   (B, P) = (B, H)(H, P); only active rows take it.
                product(p, &p.R, nb, p.m + b_lo * H, H, b_lo, p.zeros, p.hp + b_lo * P, P,
                        threads)
                for bi in range(b_lo, b_hi):
                    if t < length(p.lengths, bi, T):
                        memcpy(p.h + bi * P, p.hp + bi * P, P * sizeof(float))
                        memcpy(p.y + (t * B + bi) * p.ldy, p.hp + bi * P, P * sizeof(float))
        s0 += n


# One core's L2, which the chunks of the kernels' own products are sized to (dot_chunk_steps).
cdef Py_ssize_t L2_BYTES = l2_cache_bytes()


cdef Py_ssize_t dot_chunk_steps(Py_ssize_t T, Py_ssize_t step_elements) noexcept:
    """Steps of a chunk (the input projection of that many steps at once) on the kernels' own
    products (int8, and bfloat16 on vdpbf16ps or AMX) whose gate pre-activations hold
    ``step_elements`` floats a step: as many as fill half of one core's
    L2, at least one, so that a step's rows are still in L2 when its recurrent product adds
    to them (with 4 MiB chunks every read of int8's missed). Longer chunks gain nothing: the
    products reuse the weights over ROW_BLOCK rows at most (a tile's on vpdpbusd)."""
    return max(1, min(T, (L2_BYTES // 2) // (step_elements * <Py_ssize_t> sizeof(float))))


def padded_depth(Py_ssize_t K):
    """The depth ``K`` rounded up to the multiple the integer products take: tile rows of 64
    bytes on AMX, vectors of 32 otherwise."""
    return (K + INT8_DEPTH - 1) // INT8_DEPTH * INT8_DEPTH


def bf16_depth(Py_ssize_t K):
    """The depth ``K`` rounded up to the multiple the bfloat16 products take: tile rows of 32
    values on AMX, pairs on vdpbf16ps."""
    return (K + BF16_DEPTH - 1) // BF16_DEPTH * BF16_DEPTH


def _check(name, bint ok, expected, got):
    if not ok:
        _fail(name, expected, got)


cdef _fail(str name, str expected, got):
    """Refuse argument ``name``, as ``expect`` words it: what it must be, and what it is."""
    raise ValueError(f"kernel argument {name} must be {expected}; got {got}")


cdef cnp.ndarray _ndarray(object a, str name):
    """``a``, which must be a NumPy array (or None, which ``expect`` refuses by name)."""
    if a is not None and not isinstance(a, cnp.ndarray):
        raise TypeError(f"kernel argument {name} must be a NumPy array; got "
                        f"{type(a).__name__}")
    return <cnp.ndarray> a


cdef inline Py_ssize_t _aligned(Py_ssize_t nbytes) noexcept:
    """nbytes rounded up to a cache line: each piece of the scratch starts on its own."""
    return (nbytes + 63) // 64 * 64


def forward(*, str mode, cnp.ndarray x, Py_ssize_t input_size, tuple weights,
            cnp.ndarray bias, cnp.ndarray peep, cnp.ndarray lengths, cnp.ndarray h,
            cnp.ndarray c, cnp.ndarray y, Py_ssize_t y_col, bint reverse, bint identity):
    """One layer and direction's quantised forward pass (see ``forward_layer``).

    x (T*B, I) float32, I = ``input_size`` (which packed weights, their depth padded, do not
    tell); ``weights`` as ``lstmx.quantized`` packs them: for "int8" (Wq, sw,
    Wsum, Uq, su, Usum, Rq, sr, Rsum), each matrix and its sums from ``pack_weights`` and its
    float32 scales zero-padded to the matrix's rows; for "bfloat16" (W, U, R) from
    ``pack_bfloat16``. R (and its scales and sums) is None without projection. bias (4H,);
    peep (3, H) or None; lengths (B,) intp or None; h (B, Hout) and c (B, H) hold the
    initial state and receive the final one; y (T, B, ldy) receives h_t in columns
    [y_col, y_col + Hout). Arrays are aligned, C-contiguous and in native order
    (``_arguments.pxi``).
    """
    cdef Plan p
    cdef Operand *o
    cdef Py_ssize_t G, rows, Np, act_rows, i, N, K, total
    cdef cnp.ndarray q, scale, sums, bits, values
    cdef cnp.ndarray xa = x, ha = h, ca = c, ya = y, ba = bias, pa = peep, la = lengths
    cdef cnp.ndarray scratch
    cdef char *base
    # Byte offsets into the scratch: gates, m, hp, zeros, then per operand its activations'
    # bytes or bits (or float32 values) and int8 scales.
    cdef Py_ssize_t off_m, off_hp, off_zeros, off_act[3], off_scale[3]
    if mode != "int8" and mode != "bfloat16":
        _fail("mode", "'int8' or 'bfloat16'", repr(mode))
    p.int8 = mode == "int8"
    # The sizes: T from y, B and Hout from h, H from the bias (4H), I given.
    expect_ndim(ha, "h", 2)
    expect_ndim(ya, "y", 3)
    expect_ndim(ba, "bias", 1)
    if ba.shape[0] % 4:
        _fail("bias", "4H values (a multiple of 4)", f"{ba.shape[0]} values")
    p.B, p.H, p.Hout = ha.shape[0], ba.shape[0] // 4, ha.shape[1]
    p.T, p.n_in, G = ya.shape[0], input_size, 4 * p.H
    expect_output(ha, "h", cnp.NPY_FLOAT32, p.B, p.Hout)
    expect_output(ca, "c", cnp.NPY_FLOAT32, p.B, p.H)
    expect_output(ya, "y", cnp.NPY_FLOAT32, p.T, p.B, ya.shape[2])
    if not 0 <= y_col <= ya.shape[2] - p.Hout:
        _fail("y_col", f"in [0, {ya.shape[2] - p.Hout}] (y's columns less h's)", y_col)
    if p.T < 1 or p.B < 1 or p.H < 1 or p.Hout < 1 or p.n_in < 1:
        _fail("sizes", "T, B, I, H and Hout of at least 1 (from y, h, input_size, bias and h)",
              f"{p.T}, {p.B}, {p.n_in}, {p.H} and {p.Hout}")
    expect(xa, "x", cnp.NPY_FLOAT32, p.T * p.B, p.n_in)
    expect(ba, "bias", cnp.NPY_FLOAT32, G)
    if pa is not None:
        expect(pa, "peep", cnp.NPY_FLOAT32, 3, p.H)
    expect_lengths(la, p.B, p.T)
    p.P = p.Hout if p.Hout != p.H else 0
    p.reverse, p.identity = reverse, identity
    p.lean = pa is None
    p.tiles = (p.B >= AMX_INT8_ROWS if p.int8
               else p.B * G * (p.n_in + p.Hout) >= AMX_BF16_STEP_WORK)
    p.threads = max_threads()
    own = p.int8 or DPBF16             # the kernels' own products, not BLAS
    # A team of rows when every thread has a pair of rows and the pass has the work to pay
    # for starting a team (once a layer: it never waits for itself).
    p.rows = (own and p.threads > 1 and p.B >= ROWS * 2
              and p.T * p.B * 4 * p.H * (p.n_in + p.Hout) >= PARALLEL_WORK)
    if p.rows:
        p.threads = min(p.threads, (p.B + ROWS - 1) // ROWS)
    p.ldy = ya.shape[2]
    p.Tc = (dot_chunk_steps(p.T, p.B * G) if own
            else max(1, min(p.T, BLAS_CHUNK_ELEMENTS // (p.B * G))))
    rows = p.Tc * p.B
    if len(weights) != (9 if p.int8 else 3):
        _fail("weights", "9 int8 arrays (or None)" if p.int8 else "3 bfloat16 arrays (or None)",
              f"{len(weights)}")
    memset(&p.W, 0, sizeof(Operand))
    memset(&p.U, 0, sizeof(Operand))
    memset(&p.R, 0, sizeof(Operand))
    total = _aligned(rows * G * sizeof(float))
    off_m = total
    total += _aligned(p.B * p.H * sizeof(float))
    off_hp = total
    total += _aligned(p.B * max(p.P, 1) * sizeof(float))
    off_zeros = total
    total += _aligned(max(p.P, 1) * sizeof(float))
    for i in range(3):
        o = &p.W if i == 0 else &p.U if i == 1 else &p.R
        N, K = (G, p.n_in) if i == 0 else (G, p.Hout) if i == 1 else (p.P, p.H)
        act_rows = rows if i == 0 else p.B
        name = "WUR"[i]
        off_act[i] = off_scale[i] = -1
        if N == 0:
            if not ((weights[3 * i] is None and weights[3 * i + 2] is None) if p.int8
                    else weights[i] is None):
                _fail(name, "None without projection", "an array")
            continue
        o.N, o.K = N, K
        if p.int8:
            o.Kp = padded_depth(K)
            Np = (N + INT8_COLS - 1) // INT8_COLS * INT8_COLS
            if o.Kp > MAX_DEPTH:
                _fail(name, f"at most {MAX_DEPTH} deep (padded)", o.Kp)
            q = _ndarray(weights[3 * i], name)
            scale = _ndarray(weights[3 * i + 1], name + " scale")
            sums = _ndarray(weights[3 * i + 2], name + " sums")
            expect(q, name, cnp.NPY_INT8, Np, o.Kp)
            expect(scale, name + " scale", cnp.NPY_FLOAT32, Np)
            expect(sums, name + " sums", cnp.NPY_INT32, Np)
            o.q = <const int8_t *> cnp.PyArray_DATA(q)
            o.scale = <const float *> cnp.PyArray_DATA(scale)
            o.sums = <const int32_t *> cnp.PyArray_DATA(sums)
            off_act[i] = total
            total += _aligned(act_rows * o.Kp)
            off_scale[i] = total
            total += _aligned(act_rows * sizeof(float))
        elif DPBF16:
            o.Kp = bf16_depth(K)
            Np = (N + DOT_VEC - 1) // DOT_VEC * DOT_VEC
            bits = _ndarray(weights[i], name)
            expect(bits, name, cnp.NPY_UINT16, Np, o.Kp)
            o.bits = <const uint16_t *> cnp.PyArray_DATA(bits)
            off_act[i] = total
            total += _aligned(act_rows * o.Kp * sizeof(uint16_t))
        else:
            values = _ndarray(weights[i], name)
            expect(values, name, cnp.NPY_FLOAT32, N, K)
            o.values = <const float *> cnp.PyArray_DATA(values)
            off_act[i] = total
            total += _aligned(act_rows * K * sizeof(float))
    # One allocation for every scratch array of the call, pooled when large (fresh pages
    # each call would cost a page fault each); all but the gates zeroed (the activations'
    # padding past K meets zero weights).
    scratch = workspace(total, np.dtype(np.uint8))
    base = <char *> cnp.PyArray_DATA(scratch)
    memset(base + off_m, 0, total - off_m)
    p.gates, p.m = <float *> base, <float *> (base + off_m)
    p.hp, p.zeros = <float *> (base + off_hp), <const float *> (base + off_zeros)
    for i in range(3):
        o = &p.W if i == 0 else &p.U if i == 1 else &p.R
        if off_act[i] < 0:
            continue
        if p.int8:
            o.aq, o.ascale = <uint8_t *> (base + off_act[i]), <float *> (base + off_scale[i])
        elif DPBF16:
            o.ab = <uint16_t *> (base + off_act[i])
        else:
            o.af = <float *> (base + off_act[i])
    p.x, p.bias = <const float *> cnp.PyArray_DATA(xa), <const float *> cnp.PyArray_DATA(ba)
    p.peep, p.lengths = NULL, NULL
    if pa is not None:
        p.peep = <const float *> cnp.PyArray_DATA(pa)
    if la is not None:
        p.lengths = <const Py_ssize_t *> cnp.PyArray_DATA(la)
    p.h, p.c = <float *> cnp.PyArray_DATA(ha), <float *> cnp.PyArray_DATA(ca)
    p.y = <float *> cnp.PyArray_DATA(ya) + y_col
    with nogil:
        forward_layer(&p)
    return None


def quantize_activations(const float[:, ::1] v):
    """The quantisation of each row of v (rows, K), as the kernels do it at each step: (q int8
    (rows, K) in [-127, 127], scale float32 (rows,)); the kernels hold the bytes q + 128 on
    vpdpbusd, q otherwise. For the tests."""
    cdef Py_ssize_t rows = v.shape[0], K = v.shape[1]
    u = np.zeros((rows, K), np.uint8)
    scale = np.zeros(rows, np.float32)
    cdef uint8_t[:, ::1] uv = u
    cdef float[::1] sv = scale
    if rows and K:
        with nogil:
            quantize_rows(rows, K, &v[0, 0], K, &uv[0, 0], K, &sv[0])
    return (u.astype(np.int16) - ZERO).astype(np.int8), scale


def pack_weights(const int8_t[:, ::1] q):
    """int8 weights q (N, K) as the integer products take them: (packed, sums).

    ``packed`` (N rounded up to ``COLUMN_MULTIPLE``, ``padded_depth(K)``) int8, zero-padded;
    on vpdpbusd a vector of 16 rows at a time, 4 bytes of each row after another
    (``_dot_avx512.h``), otherwise each tile of 4 rows interleaved 32 bytes at a time
    (``_int8_dot.h``). ``sums`` (int32, one per padded row) = sum_k q[n, k], which corrects
    the products for the activations' zero point.
    """
    cdef Py_ssize_t N = q.shape[0], K = q.shape[1]
    cdef Py_ssize_t Np = (N + INT8_COLS - 1) // INT8_COLS * INT8_COLS, Kp = padded_depth(K)
    padded = np.zeros((Np, Kp), np.int8)
    padded[:N, :K] = q
    sums = padded.sum(axis=1, dtype=np.int32)
    if VNNI:
        # (vector, j, k // 4, k % 4) -> (vector, k // 4, j, k % 4)
        packed = padded.reshape(Np // DOT_VEC, DOT_VEC, Kp // 4, 4).transpose(0, 2, 1, 3)
    else:
        # (tile, j, k // 32, k % 32) -> (tile, k // 32, j, k % 32): lstmx_int8_tile_index.
        packed = padded.reshape(Np // COLS, COLS, Kp // DEPTH_STEP, DEPTH_STEP
                                ).transpose(0, 2, 1, 3)
    # On cache lines: a vector or tile row of weights split across two lines costs two reads.
    return line_aligned(packed).reshape(Np, Kp), line_aligned(sums)


def pack_bfloat16(const uint16_t[:, ::1] bits):
    """bfloat16 weights (N, K), as uint16 bits, as the bfloat16 products take them.

    On vdpbf16ps: uint16 (N rounded up to 16, ``bf16_depth(K)``), zero-padded, a vector of
    16 rows at a time, 2 values of each row after another (``_dot_avx512.h``). On BLAS: the
    float32 values (N, K) the bits stand for.
    """
    cdef Py_ssize_t N = bits.shape[0], K = bits.shape[1]
    cdef Py_ssize_t Np = (N + DOT_VEC - 1) // DOT_VEC * DOT_VEC, Kp = bf16_depth(K)
    if not DPBF16:
        return (np.asarray(bits).astype(np.uint32) << 16).view(np.float32)
    padded = np.zeros((Np, Kp), np.uint16)
    padded[:N, :K] = bits
    # (vector, j, k // 2, k % 2) -> (vector, k // 2, j, k % 2)
    return line_aligned(padded.reshape(Np // DOT_VEC, DOT_VEC, Kp // 2, 2)
                        .transpose(0, 2, 1, 3)).reshape(Np, Kp)


def bf16_matmul(const uint16_t[:, ::1] A, const uint16_t[:, ::1] W, bint tiles=True):
    """A @ W.T in float32 by the kernels' bfloat16 product, for A (rows, K) and W (N, K)
    bfloat16 bits (uint16): on AMX's tiles where the process has them and ``tiles``, else on
    vdpbf16ps (or BLAS). For the tests."""
    cdef Py_ssize_t rows = A.shape[0], N = W.shape[0], K = A.shape[1], Kp = bf16_depth(K)
    _check("A, W", W.shape[1] == K and rows > 0 and N > 0 and K > 0,
           "uint16 (rows, K) and (N, K)",
           f"{(A.shape[0], A.shape[1])} and {(W.shape[0], W.shape[1])}")
    packed = pack_bfloat16(W)
    out = np.zeros((rows, N), np.float32)
    cdef float[:, ::1] ov = out
    cdef const uint16_t[:, ::1] wb
    cdef uint16_t[:, ::1] ab
    cdef int threads = max_threads()
    if not DPBF16:
        values = (np.asarray(A).astype(np.uint32) << 16).view(np.float32)
        return values @ packed.T
    a = np.zeros((rows, Kp), np.uint16)
    a[:, :K] = A
    ab, wb = a, packed
    with nogil:
        bf16_product(rows, N, Kp, K, &ab[0, 0], &wb[0, 0], NULL, &ov[0, 0], N, threads, tiles)
    return out


include "_activations_hook.pxi"


def round_bf16(const float[:, ::1] v):
    """v rounded to bfloat16 as the kernels round activations, as float32. For the tests."""
    out = np.zeros((v.shape[0], v.shape[1]), np.float32)
    cdef float[:, ::1] ov = out
    if v.shape[0] and v.shape[1]:
        with nogil:
            round_rows_bf16(v.shape[0], v.shape[1], &v[0, 0], v.shape[1], &ov[0, 0],
                            v.shape[1])
    return out


def int_matmul(const int8_t[:, ::1] A, const int8_t[:, ::1] W):
    """A @ W.T in int32 by the kernels' integer product (on the bytes A + ZERO), for A
    (rows, Kp) int8 in [-127, 127] and W (N, Kp) int8 in [-127, 127], Kp a
    multiple of ``padded_depth``'s step and N of 4 (the multiple of the generic products).
    For the tests."""
    cdef Py_ssize_t rows = A.shape[0], N = W.shape[0], Kp = A.shape[1]
    _check("A, W", W.shape[1] == Kp and Kp % DEPTH_STEP == 0 and N % COLS == 0
           and 0 < Kp <= MAX_DEPTH and rows > 0 and N > 0,
           f"int8 (rows, Kp) and (N, Kp), Kp a multiple of {DEPTH_STEP}, N of {COLS}",
           f"{(A.shape[0], A.shape[1])} and {(W.shape[0], W.shape[1])}")
    wide = np.asarray(A, np.int16)  # (-128 has no int8 absolute value)
    a_max = np.abs(wide).max()  # A and W are not empty: checked above
    _check("A", a_max <= LEVELS, f"int8 values in [-{LEVELS}, {LEVELS}]", f"|A| up to {a_max}")
    w_min = np.asarray(W).min()
    _check("W", w_min >= -127, "int8 values in [-127, 127]", f"a minimum of {w_min}")
    # The bytes padded to the weights' depth (whole tile rows on AMX); the padding meets zero
    # weights.
    bytes_ = np.zeros((rows, padded_depth(Kp)), np.uint8)
    bytes_[:, :Kp] = wide + ZERO
    packed, sums = pack_weights(W)
    cdef Py_ssize_t K = Kp
    Kp = bytes_.shape[1]
    out = np.empty((rows, N), np.int32)
    cdef const uint8_t[:, ::1] u = bytes_
    cdef const int8_t[:, ::1] wv = packed
    cdef const int32_t[::1] sv = sums
    cdef int32_t[:, ::1] ov = out
    cdef int threads = max_threads()
    with nogil:
        int_product(rows, N, Kp, K, &u[0, 0], NULL, &wv[0, 0], NULL, &sv[0], NULL, NULL, 0,
                    &ov[0, 0], threads, True)
    return out
