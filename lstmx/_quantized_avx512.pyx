# The int8 and bfloat16 kernels of _quantized.pyx compiled for AVX-512 (flags in setup.py); lstmx._dispatch
# picks the variant at run time from what the CPU supports.
include "_quantized.pyx"
