/* gemm_packed's kernel for the rows of A left over after its whole tiles (_gemm.pxd). */
#ifndef LSTMX_ROWS_TILE_H
#define LSTMX_ROWS_TILE_H

#include <stddef.h>
#include <string.h>

/* C[:R, :cols] := A[:R, :k] @ Bp[:, :NV * lanes] (+ C when add) (+ bias[:cols] unless NULL),
 * Bp a packed strip (its rows `strip` elements apart, zero-padded past cols), A[i, p] at
 * A[i * a_row + p * a_col]: R rows by NV vectors of C, each element summed as micro_tile
 * sums it (from the bias or zero, k in order, C added last), so that a row has the same bits
 * whichever kernel runs it. Written with vector types, not as a Cython loop over an array of
 * accumulators, which GCC kept on the stack for the few-row shapes (two rows ran at a third
 * of the tile's speed): here each accumulator is a vector variable, in a register. */
#if !defined(__GNUC__)
#error "lstmx's kernels need GCC or Clang (setup.py passes them GCC's flags)"
#endif

#if defined(__AVX512F__)
#define LSTMX_ROWS_VECTOR 64
#elif defined(__AVX__)
#define LSTMX_ROWS_VECTOR 32
#else
#define LSTMX_ROWS_VECTOR 16
#endif
typedef float lstmx_rows_vf __attribute__((vector_size(LSTMX_ROWS_VECTOR)));
typedef double lstmx_rows_vd __attribute__((vector_size(LSTMX_ROWS_VECTOR)));

#define LSTMX_ROWS_KERNEL(NAME, T, V, R, NV)                                                \
static inline void NAME(ptrdiff_t k, const T *A, ptrdiff_t a_row, ptrdiff_t a_col,         \
                        const T *Bp, ptrdiff_t strip, T *C, ptrdiff_t ldc, ptrdiff_t cols, \
                        int add, const T *bias)                                             \
{                                                                                           \
    enum { W = sizeof(V) / sizeof(T) };                                                     \
    V acc[R][NV], b[NV];                                                                    \
    T line[NV * W];                                                                         \
    T out[R][NV * W];                                                                       \
    ptrdiff_t p, j;                                                                         \
    int r, v;                                                                               \
    for (j = 0; j < NV * W; j++)                                                            \
        line[j] = bias != NULL && j < cols ? bias[j] : (T) 0;                               \
    _Pragma("GCC unroll 8")                                                                 \
    for (r = 0; r < R; r++) {                                                               \
        _Pragma("GCC unroll 8")                                                             \
        for (v = 0; v < NV; v++)                                                            \
            memcpy(&acc[r][v], line + v * W, sizeof(V));                                    \
    }                                                                                       \
    _Pragma("GCC unroll 1")                                                                 \
    for (p = 0; p < k; p++) {                                                               \
        _Pragma("GCC unroll 8")                                                             \
        for (v = 0; v < NV; v++)                                                            \
            memcpy(&b[v], Bp + p * strip + v * W, sizeof(V));                               \
        _Pragma("GCC unroll 8")                                                             \
        for (r = 0; r < R; r++) {                                                           \
            T a = A[r * a_row + p * a_col];                                                 \
            _Pragma("GCC unroll 8")                                                         \
            for (v = 0; v < NV; v++)                                                        \
                acc[r][v] += a * b[v];                                                      \
        }                                                                                   \
    }                                                                                       \
    _Pragma("GCC unroll 8")                                                                 \
    for (r = 0; r < R; r++) {                                                               \
        _Pragma("GCC unroll 8")                                                             \
        for (v = 0; v < NV; v++)                                                            \
            memcpy(out[r] + v * W, &acc[r][v], sizeof(V));                                  \
    }                                                                                       \
    for (r = 0; r < R; r++) {                                                               \
        if (add)                                                                            \
            for (j = 0; j < cols; j++)                                                      \
                C[r * ldc + j] += out[r][j];                                                \
        else                                                                                \
            for (j = 0; j < cols; j++)                                                      \
                C[r * ldc + j] = out[r][j];                                                 \
    }                                                                                       \
}

/* Vectors of C a row: 4 on AVX2 (a pass of 32 floats or 16 doubles; 3 rows are 12
 * accumulators of its 16 registers), as many as fill a strip of 32 columns on AVX-512 (2 of
 * floats, 4 of doubles). */
#define LSTMX_ROWS_VECTORS(T) (LSTMX_ROWS_VECTOR == 64 && sizeof(T) == 4 ? 2 : 4)
LSTMX_ROWS_KERNEL(lstmx_rows2_f, float, lstmx_rows_vf, 2, LSTMX_ROWS_VECTORS(float))
LSTMX_ROWS_KERNEL(lstmx_rows3_f, float, lstmx_rows_vf, 3, LSTMX_ROWS_VECTORS(float))
LSTMX_ROWS_KERNEL(lstmx_rows2_d, double, lstmx_rows_vd, 2, LSTMX_ROWS_VECTORS(double))
LSTMX_ROWS_KERNEL(lstmx_rows3_d, double, lstmx_rows_vd, 3, LSTMX_ROWS_VECTORS(double))

/* C[:rows, :cols] for 2 or 3 rows (other counts do nothing) over the `cols` <= `strip`
 * columns of a strip, a pass of LSTMX_ROWS_VECTORS vectors at a time. */
#define LSTMX_ROWS_DISPATCH(NAME, T, S)                                                     \
static inline void NAME(ptrdiff_t rows, ptrdiff_t k, const T *A, ptrdiff_t a_row,          \
                        ptrdiff_t a_col, const T *Bp, ptrdiff_t strip, T *C, ptrdiff_t ldc, \
                        ptrdiff_t cols, int add, const T *bias)                             \
{                                                                                           \
    const ptrdiff_t pass = LSTMX_ROWS_VECTORS(T) * (LSTMX_ROWS_VECTOR / (ptrdiff_t) sizeof(T)); \
    ptrdiff_t q, w;                                                                         \
    for (q = 0; q < cols; q += pass) {                                                      \
        const T *b = bias != NULL ? bias + q : NULL;                                        \
        w = cols - q < pass ? cols - q : pass;                                              \
        if (rows == 2)                                                                      \
            lstmx_rows2_##S(k, A, a_row, a_col, Bp + q, strip, C + q, ldc, w, add, b);      \
        else if (rows == 3)                                                                 \
            lstmx_rows3_##S(k, A, a_row, a_col, Bp + q, strip, C + q, ldc, w, add, b);      \
    }                                                                                       \
}
LSTMX_ROWS_DISPATCH(lstmx_rows_f, float, f)
LSTMX_ROWS_DISPATCH(lstmx_rows_d, double, d)

#endif
