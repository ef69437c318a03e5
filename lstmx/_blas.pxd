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
