# OpenMP from inside a parallel region: the barrier, team sizes and thread numbers the threaded
# kernels use.

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
    /* A number of its own for each thread of a team, or of a team of one nested in a team
       (the two directions of a layer side by side): outer thread * 8 + inner thread. */
    static inline int lstmx_thread_slot(void) {
        int outer = omp_get_level() >= 2 ? omp_get_ancestor_thread_num(1) : 0;
        return outer * 8 + omp_get_thread_num();
    }
    #else
    static inline void lstmx_barrier(void) {}
    static inline int lstmx_num_threads(void) { return 1; }
    static inline int lstmx_max_threads(void) { return 1; }
    static inline int lstmx_thread_slot(void) { return 0; }
    #endif
    """
    void barrier "lstmx_barrier"() noexcept nogil
    int num_threads "lstmx_num_threads"() noexcept nogil
    int max_threads "lstmx_max_threads"() noexcept nogil
    int thread_slot "lstmx_thread_slot"() noexcept nogil
