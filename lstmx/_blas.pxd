# Row-major BLAS shim over scipy.linalg.cython_blas, fused over float and double.
from cython cimport floating
from cython.parallel cimport prange

# SciPy <= 1.17 declares BLAS integers as C int; newer SciPy exports ``blas_int``.
# Changing this one typedef is the whole switch.
ctypedef int blas_int

cpdef enum BLAS_Trans:
    NoTrans = 110  # 'n'
    Trans = 116    # 't'

cdef void gemm(BLAS_Trans ta, BLAS_Trans tb, blas_int m, blas_int n, blas_int k,
               floating alpha, const floating *A, blas_int lda,
               const floating *B, blas_int ldb,
               floating beta, floating *C, blas_int ldc) noexcept nogil


cdef enum:
    SMALL_BLOCK = 32  # columns of C held in registers across the k loop of gemm_small
    TILE_ROWS = 8     # a gemm_tiled register tile: 8 x 32 floats = 16 AVX-512 registers
    TILE_COLS = 32
    PANEL_COLS = 128  # columns of B kept in L2 while every row tile passes over them; the
                      # unit of work of each OpenMP thread
    PARALLEL_WORK = 1 << 21  # multiply-adds below which gemm_tiled stays on one thread
    DEPTH_BLOCK = 256        # k summed in registers before going to C

cdef extern from *:
    """
    /* The register tiles of gemm_tiled need 32 vector registers: AVX-512 only. */
    #if defined(__AVX512F__)
    #define LSTMX_TILED_GEMM 1
    #else
    #define LSTMX_TILED_GEMM 0
    #endif
    """
    const bint TILED_GEMM "LSTMX_TILED_GEMM"


cdef inline void gemm_small(blas_int m, blas_int n, blas_int k, const floating *A, blas_int lda,
                            const floating *B, blas_int ldb,
                            floating beta, floating *C, blas_int ldc) noexcept nogil:
    """C := A B + beta * C, row-major, no transposes: for products so small (a batch of one
    in a recurrent step) that calling BLAS costs more than the arithmetic.

    Each row of C is a sum of rows of B (axpy form), accumulated SMALL_BLOCK columns at a
    time in a local block the compiler keeps in vector registers, so C is read and written
    once, not k times; k runs in blocks of DEPTH_BLOCK summed apart (rounding as in BLAS, not
    growing with k), each in two chains of even and odd k (a batch of one is latency-bound).
    Inline, so that each kernel variant compiles it for its own ISA."""
    cdef Py_ssize_t i, p, j, j0, width, p0, p1
    cdef floating a, a2
    cdef floating total[SMALL_BLOCK]
    cdef floating acc[SMALL_BLOCK]
    cdef floating acc2[SMALL_BLOCK]
    cdef const floating *b
    for i in range(m):
        j0 = 0
        while j0 < n:
            width = SMALL_BLOCK if n - j0 >= SMALL_BLOCK else n - j0
            for j in range(width):
                total[j] = 0 if beta == 0 else beta * C[i * ldc + j0 + j]
            p0 = 0
            while p0 < k:
                p1 = k if p0 + DEPTH_BLOCK > k else p0 + DEPTH_BLOCK
                for j in range(SMALL_BLOCK):
                    acc[j] = 0
                    acc2[j] = 0
                if width == SMALL_BLOCK:
                    for p in range(p0, p1 - 1, 2):
                        a = A[i * lda + p]
                        a2 = A[i * lda + p + 1]
                        b = B + p * ldb + j0
                        for j in range(SMALL_BLOCK):
                            acc[j] += a * b[j]
                            acc2[j] += a2 * b[ldb + j]
                    if (p1 - p0) % 2:
                        a = A[i * lda + p1 - 1]
                        b = B + (p1 - 1) * ldb + j0
                        for j in range(SMALL_BLOCK):
                            acc[j] += a * b[j]
                else:
                    for p in range(p0, p1):
                        a = A[i * lda + p]
                        b = B + p * ldb + j0
                        for j in range(width):
                            acc[j] += a * b[j]
                for j in range(width):
                    total[j] += acc[j] + acc2[j]
                p0 = p1
            for j in range(width):
                C[i * ldc + j0 + j] = total[j]
            j0 += width


