/* AMX, Intel's tile unit, for lstmx's products and the bench's peak: whether this process can
 * use it (the CPU has it and Linux grants it) and the tiles' configuration. */
#ifndef LSTMX_AMX_H
#define LSTMX_AMX_H

/* Bytes of a tile row, and rows of a tile. */
#define LSTMX_AMX_ROW_BYTES 64
#define LSTMX_AMX_ROWS 16

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) \
    && __GNUC__ >= 11
#define LSTMX_AMX_COMPILES 1
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Linux's arch_prctl request for permission to use a state component, and AMX's tile data. */
#define LSTMX_ARCH_REQ_XCOMP_PERM 0x1023
#define LSTMX_XFEATURE_XTILEDATA 18

/* Which AMX products the CPU has and Linux lets this process use: 1 int8, 2 bfloat16 (or
 * both). Asks Linux for the tile registers (once is enough; again is harmless); where it
 * refuses (a kernel before 5.16, or a signal stack too small for the larger state), 0. */
static int lstmx_amx_ready(void)
{
    int kinds;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("amx-tile"))
        return 0;
    kinds = (__builtin_cpu_supports("amx-int8") ? 1 : 0)
            | (__builtin_cpu_supports("amx-bf16") ? 2 : 0);
    if (kinds == 0
        || syscall(SYS_arch_prctl, LSTMX_ARCH_REQ_XCOMP_PERM, LSTMX_XFEATURE_XTILEDATA) != 0)
        return 0;
    return kinds;
}

/* ldtilecfg's 64 bytes (palette 1). */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((aligned(64))) lstmx_amx_config;

/* Eight tiles of 64-byte rows: tiles 0-5 of ``rows`` rows, 6 and 7 of 16. (The products keep
 * sums in 0-3, activations in 4 and 5, weights in 6 and 7: _dot_amx.h.) */
__attribute__((target("amx-tile"))) static inline void lstmx_amx_configure(int rows)
{
    lstmx_amx_config cfg;
    int t;
    memset(&cfg, 0, sizeof(cfg));
    cfg.palette = 1;
    for (t = 0; t < 8; t++) {
        cfg.colsb[t] = LSTMX_AMX_ROW_BYTES;
        cfg.rows[t] = (uint8_t)(t < 6 ? rows : LSTMX_AMX_ROWS);
    }
    /* ldtilecfg reads all 64 bytes, but the intrinsic tells GCC of only the first 8. */
    __asm__ volatile("" : : "m"(cfg) : "memory");
    _tile_loadconfig(&cfg);
}

#else
#define LSTMX_AMX_COMPILES 0
static int lstmx_amx_ready(void) { return 0; }
#endif

#endif
