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

#include "_vector_width.h"
typedef float lstmx_rows_vf __attribute__((vector_size(LSTMX_VECTOR_BYTES)));
typedef double lstmx_rows_vd __attribute__((vector_size(LSTMX_VECTOR_BYTES)));

/* The k loop of LSTMX_ROWS_KERNEL: acc[r][v] += A[r, p] * Bp[p, v] for p in order, in the
 * kernel's variables (acc, a, b, Bp, strip, k, a_row, a_col). */
#define LSTMX_ROWS_LOOP_C(T, V, R, NV)                                                      \
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
    }

/* The frame of the hand-allocated loops below: r8 walks A (row r at r8 + r * a_row, in
 * bytes in r10), r9 walks B, r11 counts k down; the loop's strides and length come from
 * memory, {a_row, a_col, strip, k} in bytes and elements ("st"), which keeps the operands
 * within asm's 30. The sums are the kernel's acc[r][v], in registers GCC chooses among
 * those the loop leaves it. */
#define LSTMX_ROWS_ASM_OPEN                                                                 \
    "mov 24(%[st]), %%r11\n\t"                                                              \
    "test %%r11, %%r11\n\t"                                                                 \
    "jle 2f\n\t"                                                                            \
    "mov %[a0], %%r8\n\t"                                                                   \
    "mov %[b0], %%r9\n\t"                                                                   \
    "mov (%[st]), %%r10\n\t"
#define LSTMX_ROWS_ASM_CLOSE                                                                \
    "add 16(%[st]), %%r9\n\t"                                                               \
    "add 8(%[st]), %%r8\n\t"                                                                \
    "dec %%r11\n\t"                                                                         \
    "jnz 1b\n\t"                                                                            \
    "2:\n\t"
#define LSTMX_ROWS_ASM_INPUTS : [a0] "r"(a[0]), [b0] "r"(Bp), [st] "r"(steps)
#define LSTMX_ROWS_ASM_LOOP(T, ASM, OPERANDS)                                               \
    {                                                                                       \
        const ptrdiff_t steps[4] = {a_row * (ptrdiff_t) sizeof(T),                          \
                                    a_col * (ptrdiff_t) sizeof(T),                          \
                                    strip * (ptrdiff_t) sizeof(T), k};                      \
        (void) b;                                                                           \
        (void) p;                                                                           \
        if (sizeof(T) == 4)                                                                 \
            __asm__(ASM("vbroadcastss", "vfmadd231ps") OPERANDS);                           \
        else                                                                                \
            __asm__(ASM("vbroadcastsd", "vfmadd231pd") OPERANDS);                           \
    }

/* Three rows by four vectors on AVX2: the same multiply-adds in the same order as the C
 * loop, with the registers allocated by hand. The C loop needs 17 of AVX2's 16 vector
 * registers (12 sums, 4 vectors of B, a broadcast), and GCC kept two vectors of B on the
 * stack, stored and reloaded at every k, and three rows ran slower than two. Here the
 * three broadcasts of A stay in registers and B is read a vector at a time: 12 + 3 + 1 =
 * 16 (docs/performance.md). */
#define LSTMX_ROWS3_ASM(BCAST, FMA)                                                         \
    LSTMX_ROWS_ASM_OPEN                                                                     \
    "1:\n\t"                                                                                \
    BCAST " (%%r8), %%ymm13\n\t"                                                            \
    BCAST " (%%r8,%%r10), %%ymm14\n\t"                                                      \
    BCAST " (%%r8,%%r10,2), %%ymm15\n\t"                                                    \
    "vmovups (%%r9), %%ymm12\n\t"                                                           \
    FMA " %%ymm12, %%ymm13, %[c00]\n\t"                                                     \
    FMA " %%ymm12, %%ymm14, %[c10]\n\t"                                                     \
    FMA " %%ymm12, %%ymm15, %[c20]\n\t"                                                     \
    "vmovups 32(%%r9), %%ymm12\n\t"                                                         \
    FMA " %%ymm12, %%ymm13, %[c01]\n\t"                                                     \
    FMA " %%ymm12, %%ymm14, %[c11]\n\t"                                                     \
    FMA " %%ymm12, %%ymm15, %[c21]\n\t"                                                     \
    "vmovups 64(%%r9), %%ymm12\n\t"                                                         \
    FMA " %%ymm12, %%ymm13, %[c02]\n\t"                                                     \
    FMA " %%ymm12, %%ymm14, %[c12]\n\t"                                                     \
    FMA " %%ymm12, %%ymm15, %[c22]\n\t"                                                     \
    "vmovups 96(%%r9), %%ymm12\n\t"                                                         \
    FMA " %%ymm12, %%ymm13, %[c03]\n\t"                                                     \
    FMA " %%ymm12, %%ymm14, %[c13]\n\t"                                                     \
    FMA " %%ymm12, %%ymm15, %[c23]\n\t"                                                     \
    LSTMX_ROWS_ASM_CLOSE
