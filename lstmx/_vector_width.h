/* The bytes of the widest vector the build's compiler targets: 64 (AVX-512), 32 (AVX, AVX2)
 * or 16 (SSE2), for the kernels' element-wise loops and register tiles. */
#ifndef LSTMX_VECTOR_WIDTH_H
#define LSTMX_VECTOR_WIDTH_H

#if defined(__AVX512F__)
#define LSTMX_VECTOR_BYTES 64
#elif defined(__AVX__)
#define LSTMX_VECTOR_BYTES 32
#else
#define LSTMX_VECTOR_BYTES 16
#endif

#endif
