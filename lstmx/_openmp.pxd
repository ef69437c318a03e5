# OpenMP from inside a parallel region: the barrier and team sizes the threaded kernels use.

cdef extern from *:
    """
    /* OpenMP from inside a parallel region (serial stand-ins without OpenMP). An orphaned
       barrier binds to the innermost enclosing parallel region. */
    #ifdef _OPENMP
    #include <omp.h>
    static inline void lstmx_barrier(void) {
        _Pragma("omp barrier")
    }
    static inline int lstmx_num_threads(void) { return omp_get_num_threads(); }
    static inline int lstmx_max_threads(void) { return omp_get_max_threads(); }
    #else
    static inline void lstmx_barrier(void) {}
    static inline int lstmx_num_threads(void) { return 1; }
    static inline int lstmx_max_threads(void) { return 1; }
    #endif
    """
    void barrier "lstmx_barrier"() noexcept nogil
    int num_threads "lstmx_num_threads"() noexcept nogil
    int max_threads "lstmx_max_threads"() noexcept nogil