/* The sums in and out (12 of them, each counting twice: 24 of asm's 30 operands). */
#define LSTMX_ROWS3_ASM_OPERANDS                                                            \
    : [c00] "+x"(acc[0][0]), [c01] "+x"(acc[0][1]), [c02] "+x"(acc[0][2]),                  \
      [c03] "+x"(acc[0][3]), [c10] "+x"(acc[1][0]), [c11] "+x"(acc[1][1]),                  \
      [c12] "+x"(acc[1][2]), [c13] "+x"(acc[1][3]), [c20] "+x"(acc[2][0]),                  \
      [c21] "+x"(acc[2][1]), [c22] "+x"(acc[2][2]), [c23] "+x"(acc[2][3])                   \
    LSTMX_ROWS_ASM_INPUTS                                                                   \
    : "r8", "r9", "r10", "r11", "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory"
#define LSTMX_ROWS_LOOP_ASM3(T, V, R, NV)                                                   \
    LSTMX_ROWS_ASM_LOOP(T, LSTMX_ROWS3_ASM, LSTMX_ROWS3_ASM_OPERANDS)

/* Four rows by two vectors on AVX2, allocated by hand: GCC's loop reloaded the four rows'
 * pointers from the stack at every k, four loads and four instructions more for every
 * eight multiply-adds (docs/performance.md). */
#define LSTMX_ROWS4_ASM(BCAST, FMA)                                                         \
    LSTMX_ROWS_ASM_OPEN                                                                     \
    "lea (%%r10,%%r10,2), %%r12\n\t"                                                        \
    "1:\n\t"                                                                                \
    "vmovups (%%r9), %%ymm12\n\t"                                                           \
    "vmovups 32(%%r9), %%ymm13\n\t"                                                         \
    BCAST " (%%r8), %%ymm14\n\t"                                                            \
    FMA " %%ymm12, %%ymm14, %[c00]\n\t"                                                     \
    FMA " %%ymm13, %%ymm14, %[c01]\n\t"                                                     \
    BCAST " (%%r8,%%r10), %%ymm15\n\t"                                                      \
    FMA " %%ymm12, %%ymm15, %[c10]\n\t"                                                     \
    FMA " %%ymm13, %%ymm15, %[c11]\n\t"                                                     \
    BCAST " (%%r8,%%r10,2), %%ymm14\n\t"                                                    \
    FMA " %%ymm12, %%ymm14, %[c20]\n\t"                                                     \
    FMA " %%ymm13, %%ymm14, %[c21]\n\t"                                                     \
    BCAST " (%%r8,%%r12), %%ymm15\n\t"                                                      \
    FMA " %%ymm12, %%ymm15, %[c30]\n\t"                                                     \
    FMA " %%ymm13, %%ymm15, %[c31]\n\t"                                                     \
    LSTMX_ROWS_ASM_CLOSE
#define LSTMX_ROWS4_ASM_OPERANDS                                                            \
    : [c00] "+x"(acc[0][0]), [c01] "+x"(acc[0][1]), [c10] "+x"(acc[1][0]),                  \
      [c11] "+x"(acc[1][1]), [c20] "+x"(acc[2][0]), [c21] "+x"(acc[2][1]),                  \
      [c30] "+x"(acc[3][0]), [c31] "+x"(acc[3][1])                                          \
    LSTMX_ROWS_ASM_INPUTS                                                                   \
    : "r8", "r9", "r10", "r11", "r12", "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory"
#define LSTMX_ROWS_LOOP_ASM4(T, V, R, NV)                                                   \
    LSTMX_ROWS_ASM_LOOP(T, LSTMX_ROWS4_ASM, LSTMX_ROWS4_ASM_OPERANDS)

