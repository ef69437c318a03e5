/* The register tiles shared by lstmx's dot-product kernels of every vector width
 * (_dot_avx512.h: 512-bit, _dot_avx2.h: 256-bit): the packed weights' layout, a tile's sums
 * as named variables pinned to registers, and the split of rows into tiles.
 *
 * Weights are packed a vector of 16 output channels at a time: a vector's weights for ``G``
 * consecutive inputs (G = 4 int8 or 2 bfloat16, 4 bytes) sit together, so that one broadcast
 * of a row's G activations meets 16 channels in one 512-bit instruction (or two 256-bit
 * ones), each lane summing its own channel:
 *     w[n, k] is at packed[((n / 16) * (kp / G) + k / G) * 16 * G + (n % 16) * G + k % G].
 * Both widths read the same layout, so the packed weights do not depend on the CPU's. */
#ifndef LSTMX_DOT_TILES_H
#define LSTMX_DOT_TILES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Output channels of a packed vector: one zmm of int32 or float32 sums. */
#define LSTMX_DOT_VEC 16
/* Rows of a tile, at most. */
#define LSTMX_DOT_TILE_ROWS 6

/* 4 bytes at p as one int32, whatever their alignment and type. */
#define LSTMX_DOT_LOAD32(p, out) memcpy(&(out), (p), 4)

/* The tiles' sums as 24 named variables c<row><vector> (starting at i<vector>), each pinned
 * to its register after every update (an empty asm): held in an array, GCC 12 keeps a copy
 * of each in memory and moves it between registers at every instruction. Those of rows >= R
 * or vectors >= V are dead code for the constant R and V of each copy of a tile. */
#define LSTMX_DOT_DECLARE(type, i0, i1, i2, i3)                                            \
    type c00 = i0, c01 = i1, c02 = i2, c03 = i3, c10 = i0, c11 = i1, c12 = i2, c13 = i3,   \
         c20 = i0, c21 = i1, c22 = i2, c23 = i3, c30 = i0, c31 = i1, c32 = i2, c33 = i3,   \
         c40 = i0, c41 = i1, c42 = i2, c43 = i3, c50 = i0, c51 = i1, c52 = i2, c53 = i3

/* w0 .. w(V-1): the weight vectors at p of each of the tile's vectors, ldw apart. */
#define LSTMX_DOT_LOAD_W(load, p)                                                          \
    do {                                                                                   \
        w0 = load((const void *)(p));                                                      \
        if (V > 1) w1 = load((const void *)((p) + ldw));                                   \
        if (V > 2) w2 = load((const void *)((p) + 2 * ldw));                               \
        if (V > 3) w3 = load((const void *)((p) + 3 * ldw));                               \
    } while (0)

/* For each row r < R: x = the 4 bytes at p + r * kp broadcast, then OP(c<r><v>, w<v>) for
 * each v < V. */
#define LSTMX_DOT_ROW(r, bcast, p, OP, c0, c1, c2, c3)                                     \
    if ((r) < R) {                                                                         \
        LSTMX_DOT_LOAD32((p) + (r) * kp, bits);                                            \
        x = bcast(bits);                                                                   \
        OP(c0, w0); __asm__("" : "+v"(c0));                                                \
        if (V > 1) { OP(c1, w1); __asm__("" : "+v"(c1)); }                                 \
        if (V > 2) { OP(c2, w2); __asm__("" : "+v"(c2)); }                                 \
        if (V > 3) { OP(c3, w3); __asm__("" : "+v"(c3)); }                                 \
    }
#define LSTMX_DOT_ROWS(bcast, p, OP)                                                       \
    do {                                                                                   \
        LSTMX_DOT_ROW(0, bcast, p, OP, c00, c01, c02, c03)                                 \
        LSTMX_DOT_ROW(1, bcast, p, OP, c10, c11, c12, c13)                                 \
        LSTMX_DOT_ROW(2, bcast, p, OP, c20, c21, c22, c23)                                 \
        LSTMX_DOT_ROW(3, bcast, p, OP, c30, c31, c32, c33)                                 \
        LSTMX_DOT_ROW(4, bcast, p, OP, c40, c41, c42, c43)                                 \
        LSTMX_DOT_ROW(5, bcast, p, OP, c50, c51, c52, c53)                                 \
    } while (0)

/* The sums into acc[r][v] for the epilogue, which indexes them. */
#define LSTMX_DOT_STORE(acc)                                                               \
    do {                                                                                   \
        acc[0][0] = c00; acc[0][1] = c01; acc[0][2] = c02; acc[0][3] = c03;                \
        acc[1][0] = c10; acc[1][1] = c11; acc[1][2] = c12; acc[1][3] = c13;                \
        acc[2][0] = c20; acc[2][1] = c21; acc[2][2] = c22; acc[2][3] = c23;                \
        acc[3][0] = c30; acc[3][1] = c31; acc[3][2] = c32; acc[3][3] = c33;                \
        acc[4][0] = c40; acc[4][1] = c41; acc[4][2] = c42; acc[4][3] = c43;                \
        acc[5][0] = c50; acc[5][1] = c51; acc[5][2] = c52; acc[5][3] = c53;                \
    } while (0)

/* EACH(TILE, R) for the tiles of rows [r_lo, r_hi), r0 the first row of each: the fewest
 * tiles that hold the rows, as even as can be (8 rows: 4 + 4, not 6 + 2), since a tile of
 * one or two rows loads as many weight vectors for a third or a sixth of the products.
 * Each R is a constant in its own copy of the tile, so that its loops unroll and its sums
 * live in registers. */
#define LSTMX_DOT_FOR_ROW_TILES(EACH, TILE)                                                \
    do {                                                                                   \
        ptrdiff_t r0, t;                                                                   \
        ptrdiff_t tiles = (r_hi - r_lo + LSTMX_DOT_TILE_ROWS - 1) / LSTMX_DOT_TILE_ROWS;   \
        int R;                                                                             \
        for (t = 0, r0 = r_lo; t < tiles; t++, r0 += R) {                                  \
            R = (int)((r_hi - r_lo) / tiles + (t < (r_hi - r_lo) % tiles));                \
            switch (R) {                                                                   \
            case 6: EACH(TILE, 6); break;                                                  \
            case 5: EACH(TILE, 5); break;                                                  \
            case 4: EACH(TILE, 4); break;                                                  \
            case 3: EACH(TILE, 3); break;                                                  \
            case 2: EACH(TILE, 2); break;                                                  \
            default: EACH(TILE, 1);                                                        \
            }                                                                              \
        }                                                                                  \
    } while (0)

#endif
