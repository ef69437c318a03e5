# The in-house GEMM: B packed in strips, a register-tile kernel, its serial and threaded drivers.
#
# Everything is inline, so that each kernel variant (_kernels, _kernels_avx2, _kernels_avx512)
# compiles it for its own instruction set. BLAS itself is in _blas (only the shim).
from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc

cdef enum:
    SMALL_BLOCK = 32  # columns of C held in registers across the k loop of gemm_small
    WIDE_HALF = 4     # vector registers of C in each half of gemm_small's wide block
    TILE_COLS = 32    # the width of a packed strip of B
    ROW_TILES = 16    # tiles of rows of A (in L2) that meet a strip of B in turn (about: row_block)
    DEPTH_BLOCK = 512 # k summed in registers before going to C (at most; see depth_block)
    PARALLEL_WORK = 1 << 21  # multiply-adds below which a product stays on one thread
    PACKING_WORK = 1 << 21   # multiply-adds from which the tiles read A packed (pack_tiles)
    EDGE_ROWS = 2     # rows of A below which gemm_packed runs gemm_small instead of tiles
    QUAD_ROWS = 4     # rows of quad_tile, the kernel of four rows left over after the tiles
    PACK_DEPTH = 8    # rows of a strip pack_strips fills at a time from B.T
    SHALLOW_DEPTH = 4 # k up to which gemm_packed_tiles runs a row at a time (lstmx_shallow)

cdef extern from *:
    """
    /* The register tiles of gemm_packed (micro_tile): TILE_ROWS rows of C by a pass of
       PASS_FLOATS (PASS_DOUBLES) of the TILE_COLS columns of a packed strip, held in vector
       registers across k. AVX-512: 8 rows of 2 vectors (32 floats, 16 doubles), 16 of its
       32 registers; a pass of 32 doubles (all 32 registers for the sums) spilled B and the
       broadcasts and ran float64 at half the AVX2 build's speed. AVX2: 6 rows of 2 vectors
       (16 floats, 8 doubles), 12 of its 16 registers. Each broadcast of A feeds 2 FMAs
       (setup.py keeps GCC from unrolling the pass's column loop before it vectorises it). */
    #if defined(__AVX512F__)
    #define LSTMX_TILED_GEMM 1
    #define LSTMX_TILE_ROWS 8
    #define LSTMX_PASS_FLOATS 32
    #define LSTMX_PASS_DOUBLES 16
    #elif defined(__AVX2__) && defined(__FMA__)
    #define LSTMX_TILED_GEMM 1
    #define LSTMX_TILE_ROWS 6
    #define LSTMX_PASS_FLOATS 16
    #define LSTMX_PASS_DOUBLES 8
    #else
    #define LSTMX_TILED_GEMM 0
    #define LSTMX_TILE_ROWS 8
    #define LSTMX_PASS_FLOATS 32
    #define LSTMX_PASS_DOUBLES 32
    #endif
    """
    const bint TILED_GEMM "LSTMX_TILED_GEMM"
    enum: TILE_ROWS "LSTMX_TILE_ROWS"
    enum: PASS_FLOATS "LSTMX_PASS_FLOATS"
    enum: PASS_DOUBLES "LSTMX_PASS_DOUBLES"

cdef extern from *:
    """
    /* k a tile of floats sums in registers before going to C (depth_block): set once per
       process by the kernel module from this CPU's L1 (set_depth_floats). */
    static Py_ssize_t lstmx_depth_floats = 512;
    static void lstmx_set_depth_floats(Py_ssize_t n) { lstmx_depth_floats = n; }
    """
    Py_ssize_t depth_floats "lstmx_depth_floats"
    void set_depth_floats "lstmx_set_depth_floats"(Py_ssize_t n) noexcept nogil

cdef extern from "_vector_width.h":
    # The vector width the kernel variant is compiled for.
    enum: VECTOR_BYTES "LSTMX_VECTOR_BYTES"

cdef extern from *:
    """
    /* A hint to fetch a line that is about to be written; never faults, nothing elsewhere. */
    #if defined(__GNUC__) || defined(__clang__)
    #define lstmx_prefetch_write(p) __builtin_prefetch((p), 1, 3)
    #else
    #define lstmx_prefetch_write(p) ((void) (p))
    #endif
    """
    void prefetch_write "lstmx_prefetch_write"(const void *p) noexcept nogil

cdef extern from "_small_rows.h":
    # gemm_small's 32 columns of one row in two chains of k, in vector registers.
    void two_chains_f "lstmx_two_chains_f"(Py_ssize_t p0, Py_ssize_t p1, const float *A,
                                            Py_ssize_t a_col, const float *B, Py_ssize_t ldb,
                                            float *total) noexcept nogil
    void two_chains_d "lstmx_two_chains_d"(Py_ssize_t p0, Py_ssize_t p1, const double *A,
                                            Py_ssize_t a_col, const double *B, Py_ssize_t ldb,
                                            double *total) noexcept nogil

cdef extern from "_transpose.h":
    # 8 x 8 floats or 4 x 4 doubles transposed in registers, where TRANSPOSE (AVX builds).
    const bint TRANSPOSE "LSTMX_TRANSPOSE"
    void transpose_f "lstmx_transpose_f"(const float *s, Py_ssize_t lds, float *d,
                                         Py_ssize_t ldd) noexcept nogil
    void transpose_d "lstmx_transpose_d"(const double *s, Py_ssize_t lds, double *d,
                                         Py_ssize_t ldd) noexcept nogil