cdef inline void gemm_panel(blas_int m, blas_int n, blas_int k, const floating *A,
                            blas_int lda, const floating *B, blas_int ldb,
                            floating beta, floating *C, blas_int ldc,
                            Py_ssize_t jc) noexcept nogil:
    """Columns [jc, jc + PANEL_COLS) of gemm_tiled's C."""
    cdef Py_ssize_t i0, j0, nc, r, p, j, p0, p1
    cdef floating acc[TILE_ROWS][TILE_COLS]
    cdef floating a
    cdef const floating *b
    nc = PANEL_COLS if n - jc > PANEL_COLS else n - jc
    i0 = 0
    while i0 + TILE_ROWS <= m:
        j0 = jc
        while j0 + TILE_COLS <= jc + nc:
            # k in blocks of DEPTH_BLOCK, each summed in registers then added to C: rounding
            # grows with k / DEPTH_BLOCK + DEPTH_BLOCK rather than k (as in BLAS).
            p0 = 0
            while p0 < k:
                p1 = k if p0 + DEPTH_BLOCK > k else p0 + DEPTH_BLOCK
                for r in range(TILE_ROWS):
                    for j in range(TILE_COLS):
                        if p0 > 0:
                            acc[r][j] = C[(i0 + r) * ldc + j0 + j]
                        else:
                            acc[r][j] = 0 if beta == 0 else beta * C[(i0 + r) * ldc + j0 + j]
                for p in range(p0, p1):
                    b = B + p * ldb + j0
                    for r in range(TILE_ROWS):
                        a = A[(i0 + r) * lda + p]
                        for j in range(TILE_COLS):
                            acc[r][j] += a * b[j]
                for r in range(TILE_ROWS):
                    for j in range(TILE_COLS):
                        C[(i0 + r) * ldc + j0 + j] = acc[r][j]
                p0 = p1
            j0 += TILE_COLS
        if j0 < jc + nc:
            gemm_small(TILE_ROWS, jc + nc - j0, k, A + i0 * lda, lda, B + j0, ldb, beta,
                       C + i0 * ldc + j0, ldc)
        i0 += TILE_ROWS
    if i0 < m:
        gemm_small(m - i0, nc, k, A + i0 * lda, lda, B + jc, ldb, beta, C + i0 * ldc + jc, ldc)


cdef inline void gemm_tiled(blas_int m, blas_int n, blas_int k, const floating *A,
                            blas_int lda, const floating *B, blas_int ldb,
                            floating beta, floating *C, blas_int ldc) noexcept nogil:
    """C := A B + beta * C, row-major, no transposes, for the recurrent products of a step.

    BLAS packs both operands at every call, and at every step that repacks the whole weight
    matrix; here B (the weights) is read in place, in panels that stay in L2, by register
    tiles of TILE_ROWS x TILE_COLS (with AVX-512 this outruns OpenBLAS' own kernels at these
    shapes). Rows and columns left over go to gemm_small."""
    cdef Py_ssize_t panel, panels = (n + PANEL_COLS - 1) // PANEL_COLS
    if <Py_ssize_t> m * n * k < PARALLEL_WORK:
        # Waking a thread team costs microseconds (milliseconds on a busy machine).
        for panel in range(panels):
            gemm_panel(m, n, k, A, lda, B, ldb, beta, C, ldc, panel * PANEL_COLS)
    else:
        for panel in prange(panels, schedule="static"):
            gemm_panel(m, n, k, A, lda, B, ldb, beta, C, ldc, panel * PANEL_COLS)
