/* gemm_packed's register tiles in C vector types: rows of C by a pass of a packed strip (_gemm.pxd). */
#ifndef LSTMX_ROWS_TILE_H
#define LSTMX_ROWS_TILE_H

#include <stddef.h>
#include <string.h>

/* C[:R, :cols] := A[:R, :k] @ Bp[:, :NV * lanes] (+ C when add) (+ bias[:cols] unless NULL),
 * Bp a packed strip (its rows `strip` elements apart, zero-padded past cols), A[i, p] at
 * A[i * a_row + p * a_col]: R rows by NV vectors of C, each element summed as micro_tile
 * sums it (from the bias or zero, k in order, C added last), so that a row has the same bits
 * whichever kernel runs it.
 *
 * Written with vector types rather than as a Cython loop over an array of accumulators:
 * GCC kept that array on the stack for the few-row shapes (two rows ran at a third of the
 * tile's speed), and for the whole tile it kept a pointer to each row of A, reloading six of
 * them from the stack at every k. Here each accumulator is a vector variable, and the rows
 * of A are addressed from one pointer per three rows (row r at a[r / 3] + (r % 3) * a_row,
 * which x86 addressing does with a scale of 1 or 2). */
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
    enum { W = sizeof(V) / sizeof(T), G = (R + 2) / 3 };                                    \
    V acc[R][NV], b[NV], t;                                                                 \
    T line[NV * W];                                                                         \
    T out[R][NV * W];                                                                       \
    const T *a[G];                                                                          \
    ptrdiff_t p, j;                                                                         \
    int r, v, g;                                                                            \
    if (bias == NULL) {                                                                     \
        /* Zeros as such: from a null bias (every recurrent product), GCC built the line   \
           below with masked loads at every call (docs/performance.md). */                 \
        _Pragma("GCC unroll 8")                                                             \
        for (v = 0; v < NV; v++)                                                            \
            memset(&b[v], 0, sizeof(V));                                                    \
    } else if (cols >= NV * W) {                                                            \
        _Pragma("GCC unroll 8")                                                             \
        for (v = 0; v < NV; v++)                                                            \
            memcpy(&b[v], bias + v * W, sizeof(V));                                         \
    } else {                                                                                \
        for (j = 0; j < NV * W; j++)                                                        \
            line[j] = j < cols ? bias[j] : (T) 0;                                           \
        _Pragma("GCC unroll 8")                                                             \
        for (v = 0; v < NV; v++)                                                            \
            memcpy(&b[v], line + v * W, sizeof(V));                                         \
    }                                                                                       \
    _Pragma("GCC unroll 8")                                                                 \
    for (r = 0; r < R; r++) {                                                               \
        _Pragma("GCC unroll 8")                                                             \
        for (v = 0; v < NV; v++)                                                            \
            acc[r][v] = b[v];                                                               \
    }                                                                                       \
    if (add) {                                                                              \
        /* The rows of C the sums are added to, fetched while they are computed: in       \
           backward's dW and dU (4H rows, megabytes) they are rarely in cache, and no      \
           hardware prefetcher follows rows I or H apart (docs/performance.md). */         \
        _Pragma("GCC unroll 8")                                                             \
        for (r = 0; r < R; r++) {                                                           \
            __builtin_prefetch(C + r * ldc, 1, 3);                                          \
            __builtin_prefetch(C + r * ldc + NV * W - 1, 1, 3);                             \
        }                                                                                   \
    }                                                                                       \
    _Pragma("GCC unroll 8")                                                                 \
    for (g = 0; g < G; g++)                                                                 \
        a[g] = A + 3 * g * a_row;                                                           \
    _Pragma("GCC unroll 1")                                                                 \
    for (p = 0; p < k; p++) {                                                               \
        _Pragma("GCC unroll 8")                                                             \
        for (v = 0; v < NV; v++)                                                            \
            memcpy(&b[v], Bp + p * strip + v * W, sizeof(V));                               \
        _Pragma("GCC unroll 8")                                                             \
        for (r = 0; r < R; r++) {                                                           \
            T x = a[r / 3][(r % 3) * a_row];                                                \
            _Pragma("GCC unroll 8")                                                         \
            for (v = 0; v < NV; v++)                                                        \
                acc[r][v] += x * b[v];                                                      \
        }                                                                                   \
        _Pragma("GCC unroll 8")                                                             \
        for (g = 0; g < G; g++)                                                             \
            a[g] += a_col;                                                                  \
    }                                                                                       \
    if (cols >= NV * W) {                                                                   \
        _Pragma("GCC unroll 8")                                                             \
        for (r = 0; r < R; r++) {                                                           \
            _Pragma("GCC unroll 8")                                                         \
            for (v = 0; v < NV; v++) {                                                      \
                if (add) {                                                                  \
                    memcpy(&t, C + r * ldc + v * W, sizeof(V));                             \
                    acc[r][v] += t;                                                         \
                }                                                                           \
                memcpy(C + r * ldc + v * W, &acc[r][v], sizeof(V));                         \
            }                                                                               \
        }                                                                                   \
        return;                                                                             \
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

/* Vectors of C a row: on AVX2, 4 for two or three rows (a pass of 32 floats or 16 doubles;
 * three rows are 12 accumulators of its 16 registers) and 2 for six (the tile); on AVX-512,
 * as many as fill a strip of 32 columns (2 of floats, 4 of doubles), for two or three rows
 * (its tiles run on _gemm.pxd's loop: LSTMX_ROWS_TILES is 0). Four rows run on _gemm.pxd's
 * quad_tile everywhere: on AVX2 this kernel's four rows by 2 vectors were slower
 * (docs/performance.md). */
#define LSTMX_ROWS_VECTORS(T, R) \
    (LSTMX_ROWS_VECTOR == 64 ? (sizeof(T) == 4 ? 2 : 4) : (R) <= 3 ? 4 : 2)
#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
#define LSTMX_ROWS_TILES 1
#else
#define LSTMX_ROWS_TILES 0
#endif

#define LSTMX_ROWS_KERNELS(T, V, S)                                                         \
    LSTMX_ROWS_KERNEL(lstmx_rows2_##S, T, V, 2, LSTMX_ROWS_VECTORS(T, 2))                   \
    LSTMX_ROWS_KERNEL(lstmx_rows3_##S, T, V, 3, LSTMX_ROWS_VECTORS(T, 3))                   \
    LSTMX_ROWS_KERNEL(lstmx_rows6_##S, T, V, 6, LSTMX_ROWS_VECTORS(T, 6))
LSTMX_ROWS_KERNELS(float, lstmx_rows_vf, f)
LSTMX_ROWS_KERNELS(double, lstmx_rows_vd, d)

/* C[:rows, :cols] for 2, 3 or 6 rows (other counts do nothing) over the `cols` columns of
 * a strip (rows `strip` apart), a pass of LSTMX_ROWS_VECTORS vectors at a time. */
#define LSTMX_ROWS_DISPATCH(NAME, T, S)                                                     \
static inline void NAME(ptrdiff_t rows, ptrdiff_t k, const T *A, ptrdiff_t a_row,          \
                        ptrdiff_t a_col, const T *Bp, ptrdiff_t strip, T *C, ptrdiff_t ldc, \
                        ptrdiff_t cols, int add, const T *bias)                             \
{                                                                                           \
    const ptrdiff_t pass =                                                                  \
        LSTMX_ROWS_VECTORS(T, rows) * (LSTMX_ROWS_VECTOR / (ptrdiff_t) sizeof(T));          \
    ptrdiff_t q, w;                                                                         \
    for (q = 0; q < cols; q += pass) {                                                      \
        const T *b = bias != NULL ? bias + q : NULL;                                        \
        w = cols - q < pass ? cols - q : pass;                                              \
        if (rows == 2)                                                                      \
            lstmx_rows2_##S(k, A, a_row, a_col, Bp + q, strip, C + q, ldc, w, add, b);      \
        else if (rows == 3)                                                                 \
            lstmx_rows3_##S(k, A, a_row, a_col, Bp + q, strip, C + q, ldc, w, add, b);      \
        else if (rows == 6)                                                                 \
            lstmx_rows6_##S(k, A, a_row, a_col, Bp + q, strip, C + q, ldc, w, add, b);      \
    }                                                                                       \
}
LSTMX_ROWS_DISPATCH(lstmx_rows_f, float, f)
LSTMX_ROWS_DISPATCH(lstmx_rows_d, double, d)

#endif