cdef extern from "_rows_tile.h":
    # 2, 3, 4 or 6 rows of C by a strip, summed as micro_tile sums them, in vector registers;
    # ROWS_TILES: whether the tiles run on them too (AVX2 builds).
    const bint ROWS_TILES "LSTMX_ROWS_TILES"
    void rows_tile_f "lstmx_rows_f"(Py_ssize_t rows, Py_ssize_t k, const float *A,
                                    Py_ssize_t a_row, Py_ssize_t a_col, const float *Bp,
                                    Py_ssize_t strip, float *C, Py_ssize_t ldc,
                                    Py_ssize_t cols, int add, const float *bias) noexcept nogil
    # A row at a time over a whole strip, for k of at most SHALLOW_DEPTH (the same sums).
    enum: SHALLOW_COLS "LSTMX_SHALLOW_COLS"
    void shallow_f "lstmx_shallow_f"(Py_ssize_t m, Py_ssize_t k, const float *A,
                                     Py_ssize_t a_row, Py_ssize_t a_col, const float *Bp,
                                     Py_ssize_t strip, float *C, Py_ssize_t ldc,
                                     Py_ssize_t cols, int add, const float *bias) noexcept nogil
    void shallow_d "lstmx_shallow_d"(Py_ssize_t m, Py_ssize_t k, const double *A,
                                     Py_ssize_t a_row, Py_ssize_t a_col, const double *Bp,
                                     Py_ssize_t strip, double *C, Py_ssize_t ldc,
                                     Py_ssize_t cols, int add, const double *bias) noexcept nogil
    void rows_tile_d "lstmx_rows_d"(Py_ssize_t rows, Py_ssize_t k, const double *A,
                                    Py_ssize_t a_row, Py_ssize_t a_col, const double *Bp,
                                    Py_ssize_t strip, double *C, Py_ssize_t ldc,
                                    Py_ssize_t cols, int add, const double *bias) noexcept nogil
    # A whole tile in vector registers, summed as micro_tile sums it; TILE_KERNEL: whether
    # micro_tile runs on it (AVX-512 builds).
    const bint TILE_KERNEL "LSTMX_TILE_KERNEL"
    void tile_f "lstmx_tile_f"(Py_ssize_t k, const float *A, Py_ssize_t a_row,
                               Py_ssize_t a_col, const float *Bp, Py_ssize_t strip, float *C,
                               Py_ssize_t ldc, Py_ssize_t cols, int add,
                               const float *bias) noexcept nogil
    void tile_d "lstmx_tile_d"(Py_ssize_t k, const double *A, Py_ssize_t a_row,
                               Py_ssize_t a_col, const double *Bp, Py_ssize_t strip,
                               double *C, Py_ssize_t ldc, Py_ssize_t cols, int add,
                               const double *bias) noexcept nogil
    # TILE_ROWS rows by half a pass, summed as micro_tile sums them.
    void half_tile_f "lstmx_half_f"(Py_ssize_t k, const float *A, Py_ssize_t a_row,
                                    Py_ssize_t a_col, const float *Bp, Py_ssize_t strip,
                                    float *C, Py_ssize_t ldc, Py_ssize_t cols, int add,
                                    const float *bias) noexcept nogil
    void half_tile_d "lstmx_half_d"(Py_ssize_t k, const double *A, Py_ssize_t a_row,
                                    Py_ssize_t a_col, const double *Bp, Py_ssize_t strip,
                                    double *C, Py_ssize_t ldc, Py_ssize_t cols, int add,
                                    const double *bias) noexcept nogil


cdef inline void gemm_small(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating *A,
                            Py_ssize_t lda, const floating *B, Py_ssize_t ldb,
                            floating beta, floating *C, Py_ssize_t ldc) noexcept nogil:
    """C := A B + beta * C, row-major, no transposes: for products so small (a batch of one
    in a recurrent step) that calling BLAS costs more than the arithmetic. See
    gemm_small_strided."""
    gemm_small_strided(m, n, k, A, lda, 1, B, ldb, beta, C, ldc)