#define LSTMX_ROWS_KERNEL(NAME, T, V, R, NV, LOOP)                                          \
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
    /* The rows of C, fetched for writing while the sums are computed: in backward's dW   \
       and dU (4H rows, megabytes) and a chunk's input projection (z beyond L2) they are  \
       rarely in cache, and no hardware prefetcher follows rows I or H apart. */          \
    _Pragma("GCC unroll 8")                                                                 \
    for (r = 0; r < R; r++) {                                                               \
        __builtin_prefetch(C + r * ldc, 1, 3);                                              \
        __builtin_prefetch(C + r * ldc + NV * W - 1, 1, 3);                                 \
    }                                                                                       \
    _Pragma("GCC unroll 8")                                                                 \
    for (g = 0; g < G; g++)                                                                 \
        a[g] = A + 3 * g * a_row;                                                           \
    LOOP(T, V, R, NV)                                                                       \
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
 * three rows are 12 accumulators of its 16 registers) and 2 for four and six (the tile); on
 * AVX-512, as many as fill a strip of 32 columns (2 of floats, 4 of doubles), for two or
 * three rows (its tiles run on lstmx_tile_f and lstmx_tile_d below: LSTMX_ROWS_TILES is 0).
 * Four rows run here on AVX2 (the hand-allocated loop; the C loop at -O0) and for AVX-512's
 * doubles (quad_tile's loop of 16 doubles left products unfused), on _gemm.pxd's quad_tile
 * elsewhere: GCC's loop for four rows of floats was slower than quad_tile
 * (docs/performance.md). */
#define LSTMX_ROWS_VECTORS(T, R) \
    (LSTMX_VECTOR_BYTES == 64 ? (sizeof(T) == 4 ? 2 : 4) : (R) <= 3 ? 4 : 2)
#if defined(__AVX2__) && defined(__FMA__) && !defined(__AVX512F__)
#define LSTMX_ROWS_TILES 1
#else
#define LSTMX_ROWS_TILES 0
#endif

/* Three and four rows: the hand-allocated loops where they are written for (AVX2), in
 * optimised builds. Their multiply-adds are fused, as GCC fuses the C loops' `acc += x *
 * b` when it optimises; at -O0 (the debug build) it does not, and the C loops keep every
 * kernel's sums alike there, as a row's bits must not depend on the kernel. */
#if LSTMX_ROWS_TILES && defined(__OPTIMIZE__)
#define LSTMX_ROWS3_LOOP LSTMX_ROWS_LOOP_ASM3
#define LSTMX_ROWS4_LOOP LSTMX_ROWS_LOOP_ASM4
#else
#define LSTMX_ROWS3_LOOP LSTMX_ROWS_LOOP_C
#define LSTMX_ROWS4_LOOP LSTMX_ROWS_LOOP_C
#endif
#define LSTMX_ROWS_KERNELS(T, V, S)                                                         \
    LSTMX_ROWS_KERNEL(lstmx_rows2_##S, T, V, 2, LSTMX_ROWS_VECTORS(T, 2), LSTMX_ROWS_LOOP_C) \
    LSTMX_ROWS_KERNEL(lstmx_rows3_##S, T, V, 3, LSTMX_ROWS_VECTORS(T, 3), LSTMX_ROWS3_LOOP)  \
    LSTMX_ROWS_KERNEL(lstmx_rows4_##S, T, V, 4, LSTMX_ROWS_VECTORS(T, 4), LSTMX_ROWS4_LOOP)  \
    LSTMX_ROWS_KERNEL(lstmx_rows6_##S, T, V, 6, LSTMX_ROWS_VECTORS(T, 6), LSTMX_ROWS_LOOP_C)
LSTMX_ROWS_KERNELS(float, lstmx_rows_vf, f)
LSTMX_ROWS_KERNELS(double, lstmx_rows_vd, d)

/* C[:m, :cols] := A[:m, :k] @ Bp[:, :cols] (+ C when add) (+ bias[:cols] unless NULL) over
 * a whole strip of LSTMX_SHALLOW_COLS columns (zero-padded past cols, rows `strip` apart), a
 * row at a time, for a depth k of a few elements (an input projection of one to four
 * features): each element summed as the tiles sum it (from the bias or zero, k in order, C
 * added last). At such a depth a tile spends more on filling, storing and addressing its
 * twelve registers than on its multiply-adds; here the bias stays in registers across the
 * rows, and a row is its few multiply-adds and a store (docs/performance.md). */
#define LSTMX_SHALLOW_COLS 32
#define LSTMX_SHALLOW_AHEAD 8
#define LSTMX_SHALLOW_KERNEL(NAME, T, V)                                                    \
static inline void NAME(ptrdiff_t m, ptrdiff_t k, const T *A, ptrdiff_t a_row,             \
                        ptrdiff_t a_col, const T *Bp, ptrdiff_t strip, T *C, ptrdiff_t ldc, \
                        ptrdiff_t cols, int add, const T *bias)                             \
{                                                                                           \
    enum { W = sizeof(V) / sizeof(T), NV = LSTMX_SHALLOW_COLS / W };                        \
    V top[NV], acc[NV], b, t;                                                               \
    T line[LSTMX_SHALLOW_COLS];                                                             \
    ptrdiff_t r, p, j;                                                                      \
    int v;                                                                                  \
    for (j = 0; j < LSTMX_SHALLOW_COLS; j++)                                                \
        line[j] = bias != NULL && j < cols ? bias[j] : (T) 0;                               \
    _Pragma("GCC unroll 16")                                                                \
    for (v = 0; v < NV; v++)                                                                \
        memcpy(&top[v], line + v * W, sizeof(V));                                           \
    for (r = 0; r < m; r++) {                                                               \
        /* The row LSTMX_SHALLOW_AHEAD below, fetched for writing: a row is a few          \
           multiply-adds and a store to lines no prefetcher foresees (ldc apart). */      \
        if (r + LSTMX_SHALLOW_AHEAD < m) {                                                  \
            __builtin_prefetch(C + (r + LSTMX_SHALLOW_AHEAD) * ldc, 1, 3);                  \
            __builtin_prefetch(C + (r + LSTMX_SHALLOW_AHEAD) * ldc                          \
                               + LSTMX_SHALLOW_COLS - 1, 1, 3);                             \
        }                                                                                   \
        _Pragma("GCC unroll 16")                                                            \
        for (v = 0; v < NV; v++)                                                            \
            acc[v] = top[v];                                                                \
        _Pragma("GCC unroll 1")                                                             \
        for (p = 0; p < k; p++) {                                                           \
            T x = A[r * a_row + p * a_col];                                                 \
            _Pragma("GCC unroll 16")                                                        \
            for (v = 0; v < NV; v++) {                                                      \
                memcpy(&b, Bp + p * strip + v * W, sizeof(V));                              \
                acc[v] += x * b;                                                            \
            }                                                                               \
        }                                                                                   \
        if (cols >= LSTMX_SHALLOW_COLS) {                                                   \
            _Pragma("GCC unroll 16")                                                        \
            for (v = 0; v < NV; v++) {                                                      \
                if (add) {                                                                  \
                    memcpy(&t, C + r * ldc + v * W, sizeof(V));                             \
                    acc[v] += t;                                                            \
                }                                                                           \
                memcpy(C + r * ldc + v * W, &acc[v], sizeof(V));                            \
            }                                                                               \
            continue;                                                                       \
        }                                                                                   \
        _Pragma("GCC unroll 16")                                                            \
        for (v = 0; v < NV; v++)                                                            \
            memcpy(line + v * W, &acc[v], sizeof(V));                                       \
        for (j = 0; j < cols; j++)                                                          \
            C[r * ldc + j] = add ? C[r * ldc + j] + line[j] : line[j];                      \
    }                                                                                       \
}
LSTMX_SHALLOW_KERNEL(lstmx_shallow_f, float, lstmx_rows_vf)
LSTMX_SHALLOW_KERNEL(lstmx_shallow_d, double, lstmx_rows_vd)

/* C[:rows, :cols] for 2, 3, 4 or 6 rows (other counts do nothing) over the `cols` columns of
 * a strip (rows `strip` apart), a pass of LSTMX_ROWS_VECTORS vectors at a time. */
#define LSTMX_ROWS_DISPATCH(NAME, T, S)                                                     \
static inline void NAME(ptrdiff_t rows, ptrdiff_t k, const T *A, ptrdiff_t a_row,          \
                        ptrdiff_t a_col, const T *Bp, ptrdiff_t strip, T *C, ptrdiff_t ldc, \
                        ptrdiff_t cols, int add, const T *bias)                             \
{                                                                                           \
    const ptrdiff_t pass =                                                                  \
        LSTMX_ROWS_VECTORS(T, rows) * (LSTMX_VECTOR_BYTES / (ptrdiff_t) sizeof(T));         \
    ptrdiff_t q, w;                                                                         \
    for (q = 0; q < cols; q += pass) {                                                      \
        const T *b = bias != NULL ? bias + q : NULL;                                        \
        w = cols - q < pass ? cols - q : pass;                                              \
        if (rows == 2)                                                                      \
            lstmx_rows2_##S(k, A, a_row, a_col, Bp + q, strip, C + q, ldc, w, add, b);      \
        else if (rows == 3)                                                                 \
            lstmx_rows3_##S(k, A, a_row, a_col, Bp + q, strip, C + q, ldc, w, add, b);      \
        else if (rows == 4)                                                                 \
            lstmx_rows4_##S(k, A, a_row, a_col, Bp + q, strip, C + q, ldc, w, add, b);      \
        else if (rows == 6)                                                                 \
            lstmx_rows6_##S(k, A, a_row, a_col, Bp + q, strip, C + q, ldc, w, add, b);      \
    }                                                                                       \
}
LSTMX_ROWS_DISPATCH(lstmx_rows_f, float, f)
LSTMX_ROWS_DISPATCH(lstmx_rows_d, double, d)

/* The whole tile on AVX-512 (LSTMX_TILE_KERNEL: 8 rows by 2 vectors, 32 floats or 16
 * doubles, 16 of its 32 registers). As _gemm.pxd's loop over an array, GCC kept the loop's
 * sums in registers but stored them to the stack after it and loaded them back to add C,
 * and started them from the stack too: 48 memory operations a tile that here are none
 * (docs/performance.md). Defined in every build (unused where LSTMX_TILE_KERNEL is 0). */
#if defined(__AVX512F__)
#define LSTMX_TILE_KERNEL 1
#else
#define LSTMX_TILE_KERNEL 0
#endif
LSTMX_ROWS_KERNEL(lstmx_tile_f, float, lstmx_rows_vf, LSTMX_TILE_ROWS,
                  LSTMX_PASS_FLOATS * sizeof(float) / LSTMX_VECTOR_BYTES, LSTMX_ROWS_LOOP_C)
LSTMX_ROWS_KERNEL(lstmx_tile_d, double, lstmx_rows_vd, LSTMX_TILE_ROWS,
                  LSTMX_PASS_DOUBLES * sizeof(double) / LSTMX_VECTOR_BYTES, LSTMX_ROWS_LOOP_C)

/* A tile's rows by half its pass (_gemm.pxd's LSTMX_TILE_ROWS and LSTMX_PASS_FLOATS or
 * _DOUBLES, defined before this header is included), for the last columns of a strip when
 * they are no more than half a pass: an input size of 33 leaves one column in a second strip
 * of backward's dx and dW, which a whole tile computed at a whole tile's cost. The same sums
 * as the tile's, at half its multiply-adds, in half its accumulators (AVX-512: 8; AVX2: 6),
 * still enough to cover the latency of the multiply-adds. */
#if !defined(LSTMX_TILE_ROWS) || !defined(LSTMX_PASS_FLOATS) || !defined(LSTMX_PASS_DOUBLES)
#error "_rows_tile.h needs the tile's shape from _gemm.pxd"
#endif
#define LSTMX_HALF_VECTORS(T)                                                               \
    ((sizeof(T) == 4 ? LSTMX_PASS_FLOATS : LSTMX_PASS_DOUBLES) / 2 * sizeof(T)                \
     / LSTMX_VECTOR_BYTES)
LSTMX_ROWS_KERNEL(lstmx_half_f, float, lstmx_rows_vf, LSTMX_TILE_ROWS, LSTMX_HALF_VECTORS(float),
                  LSTMX_ROWS_LOOP_C)
LSTMX_ROWS_KERNEL(lstmx_half_d, double, lstmx_rows_vd, LSTMX_TILE_ROWS,
                  LSTMX_HALF_VECTORS(double), LSTMX_ROWS_LOOP_C)

#endif
