"""Row-major BLAS wrappers over ``scipy.linalg.cython_blas``.

BLAS is column-major; a row-major ``C = op(A) op(B)`` is the column-major
``C.T = op(B).T op(A).T``, so the wrappers swap the operands instead of copying.
"""
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv


cdef void gemm(BLAS_Trans ta, BLAS_Trans tb, blas_int m, blas_int n, blas_int k,
               floating alpha, const floating *A, blas_int lda,
               const floating *B, blas_int ldb,
               floating beta, floating *C, blas_int ldc) noexcept nogil:
    """C := alpha * op(A) op(B) + beta * C, row-major; C is (m, n), op(A) (m, k)."""
    cdef char ta_ = ta
    cdef char tb_ = tb
    cdef char tv
    cdef blas_int rows, cols, incx, one = 1
    cdef Py_ssize_t i, j
    if m == 0 or n == 0:
        return
    if k == 0:
        # An empty product; BLAS would reject the zero leading dimensions it implies.
        for i in range(m):
            for j in range(n):
                C[i * ldc + j] = 0 if beta == 0 else beta * C[i * ldc + j]
        return
    if m == 1:
        # A single row: c = alpha * op(B).T a + beta * c is a GEMV, which skips the packing
        # of B that GEMM does (that packing dominates a batch of one). Column-major, B is
        # (n, k) for op(B) = B.T ('t' below) and (k, n) otherwise.
        tv = b'n' if tb == NoTrans else b't'
        rows, cols = (n, k) if tb == NoTrans else (k, n)
        incx = lda if ta == Trans else 1
        if floating is float:
            sgemv(&tv, &rows, &cols, &alpha, <float *> B, &ldb, <float *> A, &incx, &beta,
                  C, &one)
        else:
            dgemv(&tv, &rows, &cols, &alpha, <double *> B, &ldb, <double *> A, &incx, &beta,
                  C, &one)
        return
    if floating is float:
        sgemm(&tb_, &ta_, &n, &m, &k, &alpha, <float *> B, &ldb,
              <float *> A, &lda, &beta, C, &ldc)
    else:
        dgemm(&tb_, &ta_, &n, &m, &k, &alpha, <double *> B, &ldb,
              <double *> A, &lda, &beta, C, &ldc)