cdef inline void gemm_small_strided(
        Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating *A, Py_ssize_t a_row,
        Py_ssize_t a_col, const floating *B, Py_ssize_t ldb, floating beta, floating *C,
        Py_ssize_t ldc) noexcept nogil:
    """gemm_small with A[i, p] at ``A[i * a_row + p * a_col]`` (a_row = 1 reads A.T).

    Each row of C is a sum of rows of B (axpy form), accumulated in a local block of columns
    the compiler keeps in vector registers, so C is read and written once, not k times; k
    runs in blocks of depth_block summed apart (rounding as in BLAS, not growing with k).
    A batch of one is latency-bound: the wide path keeps 2 * WIDE_HALF independent chains
    (8 registers of columns), the rest runs SMALL_BLOCK columns at a time in two chains of
    even and odd k. Inline, so that each kernel variant compiles it for its own ISA (the
    wide block is as wide as its registers: 128 floats on AVX-512, faster than the two-chain
    path at (1, 32) x (32, 128))."""
    cdef Py_ssize_t i, p, j, j0, width, p0, p1
    cdef Py_ssize_t half = WIDE_HALF * VECTOR_BYTES // sizeof(floating)
    cdef Py_ssize_t depth = depth_block(floating is float, k)
    cdef floating a
    cdef floating total[SMALL_BLOCK]
    cdef floating acc[SMALL_BLOCK]
    # The wide block in two halves of 4 vectors: GCC keeps a loop of at most 7 vectors
    # (setup.py's peel limit) in registers, and one of 8 in memory, each multiply-add then
    # a load and a store on the stack.
    cdef floating lo[WIDE_HALF * 16]  # 16 floats fill an AVX-512 register
    cdef floating hi[WIDE_HALF * 16]
    cdef const floating *b
    cdef floating *c
    for i in range(m):
        j0 = 0
        while n - j0 >= 2 * half and k > 0:  # (k = 0 goes below, which writes beta * C)
            c = C + i * ldc + j0
            p0 = 0
            while p0 < k:
                p1 = k if p0 + depth > k else p0 + depth
                # Starting from the first product, not zeros: GCC turns a zero fill into a
                # memset and then keeps the block in memory, not registers.
                a = A[i * a_row + p0 * a_col]
                b = B + p0 * ldb + j0
                for j in range(half):
                    lo[j] = a * b[j]
                for j in range(half):
                    hi[j] = a * b[half + j]
                for p in range(p0 + 1, p1):
                    a = A[i * a_row + p * a_col]
                    b = B + p * ldb + j0
                    for j in range(half):
                        lo[j] += a * b[j]
                    for j in range(half):
                        hi[j] += a * b[half + j]
                if p0 > 0 or beta == 1:
                    for j in range(half):
                        c[j] += lo[j]
                        c[half + j] += hi[j]
                elif beta == 0:
                    for j in range(half):
                        c[j] = lo[j]
                        c[half + j] = hi[j]
                else:
                    for j in range(half):
                        c[j] = beta * c[j] + lo[j]
                        c[half + j] = beta * c[half + j] + hi[j]
                p0 = p1
            j0 += 2 * half
        while j0 < n:
            # The local blocks are filled and added whole (SMALL_BLOCK, a constant), and a
            # block narrower than that goes to C with its last sum rather than copied: GCC
            # makes a fill or a copy of ``width`` elements a call to memset or memcpy, and at
            # a small hidden size those calls cost more than the row's arithmetic
            # (docs/performance.md). The sums are the same.
            width = SMALL_BLOCK if n - j0 >= SMALL_BLOCK else n - j0
            for j in range(SMALL_BLOCK):
                total[j] = 0
            if beta != 0:
                for j in range(width):
                    total[j] = beta * C[i * ldc + j0 + j]
            p0 = 0
            while p0 < k:
                p1 = k if p0 + depth > k else p0 + depth
                if width == SMALL_BLOCK and p1 - p0 >= 2:
                    if floating is float:
                        two_chains_f(p0, p1, A + i * a_row, a_col, B + j0, ldb, total)
                    else:
                        two_chains_d(p0, p1, A + i * a_row, a_col, B + j0, ldb, total)
                else:
                    for j in range(SMALL_BLOCK):
                        acc[j] = 0
                    for p in range(p0, p1):
                        a = A[i * a_row + p * a_col]
                        b = B + p * ldb + j0
                        for j in range(width):
                            acc[j] += a * b[j]
                    if width < SMALL_BLOCK and p1 == k:
                        for j in range(width):
                            C[i * ldc + j0 + j] = total[j] + acc[j]
                    else:
                        for j in range(SMALL_BLOCK):
                            total[j] += acc[j]
                p0 = p1
            if width == SMALL_BLOCK:
                for j in range(SMALL_BLOCK):
                    C[i * ldc + j0 + j] = total[j]
            elif k == 0:
                for j in range(width):
                    C[i * ldc + j0 + j] = total[j]
            j0 += width


cdef inline Py_ssize_t depth_block(bint single, Py_ssize_t k) noexcept nogil:
    """Elements of k summed in registers before going to C, in blocks summed apart, for a
    product of depth k: DEPTH_BLOCK, or for floats (``single``) the smaller depth the kernel
    module found a strip's block of fits this CPU's L1 with room to spare (set_depth_floats;
    docs/performance.md) where k holds two such blocks (below, a short last block would cost
    a pass over C for a few multiply-adds). A function of the CPU and k alone, so a call's
    bits depend on neither timing nor how threads split its rows and columns."""
    return depth_floats if single and k >= 2 * depth_floats else DEPTH_BLOCK


cdef inline Py_ssize_t strips(Py_ssize_t width) noexcept nogil:
    """How many packed strips of TILE_COLS columns cover ``width`` columns."""
    return (width + TILE_COLS - 1) // TILE_COLS


cdef inline Py_ssize_t share(Py_ssize_t n, Py_ssize_t part, Py_ssize_t parts) noexcept nogil:
    """Where part ``part`` of ``parts`` near-equal parts of range(n) starts."""
    return n * part // parts


cdef inline Py_ssize_t row_tiles(Py_ssize_t m) noexcept nogil:
    """Tiles of TILE_ROWS rows in m rows, the last one possibly short."""
    return (m + TILE_ROWS - 1) // TILE_ROWS


