#include <stddef.h>
#include <string.h>
typedef float vf __attribute__((vector_size(32)));
/* C[:6, :16] (+)= A[:6, :k] @ Bp[:, :16], A rows a_row apart (a_col = 1), strip rows 32 apart */
static inline void tile6_f(ptrdiff_t k, const float *A, ptrdiff_t a_row, const float *Bp,
                           float *C, ptrdiff_t ldc, int add)
{
    vf c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};
    vf c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};
    const float *a0 = A, *a3 = A + 3 * a_row;
    ptrdiff_t p;
    for (p = 0; p < k; p++) {
        vf b0, b1;
        memcpy(&b0, Bp + p * 32, 32);
        memcpy(&b1, Bp + p * 32 + 8, 32);
        float x;
        x = a0[p];             c00 += x * b0; c01 += x * b1;
        x = a0[p + a_row];     c10 += x * b0; c11 += x * b1;
        x = a0[p + 2 * a_row]; c20 += x * b0; c21 += x * b1;
        x = a3[p];             c30 += x * b0; c31 += x * b1;
        x = a3[p + a_row];     c40 += x * b0; c41 += x * b1;
        x = a3[p + 2 * a_row]; c50 += x * b0; c51 += x * b1;
    }
#define ST(r, v0, v1) do { vf t0, t1; if (add) { memcpy(&t0, C + r * ldc, 32); memcpy(&t1, C + r * ldc + 8, 32); v0 += t0; v1 += t1; } \
    memcpy(C + r * ldc, &v0, 32); memcpy(C + r * ldc + 8, &v1, 32); } while (0)
    ST(0, c00, c01); ST(1, c10, c11); ST(2, c20, c21); ST(3, c30, c31); ST(4, c40, c41); ST(5, c50, c51);
#undef ST
}
