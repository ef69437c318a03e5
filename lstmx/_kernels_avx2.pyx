# The kernels of _kernels.pyx compiled for AVX2 + FMA (flags in setup.py); lstmx._dispatch picks the
# variant at run time from what the CPU supports.
include "_kernels.pyx"