cdef inline Py_ssize_t row_block(Py_ssize_t full) noexcept nogil:
    """Rows of A in a block of gemm_packed_tiles, of ``full`` rows in whole tiles: the tiles
    split into round(tiles / ROW_TILES) near-equal blocks (at least one), so at most
    1.5 ROW_TILES - 1 tiles. Each block reads all of B, so a last block of a few tiles
    would read it again for little work (H1024's 21 tiles on AVX2: 16 and 5)."""
    cdef Py_ssize_t tiles = full // TILE_ROWS
    cdef Py_ssize_t blocks = (tiles + ROW_TILES // 2) // ROW_TILES
    blocks = 1 if blocks < 1 else blocks
    return (tiles + blocks - 1) // blocks * TILE_ROWS


cdef inline Py_ssize_t row_share(Py_ssize_t m, Py_ssize_t part, Py_ssize_t parts) noexcept nogil:
    """Where part ``part`` of ``parts`` of m rows of A starts, for a team that splits them.

    Every row must meet a kernel that sums it as it would in one product of all m rows
    (gemm_packed_strided): tiles, rows_tile, quad_tile and edge_tile all sum alike, but a
    single row past the last whole tile goes to gemm_small. Two parts split m into halves of
    whole pairs of rows (32 rows: 16 and 16, two tiles and four rows each; 8 rows: 4 and
    4, where whole tiles give 6 and 2), or the most even such split where the second half
    would otherwise end one row past its tiles and the whole batch would not, or the other
    way round. More
    parts split whole tiles, the batch's last rows always in the last one."""
    cdef Py_ssize_t b, best = 0, gap = m  # gap: |2 best - m|
    cdef bint last_small = m % TILE_ROWS == 1
    if parts != 2 or part <= 0 or part >= parts:
        return min(m, share(row_tiles(m), part, parts) * TILE_ROWS)
    # The most even split in pairs whose second half ends as the whole batch does (b = 0
    # always does).
    for b in range(2, m, 2):
        if (((m - b) % TILE_ROWS == 1) == last_small
                and (2 * b - m if 2 * b > m else m - 2 * b) < gap):
            best, gap = b, (2 * b - m if 2 * b > m else m - 2 * b)
    return best


cdef inline void pack_strips(Py_ssize_t k, Py_ssize_t groups, Py_ssize_t width,
                             const floating *B, Py_ssize_t rs, Py_ssize_t cs,
                             Py_ssize_t s_lo, Py_ssize_t s_hi, floating *Bp) noexcept nogil:
    """Pack strips [s_lo, s_hi) of every group of B for gemm_packed.

    B is (k, groups * width) with element (p, col) at ``B[p * rs + col * cs]`` (so U.T is U
    with rs = 1). Each group of ``width`` columns (a gate) is cut into strips(width) strips of
    TILE_COLS columns, the last one zero-padded; strip q = group * strips(width) + s is the
    contiguous (k, TILE_COLS) block at ``Bp + q * k * TILE_COLS``. Contiguous strips are what
    BLAS packs at every call: strided rows of B alias in the caches (rows 4-8 KiB apart map
    to the same sets), and a strip stays in L1 while every row tile of A passes over it.
    """
    cdef Py_ssize_t g, s, p, p0, p1, j, j0, w, col
    cdef Py_ssize_t per = strips(width)
    cdef floating *dst
    for g in range(groups):
        for s in range(s_lo, s_hi):
            dst = Bp + (g * per + s) * k * TILE_COLS
            col = g * width + s * TILE_COLS
            w = TILE_COLS if width - s * TILE_COLS >= TILE_COLS else width - s * TILE_COLS
            if cs == 1:
                for p in range(k):
                    for j in range(w):
                        dst[p * TILE_COLS + j] = B[p * rs + col + j]
                    for j in range(w, TILE_COLS):
                        dst[p * TILE_COLS + j] = 0
            else:
                # B.T's rows (W's, U's) read in short blocks of PACK_DEPTH elements, so that
                # the few strip rows each block scatters to stay in L1 (a whole row at a
                # time writes to all k of the strip's rows, an L2's worth, w times over);
                # the block's length is measured (docs/performance.md).
                p0 = 0
                while p0 < k:
                    p1 = k if p0 + PACK_DEPTH > k else p0 + PACK_DEPTH
                    j0 = 0
                    if TRANSPOSE and rs == 1 and p1 - p0 == 8:  # in blocks of registers
                        if floating is float:
                            while j0 + 8 <= w:
                                transpose_f(B + p0 + (col + j0) * cs, cs,
                                            dst + p0 * TILE_COLS + j0, TILE_COLS)
                                j0 += 8
                        else:
                            while j0 + 4 <= w:
                                transpose_d(B + p0 + (col + j0) * cs, cs,
                                            dst + p0 * TILE_COLS + j0, TILE_COLS)
                                transpose_d(B + p0 + 4 + (col + j0) * cs, cs,
                                            dst + (p0 + 4) * TILE_COLS + j0, TILE_COLS)
                                j0 += 4
                    for j in range(j0, w):
                        for p in range(p0, p1):
                            dst[p * TILE_COLS + j] = B[p * rs + (col + j) * cs]
                    for p in range(p0, p1):
                        for j in range(w, TILE_COLS):
                            dst[p * TILE_COLS + j] = 0
                    p0 = p1


cdef inline void pack_tiles(Py_ssize_t rows, Py_ssize_t kc, const floating *A, Py_ssize_t a_row,
                            Py_ssize_t a_col, floating *Ap) noexcept nogil:
    """Copy ``rows`` (a multiple of TILE_ROWS) rows of A by kc columns, A[i, p] at
    ``A[i * a_row + p * a_col]``, into row tiles for micro_tile: tile t is the contiguous
    (kc, TILE_ROWS) block at ``Ap + t * TILE_ROWS * kc``, element (p, r) = A[t * TILE_ROWS +
    r, p]. A tile's broadcasts then read one stream, where rows of A read in place are
    TILE_ROWS streams: I or H floats apart, they fall in the same few L1 sets (4 KiB apart,
    all in one), and A transposed (a_row = 1) reads a line for every element."""
    cdef Py_ssize_t t, p, r
    cdef floating *dst
    for t in range(rows // TILE_ROWS):
        dst = Ap + t * TILE_ROWS * kc
        for p in range(kc):
            for r in range(TILE_ROWS):
                dst[p * TILE_ROWS + r] = A[(t * TILE_ROWS + r) * a_row + p * a_col]


cdef inline void micro_tile(Py_ssize_t k, const floating *A, Py_ssize_t a_row,
                            Py_ssize_t a_col, const floating *Bp, floating *C, Py_ssize_t ldc,
                            bint add, const floating *bias) noexcept nogil:
    """C[:TILE_ROWS, :w] := A[:TILE_ROWS, :k] @ Bp[:, :w] (+ C when ``add``) (+ bias[:w] on
    every row unless NULL), w = PASS_FLOATS (PASS_DOUBLES) columns of a packed strip (its
    rows TILE_COLS apart), A[i, p] at ``A[i * a_row + p * a_col]``: the tile stays in
    registers across k; each step broadcasts TILE_ROWS elements of A against the w columns
    of a row of Bp."""
    cdef floating acc[TILE_ROWS][PASS_FLOATS]
    cdef Py_ssize_t w = PASS_FLOATS if floating is float else PASS_DOUBLES
    cdef Py_ssize_t r, j, p
    cdef floating a
    if ROWS_TILES:
        # _rows_tile.h's kernel, the same sums with the rows of A from two pointers.
        rows_tile(TILE_ROWS, k, A, a_row, a_col, Bp, C, ldc, w, add, bias)
        return
    if TILE_KERNEL:
        # The same sums with the tile in registers from the bias to C (_rows_tile.h).
        if floating is float:
            tile_f(k, A, a_row, a_col, Bp, TILE_COLS, C, ldc, w, add, bias)
        else:
            tile_d(k, A, a_row, a_col, Bp, TILE_COLS, C, ldc, w, add, bias)
        return
    # The tile of C, fetched for writing while its sums are computed: in backward's dW and
    # dU (4H rows, megabytes), and in a chunk's input projection (its z, larger than L2),
    # its rows are rarely in cache, and no hardware prefetcher follows rows I or H apart
    # (docs/performance.md). Stores that miss would wait at the end of the tile.
    for r in range(TILE_ROWS):
        prefetch_write(C + r * ldc)
        prefetch_write(C + r * ldc + w - 1)
    for r in range(TILE_ROWS):
        for j in range(w):
            acc[r][j] = bias[j] if bias != NULL else 0
    for p in range(k):
        for r in range(TILE_ROWS):
            a = A[r * a_row + p * a_col]
            for j in range(w):
                acc[r][j] += a * Bp[p * TILE_COLS + j]
    # C is added last, not loaded first: each block of k is summed apart (as in BLAS), so
    # the rounding of a long sum split in blocks (backward's dW over many chunks) does not
    # grow with the whole sum's length.
    if add:
        for r in range(TILE_ROWS):
            for j in range(w):
                C[r * ldc + j] += acc[r][j]
    else:
        for r in range(TILE_ROWS):
            for j in range(w):
                C[r * ldc + j] = acc[r][j]


cdef inline void gemm_packed(Py_ssize_t m, Py_ssize_t k, const floating *A, Py_ssize_t lda,
                             const floating *Bp, Py_ssize_t groups, Py_ssize_t width,
                             Py_ssize_t s_lo, Py_ssize_t s_hi, bint add,
                             floating *C, Py_ssize_t ldc, const floating *bias) noexcept nogil:
    """C[:, cols] := A @ B[:, cols] (+ C[:, cols] when ``add``) (+ bias[cols] on every row
    unless NULL) for the columns of strips [s_lo, s_hi) of every group of a B packed by
    pack_strips; A is (m, k) row-major.

    One thread's share of a product: callers split the strips between threads. k runs in
    blocks of depth_block summed in registers (rounding grows with k / depth + depth, as in
    BLAS). Rows past the last full tile and a group's narrower last strip
    are as gemm_packed_strided says. The bias starts the tiles' sums, as a bias stored in C
    first would, without a pass over C.
    """
    gemm_packed_strided(m, k, A, lda, 1, Bp, groups, width, s_lo, s_hi, add, C, ldc, bias,
                        EDGE_ROWS)


cdef inline void edge_tile(Py_ssize_t k, const floating *A, Py_ssize_t a_row,
                           Py_ssize_t a_col, const floating *Bp, floating *C, Py_ssize_t ldc,
                           Py_ssize_t rows, Py_ssize_t cols, bint add,
                           const floating *bias) noexcept nogil:
    """micro_tile for a tile of C cut short: only its first ``rows`` rows and ``cols``
    columns exist. The tile runs on a copy in local memory, so the micro-kernel keeps its
    full register shape; A must have TILE_ROWS readable rows (the caller pads it) and the
    strip is zero-padded by pack_strips. Nothing outside C[:rows, :cols] or bias[:cols] is
    read or written."""
    cdef floating tile[TILE_ROWS * PASS_FLOATS]
    cdef floating tile_bias[PASS_FLOATS]
    cdef Py_ssize_t w = PASS_FLOATS if floating is float else PASS_DOUBLES
    cdef Py_ssize_t r, j
    for j in range(w):
        tile_bias[j] = bias[j] if bias != NULL and j < cols else 0
    for r in range(TILE_ROWS):
        for j in range(w):
            tile[r * w + j] = C[r * ldc + j] if add and r < rows and j < cols else 0
    micro_tile(k, A, a_row, a_col, Bp, tile, w, add, tile_bias if bias != NULL else NULL)
    for r in range(rows):
        for j in range(cols):
            C[r * ldc + j] = tile[r * w + j]


cdef inline void half_tile(Py_ssize_t k, const floating *A, Py_ssize_t a_row,
                           Py_ssize_t a_col, const floating *Bp, floating *C, Py_ssize_t ldc,
                           Py_ssize_t cols, bint add, const floating *bias) noexcept nogil:
    """edge_tile for at most half a pass of columns: _rows_tile.h's kernel of TILE_ROWS rows
    by half a pass, with micro_tile's sums (so the same bits) at half its work."""
    if floating is float:
        half_tile_f(k, A, a_row, a_col, Bp, TILE_COLS, C, ldc, cols, add, bias)
    else:
        half_tile_d(k, A, a_row, a_col, Bp, TILE_COLS, C, ldc, cols, add, bias)


cdef inline void rows_tile(Py_ssize_t rows, Py_ssize_t k, const floating *A, Py_ssize_t a_row,
                           Py_ssize_t a_col, const floating *Bp, floating *C, Py_ssize_t ldc,
                           Py_ssize_t cols, bint add, const floating *bias) noexcept nogil:
    """C[:rows, :cols] := A[:rows, :k] @ Bp[:, :cols] (+ C when ``add``) (+ bias[:cols]
    unless NULL) for two or three rows left over after the whole tiles (and on AVX2, four
    rows and the tiles), over a strip (zero-padded past ``cols``; the caller's pass of it
    for a tile): _rows_tile.h, each element summed as micro_tile sums it (from the bias or
    zero, k in order, C added last), so a row has the same bits whichever kernel runs it.
    Three rows by a pass of 4 vectors are as many accumulators as a tile, where a tile cut
    to three rows (edge_tile) does a whole tile's work, and two rows load each row of the
    strip once for both."""
    if floating is float:
        rows_tile_f(rows, k, A, a_row, a_col, Bp, TILE_COLS, C, ldc, cols, add, bias)
    else:
        rows_tile_d(rows, k, A, a_row, a_col, Bp, TILE_COLS, C, ldc, cols, add, bias)


cdef inline void store_rows(Py_ssize_t rows, Py_ssize_t cols, const floating *acc,
                            Py_ssize_t lda, bint add, floating *C, Py_ssize_t ldc) noexcept nogil:
    """C[:rows, :cols] := acc (+ C when ``add``), acc's rows ``lda`` apart: the last step of
    the kernels for rows left over after the tiles (C added last, as micro_tile adds it)."""
    cdef Py_ssize_t r, j
    for r in range(rows):
        if add:
            for j in range(cols):
                C[r * ldc + j] += acc[r * lda + j]
        else:
            for j in range(cols):
                C[r * ldc + j] = acc[r * lda + j]


cdef inline void quad_tile(Py_ssize_t k, const floating *A, Py_ssize_t a_row,
                           Py_ssize_t a_col, const floating *Bp, floating *C, Py_ssize_t ldc,
                           Py_ssize_t cols, bint add, const floating *bias) noexcept nogil:
    """C[:4, :cols] := A[:4, :k] @ Bp[:, :cols] (+ C when ``add``) (+ bias[:cols] unless
    NULL) for four rows left over after the whole tiles (TILE_ROWS 6 or 8), over a pass of
    PASS_FLOATS (PASS_DOUBLES) columns of a packed strip (zero-padded past ``cols``).

    Summed as micro_tile sums (from the bias or zero, k in order, C added last), so a row
    has the same bits whichever kernel runs it. Four rows by a pass are 8 vector
    accumulators, enough to cover the FMA latency, where a tile cut to four rows (edge_tile)
    does a whole tile's work: a team that splits a batch of 32 rows in halves (16 = 2 tiles
    and 4 rows) or of 8 (4 each) does not wait on the thread with the whole tiles."""
    cdef floating acc[QUAD_ROWS][PASS_FLOATS]
    cdef floating top[PASS_FLOATS]
    cdef Py_ssize_t w = PASS_FLOATS if floating is float else PASS_DOUBLES
    cdef Py_ssize_t r, j, p
    cdef floating a
    for j in range(w):
        top[j] = bias[j] if bias != NULL and j < cols else 0
    for r in range(QUAD_ROWS):
        for j in range(w):
            acc[r][j] = top[j]
    for p in range(k):
        for r in range(QUAD_ROWS):
            a = A[r * a_row + p * a_col]
            for j in range(w):
                acc[r][j] += a * Bp[p * TILE_COLS + j]
    store_rows(QUAD_ROWS, cols, &acc[0][0], PASS_FLOATS, add, C, ldc)


cdef inline void gemm_packed_strided(
        Py_ssize_t m, Py_ssize_t k, const floating *A, Py_ssize_t a_row, Py_ssize_t a_col,
        const floating *Bp, Py_ssize_t groups, Py_ssize_t width, Py_ssize_t s_lo,
        Py_ssize_t s_hi, bint add, floating *C, Py_ssize_t ldc, const floating *bias,
        Py_ssize_t edge_rows) noexcept nogil:
    """gemm_packed with A[i, p] at ``A[i * a_row + p * a_col]``: a_row = 1 multiplies by the
    transpose of a row-major array without transposing it first.

    Every tile runs on micro_tile, whatever the width: columns past a group's last full
    pass go to half_tile if they are at most half a pass, else to edge_tile, which computes
    a whole tile and keeps a part. At a depth of at
    most SHALLOW_DEPTH the rows run one at a time instead (_rows_tile.h's lstmx_shallow),
    summed as the tiles sum them. Of the rows past the
    last full tile, two or three go to rows_tile, four to rows_tile on AVX2 and quad_tile
    elsewhere, more to edge_tile too (from a zero-padded copy of A), and a lone row to
    edge_tile if ``edge_rows`` is 1, else to gemm_small (a batch of one) over the whole
    strip (gemm_packed passes EDGE_ROWS, 2).
    Tiles, rows_tile and quad_tile give every row of C the same sums whichever rows share
    its tile and however B is packed (by gate or whole); gemm_small sums in another order,
    the same in any packing.
    So a product whose rows threads split (backward's dW and dU) passes 1: its bits then do
    not depend on the split; the teams of rows split so that only the batch's last row can
    meet gemm_small, and only where it does in the whole batch (row_share).

    From PACKING_WORK multiply-adds on, the whole tiles read A from row tiles packed by
    pack_tiles, a block of rows at a time, into memory allocated here; below it (a step of
    a small batch) or when the memory cannot be had, they read A in place, with the same
    sums (gemm_packed_tiles)."""
    cdef Py_ssize_t full = m - m % TILE_ROWS if k > 0 else 0
    cdef Py_ssize_t block = row_block(full), depth = depth_block(floating is float, k)
    cdef floating *Ap = NULL
    if (block > 0 and k > SHALLOW_DEPTH
            and full * k * (s_hi - s_lo) * groups * TILE_COLS >= PACKING_WORK):
        Ap = <floating *> malloc(block * (depth if k > depth else k) * sizeof(floating))
    gemm_packed_tiles(m, k, A, a_row, a_col, Bp, groups, width, s_lo, s_hi, add, C, ldc, bias,
                      edge_rows, Ap)
    free(Ap)


cdef inline void gemm_packed_tiles(
        Py_ssize_t m, Py_ssize_t k, const floating *A, Py_ssize_t a_row, Py_ssize_t a_col,
        const floating *Bp, Py_ssize_t groups, Py_ssize_t width, Py_ssize_t s_lo,
        Py_ssize_t s_hi, bint add, floating *C, Py_ssize_t ldc, const floating *bias,
        Py_ssize_t edge_rows, floating *Ap) noexcept nogil:
    """gemm_packed_strided, with ``Ap`` scratch for row_block(full) rows (full: the rows in
    whole tiles) by min(k, depth_block) packed elements of A, or NULL.

    The rows past the last whole tile meet each strip right after the last block of tiles
    does, while the strip is still in cache: a pass of their own would read all of B again
    (from L3 when B is U at H = 1024) for a few rows' work."""
    cdef Py_ssize_t per = strips(width), full = m - m % TILE_ROWS if k > 0 else 0
    cdef Py_ssize_t rest = m - full
    # Two or three rows left: rows_tile; four: rows_tile on AVX2 and for AVX-512's doubles
    # (4 rows by a strip, as many sums as a tile; GCC's quad_tile of 16 doubles mixed
    # unfused products into its sums, unlike the tiles), else quad_tile; all sum as the
    # tiles do, whatever edge_rows says. More: edge_tile, as a lone row is unless edge_rows
    # says gemm_small.
    cdef bint rest_few = ((rest == 2 or rest == 3
                           or (rest == 4 and (ROWS_TILES or (TILE_KERNEL
                                                             and floating is double))))
                          and TILE_ROWS > 3)
    cdef bint rest_quad = rest == QUAD_ROWS and TILE_ROWS > QUAD_ROWS and not rest_few
    cdef bint rest_tiled = rest >= edge_rows and rest > 0 and not rest_few and not rest_quad
    cdef bint lone = rest > 0 and not (rest_few or rest_quad or rest_tiled)
    cdef Py_ssize_t block = row_block(full), depth = depth_block(floating is float, k)
    cdef Py_ssize_t p0, kc, i_lo, i_hi, i0, g, s, col, q, cols, r, p
    cdef Py_ssize_t pw = PASS_FLOATS if floating is float else PASS_DOUBLES
    cdef Py_ssize_t rw = TILE_COLS if rest_few else pw  # a pass over the rows past the tiles
    cdef bint final
    cdef const floating *strip
    cdef const floating *tile_bias
    cdef floating pad[TILE_ROWS * DEPTH_BLOCK]
    if k <= SHALLOW_DEPTH and SHALLOW_COLS == TILE_COLS:
        # Every row but a lone one on gemm_small, a row at a time, summed as the tiles sum
        # (k = 0, which no caller passes: C := C + bias, or the bias).
        for g in range(groups):
            for s in range(s_lo, s_hi):
                strip = Bp + (g * per + s) * k * TILE_COLS
                col = g * width + s * TILE_COLS
                cols = width - s * TILE_COLS
                tile_bias = bias + col if bias != NULL else NULL
                if floating is float:
                    shallow_f(full if lone else m, k, A, a_row, a_col, strip, TILE_COLS,
                              C + col, ldc, cols, add, tile_bias)
                else:
                    shallow_d(full if lone else m, k, A, a_row, a_col, strip, TILE_COLS,
                              C + col, ldc, cols, add, tile_bias)
                if lone:
                    lone_row(full, k, A, a_row, a_col, strip, cols, add, C + col, ldc,
                             tile_bias)
        return
    p0 = 0
    while p0 < k:
        kc = depth if k - p0 > depth else k - p0
        if rest_tiled:
            # The last rows, zero-padded to a whole tile (row-major, kc apart).
            for r in range(TILE_ROWS):
                for p in range(kc):
                    pad[r * kc + p] = (A[(full + r) * a_row + (p0 + p) * a_col]
                                       if r < rest else 0)
        i_lo = 0
        final = False
        while not final:
            i_hi = full if i_lo + block > full else i_lo + block
            final = i_hi == full
            if Ap != NULL and i_hi > i_lo:
                # Packed once, read by every strip.
                pack_tiles(i_hi - i_lo, kc, A + i_lo * a_row + p0 * a_col, a_row, a_col, Ap)
            for g in range(groups):
                for s in range(s_lo, s_hi):
                    strip = Bp + ((g * per + s) * k + p0) * TILE_COLS
                    col = g * width + s * TILE_COLS
                    i0 = i_lo
                    while i0 < i_hi:
                        for q in range(TILE_COLS // pw):
                            cols = width - s * TILE_COLS - q * pw
                            tile_bias = (bias + col + q * pw
                                         if bias != NULL and p0 == 0 else NULL)
                            # Two calls, so that each inlined kernel has its strides as
                            # constants (the packed one: contiguous broadcasts).
                            if cols >= pw and Ap != NULL:
                                micro_tile(kc, Ap + (i0 - i_lo) * kc, 1, TILE_ROWS,
                                           strip + q * pw, C + i0 * ldc + col + q * pw, ldc,
                                           add or p0 > 0, tile_bias)
                            elif cols >= pw:
                                micro_tile(kc, A + i0 * a_row + p0 * a_col, a_row, a_col,
                                           strip + q * pw, C + i0 * ldc + col + q * pw, ldc,
                                           add or p0 > 0, tile_bias)
                            elif 0 < cols <= pw // 2 and Ap != NULL:
                                half_tile(kc, Ap + (i0 - i_lo) * kc, 1, TILE_ROWS,
                                          strip + q * pw, C + i0 * ldc + col + q * pw, ldc,
                                          cols, add or p0 > 0, tile_bias)
                            elif 0 < cols <= pw // 2:
                                half_tile(kc, A + i0 * a_row + p0 * a_col, a_row, a_col,
                                          strip + q * pw, C + i0 * ldc + col + q * pw, ldc,
                                          cols, add or p0 > 0, tile_bias)
                            elif cols > 0 and Ap != NULL:
                                edge_tile(kc, Ap + (i0 - i_lo) * kc, 1, TILE_ROWS,
                                          strip + q * pw, C + i0 * ldc + col + q * pw, ldc,
                                          TILE_ROWS, cols, add or p0 > 0, tile_bias)
                            elif cols > 0:
                                edge_tile(kc, A + i0 * a_row + p0 * a_col, a_row, a_col,
                                          strip + q * pw, C + i0 * ldc + col + q * pw, ldc,
                                          TILE_ROWS, cols, add or p0 > 0, tile_bias)
                        i0 += TILE_ROWS
                    if not final or rest == 0:
                        continue
                    for q in range(0 if lone else TILE_COLS // rw):
                        cols = width - s * TILE_COLS - q * rw
                        if cols <= 0:
                            break
                        cols = rw if cols > rw else cols
                        tile_bias = bias + col + q * rw if bias != NULL and p0 == 0 else NULL
                        if rest_quad:
                            quad_tile(kc, A + full * a_row + p0 * a_col, a_row, a_col,
                                      strip + q * rw, C + full * ldc + col + q * rw, ldc,
                                      cols, add or p0 > 0, tile_bias)
                        elif rest_tiled:
                            edge_tile(kc, pad, kc, 1, strip + q * rw,
                                      C + full * ldc + col + q * rw, ldc, rest, cols,
                                      add or p0 > 0, tile_bias)
                        else:
                            rows_tile(rest, kc, A + full * a_row + p0 * a_col, a_row, a_col,
                                      strip, C + full * ldc + col, ldc, cols,
                                      add or p0 > 0, tile_bias)
                    if lone and p0 + kc == k:
                        lone_row(full, k, A, a_row, a_col, Bp + (g * per + s) * k * TILE_COLS,
                                 width - s * TILE_COLS, add, C + col, ldc,
                                 bias + col if bias != NULL else NULL)
            i_lo = i_hi
        p0 += kc


cdef inline void lone_row(Py_ssize_t r, Py_ssize_t k, const floating *A, Py_ssize_t a_row,
                          Py_ssize_t a_col, const floating *strip, Py_ssize_t w, bint add,
                          floating *C, Py_ssize_t ldc, const floating *bias) noexcept nogil:
    """Row r of C[:, :w] (w capped at TILE_COLS) for one strip, a lone row past the last
    tile: gemm_small over the whole zero-padded strip, in a row of local memory, whatever
    its width, so that a column sums alike in any packing (gemm_small sums a block of 32
    columns in another order than a narrower one)."""
    cdef floating row[TILE_COLS]
    cdef Py_ssize_t j
    w = TILE_COLS if w > TILE_COLS else w
    for j in range(TILE_COLS):
        row[j] = ((C[r * ldc + j] if add else 0)
                  + (bias[j] if bias != NULL else 0)) if j < w else 0
    gemm_small_strided(1, TILE_COLS, k, A + r * a_row, a_row, a_col, strip, TILE_COLS,
                       add or bias != NULL, row, TILE_COLS)
    for j in range(w):
        C[r * ldc + j] = row[j]


cdef inline void gemm_packed_parallel(Py_ssize_t m, Py_ssize_t k, const floating *A,
                                      Py_ssize_t lda, const floating *Bp, Py_ssize_t groups,
                                      Py_ssize_t width, bint add, floating *C,
                                      Py_ssize_t ldc, const floating *bias,
                                      int threads) noexcept nogil:
    """gemm_packed over every strip, split between at most ``threads`` OpenMP threads when
    big enough."""
    cdef Py_ssize_t per = strips(width), part
    cdef Py_ssize_t parts = threads
    parts = per if parts > per else parts
    if m * groups * width * k < PARALLEL_WORK or parts < 2:
        # Waking a thread team costs microseconds (milliseconds on a busy machine).
        gemm_packed(m, k, A, lda, Bp, groups, width, 0, per, add, C, ldc, bias)
    else:
        for part in prange(parts, schedule="static", num_threads=parts):
            gemm_packed(m, k, A, lda, Bp, groups, width, share(per, part, parts),
                        share(per, part + 1, parts), add, C, ldc, bias)
