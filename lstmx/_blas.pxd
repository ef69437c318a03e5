# Row-major BLAS shim over scipy.linalg.cython_blas, fused over float and double.
from cython cimport floating

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


cdef inline void gemm_small(blas_int m, blas_int n, blas_int k, const floating *A, blas_int lda,
                            const floating *B, blas_int ldb,
                            floating beta, floating *C, blas_int ldc) noexcept nogil:
    """C := A B + beta * C, row-major, no transposes: for products so small (a batch of one
    in a recurrent step) that calling BLAS costs more than the arithmetic.

    Each row of C is a sum of rows of B (axpy form), accumulated SMALL_BLOCK columns at a
    time in a local block the compiler keeps in vector registers, so C is read and written
    once, not k times. Inline, so that each kernel variant compiles it for its own ISA."""
    cdef Py_ssize_t i, p, j, j0, width
    cdef floating a
    cdef floating acc[SMALL_BLOCK]
    cdef floating *c
    cdef const floating *b
    for i in range(m):
        c = C + i * ldc
        j0 = 0
        while j0 + SMALL_BLOCK <= n:
            for j in range(SMALL_BLOCK):
                acc[j] = 0 if beta == 0 else beta * c[j0 + j]
            for p in range(k):
                a = A[i * lda + p]
                b = B + p * ldb + j0
                for j in range(SMALL_BLOCK):
                    acc[j] += a * b[j]
            for j in range(SMALL_BLOCK):
                c[j0 + j] = acc[j]
            j0 += SMALL_BLOCK
        width = n - j0
        for j in range(width):
            acc[j] = 0 if beta == 0 else beta * c[j0 + j]
        for p in range(k if width else 0):
            a = A[i * lda + p]
            b = B + p * ldb + j0
            for j in range(width):
                acc[j] += a * b[j]
        for j in range(width):
            c[j0 + j] = acc[j]
